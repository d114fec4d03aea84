"""Section "Beyond CNNs": residual vs plain for transformers, recurrent stacks, MLPs, dropout rates and
the residual family.

Reads the summary files ``EXP_DIR/<name>.json`` of ``reslab experiment transformer|rnn|mlp|dropout|family``
(``"experiment"``, ``"axis"``, ``"loss_unit"``, ``"command"``, ``"complete"``, ``"records"``: one per run),
one subsection per file found. Every sentence is made from the numbers in the file, so it cannot
contradict the table under it; a record's missing or ``null`` field shows as ``—``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

from reslab.report import files
from reslab.report.html import (
    definition_list_html,
    escape,
    figure_html,
    figure_to_png,
    note_html,
    paragraph_html,
    section_html,
    subsection_html,
    table_html,
)
from reslab.report.plots import curve_key
from reslab.report.sweep_plots import (
    curve_panels,
    depth_groups,
    dropout_grid,
    family_metric,
    gradient_panels,
    mean,
    number,
    plot_depth_curves,
    plot_dropout_heatmaps,
    plot_family_bars,
    plot_gradient_norms,
    plot_loss_vs_depth,
    plot_rank_collapse,
    profile_of,
    records,
    sub_label,
    subs_in,
    variant_of,
    variant_rank,
    variants_present,
)

TITLE = "Beyond CNNs"
ORDER = 35  # after degradation (30), before gradient flow (40)
EXPERIMENTS = ("transformer", "rnn", "mlp", "dropout", "family")
HEADINGS = {
    "transformer": "Transformers: residual vs plain by depth",
    "rnn": "Recurrent stacks (LSTM, GRU): residual vs plain by depth",
    "mlp": "MLPs: residual vs plain by depth",
    "dropout": "Dropout × residual connections",
    "family": "The residual family: ResNet, plain, highway, DenseNet",
}
AXES = {"transformer": "depth", "rnn": "depth", "mlp": "depth", "dropout": "dropout", "family": "model"}
NOUNS = {"transformer": "transformer", "mlp": "MLP"}
CLOSE = 0.02  # within 2 %: "about the same"
MISSING = "—"

INTRO = ("Residual connections outside convolutional nets: the same comparison as the degradation "
         "experiment (residual vs plain twin, same recipe) for causal transformers, stacked recurrent nets and "
         "MLPs of growing depth, a grid of dropout rates, and the residual family at one size. The losses are "
         "the final ones each experiment recorded; the sentences are computed from them.")


# -- finding the files -------------------------------------------------------------------------------
def find_summaries(run_dirs: list[Path], experiment_dirs: list[Path]) -> list[tuple[Path, str, dict[str, Any]]]:
    """``(directory, experiment name, summary)`` for every ``<name>.json`` of the sweeps, in the order
    transformer, rnn, mlp, dropout, family (then by directory); each file once."""
    found: list[tuple[int, int, Path, str, dict[str, Any]]] = []
    seen: set[Path] = set()
    for index, directory in enumerate(list(experiment_dirs) + list(run_dirs)):
        for name in EXPERIMENTS:
            path = Path(directory) / f"{name}.json"
            if not path.is_file() or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            data = files.read_json(path)
            if not isinstance(data, dict) or not isinstance(data.get("records", []), list):
                continue
            experiment = data.get("experiment") if data.get("experiment") in EXPERIMENTS else name
            found.append((EXPERIMENTS.index(experiment), index, Path(directory), experiment, data))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(directory, name, data) for _, _, directory, name, data in found]


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    found = find_summaries(run_dirs, experiment_dirs)
    if not found:
        return None
    counts = Counter(name for _, name, _ in found)
    body = [paragraph_html(INTRO)]
    for directory, name, data in found:
        heading = HEADINGS[name] + (f" ({directory.name})" if counts[name] > 1 else "")
        body.append(subsection_html(heading, experiment_html(name, data)))
    return section_html(TITLE, "".join(body))


def experiment_html(name: str, data: dict[str, Any]) -> str:
    """One subsection's body: summary sentences, state, settings and command, figures, table."""
    axis = data.get("axis") if data.get("axis") in ("depth", "dropout", "model") else AXES[name]
    render: Callable[[str, dict[str, Any]], tuple[list[str], list[str]]] = {
        "depth": _depth_sweep, "dropout": _dropout_grid, "model": _family}[axis]
    recs = records(data)
    sentences, content = render(name, data) if recs else (["No run of this experiment has been recorded yet."], [])
    head = [paragraph_html(" ".join(s for s in sentences if s))]
    if data.get("complete") is not True:
        head.append(note_html(f"This experiment is not complete: only the {len(recs)} run(s) recorded so far are "
                              "shown, and runs without a number show “—”.", "warning"))
    head.append(definition_list_html(_about(data)))
    command = data.get("command")
    if command:
        head.append(f'<p class="note">Reproduce with <code>{escape(command)}</code></p>')
    return "".join(head + content)


def _about(data: dict[str, Any]) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    source = data.get("data") if isinstance(data.get("data"), dict) else {}
    if source:
        text = str(source.get("name") or "")
        if source.get("source") and source.get("source") != source.get("name"):
            text += f" ({source['source']})"
        if source.get("description"):
            text += f": {source['description']}"
        items.append(("data", text.strip(": ") or MISSING))
    if data.get("loss_unit"):
        items.append(("loss", data["loss_unit"]))
    items.append(("runs", len(records(data))))
    if number(data.get("wall_s")) is not None:
        items.append(("time", duration(data["wall_s"])))
    if data.get("created"):
        items.append(("created", data["created"]))
    return items


# -- formatting -------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, ``—`` when missing or not finite."""
    value = number(value)
    if value is None:
        return MISSING
    return f"{value:.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"


def short(value: float) -> str:
    """Three significant digits, for sentences."""
    return fmt(value, 3)


def pct(value: Any) -> str:
    value = number(value)
    return MISSING if value is None else f"{100 * value:.1f} %"


def duration(seconds: Any) -> str:
    seconds = number(seconds)
    if seconds is None:
        return MISSING
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def count(value: Any) -> str:
    value = number(value)
    return MISSING if value is None else f"{int(value):,}"


def _unit(data: dict[str, Any]) -> str:
    """`` nats/char`` after a value, or nothing for a unitless cross-entropy."""
    unit = str(data.get("loss_unit") or "")
    return f" {unit}" if "/" in unit else ""


def close(a: float, b: float) -> bool:
    scale = max(abs(a), abs(b))
    return scale == 0 or abs(a - b) / scale <= CLOSE


def _figure(plot, data: dict[str, Any], caption: str) -> str:
    return figure_html(figure_to_png(plot(data)), caption)


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x")) else "s")


# -- depth sweeps -----------------------------------------------------------------------------------
def _noun(name: str, sub: tuple[str, ...], fields: list[str]) -> str:
    if name == "rnn":
        cell = dict(zip(fields, sub)).get("cell")
        return f"{cell.upper()} stack" if cell else "recurrent stack"
    return NOUNS.get(name, name)


def _qualifier(sub: tuple[str, ...], fields: list[str]) -> str:
    """`` (no norm)`` for a sweep split by norm; the cell is in the noun already."""
    norm_fields = [f for f in fields if f != "cell"]
    label = sub_label(tuple(v for f, v in zip(fields, sub) if f != "cell"), norm_fields)
    return f" ({label})" if label else ""


def compare_sentence(where: str, noun: str, what: str, residual: float, plain: float, unit: str) -> str:
    """The residual-vs-plain sentence, honest about which is lower (or that they are within 2 %)."""
    gap = short(abs(plain - residual))
    if close(residual, plain):
        return (f"{where}, the residual and plain {_plural(noun)} reached about the same {what}: "
                f"{short(residual)}{unit} against {short(plain)} (within 2 %).")
    if residual < plain:
        return (f"{where}, the residual {noun} reached a {what} of {short(residual)}{unit} against "
                f"{short(plain)} for its plain twin ({gap} lower).")
    return (f"{where}, the plain {noun} reached a lower {what} than its residual twin: {short(plain)}{unit} "
            f"against {short(residual)} ({gap} lower).")


def depth_sentences(name: str, data: dict[str, Any]) -> list[str]:
    """Per cell / norm: residual vs plain at the deepest depth both finished; the other variants there;
    how each kind's training loss changed from the shallowest to the deepest depth."""
    fields, groups = depth_groups(data)
    unit = _unit(data)
    sentences = []
    for sub in subs_in(groups):
        noun, qualifier = _noun(name, sub, fields), _qualifier(sub, fields)
        by_variant = {variant: by_depth for (s, variant), by_depth in groups.items() if s == sub}

        def loss(variant, depth, key="final_train_loss"):
            return mean(r.get(key) for r in by_variant.get(variant, {}).get(depth, []))

        both = [d for d in by_variant.get("residual", {}) if loss("residual", d) is not None
                and loss("plain", d) is not None]
        if not both:
            sentences.append(f"No depth has both a residual and a plain {noun}{qualifier} with a final training "
                             "loss yet.")
            continue
        depth = max(both)
        where = f"At depth {depth}{qualifier}"
        sentences.append(compare_sentence(where, noun, "training loss", loss("residual", depth),
                                          loss("plain", depth), unit))
        val_r, val_p = loss("residual", depth, "final_val_loss"), loss("plain", depth, "final_val_loss")
        if val_r is not None and val_p is not None:
            text = f"Validation loss there: {short(val_r)} (residual) against {short(val_p)} (plain)"
            bpc_r, bpc_p = loss("residual", depth, "bits_per_char"), loss("plain", depth, "bits_per_char")
            if bpc_r is not None and bpc_p is not None:
                text += f", i.e. {short(bpc_r)} against {short(bpc_p)} bits/char"
            sentences.append(text + ".")
        others = [(v, loss(v, depth)) for v in by_variant if v not in ("residual", "plain")]
        others = [f"{v} {short(value)}" for v, value in others if value is not None]
        if others:
            sentences.append(f"Other variants at depth {depth}: training loss {', '.join(others)}.")
        trends = []
        for variant in ("residual", "plain"):
            finished = [d for d in by_variant.get(variant, {}) if loss(variant, d) is not None]
            if len(finished) < 2:
                continue
            low, high = loss(variant, min(finished)), loss(variant, max(finished))
            change = "stayed within 2 %" if close(low, high) else "rose" if high > low else "fell"
            trends.append(f"the {variant} {noun}'s {change} ({short(low)} at depth {min(finished)}, "
                              f"{short(high)} at depth {max(finished)})")
        if trends:
            sentences.append(f"Training loss from the shallowest to the deepest depth{qualifier}: "
                             + "; ".join(trends) + ".")
    return sentences


def rank_sentences(data: dict[str, Any]) -> list[str]:
    """The last layer's relative residual, residual vs plain, at the deepest depth both have it."""
    fields, groups = depth_groups(data)
    sentences = []
    for sub in subs_in(groups):
        by_variant = {variant: by_depth for (s, variant), by_depth in groups.items() if s == sub}

        def last(variant, depth, key):
            values = [profile_of(r, "rank_collapse", key)[1] for r in by_variant.get(variant, {}).get(depth, [])]
            return mean(float(v[-1]) for v in values if v.size)

        both = [d for d in by_variant.get("residual", {})
                if last("residual", d, "relative_residual") is not None
                and last("plain", d, "relative_residual") is not None]
        if not both:
            continue
        depth = max(both)
        res, plain = last("residual", depth, "relative_residual"), last("plain", depth, "relative_residual")
        text = (f"Rank collapse at depth {depth}{_qualifier(sub, fields)}: after training, the last layer's "
                f"relative residual (distance from rank 1) is {short(res)} for the residual transformer and "
                f"{short(plain)} for the plain one ({_closer(res, plain)})")
        init_r, init_p = last("residual", depth, "init"), last("plain", depth, "init")
        if init_r is not None and init_p is not None:
            text += f"; at initialisation {short(init_r)} against {short(init_p)} ({_closer(init_r, init_p)})"
        sentences.append(text + ".")
    return sentences


def _closer(residual: float, plain: float) -> str:
    if close(residual, plain):
        return "about the same"
    return "the plain one is closer to rank 1" if plain < residual else "the residual one is closer to rank 1"


def gradient_sentences(data: dict[str, Any]) -> list[str]:
    """The first (input) layer's gradient norm at initialisation, residual vs plain, at the deepest depth."""
    fields, _ = depth_groups(data)
    sentences = []
    for sub, depth, lines in gradient_panels(data):
        first = {}
        for variant, record in lines:
            values = profile_of(record, "gradient_norms", "norms")[1]
            finite = values[values == values]
            if finite.size:
                first[variant] = (float(values[0]) if values[0] == values[0] else None, float(finite[-1]))
        if "residual" not in first or "plain" not in first or None in (first["residual"][0], first["plain"][0]):
            continue
        (res0, res_last), (plain0, plain_last) = first["residual"], first["plain"]
        sentences.append(
            f"At initialisation{_qualifier(sub, fields)}, depth {depth}: the gradient norm of the first weight layer "
            f"is {res0:.3g} in the residual MLP and {plain0:.3g} in the plain one (first/last layer ratio "
            f"{res0 / res_last:.3g} against {plain0 / plain_last:.3g}).")
    return sentences


def _depth_table(name: str, data: dict[str, Any]) -> str:
    fields, groups = depth_groups(data)
    recs = records(data)
    variants = variants_present([r for r in recs if r.get("depth") is not None])
    text = any(number(r.get("bits_per_char")) is not None for r in recs)
    extra_key, extra_name = ("bits_per_char", "bits/char") if text else ("final_val_error", "val error")
    show_extra = any(number(r.get(extra_key)) is not None for r in recs)
    headers = ["depth"] + ([" / ".join(fields)] if fields else [])
    for variant in variants:
        headers += [f"{variant} train loss", f"{variant} val loss"] + (
            [f"{variant} {extra_name}"] if show_extra else []) + [f"{variant} time"]
    rows = []
    subs = subs_in(groups)
    for sub in subs:
        depths = sorted({d for (s, _), by_depth in groups.items() if s == sub for d in by_depth})
        for depth in depths:
            row: list[Any] = [depth] + ([sub_label(sub, fields) or MISSING] if fields else [])
            for variant in variants:
                runs = groups.get((sub, variant), {}).get(depth, [])
                row += [fmt(mean(r.get("final_train_loss") for r in runs)),
                        fmt(mean(r.get("final_val_loss") for r in runs))]
                if show_extra:
                    value = mean(r.get(extra_key) for r in runs)
                    row.append(fmt(value) if text else pct(value))
                row.append(duration(mean(r.get("wall_s") for r in runs)))
            rows.append(row)
    seeds = max((len(rs) for by_depth in groups.values() for rs in by_depth.values()), default=1)
    caption = f"Final losses ({data.get('loss_unit') or 'loss'})" + (
        f", means over up to {seeds} seeds" if seeds > 1 else "") + "; time: wall-clock training time."
    return table_html(headers, rows, caption)


def _depth_sweep(name: str, data: dict[str, Any]) -> tuple[list[str], list[str]]:
    sentences = depth_sentences(name, data)
    content = [_figure(plot_loss_vs_depth, data, "Final training (left) and validation (right) loss against "
                       "depth, one line per variant" + (" and cell" if name == "rnn" else "") + ".")]
    panels = curve_panels(data)
    if panels:
        content.append(_figure(plot_depth_curves, data, "Loss per epoch at the deepest depth run: "
                               f"{curve_key('validation')}; blue residual, red plain."))
    if any(profile_of(r, "rank_collapse", "relative_residual")[1].size for r in records(data)):
        sentences += rank_sentences(data)
        content.append(_figure(plot_rank_collapse, data, "Rank collapse (Dong et al. 2021): relative residual "
                               "of the token representations at every layer, log scale; lower is closer to "
                               "rank 1. Deeper nets are darker shades."))
    if gradient_panels(data):
        sentences += gradient_sentences(data)
        content.append(_figure(plot_gradient_norms, data, "Gradient norm of every weight layer at initialisation "
                               "(input layer first), deepest depth, residual vs plain; log scale."))
    content.append(_depth_table(name, data))
    return sentences, content


# -- dropout grid -----------------------------------------------------------------------------------
def dropout_sentences(data: dict[str, Any]) -> list[str]:
    """Which rate gave the lowest validation loss, for each variant, and how the two bests compare."""
    unit = _unit(data)
    best: dict[str, tuple[float, float]] = {}
    for variant in variants_present(records(data)):
        cells: dict[float, list[Any]] = {}
        for record in records(data):
            rate = number(record.get("dropout"))
            if variant_of(record) == variant and rate is not None:
                cells.setdefault(rate, []).append(record.get("final_val_loss"))
        scored = [(value, rate) for rate, values in cells.items() if (value := mean(values)) is not None]
        if scored:
            value, rate = min(scored)
            best[variant] = (rate, value)
    if not best:
        return ["No run of the grid has a final validation loss yet."]
    words = {"residual": "with residual connections", "plain": "without (plain)"}
    parts = [f"{words.get(v, v)} at dropout {rate:g} ({short(value)}{unit})" for v, (rate, value) in best.items()]
    sentences = ["Lowest validation loss: " + "; ".join(parts) + "."]
    if "residual" in best and "plain" in best:
        (rate_r, res), (rate_p, plain) = best["residual"], best["plain"]
        same = "the same rate for both" if rate_r == rate_p else "different rates"
        if close(res, plain):
            verdict = "the two bests are within 2 % of each other"
        else:
            winner = "residual" if res < plain else "plain"
            verdict = f"the best {winner} net is {short(abs(res - plain))} lower"
        sentences.append(f"That is {same}; {verdict}.")
    return sentences


def _dropout_grid(name: str, data: dict[str, Any]) -> tuple[list[str], list[str]]:
    rows, rates, _ = dropout_grid(data)
    content = []
    if rows and rates:
        content.append(_figure(plot_dropout_heatmaps, data, "Final training (left) and validation (right) loss for "
                               "each dropout rate (columns) and variant (rows); “—”: no finished run."))
    recs = sorted(records(data), key=lambda r: (variant_rank(variant_of(r)), number(r.get("dropout")) or 0.0,
                                                 number(r.get("depth")) or 0))
    text = any(number(r.get("bits_per_char")) is not None for r in recs)
    headers = ["variant", "dropout", "depth", "train loss", "val loss"] + (["bits/char"] if text else []) + ["time"]
    rows_out = [[variant_of(r), fmt(r.get("dropout"), 3), fmt(r.get("depth")), fmt(r.get("final_train_loss")),
                 fmt(r.get("final_val_loss"))] + ([fmt(r.get("bits_per_char"))] if text else [])
                + [duration(r.get("wall_s"))] for r in recs]
    content.append(table_html(headers, rows_out, f"Final losses ({data.get('loss_unit') or 'loss'})."))
    return dropout_sentences(data), content


# -- family -----------------------------------------------------------------------------------------
def family_sentences(data: dict[str, Any]) -> list[str]:
    key, _ = family_metric(data)
    scored = [(number(r.get(key)), r) for r in records(data)]
    ranked = sorted(((v, r) for v, r in scored if v is not None), key=lambda item: item[0])
    if not ranked:
        return ["No model of the family has a final validation result yet."]
    show = pct if key == "final_val_error" else (lambda v: short(v) + _unit(data))
    what = "Validation error" if key == "final_val_error" else "Validation loss"
    listed = ", ".join(f"{r.get('model') or r.get('name')} ({variant_of(r)}) {show(v)}" for v, r in ranked)
    text = f"{what}, lowest first: {listed}."
    missing = [str(r.get("model") or r.get("name")) for v, r in scored if v is None]
    if missing:
        text += f" Not finished: {', '.join(missing)}."
    return [text]


def _family(name: str, data: dict[str, Any]) -> tuple[list[str], list[str]]:
    key, _ = family_metric(data)
    content = [_figure(plot_family_bars, data, ("Validation error" if key == "final_val_error" else
                                                "Final validation loss") + " (left) and final training loss "
                       "(right) of each model; colours: variant.")]
    headers = ["model", "variant", "params", "train loss", "val loss", "val error", "epochs", "time"]
    rows = [[r.get("model") or r.get("name") or MISSING, variant_of(r), count(r.get("params")),
             fmt(r.get("final_train_loss")), fmt(r.get("final_val_loss")), pct(r.get("final_val_error")),
             count(r.get("epochs")), duration(r.get("wall_s"))] for r in records(data)]
    content.append(table_html(headers, rows, f"Final losses ({data.get('loss_unit') or 'loss'})."))
    return family_sentences(data), content

"""The report's summary sentences, generated from the measured values.

Every section states what *this* run showed next to what the literature reports, so the words
can never contradict the plot: the comparison (smaller, larger, grows, shrinks) is computed
here from the numbers, and the reference is named beside it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

#: A gradient that changes by more than this factor from the last layer to the first is said to
#: explode (grow) or vanish (shrink) toward the input; within it, to flow.
GRADIENT_FACTOR = 10.0


def num(value: float) -> str:
    """A measured value in a sentence: 3 significant digits, scientific notation when large or small."""
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e3:
        return f"{value:.3g}"
    if 1e3 <= abs(value) < 1e5:
        return f"{float(f'{value:.3g}'):,.0f}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):.3g}·10^{int(exponent)}"


def depth_of(model: str | None) -> int | None:
    """The depth written in a model name (``resnet56``, ``cifar_plain8`` → 56, 8)."""
    found = re.findall(r"\d+", model or "")
    return int(found[0]) if found else None


def twin_pairs(items: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(residual, plain) pairs with the same depth and checkpoint, among items with
    ``model``/``kind``/``checkpoint`` keys (a series, or a result's ``target``)."""
    items = list(items)
    pairs = []
    for residual in (i for i in items if i.get("kind") == "residual"):
        for plain in (i for i in items if i.get("kind") == "plain"):
            if (depth_of(plain.get("model")) == depth_of(residual.get("model"))
                    and plain.get("checkpoint") == residual.get("checkpoint")):
                pairs.append((residual, plain))
                break
    return pairs


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# -- gradient flow --------------------------------------------------------------------------------
def gradient_trend(first: float, last: float) -> tuple[str, str]:
    """("explodes" | "vanishes" | "flows", words) for a gradient norm ``first`` at the first
    layer and ``last`` at the last."""
    ratio = first / last
    if ratio >= GRADIENT_FACTOR:
        return "explodes", f"grows {num(ratio)}-fold from the last layer to the first (it explodes toward the input)"
    if ratio <= 1 / GRADIENT_FACTOR:
        return "vanishes", (f"shrinks {num(1 / ratio)}-fold from the last layer to the first "
                            "(it vanishes toward the input)")
    return "flows", f"stays within a factor of {GRADIENT_FACTOR:g} from the last layer to the first (first/last {num(ratio)})"


def _series_trend(series: dict[str, Any]) -> tuple[str, str] | None:
    norms = series.get("grad_norm") or []
    if len(norms) < 2 or not _finite(norms[0], norms[-1]) or norms[-1] <= 0 or norms[0] <= 0:
        return None
    trend, words = gradient_trend(norms[0], norms[-1])
    return trend, f"{series.get('label') or series.get('model')}: ‖g‖ is {num(norms[0])} at the first layer and " \
                  f"{num(norms[-1])} at the last, it {words}"


def gradient_findings(series: Sequence[dict[str, Any]], with_bn: bool = True) -> str:
    """What the measured per-layer gradient norms show, with the reference for each outcome."""
    sentences = []
    trends = {}
    for one in series:
        found = _series_trend(one)
        if found is not None:
            trends[id(one)] = found[0]
            sentences.append(found[1])
    if not sentences:
        return ""
    text = "In this run — " + "; ".join(sentences) + "."
    plain = [trends.get(id(s)) for s in series if s.get("kind") == "plain" and id(s) in trends]
    residual = [trends.get(id(s)) for s in series if s.get("kind") == "residual" and id(s) in trends]
    if with_bn and "explodes" in plain:
        text += (" With batch norm a deep plain net's gradients explode toward the input rather than vanish "
                 "(Yang et al. 2019; Balduzzi et al. 2017).")
    if "vanishes" in plain:
        text += (" That is the classic vanishing gradient (Hochreiter 1991; Glorot & Bengio 2010)"
                 + (", here with batch norm." if with_bn else ", here without batch norm."))
    if residual and all(t == "flows" for t in residual) and plain and any(t != "flows" for t in plain):
        text += " The shortcuts keep the residual net's gradient within that factor across its depth."
    elif residual and any(t != "flows" for t in residual):
        text += " The residual net's gradient also changes by more than that factor across its depth."
    return text


# -- layer responses (He et al. 2015, Fig. 7) ------------------------------------------------------
def response_text(value: float | None) -> str:
    """A response (std of a block's output, typically 0.1-2) to 3 decimals: 1.002 beside 0.795, not "1"."""
    return "–" if value is None else f"{float(value):.3f}"


def mean_response(series: dict[str, Any]) -> float | None:
    values = [v for v in series.get("std") or [] if _finite(v)]
    return sum(values) / len(values) if values else None


def response_findings(series: Sequence[dict[str, Any]]) -> str:
    """Residual vs plain responses of one result, against He et al.'s first observation."""
    parts = []
    for residual, plain in twin_pairs(series):
        r, p = mean_response(residual), mean_response(plain)
        if r is None or p is None or p <= 0:
            continue
        held = r < p
        parts.append(f"{residual.get('label')}'s residual functions respond with a mean std of {response_text(r)}, "
                     f"{plain.get('label')}'s layers with {response_text(p)} ({num(r / p)}×): "
                     + ("smaller, as He et al. (2015, Fig. 7) found." if held else
                        "not smaller, so He et al.'s (2015, Fig. 7) ordering did not hold in this run."))
    return " ".join(parts)


def response_depth_findings(all_series: Iterable[dict[str, Any]]) -> str:
    """Across depths: He et al.'s second observation, that deeper ResNets respond less.

    all_series: the responses of nets trained alike (one experiment); nets of one depth are averaged.
    """
    values: dict[int, list[float]] = {}
    for series in all_series:
        depth, value = depth_of(series.get("model")), mean_response(series)
        if series.get("kind") == "residual" and depth is not None and value is not None:
            values.setdefault(depth, []).append(value)
    # Several nets of one depth (seeds) count as their mean.
    by_depth = {depth: sum(v) / len(v) for depth, v in values.items()}
    if len(by_depth) < 2:
        return ""
    depths = sorted(by_depth)
    listed = ", ".join(f"{d} layers {response_text(by_depth[d])}" for d in depths)
    pairs = list(zip(depths, depths[1:]))
    if all(by_depth[a] > by_depth[b] for a, b in pairs):
        trend = "It falls with depth, as He et al. (2015, Fig. 7) found for ResNet-20/56/110."
    elif all(by_depth[a] < by_depth[b] for a, b in pairs):
        trend = "It rises with depth, unlike He et al.'s (2015, Fig. 7) ResNet-20/56/110, whose responses fall."
    else:
        trend = "It does not fall steadily with depth, unlike He et al.'s (2015, Fig. 7) ResNet-20/56/110."
    return f"Mean response of the residual nets by depth: {listed}. {trend}"


# -- curvature and landscapes (Li et al. 2018) ----------------------------------------------------
def curvature_findings(results: Sequence[dict[str, Any]]) -> str:
    """λmax, trace and |λmin/λmax| of each residual/plain pair of Hessian results."""
    targets = [{**(data.get("target") or {}), "_data": data} for data in results]
    parts = []
    for residual, plain in twin_pairs(targets):
        r, p = residual["_data"], plain["_data"]
        name_r, name_p = residual.get("label") or residual.get("model"), plain.get("label") or plain.get("model")
        sentence = []
        if _finite(r.get("lambda_max"), p.get("lambda_max")) and r["lambda_max"] > 0 and p["lambda_max"] > 0:
            ratio = p["lambda_max"] / r["lambda_max"]
            sentence.append(f"λmax is {num(r['lambda_max'])} for {name_r} and {num(p['lambda_max'])} for {name_p}: "
                            + (f"the residual net's sharpest direction is {num(ratio)}× less curved (flatter, as "
                               "Li et al. 2018 found)" if ratio > 1 else
                               f"the residual net is not flatter by this measure ({num(1 / ratio)}× sharper)"))
        if _finite(r.get("trace"), p.get("trace")):
            sentence.append(f"the trace is {num(r['trace'])} vs {num(p['trace'])}"
                            + (" (less total curvature with shortcuts)" if r["trace"] < p["trace"] else
                               " (no less total curvature with shortcuts)"))
        if _finite(r.get("convexity_ratio"), p.get("convexity_ratio")):
            more = r["convexity_ratio"] < p["convexity_ratio"]
            sentence.append(f"|λmin/λmax| is {num(r['convexity_ratio'])} vs {num(p['convexity_ratio'])}: "
                            + ("the residual net's surface is the more convex-looking, as in Li et al.'s maps"
                               if more else
                               "by this ratio the plain net's surface is the more convex-looking here, unlike Li "
                               "et al.'s maps (the ratio is relative to each net's own λmax)"))
        if sentence:
            parts.append("In this run, " + "; ".join(sentence) + ".")
    return " ".join(parts)


def landscape_findings(group: Sequence[dict[str, Any]], summaries: Sequence[dict[str, Any]],
                       radii: Sequence[float] = (0.25, 0.5, 1.0)) -> str:
    """Mean loss rise within each radius, for each residual/plain pair of one plane or line."""
    targets = [{**(data.get("target") or {}), "_summary": summary} for data, summary in zip(group, summaries)]
    parts = []
    for residual, plain in twin_pairs(targets):
        measured = [(radius, residual["_summary"].get(f"rise@{radius:g}"), plain["_summary"].get(f"rise@{radius:g}"))
                    for radius in radii]
        measured = [(radius, r, p) for radius, r, p in measured if _finite(r, p)]
        if not measured:
            continue
        name_r, name_p = residual.get("label") or residual.get("model"), plain.get("label") or plain.get("model")
        flatter = [radius for radius, r, p in measured if r < p]
        listed = "; ".join(f"within {radius:g}: {num(r)} vs {num(p)}" for radius, r, p in measured)
        if len(flatter) == len(measured):
            verdict = "the residual surface is flatter at every radius, as Li et al. (2018) found."
        elif not flatter:
            verdict = "the residual surface is flatter at no radius, unlike Li et al. (2018)."
        else:
            radii_text = " and ".join(f"{r:g}" for r in flatter)
            verdict = (f"the residual surface is flatter within {radii_text} only — "
                       "Li et al. (2018) found it flatter throughout.")
        sentence = (f"Mean loss rise around the trained weights, {name_r} vs {name_p} ({listed}): {verdict}")
        origin_r, origin_p = residual["_summary"].get("origin_loss"), plain["_summary"].get("origin_loss")
        if _finite(origin_r, origin_p) and origin_p > 2 * origin_r + 0.1:
            # Li et al. compare nets that both trained; a net stuck at a high loss sees its
            # surroundings from a plateau, where every direction rises less.
            sentence += (f" The two are seen from different heights: {name_p} sits at loss {num(origin_p)}, "
                         f"{name_r} at {num(origin_r)} (the plain net did not train as far), so the rise is not a "
                         "like-for-like comparison.")
        parts.append(sentence)
    return " ".join(parts)


# -- lesions (Veit et al. 2016) -------------------------------------------------------------------
def lesion_findings(series: Sequence[dict[str, Any]]) -> str:
    """How much removing one block costs each twin, against Veit et al.'s graceful degradation."""
    parts = []
    for residual, plain in twin_pairs(series):
        costs = {}
        for name, one in (("residual", residual), ("plain", plain)):
            singles = [v for v in one.get("single_block_error") or [] if _finite(v)]
            if singles and _finite(one.get("base_error")):
                costs[name] = (sum(singles) / len(singles) - one["base_error"], len(singles))
        if len(costs) < 2:
            continue
        (r, r_count), (p, p_count) = costs["residual"], costs["plain"]
        graceful = r < p
        parts.append(f"Removing one block raises {residual.get('label')}'s test error by {100 * r:.1f} points on "
                     f"average (over its {r_count} blocks) and {plain.get('label')}'s by {100 * p:.1f} points (over "
                     f"its {p_count} removable blocks): "
                     + ("the residual net degrades more gracefully, as Veit et al. (2016) found."
                        if graceful else
                        "the residual net does not degrade more gracefully here, unlike Veit et al. (2016)."))
    return " ".join(parts)

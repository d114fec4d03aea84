"""What the lr-depth experiment's numbers say, in sentences and flags the report and its figure use.

Computed from ``lr_depth.json`` only (written by ``reslab experiment lr-depth``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

#: The twins, as lr_depth.json names them (the degradation experiment's words).
KIND_RESIDUAL = "residual"
KIND_PLAIN = "plain"


def verdict(summary: Mapping[str, Any]) -> list[str]:
    """Sentences saying what the numbers show (used by the report): does the best lr move with depth?"""
    records = [r for r in summary.get("records") or [] if isinstance(r, Mapping)]
    trials = summary.get("trials")
    sentences = []
    shifts = {}
    unresolved: list[str] = []
    dead = [r for r in records if untrained(r, records)]
    for r in sorted(dead, key=lambda r: (r.get("kind") != KIND_PLAIN, r.get("depth", 0))):
        finals = [t["final_loss"] for t in r["trials"] if t.get("state") == "COMPLETE"]
        sentences.append(f"{r['model']} does not train at any lr tried: its {len(finals)} finished trials all end at "
                         f"{min(finals):.3f}–{max(finals):.3f}, so its 'best' lr ({r['best_lr']:.3g}) is noise and is "
                         "left out of the trend below.")
    dead_models = {r.get("model") for r in dead}
    for kind in (KIND_RESIDUAL, KIND_PLAIN):
        rows = sorted((r for r in records if r.get("kind") == kind and isinstance(r.get("best_lr"), (int, float))
                       and r.get("model") not in dead_models), key=lambda r: r["depth"])
        if len(rows) < 2:
            if rows and len([r for r in records if r.get("kind") == kind]) > 1:
                sentences.append(f"{kind.capitalize()} nets: only {rows[0]['model']} trains (best lr "
                                 f"{rows[0]['best_lr']:.3g}), so there is no trend with depth to read.")
            continue
        low, high = rows[0], rows[-1]
        ratio = high["best_lr"] / low["best_lr"]
        shifts[kind] = ratio
        path = ", ".join(f"{r['best_lr']:.3g} at depth {r['depth']}" for r in rows)
        if ratio < 0.5:
            trend = f"falls {1 / ratio:.1f}-fold from the shallowest to the deepest"
        elif ratio > 2:
            trend = f"rises {ratio:.1f}-fold from the shallowest to the deepest"
        else:
            trend = "stays within a factor of 2 across depths: no clear shift"
        losses = ", ".join(f"{r['best_value']:.3f} (depth {r['depth']})" for r in rows
                           if isinstance(r.get("best_value"), (int, float)))
        sentences.append(f"{kind.capitalize()} nets: the best peak lr is {path}; it {trend}. Their best final "
                         f"{summary.get('metric', 'loss')} is {losses}.")
        if not 0.5 <= ratio <= 2:
            flat = [(r, near_best(r)) for r in (low, high)]
            overlap = [r for r, lrs in flat if lrs and min(lrs) <= (high if r is low else low)["best_lr"] <= max(lrs)]
            if overlap:
                r, lrs = next((r, lrs) for r, lrs in flat if r is overlap[0])
                other = high if r is low else low
                sentences.append(f"But the optimum is flat: {r['model']}'s finished trials within 10 % of its best "
                                 f"loss span lrs {min(lrs):.3g}–{max(lrs):.3g}, which includes {other['model']}'s best "
                                 f"lr ({other['best_lr']:.3g}); these trials do not pin the shift down.")
                shifts[kind] = 1.0  # not a shift the data resolve
                unresolved.append(kind)
        edge = [r for r in rows if _at_edge(r)]
        if edge:
            sentences.append(f"For {', '.join(r['model'] for r in edge)} the best lr is the highest or lowest one "
                             "tried: the optimum may lie beyond it, so that number is a bound more than an estimate.")
    ratios = []
    for depth in sorted({r.get("depth") for r in records if isinstance(r.get("depth"), int)}):
        twins = {r.get("kind"): r.get("best_value") for r in records if r.get("depth") == depth}
        res, pla = twins.get(KIND_RESIDUAL), twins.get(KIND_PLAIN)
        if isinstance(res, (int, float)) and isinstance(pla, (int, float)) and res > 0:
            ratios.append((depth, pla / res))
    if ratios:
        listing = ", ".join(f"{ratio:.1f}× at depth {depth}" for depth, ratio in ratios)
        gap = [depth for depth, ratio in ratios if ratio > 1.2]
        if len(gap) == len(ratios):
            tail = "tuning the lr per depth does not close the gap between the twins"
        elif not gap:
            tail = "at their own best lrs the twins end about equal"
        else:
            tail = f"a gap remains at depth {', '.join(map(str, gap))} only"
        sentences.append(f"Each at its own best lr, the plain net's best loss is the residual net's {listing}: {tail}.")
    if shifts:
        kinds = " and ".join(shifts)
        moved = [k for k, r in shifts.items() if not 0.5 <= r <= 2]
        if not moved and unresolved:
            sentences.append(f"Null result: these data resolve no shift of the best lr with depth for the {kinds} "
                             "nets (an apparent one lies within a flat optimum).")
        elif not moved:
            sentences.append(f"Null result: the best lr of the {kinds} nets does not move by more than a factor of 2 "
                             "across depths; these data show no depth dependence of the best lr.")
        else:
            still = [k for k in shifts if k not in moved]
            sentences.append(f"The best lr shifts with depth for the {' and '.join(moved)} nets"
                             + (f" but not for the {' and '.join(still)} nets" if still else "") + ".")
    if trials is not None:
        sentences.append(f"Each best lr comes from {trials} trials per study (the sampler's spread, not a fine "
                         "grid): a shift within a factor of about 2 is within what the sampling alone can give.")
    return sentences


def untrained(record: Mapping[str, Any], records: Sequence[Mapping[str, Any]] = ()) -> bool:
    """No lr trained the network: its finished trials (3 or more) all end within 15 % of one loss, and (given
    the experiment's ``records``) its best loss is over 3× the best any network of the experiment reached."""
    finals = [t["final_loss"] for t in record.get("trials") or [] if t.get("state") == "COMPLETE"
              and isinstance(t.get("final_loss"), (int, float))]
    if len(finals) < 3:
        return False
    mean = sum(finals) / len(finals)
    if mean <= 0 or (max(finals) - min(finals)) / mean >= 0.15:
        return False
    bests = [r.get("best_value") for r in records if isinstance(r.get("best_value"), (int, float))]
    return not bests or min(finals) > 3 * min(bests)


def near_best(record: Mapping[str, Any], tolerance: float = 0.1) -> list[float]:
    """The lrs of the finished trials that end within ``tolerance`` (relative) of the study's best loss."""
    best = record.get("best_value")
    if not isinstance(best, (int, float)):
        return []
    return sorted(t["lr"] for t in record.get("trials") or [] if t.get("state") == "COMPLETE"
                  and isinstance(t.get("final_loss"), (int, float)) and t["final_loss"] <= best * (1 + tolerance))


def _at_edge(record: Mapping[str, Any]) -> bool:
    """Whether a study's best lr is the highest or the lowest lr it tried (finished or pruned; 3 trials or more)."""
    lrs = [t.get("lr") for t in record.get("trials") or [] if isinstance(t.get("lr"), (int, float))]
    best = record.get("best_lr")
    return len(lrs) >= 3 and isinstance(best, (int, float)) and best in (min(lrs), max(lrs))


__all__ = ["verdict", "untrained", "near_best"]

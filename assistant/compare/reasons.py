"""The verdict's reason in words, with its numbers: one builder per outcome (the rule that picks it: recommend.py).

Each builder takes the verdict's fields as recommend() gathered them (``base``: metric, best, means, seeds,
margin, n_questions, comparisons, stats, p_best) and returns the sentences."""

from __future__ import annotations

from assistant.compare.equivalence import EQUIVALENCE_MARGINS
from foundation.metrics import METRIC_LABELS
from foundation.variants import ADAPTER_VARIANTS


def clear(base: dict, runner: str) -> str:
    best, means, spreads = base["best"], base["means"], base["seeds"]
    text = (f"{best} is best on {_label(base)} with {means[best]:.3f}, ahead of the runner-up {runner} at "
            f"{means[runner]:.3f} by {_gap(base['comparisons'][runner], base)}; every other variant is measurably "
            "behind too.")
    return text + _seed_text(spreads, best) + _seed_text(spreads, runner)


def cheaper_equivalent(base: dict, choice: str, phrase: str) -> str:
    """``choice`` is cheaper than the leader (``phrase`` says how) and shown within the margin of it."""
    best, means, margin, spreads = base["best"], base["means"], base["margin"], base["seeds"]
    row = base["comparisons"][choice]
    behind = (" It is measurably behind, but by less than the margin, a difference not worth its cost."
              if row["separated"] else "")
    return (f"Practically equivalent on {_label(base)}: {choice} ({means[choice]:.3f}) is within ±{margin:g} of the "
            f"leader {best} ({means[best]:.3f}); the difference is {_tost(row, margin)}.{behind}"
            + _seed_text(spreads, best) + _seed_text(spreads, choice)
            + f" Prefer the cheaper: {choice}, which {phrase}. " + margin_text(base["metric"], margin))


def leader_equivalent(base: dict, near: list[str], closest: str, phrase: str) -> str:
    """The leader is the cheapest, and the ``near`` variants it does not beat are within the margin of it."""
    best, means, margin = base["best"], base["means"], base["margin"]
    listing = ", ".join(f"{v} {means[v]:.3f}" for v in near)
    return (f"Practically equivalent on {_label(base)}: {best} leads with {means[best]:.3f}; it is not measurably "
            f"ahead of {listing}, but {'it is' if len(near) == 1 else 'they are'} within ±{margin:g} of it and "
            f"{'it is not' if len(near) == 1 else 'none is'} cheaper, so use {best}, the leader. Against "
            f"{closest} the difference is {_tost(base['comparisons'][closest], margin)}"
            + (f"; {closest} {phrase}." if phrase else ".")
            + _seed_text(base["seeds"], best) + " " + margin_text(base["metric"], margin))


def inconclusive(base: dict, open_: list[str]) -> str:
    """No variant: the leader is neither separated from nor shown equivalent to the ``open_`` variants."""
    best, means, spreads, margin, n = base["best"], base["means"], base["seeds"], base["margin"], base["n_questions"]
    closest, row = open_[0], base["comparisons"][open_[0]]
    listing = ", ".join(f"{v} {means[v]:.3f}" for v in open_)
    either = ("" if margin is None else
              f", and {'it is not' if len(open_) == 1 else 'none of them is'} shown within ±{margin:g} of it either")
    text = (f"No variant yet: inconclusive on {_label(base)}. {best} leads with {means[best]:.3f} but is not "
            f"measurably ahead of {listing}{either}; against {closest} the difference is {_gap(row, base)}. {best} "
            f"has the best mean in {base['p_best'] * 100:.0f} % of the paired bootstrap resamples (P(best)).")
    text += _seed_text(spreads, best) + _seed_text(spreads, closest) + _settle_text(best, closest, row, n)
    text += _how_to_get([best] + open_, spreads)
    text += f" Until then no variant is recommended; {best} is the leader, not a winner."
    return text + (" " + margin_text(base["metric"], margin) if margin is not None else "")


def margin_text(metric: str, margin: float | None) -> str:
    """Where the margin comes from, in one sentence."""
    if margin is None:
        return (f"No equivalence margin is set for {METRIC_LABELS.get(metric, metric)}, so practical equivalence "
                "was not tested (--equivalence-margin sets one).")
    unit = " nats per token" if metric == "nll" else ""
    origin = ("the default for this metric" if margin == EQUIVALENCE_MARGINS.get(metric)
              else "set with --equivalence-margin")
    return f"The equivalence margin, ±{margin:g}{unit}, is {origin} (docs/verdict.md)."


def _label(base: dict) -> str:
    return METRIC_LABELS[base["metric"]]


def _gap(row: dict, base: dict) -> str:
    """'+0.048 (Holm-adjusted 97.5 % paired interval +0.043 to +0.053; 60 questions in 12 source clusters)'."""
    conf = (1 - row["level"]) * 100
    where = f" in {base['stats']['clusters']} source clusters" if base["stats"].get("clustered") else ""
    mc = row.get("mcnemar")
    exact = f"; exact McNemar p = {mc['p_value']:.3g}, Holm-adjusted {row['p_adjusted']:.3g}" if mc else ""
    return (f"{row['mean']:+.3f} (Holm-adjusted {conf:.4g} % paired interval {row['ci_low']:+.3f} to "
            f"{row['ci_high']:+.3f}; {base['n_questions']} questions{where}{exact})")


def _tost(row: dict, margin: float) -> str:
    """'+0.012, whose Holm-adjusted 90 % interval -0.020 to +0.041 lies inside ±0.05 (TOST p = ...)'."""
    conf = (1 - 2 * row["tost_level"]) * 100
    return (f"{row['mean']:+.3f}, whose Holm-adjusted {conf:.4g} % paired interval {row['tost_low']:+.3f} to "
            f"{row['tost_high']:+.3f} lies inside ±{margin:g} (equivalence test, TOST p = {row['tost_p']:.3g}, "
            f"Holm-adjusted {row['tost_p_adjusted']:.3g})")


def _about(needed: int) -> int:
    """Two significant figures: the estimate is rough, more digits would pretend otherwise."""
    return needed if needed < 100 else round(needed, 2 - len(str(needed)))


def _seed_text(spreads: dict, v: str) -> str:
    s = spreads.get(v)
    if not s:
        return ""
    return (f" Across {s['seeds']} training seeds {v} scored {s['mean']:.3f} ± {s['sd']:.3f} "
            f"(range {s['min']:.3f}–{s['max']:.3f}).")


def _settle_text(best: str, closest: str, row: dict, n: int) -> str:
    needed = row.get("questions_needed")
    if row.get("seed_flip"):
        return (f" The training seeds disagree on the order of {best} and {closest}: more seeds or a steadier "
                "training recipe would settle it.")
    if needed is None and abs(row["mean"]) < 1e-12:
        return (f" {best} and {closest} have the same mean score on these questions, so more questions would "
                "not separate them.")
    if needed is None:
        return f" {n} question(s) are too few to measure how much the difference varies; add more questions."
    if needed <= n:
        return (f" With {n} questions the difference between {best} and {closest} is at the edge of what this "
                "test can detect; a few more questions would settle it.")
    about = _about(needed)  # "more" from the rounded figure, so the two add up as read
    return (f" About {about:,} questions would settle {best} vs {closest}; you have {n} (about "
            f"{max(1, about - n):,} more).")


def _how_to_get(involved: list[str], spreads: dict) -> str:
    seeds = " or train more seeds (arena decide --seeds N)" if (ADAPTER_VARIANTS | set(spreads)) & set(involved) \
        else ""
    return f" To get there: add Q/A pairs to the evaluation set, add generated questions{seeds}."

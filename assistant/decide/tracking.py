"""The comparison summary of a decide run, logged to the experiment tracker its training jobs report to.

The training jobs log through the trainer's own integrations (`report_to`); this adds one run per decision
holding what the trainer never sees: each variant's score on the primary metric, and the verdict. MLflow,
TensorBoard and trackio are written with their own APIs; each reads its own settings (MLFLOW_TRACKING_URI,
the working folder for TensorBoard's runs/, trackio's local database).
"""

from __future__ import annotations

from pathlib import Path

from assistant.compare.recommend import Recommendation
from assistant.decide.config import DecideConfig
from foundation.errors import ArenaError
from training.config import report_targets

SUMMARY_TRACKERS = ("mlflow", "tensorboard", "trackio")


def summary_metrics(recommendation: Recommendation) -> dict[str, float]:
    """'<metric>/<variant>' -> mean score, e.g. {'f1/rag': 0.41}."""
    return {f"{recommendation.metric}/{v}": float(m) for v, m in recommendation.means.items() if m is not None}


def summary_tags(recommendation: Recommendation, cfg: DecideConfig) -> dict[str, str]:
    return {"arena.kind": "decide", "arena.name": cfg.name,
            "arena.outcome": recommendation.outcome or "not clear",
            "arena.recommended": str(recommendation.variant or "none yet"),
            "arena.leader": str(recommendation.leader or recommendation.best or "")}


def log_decision(recommendation: Recommendation, cfg: DecideConfig, folder: Path) -> list[str]:
    """Log the summary to every tracker in `cfg.report_to` that logs summaries; returns the ones written (the
    trainer's integration still logged the training runs to the others)."""
    written = [target for target in report_targets(cfg.report_to) if target in SUMMARY_TRACKERS]
    for target in written:
        {"mlflow": _mlflow, "tensorboard": _tensorboard, "trackio": _trackio}[target](
            summary_metrics(recommendation), summary_tags(recommendation, cfg), cfg, folder)
    return written


def _mlflow(metrics: dict, tags: dict, cfg: DecideConfig, folder: Path) -> None:
    import mlflow  # deferred: an optional tracker

    with mlflow.start_run(run_name=f"decide:{cfg.name}"):
        mlflow.set_tags(tags)
        mlflow.log_params({k: str(getattr(cfg, k)) for k in ("variants", "metric", "seeds", "method")})
        mlflow.log_metrics({k.replace("+", "_"): v for k, v in metrics.items()})  # '+' is not a metric name


def _tensorboard(metrics: dict, tags: dict, cfg: DecideConfig, folder: Path) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # deferred: needs the tensorboard package
    except ImportError as exc:
        raise ArenaError("report_to tensorboard: its package is not installed (pip install tensorboard)") from exc
    with SummaryWriter(log_dir=str(folder / "runs" / "decide")) as writer:
        for key, value in metrics.items():
            writer.add_scalar(key, value)
        writer.add_text("verdict", ", ".join(f"{k}: {v}" for k, v in tags.items()))


def _trackio(metrics: dict, tags: dict, cfg: DecideConfig, folder: Path) -> None:
    import trackio  # deferred: an optional tracker

    trackio.init(project="strategy-arena", name=f"decide:{cfg.name}", config=tags)
    trackio.log(metrics)
    trackio.finish()

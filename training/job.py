"""`arena train`'s one entry point: validate, take the data folder's training lock, train or sweep, register."""

from __future__ import annotations

import gc
from pathlib import Path

from foundation.errors import ArenaError
from foundation.settings import Settings
from training.config import JobConfig
from training.lock import TrainingLock
from training.runner import is_main_process, job_dir, register, train_one, write_status
from training.sweep import run_sweep
from training.tools import DataTools


def run_job(cfg: JobConfig, settings: Settings, resume: bool = False, tools: DataTools | None = None,
            progress: bool = False) -> dict:
    """Validate, train (or sweep) and register; the one entry point behind `arena train`. `progress`: a progress
    line with ETA on stderr (the CLI; callers with their own progress display, like decide, leave it off). `tools`:
    what sources built from the documents or a model call (training/tools.py); a job from files needs none."""
    cfg.validate()
    folder = job_dir(settings, cfg)
    if resume and not (folder / "config.yaml").is_file():
        raise ArenaError(f"nothing to resume: job folder {folder} does not exist")
    if not is_main_process():  # launcher ranks follow rank 0, which holds the one-job lock
        result = _run_job(cfg, settings, folder, resume, tools, progress)
    else:
        lock = TrainingLock(settings.data_dir)
        lock.acquire(cfg.job_id)
        with lock:
            result = _run_job(cfg, settings, folder, resume, tools, progress)
    _leave_process_group()
    return result


def _leave_process_group() -> None:
    """Under torchrun a rank could abort at interpreter shutdown after a finished job ("terminate called without
    an active exception"), failing the whole launch: gloo's worker threads still held work objects with tensors
    that were freed while Python was being torn down (pytorch#190489, pytorch PR 179291). So every rank frees
    the trainer (it sits in reference cycles), then closes the process group while Python is fully alive.
    Measured on the DDP test's job: closing the group alone, 3 aborts in 120 launches (with a barrier too, 1 in
    80); freeing the trainer first, 0 in 80.
    Only after a success: a rank that failed may leave the others inside a collective, where closing the group
    would hang (torchtitan#1342); the launcher ends them anyway."""
    import torch.distributed as dist  # deferred: pulls torch

    if dist.is_available() and dist.is_initialized():
        gc.collect()  # the trainer and its DDP wrapper sit in reference cycles: free them while Python is alive
        dist.barrier()  # leave together: rank 0 has registered the adapter, no rank is still mid-transfer
        dist.destroy_process_group()


def _run_job(cfg: JobConfig, settings: Settings, folder: Path, resume: bool, tools: DataTools | None,
             progress: bool) -> dict:
    try:
        if cfg.sweep:
            return run_sweep(cfg, settings, folder, tools, resume, progress)
        result = train_one(cfg, settings, folder, resume, tools, progress=progress)
    except Exception as exc:
        if folder.is_dir():
            write_status(folder, state="failed", error=str(exc), name=cfg.name)
        raise
    return register(result, cfg, settings)

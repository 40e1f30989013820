"""What a training run reports: a progress bar, ``metrics.jsonl``, TensorBoard, sample strips.

Only the main process (rank 0) creates a :class:`RunLog` that writes; the others get a silent one.
``metrics.jsonl`` holds one JSON object per logged iteration, e.g.
``{"iter": 200, "loss_pix": 0.01, ..., "lr_g": 9.9e-05, "time": 0.31, "elapsed": 62.0}``,
with ``val_psnr`` / ``val_ssim`` in the objects of iterations that ran validation. When a run
resumes, lines past the checkpoint's iteration (written before a crash) are dropped first, so
the file always describes one continuous run.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write_bytes
from ..errors import OutputError
from ..imaging.imresize import imresize
from ..pipeline.images import save_image

METRICS_FILE = "metrics.jsonl"
logger = logging.getLogger("gleansr.train")


class _StderrHandler(logging.Handler):
    """``gleansr: [warning: ]message`` lines on whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "gleansr: warning: " if record.levelno >= logging.WARNING else "gleansr: "
        sys.stderr.write(prefix + record.getMessage() + "\n")


def log_to_stderr() -> None:
    """Show training messages (resume, stop, warnings) on stderr; for the CLI, idempotent."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _json_value(value: Any) -> Any:
    """Floats that JSON cannot hold (inf, e.g. the PSNR of identical images) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trim_metrics(path: Path, last_iter: int) -> None:
    """Keep only the records with ``iter <= last_iter`` (and drop a line cut short by a crash)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("iter"), int) and record["iter"] <= last_iter:
            kept.append(line + "\n")
    atomic_write_bytes(path, "".join(kept).encode("utf-8"), overwrite=True)


def _tensorboard_writer(run_dir: Path, note: bool) -> Any:
    """A SummaryWriter if the ``tensorboard`` package is installed, else None (with a note if ``note``)."""
    if importlib.util.find_spec("tensorboard") is None:
        if note:
            logger.info("TensorBoard is not installed; metrics go to metrics.jsonl only")
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


class RunLog:
    """Progress bar + metrics file + optional TensorBoard of one run.

    Args:
        run_dir: the run folder (``metrics.jsonl`` and ``tensorboard/`` go there).
        start_iter: iterations already done (metrics past it are trimmed).
        max_iters: length of the progress bar.
        enabled: False on ranks other than 0: nothing is shown or written.
        progress: show the tqdm bar, and the note that TensorBoard is missing (once per run folder:
            at its start, not on resume).
    """

    def __init__(self, run_dir: Path, start_iter: int, max_iters: int, enabled: bool, progress: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self.pending: dict[str, Any] = {}
        self.bar = tqdm(total=max_iters, initial=start_iter, disable=not (enabled and progress), unit="it",
                        dynamic_ncols=True, desc="train")
        self.tensorboard = None
        if enabled:
            trim_metrics(self.path, start_iter)
            self.tensorboard = _tensorboard_writer(Path(run_dir), note=progress and start_iter == 0)

    def add(self, values: Mapping[str, Any]) -> None:
        """Values for the current iteration's record (several calls merge)."""
        self.pending.update(values)

    def step(self, iteration: int) -> None:
        """Advance the bar; write the pending record (if any) for ``iteration``."""
        self.bar.update(1)
        if not self.pending or not self.enabled:
            self.pending.clear()
            return
        record = {"iter": iteration, **{k: _json_value(v) for k, v in self.pending.items()}}
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, allow_nan=False) + "\n")
        except OSError as exc:
            raise OutputError.from_os_error(exc, self.path) from exc
        if self.tensorboard is not None:
            for key, value in self.pending.items():
                if isinstance(value, (int, float)) and key not in ("elapsed",):
                    self.tensorboard.add_scalar(key.replace("_", "/", 1), value, iteration)
        shown = {k: f"{v:.4g}" for k, v in self.pending.items() if k.startswith(("loss_pix", "loss_gan", "val_"))}
        if shown:
            self.bar.set_postfix(shown, refresh=False)
        self.pending.clear()

    def message(self, text: str) -> None:
        """A line above the bar (main process only)."""
        if self.enabled:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def save_sample_strip(path: Path, lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> Path:
    """PNG of ``[bicubic-upscaled LR | SR | HR]`` side by side; all uint8 ``H x W x 3`` (LR smaller).

    The LR is enlarged with MATLAB-style bicubic, the baseline GLEAN is compared against.
    """
    upscaled = imresize(lr, output_shape=hr.shape[:2])
    strip = np.concatenate([upscaled, sr, hr], axis=1)
    return save_image(path, strip, overwrite=True)

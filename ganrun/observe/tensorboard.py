"""TensorBoard: scalars, images and text into the run dir (rank 0 only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


class TensorBoard:
    def __init__(self, log_dir: Optional[Path], enabled: bool = True, purge_step: Optional[int] = None) -> None:
        self.writer = None
        if enabled and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def image(self, tag: str, img: np.ndarray, step: int) -> None:
        if self.writer:
            self.writer.add_image(tag, img, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer:
            self.writer.add_text(tag, text, step)

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()

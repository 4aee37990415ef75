"""Any folder of images, searched recursively.

Every image is converted to the set's mode (grayscale when all images are, else RGB, or
`dataset.channels`), resized so its shorter side is `dataset.image_size` and centre-cropped to a
square. With `image_size: null` all images must already share one size. When every image lies
in a first-level subfolder and there are at least two of them, the subfolders are classes.
Unreadable or truncated files are skipped and counted in a warning; a folder with no readable
image is an error.

Mixed modes are fine: palette, RGBA (alpha dropped), CMYK and grayscale images are converted to
the set's mode. 16-bit grayscale (PNG/TIFF modes I;16 and I) is scaled to 8 bits (the high byte)
rather than clipped at 255.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ganrun.data.base import DATASETS, ArrayDataset, DataSpec
from ganrun.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # 16-bit grayscale as Pillow opens it


def _open(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except Exception:  # noqa: BLE001 - PIL raises many types for bad files; all mean "skip"
        return None


def _fit(im, mode: str, size: Optional[int]) -> np.ndarray:
    from PIL import Image

    if im.mode in WIDE_MODES:  # Pillow's convert would clip 16-bit values at 255 (a white image)
        wide = np.asarray(im, dtype=np.int64).clip(0, 65535)
        if im.mode != "I" or wide.max() > 255:  # mode I also holds 8-bit values in some TIFFs
            wide >>= 8
        im = Image.fromarray(wide.astype(np.uint8))
    im = im.convert(mode)
    if size is not None:
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


@DATASETS.register("folder")
def image_folder(cfg, split: str) -> ArrayDataset:
    if not cfg.root:
        raise UserError("dataset=folder needs dataset.root=/path/to/images")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset.root {root} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise UserError(f"no images ({', '.join(sorted(EXTENSIONS))}) found under {root}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        opened = list(pool.map(_open, files))
    good = [(p, im) for p, im in zip(files, opened) if im is not None]
    skipped = len(files) - len(good)
    if not good:
        raise UserError(f"none of the {len(files)} image files under {root} could be read")
    channels = cfg.channels or (1 if all(im.mode in GRAY_MODES for _, im in good) else 3)
    mode = "L" if channels == 1 else "RGB"
    if cfg.image_size is None:
        sizes = {im.size for _, im in good}
        if len(sizes) > 1:
            raise UserError(
                f"images under {root} have {len(sizes)} different sizes (e.g. {sorted(sizes)[:3]}); "
                "set dataset.image_size to resize them"
            )
    arrays = [_fit(im, mode, cfg.image_size) for _, im in good]
    data = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)

    rel = [p.relative_to(root).parts for p, _ in good]
    class_names = sorted({parts[0] for parts in rel if len(parts) > 1})
    labels = None
    if len(class_names) >= 2 and all(len(parts) > 1 for parts in rel):
        index = {name: i for i, name in enumerate(class_names)}
        labels = torch.tensor([index[parts[0]] for parts in rel], dtype=torch.long)
    else:
        class_names = []
    notes = [f"skipped {skipped} unreadable image file(s) under {root}"] if skipped else []
    spec = DataSpec(name="folder", kind="image", shape=tuple(data.shape[1:]),
                    num_classes=len(class_names), size=len(data), class_names=tuple(class_names))
    return ArrayDataset(data=data, labels=labels, spec=spec, source=str(root), notes=notes)

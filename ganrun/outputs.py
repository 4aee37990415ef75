"""Result files that never clobber: the target is checked before any work, written atomically, and
an existing file is replaced only with `overwrite=true`.

Used by `ganrun sample` (the PNG grid) and `ganrun eval` (the metrics record and its sample grid).
A target is refused in one line when its extension is not an image format (images), it is a
directory, it is not a regular file (a device such as /dev/full, a socket, a dangling symlink),
its folder cannot be created or written, or it exists and `overwrite` is false. The bytes then go
through `ganrun.atomic`, so a full disk or a signal leaves the previous file (or none), never half
of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ganrun.atomic import atomic_write, atomic_write_bytes
from ganrun.errors import UserError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF"}


def check_target(path: str | Path, key: str, overwrite: bool, *, image: bool = False) -> Path:
    """Refuse, before any work, a result path that cannot or must not be written; return it."""
    path = Path(path).expanduser()
    if image and path.suffix.lower() not in IMAGE_FORMATS:
        shown = f"'{path.suffix}'" if path.suffix else "none"
        raise UserError(f"{key}={path} has no known image extension ({shown}); use one of "
                        f"{', '.join(sorted(IMAGE_FORMATS))}, e.g. {key}={path.with_suffix('.png')}")
    if path.is_dir():
        raise UserError(f"{key}={path} is a directory; give a file name, e.g. {key}={path / 'grid.png'}")
    if path.exists() or path.is_symlink():
        if not path.is_file() or path.is_symlink() and not path.exists():
            raise UserError(f"{key}={path} is not a regular file (a device, a socket or a dangling link); "
                            "choose a file path")
        if not overwrite:
            raise UserError(f"{path} already exists; pass overwrite=true to replace it"
                            + (f", or choose another {key}" if "=" not in key and " " not in key else ""))
    ancestor = next(p for p in (path.parent.absolute(), *path.parent.absolute().parents) if p.exists())
    if not ancestor.is_dir():
        raise UserError(f"{key}={path} cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{key}={path} is not writable (no write permission on {ancestor}); choose another {key}")
    return path


def write_image(path: Path, img: np.ndarray) -> Path:
    """An HWC uint8 RGB array as an image file, in the format its extension names, atomically."""
    from PIL import Image

    fmt = IMAGE_FORMATS.get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda f: Image.fromarray(img).save(f, format=fmt))


def write_json(path: Path, record: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode())

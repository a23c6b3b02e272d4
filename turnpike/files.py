"""Result files written whole: a file is either its previous version or the new one, never half of it.

:func:`write_json` is what studies, sweeps and the examples write their tables and records with; written after
each finished piece of work, a record read while a long run goes on holds everything finished so far.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

__all__ = ["atomic_write", "jsonable", "write_json"]


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, flush it to disk, and rename it to ``path``.

    Raises:
        InputError: the file cannot be written (the message names it and the reason).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def jsonable(value):
    """``value`` in strict JSON's types: numpy scalars and arrays as numbers and lists, tuples as lists, NaN and
    infinities as ``None`` (null); anything else unchanged (``json`` then refuses what it cannot store)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    return value


def write_json(path, value, indent: int = 2) -> Path:
    """Write ``value`` (see :func:`jsonable`) to ``path`` as strict JSON, atomically (:func:`atomic_write`)."""
    text = json.dumps(jsonable(value), indent=indent, allow_nan=False)
    return atomic_write(Path(path), lambda fh: fh.write(text.encode()))

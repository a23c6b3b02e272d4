"""Checkpoint files: one per finished task, written atomically, verified before they are trusted.

A checkpoint is an ``.npz`` archive (read back with ``allow_pickle=False``) holding the result's arrays
and one JSON record: the format, the task's identity, the kind of result, its other fields, and the
SHA-256 of the record and the arrays together. It is written to a temporary file in the same
directory, flushed to disk and renamed over its final name (``os.replace``), so a checkpoint is either
absent or complete, whenever the writer is stopped.

A file is trusted only if it unpacks, its record has this format, its digest matches its content, it
was written for the expected task and holds the expected kind of result. Any other file is
:class:`CorruptCheckpoint`: the sweep reports it and solves the task again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..solution import Solution, StaticSolution
from .tasks import SolveError, Task

__all__ = ["CorruptCheckpoint", "write", "read", "atomic_write"]

FORMAT = "turnpike-sweep-checkpoint-1"
_KINDS = {"Solution": Solution, "StaticSolution": StaticSolution, "SolveError": SolveError}
_EXPECTED = {"static": ("StaticSolution", "SolveError"), "horizon": ("Solution", "SolveError")}


class CorruptCheckpoint(Exception):
    """A checkpoint file that is not trusted; the message says why."""


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint record")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _digest(record: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the record (canonical JSON) and of each array's name, dtype, shape and bytes."""
    h = hashlib.sha256(_canonical(record).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write(path: Path, task: Task, result) -> Path:
    """Write ``result`` (a Solution, StaticSolution or SolveError) of ``task`` to ``path`` atomically."""
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
    fields = {k: v for k, v in values.items() if k not in arrays}
    record = {"format": FORMAT, "task": task.identity(), "kind": type(result).__name__, "fields": fields}
    record["sha256"] = _digest(record, arrays)
    return atomic_write(path, lambda fh: np.savez(fh, record=np.array(_canonical(record)), **arrays))


def read(path: Path, task: Task):
    """The result stored in ``path`` for ``task``.

    Raises:
        CorruptCheckpoint: the file is unreadable, truncated or garbled, its content does not match its
            digest, or it belongs to another task or holds the wrong kind of result.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":  # the signature of a zip file, which an .npz archive is
                raise CorruptCheckpoint("unreadable (not an .npz archive)")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as data:
                record = json.loads(str(data["record"]))
                arrays = {k: data[k] for k in data.files if k != "record"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptCheckpoint(f"unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CorruptCheckpoint(f"not a {FORMAT} file")
    digest = record.pop("sha256", None)
    if digest != _digest(record, arrays):
        raise CorruptCheckpoint("its content does not match its SHA-256 digest")
    if record.get("task") != json.loads(_canonical(task.identity())):
        raise CorruptCheckpoint(f"it was written for another task: {record.get('task')}")
    kind = record.get("kind")
    if kind not in _EXPECTED[task.kind]:
        raise CorruptCheckpoint(f"it holds a {kind}, expected one of {', '.join(_EXPECTED[task.kind])}")
    try:
        return _KINDS[kind](**record["fields"], **arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpoint(f"its fields do not make a {kind} ({exc})") from exc

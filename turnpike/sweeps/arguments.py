"""The arguments of a sweep, checked before any solve: parameter grid, horizons, seeds, where to run, output.

Every check raises :class:`~turnpike.InputError` naming the argument, the value and what is accepted.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..analysis.study import COLUMNS
from ..errors import InputError, UnknownNameError, check_positive
from ..problem import Problem
from ..solve import grid_steps
from .tasks import build_problem, factory_name

__all__ = ["claimed_directory", "writable_directory", "plain", "parameter_points", "horizon_grid", "check_seeds",
           "point_problem", "parameter_column", "RESERVED"]


def writable_directory(path, name: str = "out") -> Path:
    """``path`` as a directory, created if missing, after checking that a file can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".turnpike-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{name} {str(path)!r} is not a writable directory: {exc.strerror or exc}") from exc
    return path


@contextmanager
def claimed_directory(out: Path, problem: str):
    """Within: ``out`` is this sweep's alone. Refused (before any solve) when it holds a horizon comparison
    (``summary.json``), the sweep of another problem (``sweep.json``), or when another sweep is running in it
    (an exclusive lock on ``out/.turnpike.lock``, released when the sweep ends or its process dies)."""
    if (out / "summary.json").exists():
        raise InputError(f"out {str(out)!r} holds a horizon comparison (summary.json): choose another directory")
    try:
        other = json.loads((out / "sweep.json").read_text()).get("factory")
    except (OSError, ValueError, AttributeError):
        other = None
    if other is not None and other != problem:
        raise InputError(f"out {str(out)!r} holds the sweep of {other!r}, not of {problem!r}: choose another directory")
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield out
        return
    with open(out / ".turnpike.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            raise InputError(f"out {str(out)!r} is in use by another sweep (process {lock.read().strip() or '?'}): "
                             "wait for it, or choose another directory") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield out


def plain(name: str, value):
    """``value`` as JSON data: finite numbers, words, booleans and (nested) lists of them."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{name} must be finite (no NaN or inf), got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return [plain(name, v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: plain(f"{name}[{k!r}]", v) for k, v in value.items()}
    raise InputError(f"{name} must be numbers, words or lists of them, got {value!r}")


RESERVED = {"point", "seed", "static_success", *COLUMNS}


def parameter_column(name: str) -> str:
    """The table's column of parameter ``name``: the name itself, or ``param_<name>`` for a name that is one of
    the table's own columns (``cost``, ``seed``, ``steps`` ...), so that neither hides the other."""
    return f"param_{name}" if name in RESERVED else name


def parameter_points(params: Mapping[str, Sequence] | None) -> list[dict]:
    """The parameter points: the product of the value lists, in the order given (last key fastest)."""
    if params is None:
        return [{}]
    if not isinstance(params, Mapping):
        raise InputError(f"params must be a dict of parameter name -> list of values, got {params!r}")
    values = {}
    for key, vals in params.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InputError(f"params has the key {key!r}; a parameter name is an identifier")
        if key in RESERVED and parameter_column(key) in params:
            raise InputError(f"params has both {key!r} and {parameter_column(key)!r}, which would share a column")
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or len(vals) == 0:
            raise InputError(f"params[{key!r}] must be a non-empty list of values, got {vals!r}")
        checked = [plain(f"params[{key!r}]", v) for v in vals]
        repeated = [v for i, v in enumerate(checked) if v in checked[:i]]
        if repeated:
            raise InputError(f"params[{key!r}] has the value {repeated[0]!r} more than once")
        values[key] = checked
    return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]


def horizon_grid(horizons: Sequence[float], steps: int | None, dt: float | None) -> tuple[list[float], list[int]]:
    """The horizons in increasing order and their numbers of intervals (one of ``steps``, ``dt``)."""
    if isinstance(horizons, (str, bytes)) or not isinstance(horizons, Sequence) or len(horizons) == 0:
        raise InputError(f"horizons must be a non-empty list of numbers, got {horizons!r}")
    Ts = sorted(check_positive("horizons", T) for T in horizons)
    if len(set(Ts)) != len(Ts):
        raise InputError(f"horizons must be distinct, got {list(horizons)!r}")
    return Ts, [grid_steps(T, steps, dt) for T in Ts]


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list of distinct integers >= 0 (a seed of ``numpy.random.default_rng``)."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise InputError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise InputError(f"seeds must be integers >= 0, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct, got {list(seeds)!r}")
    return list(seeds)


def point_problem(factory, params: dict) -> Problem:
    """The point's problem, built here first so that a bad parameter value stops the sweep before any solve."""
    try:
        return build_problem(factory, params)
    except UnknownNameError:
        raise
    except InputError as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "no parameters"
        raise InputError(f"{factory_name(factory)} with {given}: {exc}") from exc



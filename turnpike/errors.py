"""Exceptions and warnings raised by turnpike.

Every error names the argument, the value received and what would be accepted.
They subclass the built-in ``ValueError``/``RuntimeError`` so that callers who
do not know turnpike can still catch them.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TurnpikeError",
    "InputError",
    "UnknownNameError",
    "SolverError",
    "check_finite",
    "check_positive",
    "check_nonnegative",
    "check_choice",
]


class TurnpikeError(Exception):
    """Base class of every error raised by turnpike."""


class InputError(TurnpikeError, ValueError):
    """An argument has the wrong shape, type or value."""


class UnknownNameError(InputError, KeyError):
    """A name (solver, integrator, catalogue entry) is not one of the accepted names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SolverError(TurnpikeError, RuntimeError):
    """A solver could not be built or called (not a failed convergence: that is reported)."""


def check_finite(name: str, value, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``value`` as a float array, checking its shape and that it is finite."""
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric, got {value!r}") from exc
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"{name} must have shape {tuple(shape)}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must be finite (no NaN or inf), got {arr!r}")
    return arr


def check_positive(name: str, value, *, integer: bool = False, minimum: float = 0.0):
    """Return ``value`` as a float (or int) that is finite and > ``minimum`` (>= 1 for integers)."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        return int(value)
    try:
        val = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a positive number, got {value!r}") from exc
    if not np.isfinite(val) or val <= minimum:
        raise InputError(f"{name} must be a finite number > {minimum:g}, got {value!r}")
    return val


def check_nonnegative(name: str, value) -> float:
    """Return ``value`` as a float that is finite and >= 0 (weights, β, scales)."""
    try:
        val = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a number >= 0, got {value!r}") from exc
    if not np.isfinite(val) or val < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return val


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`UnknownNameError`."""
    if value not in choices:
        accepted = ", ".join(repr(c) for c in sorted(choices))
        raise UnknownNameError(f"unknown {name} {value!r}; accepted: {accepted}")
    return value

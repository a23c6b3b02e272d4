"""Plain, immutable results: :class:`Solution` (finite horizon) and :class:`StaticSolution`.

Both report ``success`` and ``status`` first. ``success`` is True only when the solver
declared convergence to its requested tolerance: IPOPT's "Solved_To_Acceptable_Level"
(a looser tolerance) is reported as not converged.
Files are ``.npz`` archives holding the arrays and one JSON string of metadata; they are
read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["Solution", "StaticSolution"]

_FORMAT = "turnpike-solution-1"


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class _Result:
    success: bool
    status: str
    cost: float
    cost_terms: dict
    stats: dict
    problem: str

    @property
    def warnings(self) -> list[str]:
        """What the checks after the solve found (``stats["warnings"]``; e.g. a step that does not resolve the
        ODE, :func:`~turnpike.checks.step_check`): empty when nothing was found."""
        return list(self.stats.get("warnings", []))

    @property
    def message(self) -> str:
        word = "converged" if self.success else "NOT converged"
        flagged = f"; {len(self.warnings)} warning(s)" if self.warnings else ""
        return f"{word} ({self.status}), cost {self.cost:.6g}{flagged}"

    # -- files ------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the result to ``path`` (``.npz`` added if missing), atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if _is_array_field(f)}
        meta = {f.name: getattr(self, f.name) for f in fields(self) if not _is_array_field(f)}
        meta["format"] = _FORMAT
        meta["kind"] = type(self).__name__
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, metadata=np.array(json.dumps(meta, default=_jsonable)), **arrays)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InputError(f"cannot write result to path={str(path)!r}: {exc.strerror}") from exc
        return path

    @classmethod
    def load(cls, path):
        """Read a result written by :meth:`save` (``path`` with or without its ``.npz``).

        Raises:
            InputError: a missing, truncated, empty or foreign file, another kind of result, or a result
                whose parts do not fit together (an edited file): one line each.
        """
        path = Path(path)
        if not path.exists() and path.suffix != ".npz" and path.with_suffix(path.suffix + ".npz").exists():
            path = path.with_suffix(path.suffix + ".npz")
        where = f"path={str(path)!r}"
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["metadata"]))
                arrays = {k: data[k] for k in data.files if k != "metadata"}
        except FileNotFoundError:
            raise InputError(f"{where} does not exist") from None
        except OSError as exc:
            raise InputError(f"{where} cannot be read: {exc.strerror or exc}") from None
        except (ValueError, KeyError, EOFError, zipfile.BadZipFile):  # text, a truncated or foreign archive
            raise InputError(f"{where} is not a turnpike result file (an .npz archive written by save)") from None
        if not isinstance(meta, dict) or meta.pop("format", None) != _FORMAT or meta.pop("kind", None) != cls.__name__:
            raise InputError(f"{where} does not hold a {cls.__name__}")
        try:
            return cls(**meta, **arrays)
        except (TypeError, InputError) as exc:
            raise InputError(f"{where} holds an inconsistent {cls.__name__}: {exc}") from None


def _is_array_field(f) -> bool:
    return f.metadata.get("array", False)


def _array():
    return field(metadata={"array": True})


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in result metadata")


@dataclass(frozen=True)
class Solution(_Result):
    """A finite-horizon optimum on a grid (or the solver's last iterate, if ``success`` is False).

    Attributes:
        success: whether the solver declared convergence to its tolerance.
        status: the solver's own word (e.g. IPOPT's ``return_status``).
        cost: the NLP objective, the discrete ``J_T``; ``cost_terms`` splits it into
            ``running`` (the quadrature of the mean running cost), ``l2``, ``l1`` and ``terminal``.
        stats: ``iterations``, ``build_seconds``, ``solve_seconds``, ``solver``, ``method``,
            ``formulation`` and solver-specific figures.
        problem: the problem's name.
        T: horizon; steps: number of intervals, each of length ``h = T/steps``.
        t: grid times, shape (steps+1,).
        x: states at the grid times, shape (steps+1, *state_shape).
        u: control on each interval ``[t_k, t_{k+1})``, shape (steps, nu).
        adjoint: discrete adjoint at ``t_1, ..., t_n``, shape (steps, *state_shape):
            ``adjoint[k] = -ν_k``, minus the multiplier of the gap ``x_{k+1} - F(x_k, u_k) = 0``.
            It approximates the costate ``p(t_{k+1})`` of the Hamiltonian ``L + pᵀf`` (with the
            ensemble cost averaged over samples, so each sample's costate carries a factor 1/N).
    """

    T: float
    steps: int
    t: np.ndarray = _array()
    x: np.ndarray = _array()
    u: np.ndarray = _array()
    adjoint: np.ndarray = _array()

    def __post_init__(self):
        for name in ("t", "x", "u", "adjoint"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        n = self.steps
        shapes = {"t": (n + 1,), "x": (n + 1, *self.x.shape[1:]), "u": (n, *self.u.shape[1:]),
                  "adjoint": (n, *self.x.shape[1:])}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise InputError(f"{name} must have shape {shape} for steps={n}, got {getattr(self, name).shape}")
        if self.u.ndim != 2 or n < 1:
            raise InputError(f"u must have shape (steps, nu) with steps >= 1, got {self.u.shape}")
        if not (self.t[0] == 0 and np.isclose(self.t[-1], self.T, rtol=1e-12, atol=0)):
            raise InputError(f"t must run from 0 to T={self.T!r}, got {float(self.t[0])!r} to {float(self.t[-1])!r}")

    @property
    def h(self) -> float:
        """Interval length ``T/steps``."""
        return self.T / self.steps

    def __repr__(self) -> str:
        return f"<Solution {self.problem!r} T={self.T:g} steps={self.steps}: {self.message}>"


@dataclass(frozen=True)
class StaticSolution(_Result):
    """The optimum of the static problem ``min L(x, u)`` s.t. ``f(x, u) = 0``.

    Attributes:
        x: static state, shaped like the problem's ``state_shape``.
        u: static control, shape (nu,).
        adjoint: multiplier ``p̄`` of ``f(x, u) = 0`` for the Lagrangian ``L + p̄ᵀ f``
            (the same convention as :attr:`Solution.adjoint`), shaped like ``x``.
        cost: the static value ``(1/N) Σ L(x̄_i, ū, y_i) + λ2|ū|² + λ1|ū|_1``.
    """

    x: np.ndarray = _array()
    u: np.ndarray = _array()
    adjoint: np.ndarray = _array()

    def __post_init__(self):
        for name in ("x", "u", "adjoint"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def __repr__(self) -> str:
        return f"<StaticSolution {self.problem!r}: {self.message}>"

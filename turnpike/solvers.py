"""NLP solvers: IPOPT and FATROP through ``casadi.nlpsol``, built once and cached.

* ``"ipopt"`` (default): interior point, exact Hessian of the Lagrangian, MUMPS. Default
  tolerance ``tol = 1e-8`` on the scaled KKT error.
* ``"fatrop"``: the structure-exploiting interior point method shipped with CasADi. It reads
  the stage structure from the Jacobian sparsity (``structure_detection = "auto"``), which the
  stage-ordered layout of :class:`~turnpike.transcription.MultipleShooting` provides. It is fast
  on well-conditioned problems and fragile on non-convex ones.

Options are passed through to ``nlpsol`` on top of the defaults below, as CasADi spells them
(``{"ipopt.tol": 1e-10}`` or ``{"ipopt": {"tol": 1e-10}}``). A built solver is kept for as long
as its problem lives, keyed by ``(steps, method, solver, options)``: solving the same problem
again, for another horizon with the same number of steps, only changes numbers.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import casadi as ca
import numpy as np

from .errors import InputError, SolverError, check_choice
from .problem import Problem

__all__ = ["SOLVERS", "NLPResult", "Built", "built_solver", "run", "solver_options"]

SOLVERS = ("ipopt", "fatrop")

_QUIET = {
    "ipopt": {"ipopt.print_level": 0, "ipopt.sb": "yes", "print_time": False},
    "fatrop": {"fatrop.print_level": 0, "print_time": False},
}
_VERBOSE = {
    "ipopt": {"ipopt.print_level": 5, "print_time": True},
    "fatrop": {"fatrop.print_level": 10, "print_time": True},
}
_DEFAULTS = {
    "ipopt": {"ipopt.tol": 1e-8, "ipopt.max_iter": 3000},
    "fatrop": {"fatrop.tol": 1e-8, "fatrop.max_iter": 3000, "structure_detection": "auto"},
}
# Statuses a solver may pair with success=True that do not meet the requested tolerance.
_NOT_CONVERGED = {"Solved_To_Acceptable_Level"}

_cache: weakref.WeakKeyDictionary[Problem, dict] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Built:
    """A transcribed NLP (``.nlp`` dict, ``.equality`` flags), its solver and its build time."""

    nlp: object
    solver: ca.Function
    build_seconds: float


@dataclass(frozen=True)
class NLPResult:
    """What one ``nlpsol`` call returned, with the convergence verdict."""

    success: bool
    status: str
    w: np.ndarray
    lam_g: np.ndarray
    cost: float
    iterations: int
    solve_seconds: float


def _key(options: dict):
    return tuple(sorted((k, repr(v)) for k, v in options.items()))


def built_solver(problem: Problem, key: tuple, transcribe, solver: str, options: dict) -> tuple[Built, bool]:
    """The cached solver for ``(problem, key, solver, options)`` and whether it was built now.

    ``transcribe()`` makes the NLP object (with ``.nlp``, the dict for ``nlpsol``, and
    ``.equality``, per constraint, which FATROP needs) when nothing is cached.
    """
    check_choice("solver", solver, SOLVERS)
    per_problem = _cache.setdefault(problem, {})
    full_key = (key, solver, _key(options))
    if full_key in per_problem:
        return per_problem[full_key], False
    start = time.perf_counter()
    nlp = transcribe()
    opts = {**options, "equality": nlp.equality} if solver == "fatrop" else options
    try:
        fn = ca.nlpsol(f"turnpike_{solver}", solver, nlp.nlp, opts)
    except RuntimeError as exc:
        raise SolverError(f"could not build solver={solver!r} with options={options!r}: {exc}") from exc
    per_problem[full_key] = Built(nlp, fn, time.perf_counter() - start)
    return per_problem[full_key], True


def run(fn: ca.Function, *, w0, p, bounds: dict) -> NLPResult:
    """Call a built solver and report whether it converged (it never raises on non-convergence)."""
    start = time.perf_counter()
    try:
        res = fn(x0=w0, p=p, **bounds)
    except RuntimeError as exc:  # evaluation errors (NaN in a function) that CasADi raises
        raise SolverError(f"the solver stopped with an error: {exc}") from exc
    seconds = time.perf_counter() - start
    stats = fn.stats()
    status = stats.get("return_status")
    if not isinstance(status, str):  # FATROP reports a number; its unified status is the word
        status = str(stats.get("unified_return_status", status))
    success = bool(stats.get("success", False)) and status not in _NOT_CONVERGED
    w = np.asarray(res["x"]).reshape(-1)
    if not np.all(np.isfinite(w)):
        success = False
    return NLPResult(
        success=success,
        status=status,
        w=w,
        lam_g=np.asarray(res["lam_g"]).reshape(-1),
        cost=float(res["f"]),
        iterations=int(stats.get("iter_count", -1)),
        solve_seconds=seconds,
    )


def solver_options(solver: str, options: dict | None, *, verbose: bool = False) -> dict:
    """The options given to ``nlpsol``: defaults, quiet or verbose printing, then the user's."""
    check_choice("solver", solver, SOLVERS)
    if options is not None and not isinstance(options, dict):
        raise InputError(f"options must be a dict of {solver} options, got {options!r}")
    merged = {**_DEFAULTS[solver], **(_VERBOSE if verbose else _QUIET)[solver], **(options or {})}
    merged["error_on_fail"] = False
    return merged

"""NLP solvers: IPOPT and FATROP through ``casadi.nlpsol``, built once and cached.

* ``"ipopt"`` (default): interior point, exact Hessian of the Lagrangian, MUMPS. Default
  tolerance ``tol = 1e-8`` on the scaled KKT error, and no early stop at IPOPT's "acceptable"
  level (``acceptable_iter = 0``): such a stop is never reported as converged here, so it would
  only end a solve that was still converging (near the nearly singular minima of neural-ODE
  problems IPOPT converges linearly: it stopped 2 of 8 horizons of the medium sweep there, which
  then converged in 16-52 iterations).
* ``"fatrop"``: the structure-exploiting interior point method shipped with CasADi. It reads
  the stage structure from the Jacobian sparsity (``structure_detection = "auto"``), which the
  stage-ordered layout of :class:`~turnpike.transcription.MultipleShooting` provides. It is fast
  on well-conditioned problems and fragile on non-convex ones.

Options are passed through to ``nlpsol`` on top of the defaults below, as CasADi spells them
(``{"ipopt.tol": 1e-10}`` or ``{"ipopt": {"tol": 1e-10}}``). The last built solver of a problem is
kept for as long as the problem lives, keyed by ``(formulation, steps, method, solver, options,
derivatives)`` (``("static",)`` for the static problem):
solving the same problem again, for another horizon with the same number of steps, only changes
numbers. Only the last one: a solver holds its last solve's IPOPT state (the KKT matrices and MUMPS's
factors) until it is freed, 0.5 GB for the sparse example's 400 stages of 168 variables, and keeping
every size it was solved at took its sequence of solves from 50 to 400 stages to 1.7 GB peak (1.1 GB
one at a time). Building another costs a few seconds on the largest problems of the examples; calls
that alternate between two keys rebuild each time.

Derivatives (``derivatives=``). With IPOPT on the multiple-shooting NLP, ``"auto"`` (default)
and ``"stage-wise"`` hand IPOPT the gradient, constraint Jacobian and Lagrangian Hessian built
from stage-level SX derivatives (:mod:`turnpike.derivatives`): the same numbers as CasADi's
automatic differentiation of the whole NLP, cheaper to build and to evaluate. ``"casadi"``
keeps CasADi's own. FATROP and the static NLP always use CasADi's; under ``"auto"`` so does a
solve whose options bring their own ``grad_f``, ``jac_g`` or ``hess_lag`` (they are used as
given). :attr:`Built.derivatives` says which were used.

Iterations. An IPOPT solver is built with an ``iteration_callback`` (:class:`_Iterations`) that does nothing
until :func:`run` is given ``each_iteration``: then that function sees every iterate and may stop the solve
(IPOPT's status ``User_Requested_Stop``), with no new build. FATROP does not call such a callback.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import casadi as ca
import numpy as np

from .errors import InputError, SolverError, check_choice
from .problem import Problem

__all__ = ["DERIVATIVES", "SOLVERS", "NLPResult", "Built", "built_solver", "ipopt_options", "run", "solver_options"]

SOLVERS = ("ipopt", "fatrop")
DERIVATIVES = ("auto", "stage-wise", "casadi")
_DERIVATIVE_OPTIONS = ("grad_f", "jac_g", "hess_lag")

_QUIET = {
    "ipopt": {"ipopt.print_level": 0, "ipopt.sb": "yes", "print_time": False},
    "fatrop": {"fatrop.print_level": 0, "print_time": False},
}
_VERBOSE = {
    "ipopt": {"ipopt.print_level": 5, "print_time": True},
    "fatrop": {"fatrop.print_level": 10, "print_time": True},
}
_DEFAULTS = {
    "ipopt": {"ipopt.tol": 1e-8, "ipopt.max_iter": 3000, "ipopt.acceptable_iter": 0},
    "fatrop": {"fatrop.tol": 1e-8, "fatrop.max_iter": 3000, "structure_detection": "auto"},
}
# Statuses a solver may pair with success=True that do not meet the requested tolerance.
_NOT_CONVERGED = {"Solved_To_Acceptable_Level"}

_cache: weakref.WeakKeyDictionary[Problem, dict] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Built:
    """A transcribed NLP (``.nlp`` dict, ``.equality`` flags), its solver and its build time.

    ``derivatives`` is where the solver's derivatives come from: ``"stage-wise"``
    (:mod:`turnpike.derivatives`), ``"casadi"`` (CasADi's AD of the NLP) or ``"user"`` (functions
    given in the options).
    """

    nlp: object
    solver: ca.Function
    build_seconds: float
    derivatives: str = "casadi"
    iterations: _Iterations | None = None


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
    # A Function (a user's hess_lag, say) by identity: two of them can print the same. The cached
    # solver holds it, so its hash is not reused while the entry lives.
    return tuple(sorted((k, hash(v) if isinstance(v, ca.Function) else repr(v)) for k, v in options.items()))


def built_solver(
    problem: Problem, key: tuple, transcribe, solver: str, options: dict, *, derivatives: str = "auto"
) -> tuple[Built, bool]:
    """The cached solver for ``(problem, key, solver, options, derivatives)`` and whether it was built now; building
    one drops the problem's previous solver from the cache (see the module docstring).

    ``transcribe()`` makes the NLP object (with ``.nlp``, the dict for ``nlpsol``, and
    ``.equality``, per constraint, which FATROP needs) when nothing is cached. If it also has
    ``.derivatives()`` (:class:`~turnpike.transcription.MultipleShooting`), IPOPT can be given
    those (see the module docstring for ``derivatives``); an ``"f"`` among them (a function of
    ``(x, p)``) replaces the NLP's symbolic objective when the gradient and Hessian need not be
    derived from it.
    """
    check_choice("solver", solver, SOLVERS)
    check_choice("derivatives", derivatives, DERIVATIVES)
    per_problem = _cache.setdefault(problem, {})
    full_key = (key, solver, _key(options), derivatives)
    if full_key in per_problem:
        return per_problem[full_key], False
    per_problem.clear()  # the previous solver's memory is freed before this one is built (module docstring)
    start = time.perf_counter()
    nlp = transcribe()
    mode = _derivative_mode(nlp, solver, options, derivatives)
    opts, problem_nlp = options, nlp.nlp
    if solver == "fatrop":
        opts = {**options, "equality": nlp.equality}
    elif mode == "stage-wise":
        supplied = dict(nlp.derivatives())
        if not _exact_hessian(options):
            supplied.pop("hess_lag", None)
        f = supplied.pop("f", None)  # the objective's values too, where nothing has to differentiate f
        if f is not None and ("hess_lag" in supplied or not _exact_hessian(options)):
            problem_nlp = {**problem_nlp, "f": f(problem_nlp["x"], problem_nlp["p"])}
            supplied["calc_lam_p"] = False  # the parameters' multipliers would need f's derivative in p
        opts = {**supplied, **options}
    iterations = None
    if solver == "ipopt" and "iteration_callback" not in opts:
        iterations = _Iterations(problem_nlp)
        opts = {**opts, "iteration_callback": iterations}
    try:
        fn = ca.nlpsol(f"turnpike_{solver}", solver, problem_nlp, opts)
    except RuntimeError as exc:
        raise SolverError(f"could not build solver={solver!r} with options={options!r}: {exc}") from exc
    built = per_problem[full_key] = Built(nlp, fn, time.perf_counter() - start, mode, iterations)
    return built, True


def _derivative_mode(nlp, solver: str, options: dict, derivatives: str) -> str:
    """``"stage-wise"``, ``"casadi"`` or ``"user"``: which derivatives the solver will use."""
    own = [k for k in _DERIVATIVE_OPTIONS if k in options]
    able = solver == "ipopt" and hasattr(nlp, "derivatives")
    if derivatives == "stage-wise" and (own or not able):
        why = f"the options already give {own}" if own else f"solver={solver!r} and this NLP do not take them"
        raise InputError(f"derivatives='stage-wise' is not possible here: {why}; use 'auto' or 'casadi'")
    if own:
        return "user"
    if derivatives == "casadi" or not able:
        return "casadi"
    return "stage-wise"


def ipopt_options(options: dict | None) -> dict:
    """IPOPT's options among ``options``, flat (``"ipopt.tol"``), whether given so or nested (``{"ipopt": {...}}``,
    which CasADi also accepts; a flat one wins)."""
    options = options or {}
    nested = options.get("ipopt") if isinstance(options.get("ipopt"), dict) else {}
    flat = {k: v for k, v in options.items() if k.startswith("ipopt.")}
    return {**{f"ipopt.{k}": v for k, v in nested.items()}, **flat}


def _exact_hessian(options: dict) -> bool:
    """Whether IPOPT will ask for the Lagrangian Hessian (not ``hessian_approximation = limited-memory``)."""
    return ipopt_options(options).get("ipopt.hessian_approximation", "exact") == "exact"


class _Iterations(ca.Callback):
    """IPOPT's ``iteration_callback``: calls ``target(w, f)`` at every iterate (the NLP variables and the
    objective) if a target is set, and asks IPOPT to stop when it returns True."""

    def __init__(self, nlp: dict):
        ca.Callback.__init__(self)
        sizes = {"x": nlp["x"].numel(), "p": nlp["p"].numel() if "p" in nlp else 0,
                 "g": nlp["g"].numel() if "g" in nlp else 0}
        self.sparsity = {"f": ca.Sparsity.dense(1, 1), "x": sizes["x"], "lam_x": sizes["x"], "g": sizes["g"],
                         "lam_g": sizes["g"], "lam_p": sizes["p"]}
        self.target = None
        self.construct("turnpike_iterations", {})

    def get_n_in(self):
        return ca.nlpsol_n_out()

    def get_n_out(self):
        return 1

    def get_name_in(self, i):
        return ca.nlpsol_out(i)

    def get_name_out(self, i):
        return "stop"

    def get_sparsity_in(self, i):
        size = self.sparsity[ca.nlpsol_out(i)]
        return size if isinstance(size, ca.Sparsity) else ca.Sparsity.dense(size, 1)

    def eval(self, arg):
        if self.target is None:
            return [0]
        return [1 if self.target(np.asarray(arg[0]).reshape(-1), float(arg[1])) else 0]


def run(built: Built, *, w0, p, bounds: dict, each_iteration=None) -> NLPResult:
    """Call a built solver and report whether it converged (it never raises on non-convergence).

    ``each_iteration(w, f)``, for a solver built with an iteration callback (IPOPT), is called at every
    iterate and stops the solve (status ``User_Requested_Stop``, not converged) by returning True.
    """
    start = time.perf_counter()
    fn = built.solver
    if built.iterations is not None:
        built.iterations.target = each_iteration
    try:
        res = fn(x0=w0, p=p, **bounds)
    except RuntimeError as exc:  # evaluation errors (NaN in a function) that CasADi raises
        raise SolverError(f"the solver stopped with an error: {exc}") from exc
    finally:
        if built.iterations is not None:
            built.iterations.target = None
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

"""Baseline 1: the same NLP written the obvious way with ``casadi.Opti``.

Same data, model, RK4 discretisation, cost and number of steps as the toolbox (see
:mod:`baseline_torch` for the formula of the cost (B)). Written as a user who knows CasADi would:

* one ``opti.variable(nu)`` per stage for the controls and one ``opti.variable(D)`` per stage and per
  sample for the states, created in Python loops (the initial states are the data, constants);
* the RK4 step written out, and one multiple-shooting constraint ``x_{k+1,i} == RK4(x_{k,i}, u_k)``
  per stage and sample (``opti.subject_to`` in the loop);
* the running cost integrated with the same RK4 weights, ``λ h |u_k|²`` per stage, the terminal error;
* IPOPT with its defaults (MUMPS, exact Hessian by CasADi's AD of the MX graph, no ``expand``) and
  the toolbox's tolerance ``tol = 1e-8``, ``max_iter = 3000``;
* the start: the toolbox's random controls (``0.1 N(0, 1)``, seed 0) and the states they produce
  (RK4 simulation in numpy), the same start :func:`turnpike.solve` uses before its presolve.

Timing: ``build`` is the Python model building plus the part of ``opti.solve()`` spent before IPOPT
starts (Opti creates its ``nlpsol`` lazily there); ``solve`` is IPOPT's own wall time
(``t_wall_total`` with ``record_time``). IPOPT's ``max_wall_time`` caps the solve.
"""

from __future__ import annotations

import time

import casadi as ca
import numpy as np

__all__ = ["opti_baseline", "simulate"]


def _field_np(X: np.ndarray, u: np.ndarray, D: int) -> np.ndarray:
    W = u[: D * D].reshape(D, D).T  # column-major, as CasADi reshapes
    A = u[D * D : 2 * D * D].reshape(D, D).T
    b = u[2 * D * D :]
    return np.tanh(X @ A.T + b) @ W.T


def simulate(problem, u: np.ndarray, T: float) -> np.ndarray:
    """States (steps+1, N, D) of all samples under controls u (steps, nu), RK4 with ``h = T/steps``."""
    steps, D = u.shape[0], problem.D
    h = T / steps
    X = problem.x0_samples.copy()
    out = [X]
    for k in range(steps):
        k1 = _field_np(X, u[k], D)
        k2 = _field_np(X + h / 2 * k1, u[k], D)
        k3 = _field_np(X + h / 2 * k2, u[k], D)
        k4 = _field_np(X + h * k3, u[k], D)
        X = X + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(X)
    return np.array(out)


def _check_model(problem) -> None:
    expected = {"field": "inner", "activation": "tanh", "loss": "squared", "cost": "turnpike"}
    got = {k: getattr(problem, k) for k in expected}
    if got != expected:
        raise ValueError(f"the Opti baseline implements {expected}, got {got}")


def opti_baseline(problem, T: float, steps: int, u0: np.ndarray, *, budget_seconds: float,
                  reference=None, progress=None) -> dict:
    """Build the Opti model of ``problem`` on ``steps`` RK4 steps, solve it from ``u0`` and report.

    Arguments:
        problem: the :class:`~problems.neural_ode.NeuralODEClassification` of the workload.
        u0: initial controls (steps, nu).
        budget_seconds: the time allowed for build + solve: IPOPT's ``max_wall_time`` is what the
            build left of it (the solve is skipped, and the run reported capped, if nothing is left).
        reference: optional ``(x, u, cost)`` of the toolbox's solution: the Opti objective is
            evaluated there as a cross-check of the model (reported as ``cost_at_reference``).
        progress: optional callable receiving partial results: the build time before solving, then
            IPOPT's iteration count and time after every iteration.

    Returns:
        ``build``, ``solve`` (seconds), ``iterations``, ``cost``, ``terminal`` (training error
        ``E(x(T))``), ``status``, ``success``, ``capped`` and ``eval_seconds`` (IPOPT's time in CasADi's function
        evaluations, by function) for the where-the-time-goes analysis.
    """
    _check_model(problem)
    D, N = problem.D, problem.n_samples
    h = T / steps
    labels, P = problem.labels, problem.output
    y_list = [float(y) for y in labels]  # Python floats: numpy scalars make every CasADi operation slower
    alpha, weight = float(problem.alpha), float(problem.weight)
    P_dm = ca.DM(P)
    x_init = simulate(problem, u0, T)

    start = time.perf_counter()
    opti = ca.Opti()

    def f(x, u):
        W, A, b = ca.reshape(u[: D * D], D, D), ca.reshape(u[D * D : 2 * D * D], D, D), u[2 * D * D :]
        return W @ ca.tanh(A @ x + b)

    def err(x, y):  # the squared loss of one sample
        return (ca.dot(P_dm, x) - y) ** 2

    U = [opti.variable(problem.nu) for _ in range(steps)]
    X = [[ca.DM(problem.x0_samples[i]) for i in range(N)]]
    X += [[opti.variable(D) for _ in range(N)] for _ in range(steps)]
    J = 0
    for k in range(steps):
        u = U[k]
        stage = 0
        for i in range(N):
            x, y = X[k][i], y_list[i]
            k1 = f(x, u)
            x2 = x + h / 2 * k1
            k2 = f(x2, u)
            x3 = x + h / 2 * k2
            k3 = f(x3, u)
            x4 = x + h * k3
            k4 = f(x4, u)
            opti.subject_to(X[k + 1][i] == x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
            stage += h / 6 * (err(x, y) + 2 * err(x2, y) + 2 * err(x3, y) + err(x4, y))
        J += alpha * stage / N + weight * h * ca.sumsqr(u)
    terminal = sum(err(X[steps][i], y_list[i]) for i in range(N)) / N
    J += terminal
    opti.minimize(J)

    cost_at_reference, check_seconds = None, time.perf_counter()
    if reference is not None:  # the cross-check, not timed as build
        xr, ur, _ = reference
        for k in range(steps):
            opti.set_initial(U[k], ur[k])
            for i in range(N):
                opti.set_initial(X[k + 1][i], xr[k + 1, i])
        cost_at_reference = float(opti.value(J, opti.initial()))
    check_seconds = time.perf_counter() - check_seconds
    for k in range(steps):
        opti.set_initial(U[k], u0[k])
        for i in range(N):
            opti.set_initial(X[k + 1][i], x_init[k + 1, i])
    model_seconds = time.perf_counter() - start - check_seconds
    if progress is not None:
        progress({"model_seconds": model_seconds, "phase": "solving"})
    left = budget_seconds - model_seconds
    if left <= 0:
        return {"build": model_seconds, "solve": 0.0, "iterations": 0, "cost": float("nan"),
                "terminal": float("nan"), "status": "budget spent in the build", "success": False, "capped": True,
                "model_seconds": model_seconds, "cost_at_reference": cost_at_reference, "eval_seconds": {}}
    opti.solver("ipopt", {"print_time": False, "record_time": True},
                {"print_level": 0, "sb": "yes", "tol": 1e-8, "max_iter": 3000, "max_wall_time": left})

    start = time.perf_counter()
    if progress is not None:  # IPOPT's progress, so that a run killed at its cap still says how far it got

        def on_iteration(i):
            done = {"ipopt_iterations": int(i) + 1, "solve_seconds_so_far": time.perf_counter() - start}
            if i == 0:
                done["seconds_to_first_iteration"] = done["solve_seconds_so_far"]
            progress(done)

        opti.callback(on_iteration)
    sol = opti.solve_limited()  # returns (does not raise) when IPOPT stops without converging
    wall = time.perf_counter() - start
    stats = opti.stats()
    ipopt_seconds = float(stats.get("t_wall_total", wall))
    x_final = np.array([np.asarray(sol.value(X[steps][i])).reshape(-1) for i in range(N)])
    return {
        "build": model_seconds + (wall - ipopt_seconds),
        "solve": ipopt_seconds,
        "iterations": int(stats["iter_count"]),
        "cost": float(sol.value(J)),
        "terminal": float(np.mean((x_final @ P - labels) ** 2)),
        "status": str(stats["return_status"]),
        "success": bool(stats["success"]) and stats["return_status"] == "Solve_Succeeded",
        "capped": stats["return_status"] == "Maximum_WallTime_Exceeded",
        "model_seconds": model_seconds,
        "cost_at_reference": cost_at_reference,
        "eval_seconds": {k[len("t_wall_nlp_"):]: float(v) for k, v in stats.items() if k.startswith("t_wall_nlp_")},
    }

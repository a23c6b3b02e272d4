"""Independent checks of a solution: re-simulation with an adaptive integrator."""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from .errors import InputError
from .problem import Problem
from .solution import Solution

__all__ = ["resimulate", "resimulation_error"]


def resimulate(problem: Problem, solution: Solution, *, rtol: float = 1e-10, atol: float = 1e-12) -> np.ndarray:
    """States at the grid times reached by ``solution.u`` under the *continuous* dynamics.

    Each interval ``[t_k, t_{k+1}]`` is integrated with the control held at ``u_k`` by
    ``scipy.integrate.solve_ivp`` (DOP853, tolerances ``rtol``/``atol``), all samples at once;
    nothing of the transcription is used. The difference to ``solution.x`` is then the
    discretisation error of the transcription's integrator (``O(h)`` Euler, ``O(h^4)`` RK4).

    Returns:
        Array shaped like ``solution.x``.
    """
    if solution.u.shape != (solution.steps, problem.nu) or solution.x[0].size != problem.nx * problem.n_samples:
        raise InputError(
            f"solution (x {solution.x.shape}, u {solution.u.shape}) does not belong to problem {problem!r}"
        )
    N, nx = problem.n_samples, problem.nx
    f = problem.dynamics.map(N)
    Y = problem.data_values.T

    states = [problem.x0_samples.reshape(-1)]
    for k in range(solution.steps):
        u = solution.u[k]

        def rhs(_t, z, u=u):
            return np.asarray(f(z.reshape(N, nx).T, u, Y)).T.reshape(-1)

        out = solve_ivp(rhs, (solution.t[k], solution.t[k + 1]), states[-1], method="DOP853", rtol=rtol, atol=atol)
        if not out.success:
            raise RuntimeError(f"re-simulation failed on interval {k}: {out.message}")
        states.append(out.y[:, -1])
    return np.array(states).reshape(solution.x.shape)


def resimulation_error(problem: Problem, solution: Solution, **tolerances) -> float:
    """``max_k |x_k - x(t_k)|_∞`` between the solution's states and :func:`resimulate`."""
    return float(np.max(np.abs(resimulate(problem, solution, **tolerances) - solution.x)))

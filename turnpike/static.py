"""The static problem of a :class:`~turnpike.Problem` as an NLP.

.. math::

    \\min_{\\bar x_1..\\bar x_N,\\ \\bar u}\\ \\frac1N \\sum_i L(\\bar x_i, \\bar u, y_i)
        + \\lambda_2 |\\bar u|^2 + \\lambda_1 |\\bar u|_1
    \\quad\\text{s.t.}\\quad f(\\bar x_i, \\bar u, y_i) = 0 \\ (i = 1..N),
    \\quad u_{lo} \\le \\bar u \\le u_{hi},\\quad |\\bar u|_1 \\le M.

Variables ``(X̄, V̄)`` with ``V̄ = ū`` or ``(ū⁺, ū⁻)`` as in the finite-horizon transcription.
The multiplier of ``f = 0`` in CasADi's Lagrangian ``J + νᵀ g`` is ``p̄`` of the Lagrangian
``L + p̄ᵀ f`` directly (no sign change): stationarity reads ``∇_x L + f_xᵀ p̄ = 0``, the
fixed point of the adjoint equation ``dp/dt = -∇_x(L + pᵀ f)``.
"""

from __future__ import annotations

import casadi as ca
import numpy as np

from .problem import Problem

__all__ = ["StaticNLP"]


class StaticNLP:
    """The static NLP of ``problem``; parameters are the data ``(y_1, ..., y_N)``."""

    def __init__(self, problem: Problem):
        P = self.problem = problem
        N = P.n_samples
        self.n_state = P.nx * N
        self.n_v = 2 * P.nu if P.split_control else P.nu
        w = ca.MX.sym("w", self.n_state + self.n_v)
        Y = ca.MX.sym("Y", P.ny * N)
        X = ca.reshape(w[: self.n_state], P.nx, N)
        V = w[self.n_state :]
        u = V[: P.nu] - V[P.nu :] if P.split_control else V
        Ys = ca.reshape(Y, P.ny, N)
        running = ca.sum2(P.running_cost.map(N)(X, u, Ys)) / N
        l2 = P.l2 * ca.sumsqr(u)
        l1 = P.l1 * ca.sum1(V) if P.split_control else ca.MX(0)
        rows = [ca.vec(P.dynamics.map(N)(X, u, Ys))]
        if P.l1_bound is not None:
            rows.append(ca.sum1(V))
        self.nlp = {"x": w, "p": Y, "f": running + l2 + l1, "g": ca.vertcat(*rows)}
        self._cost_terms = ca.Function("static_cost_terms", [w, Y], [running, l2, l1])

    def parameters(self) -> np.ndarray:
        return self.problem.data_values.reshape(-1)

    def bounds(self) -> dict[str, np.ndarray]:
        P = self.problem
        v_lo, v_hi = P.control_variable_bounds()
        free = np.full(self.n_state, np.inf)
        lbg = np.zeros(self.n_state)
        ubg = np.zeros(self.n_state)
        if P.l1_bound is not None:
            lbg = np.append(lbg, -np.inf)
            ubg = np.append(ubg, P.l1_bound)
        return {
            "lbx": np.concatenate([-free, v_lo]),
            "ubx": np.concatenate([free, v_hi]),
            "lbg": lbg,
            "ubg": ubg,
        }

    def pack(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        v = np.concatenate([np.maximum(u, 0), np.maximum(-u, 0)]) if self.problem.split_control else u
        return np.concatenate([np.asarray(x, dtype=float).reshape(-1), v])

    def unpack(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Static state (N, nx) and control (nu,)."""
        P = self.problem
        X = w[: self.n_state].reshape(P.n_samples, P.nx)
        V = w[self.n_state :]
        u = V[: P.nu] - V[P.nu :] if P.split_control else V
        return X, u

    def adjoint(self, lam_g: np.ndarray) -> np.ndarray:
        """``p̄`` (N, nx): the multipliers of ``f(x̄_i, ū) = 0``."""
        return np.asarray(lam_g)[: self.n_state].reshape(self.problem.n_samples, self.problem.nx)

    def cost_terms(self, w: np.ndarray) -> dict[str, float]:
        vals = self._cost_terms(w, self.parameters())
        return {k: float(v) for k, v in zip(("running", "l2", "l1"), vals, strict=True)}

"""Direct multiple shooting: a :class:`~turnpike.Problem` on a grid becomes an NLP.

Discretisation. ``[0, T]`` is cut into ``steps`` intervals of length ``h = T/steps``;
the control is constant on each interval, ``u(t) = u_k`` on ``[t_k, t_{k+1})``. On one
interval each sample's state is advanced by one step of an explicit integrator applied
to the augmented system ``(dx/dt, dq/dt) = (f(x, u, y), L(x, u, y))``:

* ``"euler"``: ``x_{k+1} = x_k + h f(x_k, u_k)``, ``q_k = h L(x_k, u_k)``. For a neural ODE
  this is exactly a ResNet with ``steps`` residual layers.
* ``"midpoint"``: the explicit midpoint rule, ``x_m = x_k + (h/2) f(x_k, u_k)``,
  ``x_{k+1} = x_k + h f(x_m, u_k)``, ``q_k = h L(x_m, u_k)``: second order, two evaluations per
  interval (torchdiffeq's ``"midpoint"``, the integrator of the seed papers' trainer).
* ``"rk4"``: the classical fourth-order Runge-Kutta step (four evaluations per interval),
  so states and the cost quadrature are accurate to ``O(h^4)``.

The NLP. Variables in stage order ``w = (z_0, z_1, ..., z_{n-1}, X_n)``, ``z_k = (X_k, u_k)``, where
``X_k`` stacks the N sample states (sample-major). When the problem has an L1 term or bound, the stage also
holds the split ``V_k = (u⁺_k, u⁻_k) >= 0``, ``z_k = (X_k, u_k, V_k)``, tied to ``u_k`` by the linear rows
``u_k - u⁺_k + u⁻_k = 0``: the dynamics see ``u_k`` alone, so the Lagrangian Hessian has one ``nu x nu``
control block per stage, where dynamics of ``u⁺ - u⁻`` would give the dense ``[R, -R; -R, R]`` in
``2nu x 2nu`` (on the sparse example's instance, N = 8 and 56 controls at 200 steps, IPOPT's linear solves took
0.34 s an iteration in this layout against 0.62 s in that one, to the same optimum). ``X_0`` is fixed by equal
bounds. Constraints per stage, in order: the gap ``X_{k+1} - F(X_k, u_k) = 0``, with the split its rows
``u_k - u⁺_k + u⁻_k = 0``, and with an L1 bound ``Σ(u⁺_k + u⁻_k) <= M``. The controls reported are
``u⁺_k - u⁻_k`` (so a component with both parts at 0 is exactly 0; ``u_k`` equals it to the constraint
tolerance). Objective

.. math::

    \\sum_k \\Big( \\frac1N\\sum_i q_{k,i} + h\\lambda_2|u_k|^2 + h\\lambda_1 \\sum(u^+_k + u^-_k) \\Big)
    + \\frac1N \\sum_i \\varphi(x_{n,i}, y_i).

NLP parameters are ``(h, y_1, ..., y_N)``: a new horizon with the same ``steps``, or new
data, changes numbers only and reuses the built NLP. The stage is one CasADi ``Function``
(one sample, expanded to SX), ``map``-ped over samples and then over stages: no Python
loop over stages, and the block-sparse, stage-wise layout that FATROP exploits.

Derivatives. :meth:`MultipleShooting.derivatives` gives IPOPT the gradient, Jacobian and
Lagrangian Hessian of this NLP assembled from stage-wise SX derivatives
(:mod:`turnpike.derivatives`) instead of CasADi's differentiation of the whole graph.

Adjoint. With CasADi's Lagrangian ``J + νᵀ g`` and gaps written as ``X_{k+1} - F(X_k, u_k)``,
the discrete adjoint at ``t_{k+1}`` is ``p_{k+1} = -ν_k``; it satisfies
``p_n = ∇φ(x_n)`` and ``p_k = ∇_x q_k + F_x(x_k, u_k)ᵀ p_{k+1}``, the discretisation of
``dp/dt = -∇_x(L + pᵀ f)``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import casadi as ca
import numpy as np

from .derivatives import stagewise_derivatives
from .errors import InputError, check_choice
from .problem import Problem

__all__ = ["BUILD_BYTES_PER_UNIT", "INTEGRATORS", "STAGES", "MultipleShooting", "build_bytes", "integrator_step",
           "stage_function", "substep_function"]

INTEGRATORS = ("euler", "midpoint", "rk4")


def integrator_step(rhs, x, h, method: str):
    """One step of ``method`` from ``x``: ``(x_next, q)`` with ``rhs(z) -> (f(z), L(z))``.

    Written with elementwise arithmetic only, so ``x`` may be one sample's state (SX) or the
    matrix of all samples' states (:mod:`turnpike.ensemble`).
    """
    if method == "euler":
        k1, l1 = rhs(x)
        return x + h * k1, h * l1
    if method == "midpoint":
        k1, _ = rhs(x)
        k2, l2 = rhs(x + h / 2 * k1)
        return x + h * k2, h * l2
    k1, l1 = rhs(x)
    k2, l2 = rhs(x + h / 2 * k1)
    k3, l3 = rhs(x + h / 2 * k2)
    k4, l4 = rhs(x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), h / 6 * (l1 + 2 * l2 + 2 * l3 + l4)


#: The integrators as sequences of their stages ``(c, b)``, each stage evaluating the field once: stage i at ``ξ_i``
#: with ``ξ_1 = x``, ``ξ_{i+1} = x + h c_i k_i`` (each of these methods' stages uses only the one before), and
#: ``x_next = x + h Σ_i b_i k_i``, ``q = h Σ_i b_i l_i`` (:func:`integrator_step`, summed in another order).
STAGES = {"euler": ((0.0, 1.0),), "midpoint": ((0.5, 0.0), (0.0, 1.0)),
          "rk4": ((0.5, 1 / 6), (0.5, 1 / 3), (1.0, 1 / 3), (0.0, 1 / 6))}


def substep_function(problem: Problem, method: str) -> tuple[ca.Function, np.ndarray]:
    """One stage of ``method`` (:data:`STAGES`) on one sample, as a step of its own: ``(substep, coefficients)``.

    ``substep(z, u, y, h, c) -> (z_next, q)`` on the state ``z = (x, a, ξ)`` (``3 nx``: the interval's start, the
    sum ``Σ b_j k_j`` so far, the point of the next evaluation), with ``c = (c_i, b_i, last_i)`` row i of
    ``coefficients`` (s, 3): ``k = f(ξ, u)``, ``a' = a + b_i k``, ``q = h b_i L(ξ, u)`` and ``z_next = (x, a', x + h
    c_i k)``, or at the interval's last stage (``last_i = 1``) ``z_next = (x', 0, x')`` with ``x' = x + h a'``. Steps
    ``j = 0, 1, …`` with ``c = coefficients[j % s]`` and the control of interval ``j // s``, from ``z_0 = (x_0, 0,
    x_0)``, give every ``s``-th state ``(x_k, 0, x_k)`` and, summed over the interval's stages, its q, as the stage
    function does: one field evaluation per function, where the interval's function holds s of them (a quarter
    of the code with RK4, for compiled derivatives that grow with it; :mod:`turnpike.hessian_vector`).
    """
    check_choice("method", method, INTEGRATORS)
    f, L = problem.dynamics, problem.running_cost
    z, u, y = ca.SX.sym("z", 3 * problem.nx), ca.SX.sym("u", problem.nu), ca.SX.sym("y", problem.ny)
    h, c = ca.SX.sym("h"), ca.SX.sym("c", 3)
    x, a, xi = ca.vertsplit(z, [0, problem.nx, 2 * problem.nx, 3 * problem.nx])
    k, l = f(xi, u, y), L(xi, u, y)
    a_next = a + c[1] * k
    x_next = x + h * a_next
    z_next = (1 - c[2]) * ca.vertcat(x, a_next, x + h * c[0] * k) + c[2] * ca.vertcat(
        x_next, ca.SX.zeros(problem.nx), x_next)
    coefficients = np.array([(ci, bi, 0.0) for ci, bi in STAGES[method]])
    coefficients[-1, 2] = 1.0
    return ca.Function(f"substep_{method}", [z, u, y, h, c], [z_next, h * c[1] * l],
                       ["x", "u", "y", "h", "c"], ["x_next", "q"]), coefficients


_stages: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # problem -> {method: stage function}


def stage_function(problem: Problem, method: str) -> ca.Function:
    """One interval of one sample: ``(x, u, y, h) -> (x_next, q)``, ``q ≈ ∫ L dt``, in SX; built once per
    problem and method (the transcriptions, the build estimate and the step check all use it)."""
    check_choice("method", method, INTEGRATORS)
    built = _stages.setdefault(problem, {})
    if method not in built:
        built[method] = _stage_function(problem, method)
    return built[method]


def _stage_function(problem: Problem, method: str) -> ca.Function:
    f, L = problem.dynamics, problem.running_cost
    x = ca.SX.sym("x", problem.nx)
    u = ca.SX.sym("u", problem.nu)
    y = ca.SX.sym("y", problem.ny)
    h = ca.SX.sym("h")
    x_next, q = integrator_step(lambda z: (f(z, u, y), L(z, u, y)), x, h, method)
    return ca.Function(f"stage_{method}", [x, u, y, h], [x_next, q], ["x", "u", "y", "h"], ["x_next", "q"])


#: Peak memory of a multiple-shooting build (the whole-ensemble SX stage and its gradient, one sample's stage
#: derivatives, IPOPT's functions) per unit of ``N · n_f · n_z``: samples, instructions of one sample's stage
#: function, stage variables of one sample (``nx + n_v``). Measured (peak resident set, IPOPT with stage-wise
#: derivatives, RK4, 20 steps, the constraint Jacobian and the Lagrangian Hessian from one sample's blocks,
#: :mod:`turnpike.derivatives`): 15 to 60 bytes over five neural-ODE cases, from 0.22 M units (inner field, N = 40,
#: 13 MB, 60 bytes) to 18 M units (bottleneck of width 32, N = 40, 258 MB, 15 bytes; 4.2 GB when the ensemble
#: stage's SX Jacobian and Hessian were built). The large builds grow less than the units: the estimate is up to
#: 2.7x above them (the safe side).
BUILD_BYTES_PER_UNIT = 40


def build_bytes(problem: Problem, method: str) -> float:
    """The estimated peak memory (bytes) of building :class:`MultipleShooting` for ``problem``:
    ``BUILD_BYTES_PER_UNIT · N · n_f · (nx + n_v)``, ``n_f`` the instructions of one sample's stage
    (built here, in SX). It does not depend on the number of steps (the stage is ``map``-ped)."""
    n_v = problem.nu * (2 if problem.split_control else 1)  # measured with this count (the split's u⁺, u⁻)
    n_f = stage_function(problem, method).n_instructions()
    return float(BUILD_BYTES_PER_UNIT) * problem.n_samples * n_f * (problem.nx + n_v)


@dataclass(frozen=True)
class _Layout:
    nx: int
    n_samples: int
    nu: int
    split: bool
    steps: int

    @property
    def n_state(self) -> int:  # X_k, all samples
        return self.nx * self.n_samples

    @property
    def n_v(self) -> int:  # V_k: u_k, or its split (u⁺_k, u⁻_k)
        return 2 * self.nu if self.split else self.nu

    @property
    def n_control(self) -> int:  # the stage's control variables: V_k, or (u_k, V_k) with the split
        return 3 * self.nu if self.split else self.nu

    @property
    def n_stage(self) -> int:
        return self.n_state + self.n_control

    @property
    def n_w(self) -> int:
        return self.steps * self.n_stage + self.n_state

    def parts(self, stages):
        """``(X, u, V)`` of stage columns ``stages`` (n_stage, k): states, the dynamics' controls, the control
        variables (``u`` itself without the split)."""
        X, V = stages[: self.n_state, :], stages[self.n_stage - self.n_v :, :]
        return X, stages[self.n_state : self.n_state + self.nu, :], V


class MultipleShooting:
    """The NLP of ``problem`` on ``steps`` intervals with integrator ``method``.

    Built once; :meth:`parameters`, :meth:`bounds` and :meth:`guess` give the numbers for a
    horizon, and :meth:`unpack` turns the NLP's primal-dual solution into arrays.

    Attributes:
        nlp: the dict ``{"x": w, "p": p, "f": J, "g": g}`` for ``casadi.nlpsol``.
        equality: per constraint, whether it is an equality (FATROP's ``equality`` option).
    """

    formulation = "multiple-shooting"

    def __init__(self, problem: Problem, steps: int, method: str = "rk4"):
        if problem.constant_controls:
            raise InputError(f"multiple shooting keeps one control per interval; problem {problem.name!r} has "
                             f"constant_controls {list(problem.constant_controls)}: use formulation='reduced'")
        self.problem, self.steps, self.method = problem, steps, method
        P = problem
        lay = self.layout = _Layout(P.nx, P.n_samples, P.nu, P.split_control, steps)
        N = P.n_samples

        # One stage of the whole ensemble, SX: (X, u, Y, h) -> (X_next, [running, l2]), and the same of the
        # control variables V (simulation, the reduced objective): (X, V, Y, h) -> (X_next, [running, l2, l1]).
        one = self.sample_stage = stage_function(P, method)
        X = ca.SX.sym("X", lay.n_state)
        u = ca.SX.sym("u", P.nu)
        V = ca.SX.sym("V", lay.n_v)
        Y = ca.SX.sym("Y", P.ny * N)
        h = ca.SX.sym("h")
        x_next, q = one.map(N)(ca.reshape(X, P.nx, N), u, ca.reshape(Y, P.ny, N), h)
        self._dynamics = ca.Function("ensemble_dynamics", [X, u, Y, h],
                                     [ca.vec(x_next), ca.vertcat(ca.sum2(q) / N, h * ca.sumsqr(u))],
                                     ["X", "u", "Y", "h"], ["X_next", "q"])
        x_next, q = self._dynamics(X, V[: P.nu] - V[P.nu :] if lay.split else V, Y, h)
        self._stage = ca.Function("ensemble_stage", [X, V, Y, h],
                                  [x_next, ca.vertcat(q, h * ca.sum1(V) if lay.split else 0)],
                                  ["X", "V", "Y", "h"], ["X_next", "q"])
        # φ depends on u through constant controls only, which multiple shooting refuses: u = 0 here.
        phi = ca.sum2(P.terminal_cost.map(N)(ca.reshape(X, P.nx, N), 0, ca.reshape(Y, P.ny, N))) / N
        self._terminal = ca.Function("ensemble_terminal", [X, Y], [phi], ["X", "Y"], ["phi"])

        # The NLP: one MX vector w, sliced stage-wise; the stage mapped over all intervals.
        w = ca.MX.sym("w", lay.n_w)
        p = ca.MX.sym("p", 1 + P.ny * N)
        hp, Yp = p[0], p[1:]
        stages = ca.reshape(w[: steps * lay.n_stage], lay.n_stage, steps)
        Xk, Uk, Vk = lay.parts(stages)
        X_end = w[steps * lay.n_stage :]
        X_next, Q = self._dynamics.map(steps)(Xk, Uk, Yp, hp)
        gaps = ca.horzcat(Xk[:, 1:], X_end) - X_next
        rows = [gaps]
        if lay.split:
            rows.append(Uk - Vk[: P.nu, :] + Vk[P.nu :, :])
        if P.l1_bound is not None:
            rows.append(ca.sum1(Vk))
        g = ca.vec(ca.vertcat(*rows))
        running, l2 = ca.sum2(Q[0, :]), ca.sum2(Q[1, :])
        l1 = hp * ca.sum2(ca.sum1(Vk)) if lay.split else 0
        terminal = self._terminal(X_end, Yp)
        J = running + P.l2 * l2 + P.l1 * l1 + terminal
        self.nlp = {"x": w, "p": p, "f": J, "g": g}
        self._cost_terms = ca.Function(
            "cost_terms", [w, p], [running, P.l2 * l2, P.l1 * l1, terminal]
        )
        ties = P.nu if lay.split else 0
        self.n_g_stage = lay.n_state + ties + (1 if P.l1_bound is not None else 0)
        eq = [True] * (lay.n_state + ties) + [False] * (self.n_g_stage - lay.n_state - ties)
        self.equality = eq * steps

        # Forward simulation of given controls (initial guesses, re-simulation).
        self._simulate = self._stage.mapaccum(steps)
        self._reduced = None
        self._derivatives = None

    @property
    def dynamics(self) -> ca.Function:
        """One stage of the ensemble, SX: ``(X, u, Y, h) -> (X_next, [q̄, h|u|²])``, ``q̄`` the sample mean."""
        return self._dynamics

    @property
    def stage(self) -> ca.Function:
        """:attr:`dynamics` of the control variables, SX: ``(X, V, Y, h) -> (X_next, [q̄, h|u|², h Σ V])`` with
        ``u = u⁺ - u⁻`` under the L1 split (the last term 0 without it)."""
        return self._stage

    @property
    def terminal(self) -> ca.Function:
        """The ensemble terminal cost, SX: ``(X, Y) -> (1/N) Σ_i φ(x_i, y_i)``."""
        return self._terminal

    def derivatives(self) -> dict[str, ca.Function]:
        """IPOPT's ``grad_f``, ``jac_g`` and ``hess_lag`` for :attr:`nlp`, from stage-wise SX derivatives.

        See :mod:`turnpike.derivatives`. Built on first use and kept.
        """
        if self._derivatives is None:
            self._derivatives = stagewise_derivatives(self)
        return self._derivatives

    def reduced_objective(self) -> ca.Function:
        """``(V, p) -> (J, ∇_V J)``: the objective as a function of the controls alone (single shooting).

        The states are eliminated by forward simulation (``mapaccum`` of the stage); the gradient
        is CasADi's reverse mode through it. ``V`` is (n_v, steps), column k the stage-k controls.
        Built on first use and kept.
        """
        if self._reduced is None:
            P, lay = self.problem, self.layout
            V = ca.MX.sym("V", lay.n_v, self.steps)
            p = ca.MX.sym("p", 1 + P.ny * P.n_samples)
            X, Q = self._simulate(P.x0_samples.reshape(-1), V, ca.repmat(p[1:], 1, self.steps), p[0])
            J = ca.sum2(Q[0, :]) + P.l2 * ca.sum2(Q[1, :]) + P.l1 * ca.sum2(Q[2, :]) + self._terminal(X[:, -1], p[1:])
            self._reduced = ca.Function("reduced", [V, p], [J, ca.gradient(J, V)], ["V", "p"], ["J", "grad"])
        return self._reduced

    # -- numbers for one horizon -----------------------------------------------------------
    def parameters(self, T: float) -> np.ndarray:
        """``p = (h, y_1, ..., y_N)`` for horizon ``T``."""
        return np.concatenate([[T / self.steps], self.problem.data_values.reshape(-1)])

    def bounds(self, zero: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``lbx, ubx, lbg, ubg``: X_0 fixed to x0, control bounds, gaps = 0, ties of the split = 0, L1 bound.
        With ``zero`` (steps, nu), the controls it marks are fixed at exactly 0: ``u_kj = u⁺_kj = u⁻_kj = 0``,
        and their ties, which no variable is left in, are dropped (bounds ±∞; as equalities they would make the
        constraint Jacobian rank-deficient)."""
        P, lay = self.problem, self.layout
        v_lo, v_hi = self.control_bounds()
        free = np.full(lay.n_stage - lay.n_v, np.inf)  # the states, and u_k with the split
        stage_lo = np.concatenate([-free, v_lo])
        stage_hi = np.concatenate([free, v_hi])
        lbx = np.concatenate([np.tile(stage_lo, self.steps), -free[: lay.n_state]])
        ubx = np.concatenate([np.tile(stage_hi, self.steps), free[: lay.n_state]])
        x0 = P.x0_samples.reshape(-1)
        lbx[: lay.n_state] = x0
        ubx[: lay.n_state] = x0
        g_lo = np.zeros(self.n_g_stage)  # gaps, ties u - u⁺ + u⁻
        g_hi = np.zeros(self.n_g_stage)
        if P.l1_bound is not None:
            g_lo[-1], g_hi[-1] = -np.inf, P.l1_bound
        lbg, ubg = np.tile(g_lo, self.steps), np.tile(g_hi, self.steps)
        if zero is not None:
            zero, states = np.asarray(zero, dtype=float), np.zeros((self.steps + 1, P.n_samples, P.nx))
            fixed = (self.pack(states, zero) != 0) | (self.pack(states, -zero) != 0)  # u_kj, u⁺_kj, u⁻_kj
            lbx[fixed] = ubx[fixed] = 0.0
            if lay.split:
                ties = np.zeros((self.steps, self.n_g_stage), dtype=bool)
                ties[:, lay.n_state : lay.n_state + P.nu] = zero != 0
                lbg[ties.reshape(-1)], ubg[ties.reshape(-1)] = -np.inf, np.inf
        return {"lbx": lbx, "ubx": ubx, "lbg": lbg, "ubg": ubg}

    def control_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of one stage's V (see :meth:`Problem.control_variable_bounds`)."""
        return self.problem.control_variable_bounds()

    def control_variables(self, u: np.ndarray) -> np.ndarray:
        """V_k from controls u (steps, nu): u itself, or (max(u, 0), max(-u, 0))."""
        if self.layout.split:
            return np.hstack([np.maximum(u, 0), np.maximum(-u, 0)])
        return u

    def simulate(self, u: np.ndarray, T: float) -> np.ndarray:
        """States (steps+1, N, nx) reached from x0 under controls ``u`` (steps, nu) with this integrator."""
        V = self.control_variables(np.asarray(u, dtype=float))
        p = self.parameters(T)
        Xs = self._simulate(
            self.problem.x0_samples.reshape(-1), V.T, np.tile(p[1:, None], self.steps), p[0]
        )[0]
        X = np.hstack([self.problem.x0_samples.reshape(-1, 1), np.asarray(Xs)])
        return X.T.reshape(self.steps + 1, self.problem.n_samples, self.problem.nx)

    def pack(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The NLP vector w from states (steps+1, N, nx) and controls (steps, nu)."""
        lay = self.layout
        X = np.asarray(x, dtype=float).reshape(self.steps + 1, lay.n_state)
        u = np.asarray(u, dtype=float)
        V = self.control_variables(u)
        stages = np.hstack([X[:-1], u, V] if lay.split else [X[:-1], V]).reshape(-1)
        return np.concatenate([stages, X[-1]])

    def unpack(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """States (steps+1, N, nx) and controls (steps, nu) from the NLP vector w; with the split the controls are
        ``u⁺ - u⁻`` (see the module docstring)."""
        lay, P = self.layout, self.problem
        w = np.asarray(w, dtype=float).reshape(-1)
        stages = w[: self.steps * lay.n_stage].reshape(self.steps, lay.n_stage)
        X = np.vstack([stages[:, : lay.n_state], w[self.steps * lay.n_stage :]])
        u = self.stage_controls(stages[:, lay.n_stage - lay.n_v :])
        return X.reshape(self.steps + 1, P.n_samples, P.nx), u

    def controls(self, w: np.ndarray) -> np.ndarray:
        """Controls (steps, nu) from the NLP vector w."""
        return self.unpack(w)[1]

    def stage_controls(self, V: np.ndarray) -> np.ndarray:
        """Controls (steps, nu) from the control variables V (steps, n_v): V, or ``u⁺ - u⁻`` with the L1 split."""
        V, nu = np.asarray(V, dtype=float), self.problem.nu
        return V[:, :nu] - V[:, nu:] if self.layout.split else V

    def arrays(self, w: np.ndarray, lam_g: np.ndarray, T: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, u, adjoint)`` of the NLP's primal-dual solution (see :meth:`unpack`, :meth:`adjoint`)."""
        x, u = self.unpack(w)
        return x, u, self.adjoint(lam_g)

    def adjoint(self, lam_g: np.ndarray) -> np.ndarray:
        """Discrete adjoint (steps, N, nx): ``p_{k+1} = -ν_k``, ν the multipliers of the gaps."""
        lay = self.layout
        lam = np.asarray(lam_g, dtype=float).reshape(self.steps, self.n_g_stage)
        return -lam[:, : lay.n_state].reshape(self.steps, self.problem.n_samples, self.problem.nx)

    def cost_terms(self, w: np.ndarray, T: float) -> dict[str, float]:
        """The objective split into ``running``, ``l2``, ``l1`` and ``terminal`` parts."""
        vals = self._cost_terms(w, self.parameters(T))
        return {k: float(v) for k, v in zip(("running", "l2", "l1", "terminal"), vals, strict=True)}

"""Single shooting with the exact reduced Hessian, condensed sample by sample.

For an ensemble (N samples sharing one control) the states are determined by the controls and
the samples are independent of each other given the controls. The *reduced* NLP keeps only the
controls as variables. On the grid of :mod:`turnpike.transcription` (``h = T/steps``, controls
``u_k`` constant on interval k, one step ``x_{k+1} = F(x_k, u_k)`` of the integrator with running
cost quadrature ``q(x_k, u_k)``, the same numbers as multiple shooting) it reads

.. math::

    \\min_V\\; J(V) = \\sum_k \\Big(\\frac1N \\sum_i q_{i,k} + λ_2 h|u_k|^2 + λ_1 h \\textstyle\\sum V_k\\Big)
        + \\frac1N \\sum_i φ(x_{i,n})
    \\quad\\text{s.t. } V \\text{ in its bounds}, [\\textstyle\\sum V_k \\le M],

``V_k = u_k`` or ``(u⁺_k, u⁻_k)`` as in multiple shooting. IPOPT solves it with exact first and
second derivatives, computed for each sample and summed (``A = ∂F/∂x``, ``B = ∂F/∂u``):

* Gradient, by the discrete adjoint: ``p_{i,n} = ∇φ_i``, ``p_{i,k} = ∇_x q_{i,k} + A_{i,k}ᵀ p_{i,k+1}``,
  ``∇_{u_k} J = (1/N) Σ_i (∇_u q_{i,k} + B_{i,k}ᵀ p_{i,k+1}) + 2 λ_2 h u_k``.
* Hessian, by the second-order adjoint, condensed: with the stage Lagrangian
  ``ℓ_{i,k} = q_{i,k} + p_{i,k+1}ᵀ F_{i,k}`` and its blocks ``Q = ∇²_{xx} ℓ``, ``S = ∇²_{ux} ℓ``,
  ``R = ∇²_{uu} ℓ``; the backward recursion ``P_{i,n} = ∇²φ_i``, ``P_{i,k} = Q_{i,k} + A_{i,k}ᵀ
  P_{i,k+1} A_{i,k}``; the sensitivities ``D_{i,l} = ∂x_{i,l}/∂(u_0, …, u_{l-1})`` by
  ``D_{i,l+1} = (A_{i,l} D_{i,l}, B_{i,l})``; and ``G_{i,l} = A_{i,l}ᵀ P_{i,l+1} B_{i,l} + S_{i,l}ᵀ``:

  .. math::

      H_{ll} = \\frac1N \\sum_i (R_{i,l} + B_{i,l}ᵀ P_{i,l+1} B_{i,l}) + 2λ_2 h I, \\qquad
      H_{jl} = \\frac1N \\sum_i (D_{i,l})_jᵀ G_{i,l}\\quad (j < l).

Cost per Hessian: ``O(N steps² nx nu²)`` flops in dense matrix products, against
``O(N steps³ nu²)`` for a sparse factorisation of the multiple-shooting KKT system, which fills
in the same dense block per sample. The off-diagonal blocks are filled a block of stages at a
time, by matrix products with inner dimension ``N nx`` (compute-bound, see
:meth:`ReducedSpace._off_diagonal_blocks`), not one stage at a time (memory-bound).

The stage derivatives are SX functions of one sample, evaluated over all samples and stages in
one call (as vectorised C when a compiler is there, :func:`~turnpike.compiled.lanes_map`; else
CasADi's ``map``);
only the recursions loop over stages, in numpy. The gradient alone (IPOPT's ``grad_f`` and the
presolve's L-BFGS steps) is one compiled call when a compiler is there: each sample's forward
pass, then its adjoint, 8 samples at a time in vectorised C (:func:`~turnpike.compiled.ensemble_gradient`;
``benchmarks/bench_gradient.py`` times it).

The solver is IPOPT (its usual termination: scaled KKT error below ``tol``) on the variables
``V`` with the bounds and L1-bound rows of multiple shooting; it receives ``grad_f`` and
``hess_lag`` from here. The states of the answer are the forward simulation of its controls.
Single shooting suits problems whose dynamics do not blow up over the horizon (neural ODEs);
for unstable systems over long horizons multiple shooting is the better conditioned choice.
"""

from __future__ import annotations

from contextlib import contextmanager

import casadi as ca
import numpy as np

from .codegen import MAX_INSTRUCTIONS
from .compiled import compiling, ensemble_gradient
from .derivatives import Batch, NumpyFunction, SampleDerivatives, sample_blocks
from .ensemble import EnsembleObjective
from .hessian_vector import compiling_hessian_vector
from .krylov import BlockDiagonal
from .problem import Problem
from .transcription import stage_function, substep_function

__all__ = ["DENSE_HESSIAN_ROWS", "DENSE_STAGE_CONTROLS", "ReducedSpace", "recursion_stage", "second_order_mode",
           "substep_recursion"]

#: The dense reduced Hessian is formed when it has at most this many rows (``steps·n_v``: 72 MB of
#: numbers, a Cholesky factorisation of about 1 s) ...
DENSE_HESSIAN_ROWS = 3000
#: ... and one stage has at most this many controls: its second-order SX function has ``nu²`` outputs, and
#: its size grows accordingly (bottleneck field, D = 3: 19 k instructions at nu = 31, 66 k at nu = 59 (over
#: :data:`~turnpike.codegen.MAX_INSTRUCTIONS`), 243 k at nu = 115, 1.9 M at nu = 353).
DENSE_STAGE_CONTROLS = 40


def second_order_mode(problem: Problem, steps: int) -> str:
    """``"dense"`` (the exact reduced Hessian, condensed sample by sample, factorised by Cholesky) or
    ``"hessian-vector"`` (exact Hessian-vector products only, :class:`~turnpike.ensemble.EnsembleObjective`;
    Newton–CG and a limited-memory IPOPT, :mod:`turnpike.krylov`): dense when ``steps·n_v <=``
    :data:`DENSE_HESSIAN_ROWS` and ``nu <=`` :data:`DENSE_STAGE_CONTROLS`. Reported in ``sol.stats``."""
    n_v = problem.nu * (2 if problem.split_control else 1)
    small = steps * n_v <= DENSE_HESSIAN_ROWS and problem.nu <= DENSE_STAGE_CONTROLS
    return "dense" if small else "hessian-vector"


def recursion_stage(problem: Problem, step: ca.Function, x0: np.ndarray | None = None
                    ) -> tuple[ca.Function, ca.Function, np.ndarray]:
    """``(step, terminal, x0)`` of the reduced recursions, whose terminal cost reads the state alone.

    φ may depend on the constant controls ``θ = u[c]`` (a trainable output map). The last interval's
    ``u_{n-1}[c]`` is θ, so the step carries it in ``ϑ``, appended to the state: ``(x, ϑ)_{k+1} = (F(x_k, u_k),
    u_k[c])`` from ``ϑ_0 = 0``, and the terminal cost is ``φ(x_n, θ = ϑ_n, y)``: the same numbers, and the
    adjoint recursions (compiled, dense or Hessian-vector) need no term of their own for it. Without such a
    dependence, ``(step, φ(x, 0, y), x0)`` (φ then does not read u).

    ``step`` is ``(x, u, y, h, ...) -> (x_next, q)``: inputs after h are passed through, and the state may hold
    more than the problem's (φ reads its first ``nx`` entries), e.g. :func:`substep_recursion`'s; ``x0`` (N, its
    size) is then its initial state (default: the problem's ``x0``).
    """
    P = problem
    x, u, y, h, *rest = step.sx_in()
    x0 = P.x0_samples if x0 is None else x0
    read = ca.which_depends(P.terminal_cost(x[: P.nx], u, y), u, 1, False)
    c = [j for j in P.constant_controls if read[j]]
    if not c:
        terminal = ca.Function("phi", [x, y], [P.terminal_cost(x[: P.nx], 0, y)], ["x", "y"], ["phi"])
        return step, terminal, x0
    carried = ca.SX.sym("theta", len(c))
    held = ca.SX.zeros(P.nu)
    held[c] = carried
    x_next, q = step(x, u, y, h, *rest)
    state = ca.vertcat(x, carried)
    step = ca.Function(f"{step.name()}_carrying", [state, u, y, h, *rest], [ca.vertcat(x_next, u[c]), q],
                       step.name_in(), ["x_next", "q"])
    terminal = ca.Function("phi", [state, y], [P.terminal_cost(x[: P.nx], held, y)], ["x", "y"], ["phi"])
    return step, terminal, np.hstack([x0, np.zeros((P.n_samples, len(c)))])


def substep_recursion(problem: Problem, method: str) -> tuple[ca.Function, ca.Function, np.ndarray, np.ndarray]:
    """``(substep, terminal, z0, coefficients)``: :func:`recursion_stage` of the integrator's stages taken one by one
    (:func:`~turnpike.transcription.substep_function`), from ``z0 = (x0, 0, x0)`` (and ``ϑ_0 = 0``)."""
    substep, coefficients = substep_function(problem, method)
    x0 = problem.x0_samples
    return (*recursion_stage(problem, substep, np.hstack([x0, np.zeros_like(x0), x0])), coefficients)


def _psd_factor(S: np.ndarray) -> np.ndarray:
    """For symmetric ``S`` (..., m, m): ``C`` with ``CᵀC = [S]₊`` (the negative eigenvalues set to 0)."""
    values, vectors = np.linalg.eigh((S + np.swapaxes(S, -1, -2)) / 2)
    return np.sqrt(np.clip(values, 0.0, None))[..., :, None] * np.swapaxes(vectors, -1, -2)


class _NotWanted(Exception):
    """Raised to leave :meth:`ReducedSpace.hessian_vector_compiling` with its compiler killed."""


class ReducedSpace:
    """The reduced (single-shooting) NLP of an ensemble ``problem`` on ``steps`` intervals.

    Same interface as :class:`~turnpike.transcription.MultipleShooting` for :func:`turnpike.solve`:
    :attr:`nlp`, :meth:`parameters`, :meth:`bounds`, :meth:`pack`, :meth:`arrays`,
    :meth:`cost_terms`, :meth:`simulate`, :meth:`derivatives`. The NLP vector is
    ``w = (V_0, ..., V_{n-1})``.
    """

    formulation = "reduced"
    #: Columns of the Hessian filled by one matrix product (see :meth:`_off_diagonal_blocks`); a
    #: tuning knob, the values do not depend on it.
    hessian_block_columns = 128

    def __init__(self, problem: Problem, steps: int, method: str = "rk4"):
        self.problem, self.steps, self.method = problem, steps, method
        P = problem
        self.split = P.split_control
        self.n_v = 2 * P.nu if self.split else P.nu
        # The columns of V holding copies of a constant control (u⁺ and u⁻ copies with the L1 split).
        constant = np.array(P.constant_controls, dtype=int)
        self._constant = np.concatenate([constant, constant + P.nu]) if self.split else constant

        # One sample, one interval (SX), with the constant controls that φ reads carried in the state (see
        # recursion_stage). Its first and second derivatives (the dense Hessian's stage functions)
        # are built on first use: only the dense second-order mode needs them.
        one, phi_fn, self._x0 = recursion_stage(P, stage_function(P, method))
        self.nu, self.nx, self.N = P.nu, one.size1_in(0), P.n_samples
        self._one, self._phi = one, phi_fn
        self.samples = SampleDerivatives(one, phi_fn)  # the dense Hessian's stage blocks, built on first use
        self.second_order = second_order_mode(P, steps)
        with compiling(one) as compiled_one:  # the simulation's stage compiles while the gradient is built
            self._gradient = ensemble_gradient(one, phi_fn)  # J and ∇J, one C call
            fast_one = compiled_one() or one
        self.compiled = fast_one is not one and self._gradient is not None
        self._objective = None  # the ensemble objective with Hessian-vector products, on first use
        self._product = None  # the compiled Hessian-vector product, on first use
        self._pending = None  # within hessian_vector_compiling: waits for the product's compiler
        self.gauss_newton_method = None  # how the last gauss_newton blocks were built, or why they were not
        # How ∇J is evaluated (reported in sol.stats["gradient"]).
        self.gradient_method = (f"compiled adjoint, stage reverse mode ({self._gradient.build})"
                                if self._gradient is not None else None)

        # The ensemble forward simulation (the stage mapped over the samples, accumulated over
        # stages): compiled for numbers, SX in the NLP (which CasADi may have to differentiate).
        X, Y = ca.MX.sym("X", self.nx, self.N), ca.MX.sym("Y", P.ny, self.N)
        um, hm = ca.MX.sym("u", P.nu), ca.MX.sym("h")
        fast_forward, forward = (
            ca.Function("ensemble_step", [X, um, Y, hm], stage.map(self.N)(X, um, Y, hm)).mapaccum(steps)
            for stage in (fast_one, one)
        )
        self._forward = Batch(fast_forward)

        # The NLP for nlpsol: f is the simulated cost (MX), g the L1-bound rows.
        w = ca.MX.sym("w", self.n_v * steps)
        p = ca.MX.sym("p", 1 + P.ny * self.N)
        copies = ca.reshape(w, self.n_v, steps)
        Vm, deviation = self._tie_symbolic(copies)
        um = Vm[: P.nu, :] - Vm[P.nu :, :] if self.split else Vm
        Ym = ca.reshape(p[1:], P.ny, self.N)
        Xs, Qm = forward(self._x0.T, um, Ym, p[0])
        phis = phi_fn.map(self.N)(Xs[:, -(self.N) :], Ym)
        J = ca.sum2(ca.sum1(Qm)) / self.N + ca.sum2(phis) / self.N
        J += p[0] * (P.l2 * ca.sumsqr(um) + P.l1 * ca.sum1(ca.sum2(Vm)) + ca.sumsqr(deviation) / 2)
        g = ca.sum1(Vm).T if P.l1_bound is not None else ca.MX(0, 1)
        self.nlp = {"x": w, "p": p, "f": J, "g": g}
        self.equality = [False] * g.numel()
        self._cache_key = None
        self._last_gradient = (None, None)
        self._derivatives = None
        if self.gradient_method is None:
            self.gradient_method = ("numpy adjoint recursion" if self.second_order == "dense" else
                                    f"CasADi reverse mode ({self.objective.path} path)")

    # -- numbers for one horizon ------------------------------------------------------------
    def parameters(self, T: float) -> np.ndarray:
        """``p = (h, y_1, ..., y_N)`` for horizon ``T``."""
        return np.concatenate([[T / self.steps], self.problem.data_values.reshape(-1)])

    def bounds(self, zero: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``lbx, ubx, lbg, ubg``: the control bounds of every stage, and the L1 bound; the controls marked in
        ``zero`` (steps, nu), if given, fixed at exactly 0 (``u⁺ = u⁻ = 0`` with the split)."""
        lo, hi = self.problem.control_variable_bounds()
        n_g = self.steps if self.problem.l1_bound is not None else 0
        lbx, ubx = np.tile(lo, self.steps), np.tile(hi, self.steps)
        if zero is not None:
            zero = np.asarray(zero, dtype=float)
            fixed = (self.pack(None, zero) != 0) | (self.pack(None, -zero) != 0)  # u_kj, or u⁺_kj and u⁻_kj
            lbx[fixed] = ubx[fixed] = 0.0
        return {"lbx": lbx, "ubx": ubx, "lbg": np.full(n_g, -np.inf), "ubg": np.full(n_g, self.problem.l1_bound or 0.0)}

    def pack(self, x, u: np.ndarray) -> np.ndarray:
        """The NLP vector from controls (steps, nu); the states ``x`` are not variables here."""
        u = np.asarray(u, dtype=float)
        V = np.hstack([np.maximum(u, 0), np.maximum(-u, 0)]) if self.split else u
        return V.reshape(-1)

    def control_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of one stage's V (see :meth:`Problem.control_variable_bounds`)."""
        return self.problem.control_variable_bounds()

    def control_variables(self, u: np.ndarray) -> np.ndarray:
        """V_k from controls u (steps, nu): u itself, or (max(u, 0), max(-u, 0))."""
        return self.pack(None, u).reshape(self.steps, self.n_v)

    def reduced_objective(self):
        """``(V, p) -> (J, ∇_V J)`` with V (n_v, steps) (for :mod:`turnpike.presolve`, which needs no
        Hessian)."""

        def fg(V, p):
            J, g = self._value_and_gradient(np.asarray(V).T.reshape(-1), np.asarray(p).reshape(-1))
            return J, g.reshape(self.steps, self.n_v).T

        return fg

    def _value_and_gradient(self, w: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
        """The NLP objective and its gradient in ``w``: the ensemble terms (:meth:`ensemble_cost`) plus
        the control costs ``h (λ2 |u|² + λ1 Σ V)``; with the L1 split ``V = (u⁺, u⁻)``,
        ``∇_V J = Eᵀ ∇_u J + λ1 h`` where ``u = E V``, ``E = (I, -I)``.

        The last point's values are kept: IPOPT asks for ``f`` at a trial point, then for ``grad_f`` there
        once it accepts it."""
        key = (w.tobytes(), p.tobytes())
        if self._last_gradient[0] != key:
            self._last_gradient = (key, self._evaluate_gradient(w, p))
        J, g = self._last_gradient[1]
        return J, g.copy()

    def _evaluate_gradient(self, w: np.ndarray, p: np.ndarray, samples=None) -> tuple[float, np.ndarray]:
        u = self.controls(w)
        if samples is None:
            J, g = self.ensemble_cost(u, p)
        else:
            J, g = self._gradient(self._x0[samples], u, self._data(p).T[samples], p[0])
        g = g + 2 * self.problem.l2 * p[0] * u
        if self.split:
            g = np.hstack([g, -g]) + self.problem.l1 * p[0]
        g = self._untie(g, np.asarray(w, dtype=float).reshape(self.steps, self.n_v), p[0])
        return J + self._control_cost(w, p), g.reshape(-1)

    @property
    def minibatches(self) -> bool:
        """Whether :meth:`minibatch_gradient` is available (it needs the compiled ensemble gradient)."""
        return self._gradient is not None

    def minibatch_gradient(self, w: np.ndarray, p: np.ndarray, samples: np.ndarray) -> tuple[float, np.ndarray]:
        """The NLP objective and its gradient in ``w`` with the ensemble terms averaged over the ``samples``
        (indices) only: ``(1/|B|) Σ_{i∈B} (Σ_k q_{i,k} + φ_i)`` plus the control costs, an unbiased estimate of J
        and ∇J for a uniformly drawn batch B. One compiled call on those samples."""
        return self._evaluate_gradient(np.asarray(w, dtype=float).reshape(-1), p, samples)

    def controls(self, w: np.ndarray) -> np.ndarray:
        """Controls (steps, nu) from the NLP vector (see :meth:`stage_controls`)."""
        return self.stage_controls(np.asarray(w, dtype=float).reshape(self.steps, self.n_v))

    def stage_controls(self, V: np.ndarray) -> np.ndarray:
        """Controls (steps, nu) from the control variables V (steps, n_v): a constant control is the mean of its
        copies, then ``u = u⁺ - u⁻`` with the L1 split."""
        V = self._tie(V)
        return V[:, : self.nu] - V[:, self.nu :] if self.split else V

    # -- constant controls ----------------------------------------------------------------------
    # A constant control θ_a keeps one copy per interval in V (the layout of every other control, so that the
    # presolves and IPOPT see the same (steps, n_v) variables); the cost reads their mean θ_a = mean_k V_{k,a},
    # and charges their spread (h/2) Σ_k (V_{k,a} - θ_a)², zero once they agree. J(V) is then J(θ) of the
    # problem with θ constant, plus a term of the deviations alone: in (mean, deviation) coordinates the
    # Hessian is block diagonal, the constant problem's block and h·I, so stationary points, minimisers and
    # the Hessian's definiteness are those of the problem with θ constant, and its copies agree there.

    def _tie(self, V: np.ndarray) -> np.ndarray:
        """V (steps, n_v) with each constant control's copies replaced by their mean (a new array)."""
        V = np.array(V, dtype=float)
        if self._constant.size:
            V[:, self._constant] = V[:, self._constant].mean(axis=0)
        return V

    def _tie_symbolic(self, copies: ca.MX) -> tuple[ca.MX, ca.MX]:
        """The tied V (n_v, steps) and the deviations of the copies from their means (MX)."""
        if not self._constant.size:
            return copies, ca.MX(0, 1)
        c = self._constant.tolist()
        mean = ca.sum2(copies[c, :]) / self.steps
        deviation = copies[c, :] - ca.repmat(mean, 1, self.steps)
        tied = ca.MX(copies)
        tied[c, :] = ca.repmat(mean, 1, self.steps)
        return tied, deviation

    def _untie(self, g: np.ndarray, V: np.ndarray, h: float) -> np.ndarray:
        """The gradient (steps, n_v) in the copies from the gradient ``g`` in the tied V: each copy gets the mean
        of the column's gradient (the chain rule through the mean), plus ``h`` times its deviation."""
        if self._constant.size:
            c = self._constant
            g = np.array(g, dtype=float)
            g[:, c] = g[:, c].mean(axis=0) + h * (V[:, c] - V[:, c].mean(axis=0))
        return g

    def simulate(self, u: np.ndarray, T: float) -> np.ndarray:
        """States (steps+1, N, nx) reached from x0 under controls ``u`` (steps, nu)."""
        return self._trajectory(np.asarray(u, dtype=float), self.parameters(T))[0][..., : self.problem.nx]

    def arrays(self, w: np.ndarray, lam_g: np.ndarray, T: float):
        """``(x, u, adjoint)`` of the NLP solution ``w``: simulated states (steps+1, N, nx),
        controls (steps, nu) and the discrete adjoint ``p_{k+1}/N`` (steps, N, nx), the same
        costate as multiple shooting's ``-ν_k``."""
        u, p, nx = self.controls(w), self.parameters(T), self.problem.nx
        if self.second_order == "dense":
            d = self._first_order(u, p)
            return d["x"][..., :nx], u, d["p"][1:, :, :nx] / self.N
        return self._trajectory(u, p)[0][..., :nx], u, self.objective.adjoint(u, self._data(p).T, p[0])

    def cost_terms(self, w: np.ndarray, T: float) -> dict[str, float]:
        """The objective split into ``running``, ``l2``, ``l1`` and ``terminal`` parts."""
        P, p = self.problem, self.parameters(T)
        V = self._tie(np.asarray(w, dtype=float).reshape(self.steps, self.n_v))
        x, q = self._trajectory(self.controls(w), p)
        phi = self.samples.mapped("terminal", self.N)(x[-1].T, self._data(p))[0]
        return {"running": float(q.sum() / self.N), "l2": float(P.l2 * p[0] * np.sum(self.controls(w) ** 2)),
                "l1": float(P.l1 * p[0] * V.sum()) if self.split else 0.0, "terminal": float(np.mean(phi))}

    # -- derivatives ----------------------------------------------------------------------------
    def _data(self, p: np.ndarray) -> np.ndarray:
        return p[1:].reshape(self.N, self.problem.ny).T

    @property
    def objective(self) -> EnsembleObjective:
        """The ensemble terms of J with exact Hessian-vector products (:class:`~turnpike.ensemble.EnsembleObjective`),
        built on first use."""
        if self._objective is None:
            self._objective = EnsembleObjective(self.problem, self.steps, self.method)
        return self._objective

    def hessian_vector(self, u: np.ndarray, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``∇²J v`` (steps, nu) in the NLP variables ``u`` (steps, nu; the problem has no L1 split), exact (forward
        over reverse mode), with the control cost's ``2 λ2 h v`` and the ties of the constant controls.

        Compiled sample by sample when possible (:func:`~turnpike.hessian_vector.ensemble_hessian_vector`,
        15x faster than CasADi's VM on the width-16 bottleneck), else :attr:`objective`'s; which one is
        :attr:`hessian_vector_method`.
        """
        if self._product is None and self._pending is not None:  # compiling in the background: wait for it
            self._product = self._pending() or False
        if self._product is None:
            with self.hessian_vector_compiling():  # compiled now: the block's end waits for it
                pass
        copies, v = np.asarray(v, dtype=float), self._tie(v)
        u = self.controls(u)
        if self._product:
            Hv = self._product(self._z0, u, self._data(p).T, p[0], v)[2]
        else:
            Hv = self.objective.hessian_vector(u, self._data(p).T, p[0], v)
        return self._untie(Hv + 2 * self.problem.l2 * p[0] * v, copies, p[0])

    @contextmanager
    def hessian_vector_compiling(self, stop=None):
        """Within: the compiled Hessian-vector product of :meth:`hessian_vector` compiled in the background, while
        the block does other work (:func:`~turnpike.solve.solve`: during the descents that come before Newton-CG;
        at width 200 the library takes about 30 s to compile). A product inside the block waits for it; so does
        the block's end, unless ``stop()`` (a :class:`~turnpike.stopping.Stop`) then gives a reason: leaving the
        block so, or by an exception, kills the compiler. Nothing where the product is already built or being
        compiled."""
        if self._product is not None or self._pending is not None:
            yield
            return
        substep, terminal, self._z0, coefficients = substep_recursion(self.problem, self.method)
        try:
            with compiling_hessian_vector(substep, terminal, coefficients) as self._pending:
                yield
                if self._product is None and stop is not None and stop():
                    raise _NotWanted
                if self._product is None:
                    self._product = self._pending() or False
        except _NotWanted:
            pass
        finally:
            self._pending = None

    @property
    def hessian_vector_method(self) -> str | None:
        """How :meth:`hessian_vector` evaluated its last product (None before the first)."""
        if self._product is None:
            return None
        if self._product:
            return f"compiled forward over reverse mode ({self._product.build})"
        return f"CasADi forward over reverse mode ({self.objective.path} path)"

    def gauss_newton(self, w: np.ndarray, p: np.ndarray) -> BlockDiagonal | None:
        """The Gauss–Newton blocks of the reduced Hessian at ``w`` (steps, n_v), Newton-CG's preconditioner
        (:func:`~turnpike.krylov.newton_cg`), or None where they would not pay (:attr:`gauss_newton_method` says why).

        With ``F_{i,k} = F(x_{i,k}, u_k)`` the step of sample i on interval k, ``q`` its running cost's quadrature
        and ``[S]₊`` a symmetric matrix with its negative eigenvalues set to 0, the cost-to-go curvature

            P_{i,n} = [∇²φ_i]₊,   P_{i,k} = [∇²_xx q_{i,k}]₊ + ∂_x F_{i,k}ᵀ P_{i,k+1} ∂_x F_{i,k}

        gives the block of interval k

            G_k = (1/N) Σ_i ∂_u F_{i,k}ᵀ P_{i,k+1} ∂_u F_{i,k} + 2 λ2 h I + ε I,

        the k-th diagonal block of ``∇²J`` without the second derivatives of the dynamics (and without those of q in
        u, and with the negative curvature of q and φ clipped): exact for dynamics linear in (x, u) and costs that
        are convex quadratic in x alone. ``ε = 1e-10`` times the largest diagonal entry makes every block positive
        definite. With ``P_{i,k+1} = CᵀC``, ``C ∂_{(x,u)} F`` is nx reverse sweeps of the stage seeded by the rows of
        C (:class:`~turnpike.derivatives.SampleDerivatives` ``"gauss_newton"``), so ``G_k`` is one ``(nu, nx N)``
        matrix times its transpose. Cost per build: ``nx`` reverse sweeps and one Hessian ``∇²_xx q`` per sample and
        interval, and one such product per interval; memory ``steps·nu²`` for the blocks and ``N·nx·nu`` for one
        interval's rows, nothing of size ``(steps·nu)²``. A constant control's copies are treated as the controls of
        their intervals.

        Both sample functions are evaluated as the multiple-shooting blocks are
        (:func:`~turnpike.derivatives.sample_blocks`: compiled lane code, compiled on first use and once per machine,
        where one build runs at least :data:`~turnpike.derivatives.COMPILE_WORK` instructions). None where the
        two together have more than :data:`~turnpike.codegen.MAX_INSTRUCTIONS` instructions, with the L1 split, and
        where the blocks are zero (with ``λ2 = 0``) or not finite. Measured
        for the chessboard bottleneck (``benchmarks/bench_width.py``, N = 1000, a fresh cache, one core): width 50,
        11 k + 14 k instructions; width 100, 21 k + 28 k, compiled in 16 s with 347 MB of compiler memory, then 1.5 s
        a build; width 200, 42 k + 56 k: 60 s and 935 MB, over the budget of the width-200 build (30 s, 1 GB), so
        Newton-CG runs unpreconditioned there.
        """
        if self.split:
            self.gauss_newton_method = "none: the problem has an L1 split"
            return None
        size = sum(self.samples.function(name).n_instructions() for name in ("gauss_newton", "running_curvature"))
        if size > MAX_INSTRUCTIONS:
            self.gauss_newton_method = (f"none: its sample functions have {size} instructions, over the compile budget "
                                        f"MAX_INSTRUCTIONS = {MAX_INSTRUCTIONS}")
            return None
        rows, how = sample_blocks(self.samples, "gauss_newton", self.N * self.nx, calls=self.steps)
        curvature = sample_blocks(self.samples, "running_curvature", self.N, calls=self.steps)[0]
        self.gauss_newton_method = f"Gauss-Newton blocks per interval ({how})"
        u, nx, nu, N, h = self.controls(w), self.nx, self.nu, self.N, p[0]
        x, Y = self._trajectory(u, p)[0], self._data(p)
        Y_seeds = np.repeat(Y, nx, axis=1)  # item i·nx + a: sample i, seeded by row a of its C
        P = self.samples.mapped("terminal", N)(x[-1].T, Y)[2].T.reshape(N, nx, nx)
        blocks = []
        for k in range(self.steps - 1, -1, -1):
            if not np.all(np.isfinite(P)):
                self.gauss_newton_method = "none: the Gauss-Newton blocks are not finite"
                return None
            C = _psd_factor(P)  # (N, nx, nx): CᵀC = [P]₊
            CFx, CFu = rows(np.repeat(x[k].T, nx, axis=1), u[k][:, None], Y_seeds, h, C.reshape(N * nx, nx).T)
            G = CFu @ CFu.T  # Σ_i (C_i ∂_u F_i)ᵀ (C_i ∂_u F_i)
            blocks.append((G + G.T) / (2 * N))
            CFx = CFx.T.reshape(N, nx, nx)  # [i, a, :] = row a of C_i ∂_x F_i
            Qxx = curvature(x[k].T, u[k][:, None], Y, h)[0].T.reshape(N, nx, nx)
            Cq = _psd_factor(Qxx) if np.all(np.isfinite(Qxx)) else Qxx  # else P is not finite: the next test says so
            P = np.matmul(Cq.transpose(0, 2, 1), Cq) + np.matmul(CFx.transpose(0, 2, 1), CFx)
        blocks.reverse()
        largest = max(float(np.max(np.diagonal(G))) for G in blocks)
        shift = 2 * self.problem.l2 * h + 1e-10 * largest
        if not (np.isfinite(largest) and shift > 0):
            self.gauss_newton_method = f"none: the Gauss-Newton blocks are {'zero' if largest == 0 else 'not finite'}"
            return None
        return BlockDiagonal([G + shift * np.eye(nu) for G in blocks])

    def _trajectory(self, u: np.ndarray, p: np.ndarray):
        """States (steps+1, N, nx) and running costs (steps, N) of controls ``u``."""
        X, Q = self._forward(self._x0.T, u.T, np.tile(self._data(p), self.steps), p[0])
        X = X.reshape(self.nx, self.N, self.steps, order="F").transpose(2, 1, 0)
        x = np.concatenate([self._x0[None], X])
        return x, Q.reshape(self.steps, self.N)

    def _first_order(self, u: np.ndarray, p: np.ndarray) -> dict:
        """Trajectory, stage Jacobians, adjoint (unscaled, per sample) and ``∇_u J`` at controls ``u``.

        Kept for the last ``(u, p)``: IPOPT asks for the Hessian at the point of the last gradient.
        """
        key = (u.tobytes(), p.tobytes())
        if self._cache_key == key:
            return self._cache
        nx, nu, N, n = self.nx, self.nu, self.N, self.steps
        x, q = self._trajectory(u, p)
        Y = self._data(p)
        M = n * N
        xs = x[:-1].reshape(M, nx).T  # stage-major, sample-minor
        us = np.repeat(u, N, axis=0).T
        A, B, qx, qu = self.samples.mapped("first", M)(xs, us, np.tile(Y, n), p[0])
        A = A.T.reshape(n, N, nx, nx).transpose(0, 1, 3, 2)  # column-major vec -> A[k, i, row, col]
        B = B.T.reshape(n, N, nu, nx).transpose(0, 1, 3, 2)
        qx, qu = qx.T.reshape(n, N, nx), qu.T.reshape(n, N, nu)
        phi, phi_x, phi_xx = self.samples.mapped("terminal", N)(x[-1].T, Y)
        lam = np.empty((n + 1, N, nx))
        lam[n] = phi_x.T
        for k in range(n - 1, -1, -1):
            lam[k] = qx[k] + np.einsum("iab,ia->ib", A[k], lam[k + 1])
        BT_lam = np.einsum("kiab,kia->kb", B, lam[1:], optimize=True)  # Σ_i B_{i,k}ᵀ p_{i,k+1}
        grad = (qu.sum(axis=1) + BT_lam) / N  # of the ensemble terms only
        self._cache_key = key
        self._cache = {"x": x, "A": A, "B": B, "p": lam, "grad": grad, "phi_xx": phi_xx.T.reshape(N, nx, nx),
                       "running": q.sum() / N, "terminal": phi.mean(), "J": q.sum() / N + phi.mean()}
        return self._cache

    def ensemble_cost(self, u: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
        """The ensemble terms ``(1/N) Σ_i (Σ_k q_{i,k} + φ_i)`` of J and their gradient in ``u`` (steps, nu),
        without the control costs.

        One compiled call (:func:`~turnpike.compiled.ensemble_gradient`: forward, then the adjoint,
        sample by sample) when available; else :meth:`_first_order` (dense second-order mode) or
        :attr:`objective`.
        """
        if self._gradient is None and self.second_order == "dense":
            d = self._first_order(u, p)
            return d["J"], d["grad"]
        if self._gradient is None:
            return self.objective.value_and_gradient(u, self._data(p).T, p[0])
        return self._gradient(self._x0, u, p[1:].reshape(self.N, self.problem.ny), p[0])

    def hessian(self, w: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The exact reduced Hessian in the NLP variables ``w`` (steps, n_v): ``∇²_u J`` (:meth:`control_hessian`)
        mapped by the L1 split ``u = E V``, ``E = (I, -I)`` (``Eᵀ ∇²_u J E``) and by the ties of the constant
        controls (each copy's row and column the mean of the column's, plus ``h (I - 11ᵀ/steps)`` on its copies).

        Without split and constant controls only the upper triangle is filled; else the whole matrix.
        """
        n, nu, n_v = self.steps, self.nu, self.n_v
        H = self.control_hessian(self.controls(w), p)
        if not (self.split or self._constant.size):
            return H
        H = np.triu(H) + np.triu(H, 1).T
        if self.split:
            sign = np.array([1.0, -1.0])
            H = (H.reshape(n, 1, nu, n, 1, nu) * sign[None, :, None, None, None, None] * sign[:, None]).reshape(
                n * n_v, n * n_v)
        if self._constant.size:
            H4, c = H.reshape(n, n_v, n, n_v), self._constant
            H4[:, :, :, c] = H4[:, :, :, c].mean(axis=2, keepdims=True)
            H4[:, c, :, :] = H4[:, c, :, :].mean(axis=0, keepdims=True)
            for a in c:
                H4[:, a, :, a] += p[0] * (np.eye(n) - 1.0 / n)
        return H

    def control_hessian(self, u: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The exact reduced Hessian ``∇²_u J`` (steps·nu, steps·nu), condensed sample by sample.

        Only the diagonal blocks and the blocks above them are filled (the matrix is symmetric).
        """
        nx, nu, N, n = self.nx, self.nu, self.N, self.steps
        d = self._first_order(u, p)
        A, B, lam = d["A"], d["B"], d["p"]
        M = n * N
        xs = d["x"][:-1].reshape(M, nx).T
        us = np.repeat(u, N, axis=0).T
        # R summed over the samples of each stage: (nu², steps)
        Q, S, R = self.samples.mapped("second", M, N)(xs, us, np.tile(self._data(p), n), p[0], 1.0,
                                                     lam[1:].reshape(M, nx).T)
        Q = Q.T.reshape(n, N, nx, nx)  # symmetric: the vec order does not matter
        S = S.T.reshape(n, N, nx, nu).transpose(0, 1, 3, 2)  # S[k, i] = ∇²_{ux} ℓ, (nu, nx)
        R = R.T.reshape(n, nu, nu)
        At = A.transpose(0, 1, 3, 2)
        P_next = np.empty((n, N, nx, nx))  # P_{k+1}, by the backward recursion
        P_next[n - 1] = d["phi_xx"]
        for k in range(n - 1, 0, -1):
            P_next[k - 1] = Q[k] + At[k] @ P_next[k] @ A[k]
        PB = P_next @ B
        G = At @ PB + S.transpose(0, 1, 3, 2)  # (n, N, nx, nu)
        stacked = (n, N * nx, nu)  # Σ_i B_iᵀ P_i B_i as one product per stage
        diagonal = (R + B.reshape(stacked).transpose(0, 2, 1) @ PB.reshape(stacked)) / N
        H = np.zeros((n * nu, n * nu))
        for k in range(n):
            H[k * nu:(k + 1) * nu, k * nu:(k + 1) * nu] = diagonal[k]
        self._off_diagonal_blocks(H, A, B, G)
        H[np.diag_indices(n * nu)] += 2 * self.problem.l2 * p[0]
        return H

    def _off_diagonal_blocks(self, H: np.ndarray, A: np.ndarray, B: np.ndarray, G: np.ndarray) -> None:
        """Fill ``H_{jl} = (1/N) Σ_i (D_{i,l})_jᵀ G_{i,l}`` (j < l) in place, a block of stages at a time.

        Stages are taken in blocks ``[l0, l1)`` of about :attr:`hessian_block_columns` / nu stages.
        With ``Φ_i(l, l0) = A_{i,l-1} ⋯ A_{i,l0}``, ``(D_{i,l})_j = Φ_i(l, l0) (D_{i,l0})_j`` for
        ``j < l0``, so the rows before the block are one matrix product with inner dimension N nx,

        .. math::  H_{j,l} = \\frac1N \\sum_i (D_{i,l0})_jᵀ\\, Φ_i(l, l0)ᵀ G_{i,l},

        and ``D`` is advanced once per block (``D_{i,l1} = (Φ_i(l1, l0) D_{i,l0}, E_{i,l1})``) instead of
        once per stage. ``E_{i,l} = ∂x_{i,l}/∂(u_{l0}, …, u_{l-1})`` gives the entries inside the block.
        The products of A are over one block only: no inverse, no long products.
        """
        n, N, nx, nu = self.steps, self.N, self.nx, self.nu
        width = max(1, self.hessian_block_columns // nu)
        D, D_next = np.zeros((N, nx, n * nu)), np.zeros((N, nx, n * nu))  # D_{i,l0}, columns j < l0
        for l0 in range(0, n, width):
            l1 = min(l0 + width, n)
            Phi = np.broadcast_to(np.eye(nx), (N, nx, nx))
            R = np.empty((N, nx, l1 - l0, nu))  # Φ_i(l, l0)ᵀ G_{i,l}
            E = np.zeros((N, nx, (l1 - l0) * nu))
            for m, l in enumerate(range(l0, l1)):
                R[:, :, m] = Phi.transpose(0, 2, 1) @ G[l]
                if m:
                    inside = E[:, :, : m * nu].reshape(N * nx, m * nu)
                    H[l0 * nu:l * nu, l * nu:(l + 1) * nu] = inside.T @ G[l].reshape(N * nx, nu) / N
                E[:, :, : m * nu] = A[l] @ E[:, :, : m * nu]
                E[:, :, m * nu:(m + 1) * nu] = B[l]
                Phi = A[l] @ Phi
            if l0:
                before = D[:, :, : l0 * nu].reshape(N * nx, l0 * nu)  # a strided view: BLAS reads it in place
                H[: l0 * nu, l0 * nu:l1 * nu] = before.T @ R.reshape(N * nx, (l1 - l0) * nu) / N
                np.matmul(Phi, D[:, :, : l0 * nu], out=D_next[:, :, : l0 * nu])
                D, D_next = D_next, D
            D[:, :, l0 * nu:l1 * nu] = E

    def derivatives(self) -> dict[str, ca.Function]:
        """IPOPT's ``grad_f`` and, in the dense second-order mode, ``hess_lag`` for :attr:`nlp` (numpy,
        through CasADi callbacks); with the compiled gradient also ``f``, the objective's values (which
        :func:`~turnpike.solvers.built_solver` puts in the NLP in place of its symbolic ``f``).

        With the L1 split ``u = u⁺ - u⁻`` the derivatives in ``V = (u⁺, u⁻)`` are those in u
        mapped by ``E = (I, -I)``: ``∇_V J = Eᵀ ∇_u J + λ1 h``, ``∇²_V J = Eᵀ ∇²_u J E``; the copies of constant
        controls are mapped likewise (see :meth:`stage_controls` and :meth:`hessian`).
        """
        if self._derivatives is not None:
            return self._derivatives
        n, n_w = self.steps, self.n_v * self.steps
        n_p, n_g = 1 + self.problem.ny * self.N, self.nlp["g"].numel()
        dense = ca.Sparsity.dense

        def grad_f(w, p):
            J, g = self._value_and_gradient(w.reshape(-1), p.reshape(-1))
            return [J, g]

        self._derivatives = {"grad_f": NumpyFunction("grad_f", grad_f, ["x", "p"], [dense(n_w), dense(n_p)],
                                                     ["f", "grad_f_x"], [dense(1), dense(n_w)])}
        if self._gradient is not None:
            # f by the compiled gradient's call too (kept for grad_f at the same point): CasADi's evaluation of
            # the NLP's f (its map of the compiled stage, one call per sample and stage) took 0.43 s at the
            # width-50 chessboard workload (N = 2397), this call 0.036 s with the gradient.
            self._derivatives["f"] = NumpyFunction("f", lambda w, p: grad_f(w, p)[:1], ["x", "p"],
                                                   [dense(n_w), dense(n_p)], ["f"], [dense(1)],
                                                   gradient=self._derivatives["grad_f"])
        if self.second_order != "dense":  # IPOPT then runs with a limited-memory Hessian (turnpike.solve)
            return self._derivatives
        cols, rows = np.tril_indices(n_w)  # the upper triangle, column by column

        def hess_lag(w, p, lam_f, lam_g):
            H = self.hessian(w.reshape(n, self.n_v), p.reshape(-1))
            return [lam_f[0] * H[rows, cols]]

        self._derivatives["hess_lag"] = NumpyFunction(
            "hess_lag", hess_lag, ["x", "p", "lam_f", "lam_g"], [dense(n_w), dense(n_p), dense(1), dense(n_g)],
            ["hess_gamma_x_x"], [ca.Sparsity.upper(n_w)])
        return self._derivatives

    def _control_cost(self, w: np.ndarray, p: np.ndarray) -> float:
        """``h (λ2 |u|² + λ1 Σ V)`` summed over the stages, V tied, plus the spread of the constant controls'
        copies ``(h/2) Σ (V_{k,a} - θ_a)²``."""
        P, copies = self.problem, np.asarray(w, dtype=float).reshape(self.steps, self.n_v)
        V = self._tie(copies)
        spread = np.sum((copies - V)[:, self._constant] ** 2) / 2
        return float(p[0] * (P.l2 * np.sum(self.stage_controls(V) ** 2) + (P.l1 * V.sum() if self.split else 0.0)
                             + spread))

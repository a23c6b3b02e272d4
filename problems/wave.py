"""Distributed control of the 1-D wave equation observed in position, semi-discretised by finite differences."""

from __future__ import annotations

import casadi as ca
import numpy as np

import turnpike as tp
from turnpike.errors import check_choice, check_positive

from .heat import check_nodes, largest_eigenvalue, mesh, profile, second_difference


def first_mode(x):
    """``sin(πx)``: the first Dirichlet eigenfunction, which is also an exact eigenvector of the second difference."""
    return np.sin(np.pi * np.asarray(x, dtype=float))


class Wave(tp.Problem):
    """Wave equation ``y_tt = y_xx + u`` on (0, 1), Dirichlet, observed in position: cost ``∫ ‖y - y_d‖² + β‖u‖² dt``.

    The PDE as a first-order system in ``(y, v) = (y, y_t)``: ``y_t = v``, ``v_t = y_xx + u`` with
    ``y(t, 0) = y(t, 1) = 0``, the control ``u(t, ·) ∈ L²(0, 1)`` acting everywhere, ``(y, v)(0) = (initial,
    velocity)``; cost ``∫_0^T (‖y(t) - y_d‖²_{L²} + β‖u(t)‖²_{L²}) dt``, the velocity unobserved, no terminal cost.

    Semi-discretisation (method of lines): M interior nodes ``x_j = jΔx``, ``Δx = 1/(M + 1)``, the state
    ``(y_1..y_M, v_1..v_M)``, ``dy/dt = v``, ``dv/dt = A y + u`` with A the Dirichlet second difference
    (:func:`~problems.heat.second_difference`), one control per node. Norms mesh-weighted, ``‖y‖²_h = Δx Σ_j y_j²``:
    running cost ``L = ‖y - y_d‖²_h + β‖u‖²_h``. In the notation of docs/mathematics.md §2 this is
    ``B = [0; I]``, ``C = [I 0]``, ``R = βI`` (the common factor Δx does not change the Hamiltonian's spectrum).

    Turnpike rate (docs/mathematics.md §4): A's eigenvectors (discrete sines, eigenvalues ``-λ_k``,
    ``λ_k = (4/Δx²) sin²(kπΔx/2)``) decouple the optimality system into one 4×4 Hamiltonian per mode, whose
    eigenvalues solve
    ``(s² + λ_k)² = -1/β``: ``s = ±√(-λ_k ± i/√β)``. Mode k therefore approaches the turnpike at the rate
    ``r_k = Re √(-λ_k + i/√β) = √((√(λ_k² + 1/β) - λ_k)/2)`` (:meth:`mode_rates`), which decreases in λ_k; the
    spectral gap is the rate of the highest mode, ``μ_h = r_M ≈ 1/(2√(βλ_M)) = Δx/(4√β cos(πΔx/2))``: it closes
    like ``Δx/(4√β)`` under mesh refinement (``Δx/4`` for β = 1: 0.0230, 0.0119, 0.0061, 0.0031 for M = 10, 20,
    40, 80). The PDE itself has no gap (``r_k → 0`` as ``k → ∞``): the turnpike rate of a solution depends on
    the modes its data excite. With the defaults, target 0 and data in the first mode (:func:`first_mode`, an
    exact eigenvector), the optimum stays in that mode and approaches the turnpike at
    ``r_1 → Re √(-π² + i/√β)`` (0.1589 for β = 1).

    Time steps: the eigenvalues of the state matrix are ``±i√λ_k``. Explicit Euler and the midpoint rule
    amplify every oscillation (``|R(iy)| > 1``); RK4 is stable for ``h√λ_M <= 2√2`` (:meth:`max_step`) and
    damps mode k by ``-ln|R(ih√λ_k)|/h`` per unit time (:meth:`rk4_damping`), so the discrete problem keeps
    the semi-discrete rates of the modes it carries only where that damping is far below them.

    Arguments:
        nodes: M >= 2, the interior nodes.
        control_weight: β > 0, default 1.
        target: ``y_d``, a number (constant) or a callable of x (vectorised), default 0.
        initial, velocity: ``y(0, ·)`` and ``y_t(0, ·)``, numbers or callables of x; default ``sin(πx)`` and 0.

    Attributes:
        x, dx: the nodes (M,) and Δx; target: ``y_d`` at the nodes.
    """

    def __init__(self, nodes: int = 20, control_weight: float = 1.0, target=0.0, initial=first_mode,
                 velocity=0.0, name: str = "wave"):
        self.nodes = check_nodes(nodes)
        self.control_weight = check_positive("control_weight", control_weight)
        self.x, self.dx = mesh(self.nodes)
        self.target = profile("target", target, self.x)
        M, dx = self.nodes, self.dx
        z = ca.SX.sym("z", 2 * M)
        y, v = z[:M], z[M:]
        u = ca.SX.sym("u", M)
        super().__init__(
            state=z,
            control=u,
            dynamics=ca.vertcat(v, second_difference(y, dx) + u),
            running_cost=dx * (ca.sumsqr(y - self.target) + self.control_weight * ca.sumsqr(u)),
            x0=np.concatenate([profile("initial", initial, self.x), profile("velocity", velocity, self.x)]),
            name=name,
            state_names=[f"y({xj:.3g})" for xj in self.x] + [f"y_t({xj:.3g})" for xj in self.x],
            control_names=[f"u({xj:.3g})" for xj in self.x],
        )

    @classmethod
    def example(cls, nodes: int = 20, control_weight: float = 1.0, target=0.0, initial=first_mode,
                velocity=0.0) -> Wave:
        """The wave problem with these parameters; called with none, the default of the class docstring: 20 nodes,
        β = 1, steering ``y(0) = sin(πx)`` at rest towards ``y_d = 0``: gap 0.01194, first-mode rate 0.1589, RK4
        stable for ``h <= 0.0675``. The catalogue entry ``wave`` passes its parameters here."""
        return cls(nodes=nodes, control_weight=control_weight, target=target, initial=initial, velocity=velocity)

    def eigenvalues(self) -> np.ndarray:
        """``λ_k = (4/Δx²) sin²(kπΔx/2)``, k = 1..M: minus the eigenvalues of the Dirichlet second difference."""
        return 4.0 / self.dx**2 * np.sin(np.arange(1, self.nodes + 1) * np.pi * self.dx / 2) ** 2

    def mode_rates(self) -> np.ndarray:
        """``r_k = √((√(λ_k² + 1/β) - λ_k)/2)`` for k = 1..M (decreasing): the turnpike rate of mode k; the last is
        the spectral gap."""
        lam = self.eigenvalues()
        return np.sqrt((np.hypot(lam, 1.0 / np.sqrt(self.control_weight)) - lam) / 2)

    def max_step(self, method: str = "rk4") -> float:
        """The largest interval length for which ``method`` is stable on the undamped oscillations ``±i√λ_k``:
        ``2√2/√λ_M`` for RK4 (``|R(iy)|² = 1 - y⁶/72 + y⁸/576 <= 1`` iff ``y² <= 8``); 0 for Euler and the midpoint
        rule, which amplify every oscillation."""
        check_choice("method", method, ("euler", "midpoint", "rk4"))
        return 2.0 * np.sqrt(2.0 / largest_eigenvalue(self.nodes)) if method == "rk4" else 0.0

    def rk4_damping(self, h: float) -> np.ndarray:
        """``-ln|R(ih√λ_k)|/h`` for k = 1..M: the decay per unit time that RK4 steps of length ``h`` add to mode k
        of the uncontrolled string (``≈ (h√λ_k)⁶/(144h)``, negative past :meth:`max_step`). Compare it with
        :meth:`mode_rates`."""
        h = check_positive("h", h)
        y2 = h**2 * self.eigenvalues()
        return -0.5 * np.log1p(y2**4 / 576 - y2**3 / 72) / h

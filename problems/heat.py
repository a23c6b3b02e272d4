"""Interior or boundary control of the 1-D heat equation, semi-discretised by finite differences."""

from __future__ import annotations

import casadi as ca
import numpy as np

import turnpike as tp
from turnpike.errors import InputError, check_choice, check_finite, check_positive

#: ``|1 + z + z²/2 + z³/6 + z⁴/24| <= 1`` on the negative real axis exactly for ``z >= -RK4_REAL_BOUND``: the
#: real root of ``z³ + 4z² + 12z + 24 = 0`` (the other root of ``R(z) = 1`` besides ``z = 0``).
RK4_REAL_BOUND = 2.785293563405282

#: A cell meeting the control region in less than this share of its width carries no control (its weight
#: ``χ_j`` would make the control's Hessian singular); the region loses at most ``2·1e-6·Δx`` of its length.
MIN_CELL_SHARE = 1e-6


def check_nodes(nodes) -> int:
    """``nodes`` as an int >= 2 (the second difference needs two interior nodes), or an :class:`InputError`."""
    if isinstance(nodes, bool) or not isinstance(nodes, (int, np.integer)) or nodes < 2:
        raise InputError(f"nodes must be an integer >= 2, got {nodes!r}")
    return int(nodes)


def mesh(nodes: int) -> tuple[np.ndarray, float]:
    """The interior nodes ``x_j = jΔx`` (j = 1..M) of the uniform mesh of (0, 1) and ``Δx = 1/(M + 1)``."""
    dx = 1.0 / (nodes + 1)
    return dx * np.arange(1, nodes + 1), dx


def second_difference(y, dx: float, left=0.0, right=0.0):
    """``(y_{j-1} - 2y_j + y_{j+1})/Δx²`` on the interior nodes, with the boundary values ``y_0 = left`` and
    ``y_{M+1} = right`` (CasADi column ``y``): the Dirichlet Laplacian, ``O(Δx²)`` accurate."""
    return (ca.vertcat(left, y[:-1]) - 2 * y + ca.vertcat(y[1:], right)) / dx**2


def largest_eigenvalue(nodes: int) -> float:
    """``λ_M = (4/Δx²) cos²(πΔx/2)``: the largest eigenvalue of minus the Dirichlet second difference on M nodes
    (its eigenvalues are ``λ_k = (4/Δx²) sin²(kπΔx/2)``, k = 1..M)."""
    _, dx = mesh(nodes)
    return 4.0 / dx**2 * np.cos(np.pi * dx / 2) ** 2


def profile(name: str, value, x: np.ndarray) -> np.ndarray:
    """A function of x at the nodes ``x``: a number (a constant) or a callable ``g(x)`` returning an array shaped
    like ``x``; an :class:`InputError` naming ``name`` otherwise."""
    if callable(value):
        try:
            values = np.broadcast_to(np.asarray(value(x), dtype=float), x.shape)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} must map the nodes (an array of shape {x.shape}) to an array of that shape, "
                             f"got {value!r} ({exc})") from exc
        return check_finite(name, values)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InputError(f"{name} must be a number or a callable of x, got {value!r}")
    return np.full(x.shape, float(check_finite(name, value, shape=())))


def _region(region, control: str) -> tuple[float, float] | None:
    if control == "boundary":
        if region is not None:
            raise InputError(f"region applies to control='interior' only, got region={region!r} with "
                             "control='boundary'")
        return None
    if region is None:
        return (0.25, 0.75)
    a, b = check_finite("region", region, shape=(2,))
    if not 0.0 <= a < b <= 1.0:
        raise InputError(f"region must be an interval (a, b) with 0 <= a < b <= 1, got {region!r}")
    return float(a), float(b)


class Heat(tp.Problem):
    """Heat equation ``y_t = y_xx + (control)`` on (0, 1) with Dirichlet conditions, cost ``∫ ‖y - y_d‖² + β‖u‖² dt``.

    The PDE (``control``):

    * ``"interior"``: ``y_t = y_xx + χ_ω u`` with ``y(t, 0) = y(t, 1) = 0`` and ``u(t, ·) ∈ L²(ω)``, ``ω = region``;
    * ``"boundary"``: ``y_t = y_xx`` with ``y(t, 0) = u(t)`` (Dirichlet control at the left end), ``y(t, 1) = 0``;

    ``y(0, ·) = initial``, cost ``∫_0^T (‖y(t) - y_d‖²_{L²(0,1)} + β‖u(t)‖²) dt`` with ``‖u‖`` the ``L²(ω)`` norm
    (interior) or ``|u|`` (boundary), and no terminal cost. The target ``y_d`` does not depend on t.

    Semi-discretisation (method of lines): M interior nodes ``x_j = jΔx``, ``Δx = 1/(M + 1)``, state
    ``y_j(t) ≈ y(t, x_j)``, second differences :func:`second_difference` (``y_0 = 0`` or ``u``, ``y_{M+1} = 0``).
    Interior control: u is piecewise constant on the cells ``C_j = (x_j - Δx/2, x_j + Δx/2)``, one component per
    cell that meets ω (in more than :data:`MIN_CELL_SHARE` of its width), and node j receives the cell average
    ``χ_j u_j`` with ``χ_j = |C_j ∩ ω|/Δx``: ``dy/dt = A y + diag(χ) u``. Boundary control: ``dy/dt = A y + e_1 u/Δx²``.

    Norms: mesh-weighted, ``‖y‖²_h = Δx Σ_j y_j²`` (the Riemann sum of ``∫_0^1 y²`` on the interior nodes) and
    ``‖u‖²_h = Δx Σ_j χ_j u_j²`` (exactly ``∫_ω u²`` for the piecewise-constant u); running cost
    ``L = ‖y - y_d‖²_h + β‖u‖²_h`` (interior) or ``‖y - y_d‖²_h + βu²`` (boundary). With these weights the
    discrete problem, its static optimum and its Hamiltonian converge with the mesh.

    Turnpike rate: the problem is linear-quadratic, and with the costate scaled by the mesh weight,
    ``p = 2Δx q``, its Hamiltonian matrix is ``H = [[A, -G/β], [-I, -A]]`` with ``G = diag(χ)`` (interior) or
    ``G = e_1 e_1ᵀ/Δx³`` (boundary: the optimal ``u = -q_1/(βΔx)`` is ``-1/β`` times the difference quotient
    ``(q_1 - q_0)/Δx``, ``q_0 = 0``, the discrete ``∂_x q(0)``). The rate is its spectral gap ``min |Re λ|``
    (docs/mathematics.md §2, §4), which :func:`turnpike.analysis.predicted_rate` computes from the linearisation.
    For ``region = (0, 1)`` the gap is ``√(λ_1² + 1/β)``, ``λ_1 = (4/Δx²) sin²(πΔx/2)``, converging like ``Δx²``
    to ``√(π⁴ + 1/β)``.
    Measured (β = 1e-2, M = 10, 20, 40, 80, 160): interior on (0.25, 0.75) 13.3133, 13.3638, 13.3780, 13.3818,
    13.3828 (successive differences falling by 3.6 to 3.9 per halving of Δx: second order); boundary 16.404,
    15.792, 15.466, 15.297, 15.212 (differences halving: first order).

    Stiffness: the eigenvalues of A lie in ``[-λ_M, -λ_1]``, ``λ_M ≈ 4/Δx²`` (:func:`largest_eigenvalue`), so the
    explicit steps of the transcription need ``h <=`` :meth:`max_step` (``2.785/λ_M`` for RK4): ``h ∝ Δx²``.

    Arguments:
        nodes: M >= 2, the interior nodes.
        control: ``"interior"`` (default) or ``"boundary"``.
        region: ω = (a, b) with ``0 <= a < b <= 1`` for interior control, default (0.25, 0.75); not with boundary.
        control_weight: β > 0, default 1e-2.
        target: ``y_d``, a number (constant) or a callable of x (vectorised), default 1.
        initial: ``y(0, ·)``, a number or a callable of x, default 0.

    Attributes:
        x, dx: the nodes (M,) and Δx; target: ``y_d`` at the nodes; region: ω (None for boundary control).
        cells, weights: the nodes whose cells carry a control component, in the order of u, and their ``χ_j``
            (empty for boundary control).
    """

    def __init__(self, nodes: int = 20, control: str = "interior", region=None, control_weight: float = 1e-2,
                 target=1.0, initial=0.0, name: str = "heat"):
        self.nodes = check_nodes(nodes)
        self.control = check_choice("control", control, ("interior", "boundary"))
        self.region = _region(region, self.control)
        self.control_weight = check_positive("control_weight", control_weight)
        self.x, self.dx = mesh(self.nodes)
        self.target = profile("target", target, self.x)
        dx, beta = self.dx, self.control_weight
        y = ca.SX.sym("y", self.nodes)
        if self.control == "interior":
            a, b = self.region
            share = np.clip(np.minimum(self.x + dx / 2, b) - np.maximum(self.x - dx / 2, a), 0.0, dx) / dx
            self.cells = np.flatnonzero(share > MIN_CELL_SHARE)
            self.weights = share[self.cells]
            u = ca.SX.sym("u", self.cells.size)
            load = ca.SX.zeros(self.nodes)
            load[self.cells.tolist()] = self.weights * u
            dynamics = second_difference(y, dx) + load
            control_cost = beta * dx * ca.dot(self.weights * u, u)
            names = [f"u({self.x[j]:.3g})" for j in self.cells]
        else:
            self.cells, self.weights = np.zeros(0, dtype=int), np.zeros(0)
            u = ca.SX.sym("u")
            dynamics = second_difference(y, dx, left=u)
            control_cost = beta * u**2
            names = ["y(t, 0)"]
        super().__init__(
            state=y,
            control=u,
            dynamics=dynamics,
            running_cost=dx * ca.sumsqr(y - self.target) + control_cost,
            x0=profile("initial", initial, self.x),
            name=name,
            state_names=[f"y({xj:.3g})" for xj in self.x],
            control_names=names,
        )

    @classmethod
    def example(cls, nodes: int = 20, control: str = "interior", region=None, control_weight: float = 1e-2,
                target=1.0, initial=0.0) -> Heat:
        """The heat problem with these parameters; called with none, the default of the class docstring: 20 nodes,
        interior control on (0.25, 0.75), β = 1e-2, tracking ``y_d = 1`` from ``y = 0``, gap 13.364 (RK4 stable
        for ``h <= 1.59e-3``). The catalogue entry ``heat`` passes its parameters here."""
        return cls(nodes=nodes, control=control, region=region, control_weight=control_weight, target=target,
                   initial=initial)

    def max_step(self, method: str = "rk4") -> float:
        """The largest interval length for which the explicit ``method`` is stable on ``dy/dt = A y``: the step
        maps each mode by ``R(-hλ_k)`` with ``R`` the method's polynomial, and ``|R(z)| <= 1`` on the negative
        real axis for ``z >= -2`` (Euler, midpoint) or ``z >= -2.785`` (RK4, :data:`RK4_REAL_BOUND`); so
        ``h <= 2/λ_M`` or ``2.785/λ_M``."""
        bound = {"euler": 2.0, "midpoint": 2.0, "rk4": RK4_REAL_BOUND}
        check_choice("method", method, tuple(bound))
        return bound[method] / largest_eigenvalue(self.nodes)

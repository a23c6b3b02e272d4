"""Boundary control of the transport equation, semi-discretised by upwind finite differences."""

from __future__ import annotations

import casadi as ca
import numpy as np

import turnpike as tp
from turnpike.errors import check_positive


class Transport(tp.Problem):
    """Transport ``y_t + y_x = 0`` on (0, 1) with boundary control ``y(t, 0) = u(t)``, cost ``∫u² + ∫∫(y - 1)²``.

    Semi-discretisation (method of lines): ``cells`` upwind cells of width ``Δx = 1/cells``,
    ``dy_j/dt = -(y_j - y_{j-1})/Δx`` with ``y_0 = u``; running cost ``u² + Δx Σ_j (y_j - 1)²``
    (the midpoint-free Riemann sum of ``∫_0^1 (y-1)² dx``); ``y(0, ·) = initial``.

    The static optimum is ``ū = ȳ = ½`` (``f = 0`` forces ``y_j = u``, then ``min u² + (u-1)²``), for
    every mesh. For the PDE the optimal control is known exactly (Geshkovski & Zuazua, Acta
    Numerica 2022, docs/mathematics.md §2): ``u = ½`` on ``(0, T-1)`` and ``u = (T-t)/(1+T-t)`` on
    ``(T-1, T)``, from minimising ``u(s)² + ℓ(s)(u(s) - 1)²`` over the length ``ℓ(s) = min(1, T-s)`` of
    the characteristic that ``u(s)`` feeds (:meth:`exact_control`). The turnpike is *exact* and
    reached in finite time: an exponential rate fitted to it says nothing about the PDE.

    Explicit integrators need a CFL condition on the interval length: ``h <= Δx`` for Euler and
    ``h <= 1.39 Δx`` for RK4 (the upwind eigenvalues fill the circle ``|hλ + h/Δx| = h/Δx``);
    beyond it the discrete dynamics are unstable and the NLP is meaningless.
    """

    def __init__(self, cells: int = 20, initial: float = 0.0, name: str = "transport"):
        self.cells = check_positive("cells", cells, integer=True)
        dx = 1.0 / self.cells
        y = ca.SX.sym("y", self.cells)
        u = ca.SX.sym("u")
        upstream = ca.vertcat(u, y[:-1])
        super().__init__(
            state=y,
            control=u,
            dynamics=-(y - upstream) / dx,
            running_cost=u**2 + dx * ca.sumsqr(y - 1),
            x0=np.full(self.cells, float(initial)),
            name=name,
            state_names=[f"y({(j + 1) * dx:.2g})" for j in range(self.cells)],
            control_names=["boundary control"],
        )

    @classmethod
    def example(cls, cells: int = 20, initial: float = 0.0) -> Transport:
        """20 cells, starting from ``y = 0`` (stable with RK4 for ``dt <= 1.39/cells``: 0.069 here); the
        catalogue entry ``transport`` passes its parameters here, so ``cells`` and ``initial`` can be swept."""
        return cls(cells=cells, initial=initial)

    @staticmethod
    def exact_control(t, T: float) -> np.ndarray:
        """The PDE's optimal control at times ``t``: ``½`` before ``T - 1``, ``(T-t)/(1+T-t)`` after."""
        s = np.minimum(1.0, T - np.asarray(t, dtype=float))
        return s / (1.0 + s)

"""A damped pendulum held at an angle: a nonlinear problem whose static optimum is known."""

from __future__ import annotations

import casadi as ca
import numpy as np
from scipy.optimize import brentq

import turnpike as tp
from turnpike.errors import check_finite, check_positive


class Pendulum(tp.Problem):
    """Damped pendulum held at an angle: ``dθ/dt = ω``, ``dω/dt = -sin θ - cω + u``, cost ``½((θ-θ_d)² + ω² + ru²)``.

    Holding the pendulum at ``θ_d`` costs torque ``u = sin θ``, so the static problem
    ``min ½((θ - θ_d)² + r sin²θ)`` (``ω = 0``, ``u = sin θ``) settles for an angle between 0 and
    ``θ_d``: the root of ``θ - θ_d + r sin θ cos θ = 0`` (:meth:`static_optimum`).

    The defaults (the catalogue's instance, :meth:`example`): ``θ_d = 1``, ``c = 0.5``, ``r = 1``,
    starting at rest at the bottom, ``(θ, ω)(0) = (0, 0)``.
    """

    def __init__(self, target_angle: float = 1.0, damping: float = 0.5, control_weight: float = 1.0,
                 x0=(0.0, 0.0), name: str = "pendulum"):
        self.target_angle = float(check_finite("target_angle", target_angle, shape=()))
        self.damping = float(check_finite("damping", damping, shape=()))
        self.control_weight = check_positive("control_weight", control_weight)
        if not 0 < abs(self.target_angle) < np.pi / 2:
            raise tp.InputError(f"target_angle must lie in (-π/2, π/2) without 0, got {target_angle!r}")
        x = ca.SX.sym("x", 2)
        u = ca.SX.sym("u")
        theta, omega = x[0], x[1]
        super().__init__(
            state=x,
            control=u,
            dynamics=ca.vertcat(omega, -ca.sin(theta) - self.damping * omega + u),
            running_cost=0.5 * ((theta - self.target_angle) ** 2 + omega**2 + self.control_weight * u**2),
            x0=x0,
            name=name,
            state_names=["angle", "angular velocity"],
            control_names=["torque"],
        )

    @classmethod
    def example(cls, target_angle: float = 1.0, damping: float = 0.5, control_weight: float = 1.0,
                x0=(0.0, 0.0)) -> Pendulum:
        """The pendulum with these parameters; called with none, the default pendulum of the class docstring."""
        return cls(target_angle=target_angle, damping=damping, control_weight=control_weight, x0=x0)

    def static_optimum(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x̄, ū, p̄)`` from the scalar optimality condition, independently of any NLP solver.

        ``θ̄`` solves ``θ - θ_d + r sin θ cos θ = 0`` between 0 and ``θ_d`` (the derivative
        ``1 + r cos 2θ`` is positive there for r <= 1, so the root is unique); ``ū = sin θ̄``;
        the multiplier of ``f = 0`` for ``L + p̄ᵀ f`` is ``p̄ = (c p̄_ω, -r ū)`` from
        ``∇_u: r ū + p̄_ω = 0`` and ``∇_ω: ω̄ + p̄_θ - c p̄_ω = 0``.
        """
        th_d, r = self.target_angle, self.control_weight
        theta = brentq(lambda s: s - th_d + r * np.sin(s) * np.cos(s), 0.0, th_d, xtol=1e-15)
        u = np.sin(theta)
        p_omega = -r * u
        return np.array([theta, 0.0]), np.array([u]), np.array([self.damping * p_omega, p_omega])

"""Linear-quadratic tracking: the problem where every turnpike quantity is known exactly."""

from __future__ import annotations

import casadi as ca
import numpy as np

import turnpike as tp
from turnpike.errors import InputError, check_finite, check_positive


class LinearQuadratic(tp.Problem):
    """Linear-quadratic tracking: ``dy/dt = A y + B u``, cost ``½(|u - u_d|²_R + |C(y - y_d)|²)`` + ``½|y - y_T|²_S``.

    The static problem is ``min ½(|u - u_d|²_R + |C(y - y_d)|²)`` s.t. ``A y + B u = 0``.
    The turnpike rate is the spectral gap of the Hamiltonian matrix (:meth:`hamiltonian`),
    ``H = [[A, -B R⁻¹ Bᵀ], [-CᵀC, -Aᵀ]]``: its eigenvalues come in pairs ``±λ`` and the rate is
    ``μ = min |Re λ|`` (Trélat & Zuazua; Grüne & Guglielmi; docs/mathematics.md §2). There is no
    gap when a mode of ``A`` on the imaginary axis is undetectable through ``C`` or
    unstabilisable through ``B``.

    The catalogue's instance is :meth:`example`.

    Arguments:
        A: (n, n); B: (n, m); C: (p, n), default I; R: (m, m) symmetric positive definite, default I.
        target: ``y_d`` (n,), default 0; control_target: ``u_d`` (m,), default 0.
        x0: initial state (n,), or (N, n) for an ensemble of initial states sharing the control.
        terminal_weight: ``S`` (n, n) positive semidefinite, default 0; terminal_target: ``y_T``, default ``y_d``.
        control_lower, control_upper: optional bounds on u.
    """

    def __init__(
        self,
        A,
        B,
        C=None,
        R=None,
        target=None,
        control_target=None,
        x0=None,
        terminal_weight=None,
        terminal_target=None,
        control_lower=None,
        control_upper=None,
        name: str = "linear-quadratic",
    ):
        A = check_finite("A", A)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise InputError(f"A must be a square matrix, got shape {A.shape}")
        n = A.shape[0]
        B = check_finite("B", B)
        if B.ndim != 2 or B.shape[0] != n:
            raise InputError(f"B must have shape ({n}, m), got shape {B.shape}")
        m = B.shape[1]
        C = np.eye(n) if C is None else check_finite("C", C)
        if C.ndim != 2 or C.shape[1] != n:
            raise InputError(f"C must have shape (p, {n}), got shape {C.shape}")
        R = np.eye(m) if R is None else check_finite("R", R, shape=(m, m))
        if not np.allclose(R, R.T) or np.linalg.eigvalsh(R).min() <= 0:
            raise InputError(f"R must be symmetric positive definite, got {R!r}")
        y_d = np.zeros(n) if target is None else check_finite("target", target, shape=(n,))
        u_d = np.zeros(m) if control_target is None else check_finite("control_target", control_target, shape=(m,))
        S = (np.zeros((n, n)) if terminal_weight is None
             else check_finite("terminal_weight", terminal_weight, shape=(n, n)))
        y_T = y_d if terminal_target is None else check_finite("terminal_target", terminal_target, shape=(n,))
        x0 = np.zeros(n) if x0 is None else x0

        self.A, self.B, self.C, self.R = A, B, C, R
        self.target, self.control_target = y_d, u_d
        self.terminal_weight, self.terminal_target = S, y_T
        y = ca.SX.sym("y", n)
        u = ca.SX.sym("u", m)
        e, v = C @ (y - y_d), u - u_d
        super().__init__(
            state=y,
            control=u,
            dynamics=A @ y + B @ u,
            running_cost=0.5 * (ca.dot(v, R @ v) + ca.dot(e, e)),
            terminal_cost=0.5 * ca.dot(y - y_T, S @ (y - y_T)),
            x0=x0,
            control_lower=control_lower,
            control_upper=control_upper,
            name=name,
        )

    @classmethod
    def example(cls, target: float = 1.0, control_weight: float = 1.0, x0=(0.0, 0.0)) -> LinearQuadratic:
        """A harmonic oscillator ``A = [[0, 1], [-1, 0]]``, ``B = (0, 1)ᵀ``, ``C = I``, ``R = r``,
        tracking ``y_d = (target, 0)`` from ``y(0) = x0``, no terminal cost.

        ``r = control_weight > 0`` sets the turnpike rate (it does not depend on ``target`` or ``x0``):
        ``μ ≈ 0.676`` for ``r = 1`` (eigenvalues ``±0.676 ± 0.978i``), smaller for dearer control.
        """
        target = float(check_finite("target", target, shape=()))
        r = check_positive("control_weight", control_weight)
        return cls(A=[[0.0, 1.0], [-1.0, 0.0]], B=[[0.0], [1.0]], R=[[r]], target=[target, 0.0], x0=x0)

    def hamiltonian(self) -> np.ndarray:
        """The Hamiltonian matrix ``[[A, -B R⁻¹ Bᵀ], [-CᵀC, -Aᵀ]]`` (2n, 2n) of the optimality system."""
        A, B, C = self.A, self.B, self.C
        return np.block([[A, -B @ np.linalg.solve(self.R, B.T)], [-C.T @ C, -A.T]])

    def spectral_gap(self, tol: float = 1e-9) -> float | None:
        """``μ = min |Re λ|`` over the eigenvalues of :meth:`hamiltonian`, or None if some ``|Re λ| <= tol``.

        None means there is no gap (an eigenvalue on the imaginary axis): no exponential
        turnpike rate can be predicted.
        """
        re = np.abs(np.linalg.eigvals(self.hamiltonian()).real)
        gap = float(re.min())
        return None if gap <= tol * max(1.0, float(re.max())) else gap

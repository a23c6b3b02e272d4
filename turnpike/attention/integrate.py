"""Integrators for the attention systems: fixed-step RK4 with projection, and adaptive DOP853.

:func:`simulate` is the front door. ``method="rk4"``: classical RK4 with steps of at most ``dt``
(each output interval is split into equal steps), tokens projected back onto the sphere after every
step (error ``O(dt^4)`` per unit time; the projection does not change the order). ``method="adaptive"``:
``scipy.integrate.solve_ivp`` with DOP853 (order 8, local error controlled by ``rtol``/``atol``),
for long runs on log-spaced output times; ``method="stiff"``: BDF (orders 1-5; Jacobian in closed form
on the circle, :meth:`CircleAttention.jacobian`, else by finite differences on the block-diagonal
sparsity of independent prompts) for metastable phases, where the contraction inside clusters (rate
~1) is much faster than their drift (rate ~e^{-cβ}) and an explicit method would take steps of order 1
for an exponentially long time. The clock is t itself: a transition between plateaus (duration O(1))
after ``t ≈ 1e13`` is below float64's resolution of t, and BDF stops there with a
:class:`~turnpike.errors.SolverError`. In both adaptive methods the
field is evaluated at the projected state and the outputs are projected; the largest drift
``max | |x_i| - 1 |`` before projection is recorded in ``stats["sphere_drift"]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp

from ..errors import InputError, SolverError, check_choice, check_finite, check_positive
from .dynamics import CircleAttention

__all__ = ["Trajectory", "simulate", "METHODS"]

METHODS = ("rk4", "adaptive", "stiff")


@dataclass(frozen=True)
class Trajectory:
    """States of one (batched) run at the output times.

    ``t`` is physical time, ``clock`` the integration variable (``t = time_factor * clock``; equal
    unless a USA system is ``rescaled``); ``x`` has shape ``(len(t), *x0.shape)``.
    """

    t: np.ndarray
    clock: np.ndarray
    x: np.ndarray
    method: str
    stats: dict

    def at(self, time: float) -> np.ndarray:
        """The state at the output time nearest to ``time`` (physical)."""
        return self.x[int(np.argmin(np.abs(self.t - time)))]


def _times(t) -> np.ndarray:
    t = check_finite("t", t)
    if t.ndim != 1 or t.size < 2:
        raise InputError(f"t must be a 1-d array of at least 2 output times, got shape {t.shape}")
    if np.any(np.diff(t) <= 0):
        raise InputError("t must be strictly increasing")
    return t


def _rk4(system, x0, clock, dt, progress):
    f, proj = system.field, system.project
    xs = [x0]
    x = x0
    steps = 0
    start = time.perf_counter()
    for k in range(len(clock) - 1):
        a, b = clock[k], clock[k + 1]
        m = max(1, int(np.ceil((b - a) / dt - 1e-12)))
        h = (b - a) / m
        for j in range(m):
            s = a + j * h
            k1 = f(s, x)
            k2 = f(s + h / 2, x + (h / 2) * k1)
            k3 = f(s + h / 2, x + (h / 2) * k2)
            k4 = f(s + h, x + h * k3)
            x = proj(x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4))
        steps += m
        xs.append(x)
        if progress and time.perf_counter() - start > 5:
            sys.stderr.write(f"\rrk4: clock {b:.4g} / {clock[-1]:.4g}")
    if progress and time.perf_counter() - start > 5:
        sys.stderr.write("\n")
    return np.stack(xs), {"steps": steps, "field_evaluations": 4 * steps}


def _adaptive(system, x0, clock, rtol, atol, stiff):
    shape = x0.shape
    proj = system.project

    def rhs(s, y):
        return system.field(s, proj(y.reshape(shape))).reshape(-1)

    options = {"method": "DOP853"}
    if stiff and isinstance(system, CircleAttention):  # closed-form Jacobian, one block per prompt
        n = shape[-1]

        def jac(s, y):
            J = system.jacobian(y.reshape(shape)).reshape(-1, n, n)
            return J[0] if len(J) == 1 else sparse.block_diag(list(J), format="csc")

        options = {"method": "BDF", "jac": jac}
    elif stiff:  # tokens of different prompts do not interact: block-diagonal Jacobian
        block = int(np.prod(shape[-2:])) if x0.ndim >= 2 else shape[-1]
        blocks = x0.size // block
        options = {"method": "BDF", "jac_sparsity": sparse.kron(sparse.eye(blocks), np.ones((block, block)))}
    out = solve_ivp(rhs, (clock[0], clock[-1]), x0.reshape(-1), t_eval=clock, rtol=rtol, atol=atol, **options)
    if not out.success:
        raise SolverError(f"solve_ivp ({options['method']}) failed: {out.message}")
    raw = out.y.T.reshape(len(clock), *shape)
    x = proj(raw)
    drift = float(np.max(np.abs(np.linalg.norm(raw, axis=-1) - 1))) if x is not raw and raw.ndim > 1 else 0.0
    return x, {"field_evaluations": int(out.nfev), "jacobians": int(out.njev), "sphere_drift": drift}


def simulate(
    system,
    x0,
    t,
    *,
    method: str = "rk4",
    dt: float = 0.01,
    rtol: float = 1e-9,
    atol: float = 1e-11,
    progress: bool = False,
) -> Trajectory:
    """Integrate ``system`` (a :class:`SelfAttention`, :class:`CircleAttention` or :class:`Unnormalised`).

    Arguments:
        system: the dynamics.
        x0: initial tokens, shape (n, d), or (batch, n, d) for independent prompts (angles (.., n) on
            the circle); projected onto the sphere first.
        t: increasing output times in the integration clock (physical time unless a USA system is
            ``rescaled``: then ``Trajectory.t = e^{-s} t``).
        method: ``"rk4"`` (fixed steps <= ``dt``, projected), ``"adaptive"`` (DOP853) or ``"stiff"`` (BDF),
            the last two with ``rtol``/``atol``.
        progress: write a progress line to stderr for RK4 runs longer than 5 s.

    Returns:
        A :class:`Trajectory`; ``stats`` holds the number of field evaluations and the wall time.
    """
    check_choice("method", method, METHODS)
    clock = _times(t)
    x0 = system.project(check_finite("x0", x0))
    start = time.perf_counter()
    if method == "rk4":
        x, stats = _rk4(system, x0, clock, check_positive("dt", dt), progress)
    else:
        x, stats = _adaptive(system, x0, clock, check_positive("rtol", rtol), check_positive("atol", atol),
                             method == "stiff")
    stats["seconds"] = time.perf_counter() - start
    return Trajectory(t=clock * system.time_factor, clock=clock, x=x, method=method, stats=stats)

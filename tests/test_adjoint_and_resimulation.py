"""The adjoint's sign convention against the discrete adjoint equation; states against solve_ivp."""

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from problems import Pendulum
from turnpike.transcription import stage_function


def pendulum_with_terminal_cost():
    x = ca.SX.sym("x", 2)
    u = ca.SX.sym("u")
    return tp.Problem(
        state=x,
        control=u,
        dynamics=ca.vertcat(x[1], -ca.sin(x[0]) - 0.5 * x[1] + u),
        running_cost=0.5 * ((x[0] - 1) ** 2 + x[1] ** 2 + u**2),
        terminal_cost=2.0 * (x[0] - 0.8) ** 2 + x[1] ** 2,
        x0=[0.0, 0.0],
    )


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_adjoint_satisfies_discrete_adjoint_equation(method):
    """p_n = ∇φ(x_n) and p_k = ∇_x q_k + F_xᵀ p_{k+1}, with p_{k+1} = Solution.adjoint[k]."""
    prob = pendulum_with_terminal_cost()
    sol = tp.solve(prob, T=5.0, steps=50, method=method, options={"ipopt.tol": 1e-12})
    assert sol.success
    stage = stage_function(prob, method)
    x, u, y, h = ca.SX.sym("x", 2), ca.SX.sym("u"), ca.SX.sym("y", 0), ca.SX.sym("h")
    x_next, q = stage(x, u, y, h)
    derivs = ca.Function("d", [x, u, h], [ca.jacobian(x_next, x), ca.gradient(q, x)])
    grad_phi = ca.Function("g", [x], [ca.gradient(prob.terminal_cost(x, 0, y), x)])
    p = sol.adjoint
    np.testing.assert_allclose(p[-1], np.asarray(grad_phi(sol.x[-1])).ravel(), atol=1e-8)
    for k in range(1, sol.steps):
        Fx, qx = (np.asarray(a) for a in derivs(sol.x[k], sol.u[k], sol.h))
        np.testing.assert_allclose(p[k - 1], qx.ravel() + Fx.T @ p[k], atol=1e-8)


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("rk4", 4)])
def test_resimulation_error_has_the_integrators_order(method, order):
    """solve_ivp on the returned controls reproduces sol.x to O(h^order)."""
    prob = Pendulum()
    steps = np.array([40, 80, 160])
    errs = [tp.resimulation_error(prob, tp.solve(prob, T=4.0, steps=n, method=method)) for n in steps]
    slope = np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert -order - 0.4 < slope < -order + 0.4
    if method == "rk4":
        assert errs[-1] < 1e-7


def test_pendulum_static_matches_scalar_optimality_condition():
    prob = Pendulum(target_angle=1.2, damping=0.3, control_weight=0.5)
    stat = tp.solve_static(prob)
    assert stat.success
    x, u, p = prob.static_optimum()
    np.testing.assert_allclose(stat.x, x, atol=1e-8)
    np.testing.assert_allclose(stat.u, u, atol=1e-8)
    np.testing.assert_allclose(stat.adjoint, p, atol=1e-8)


def test_pendulum_long_horizon_passes_near_the_static_optimum():
    prob = Pendulum()
    sol = tp.solve(prob, T=30.0, steps=300)
    x, u, _ = prob.static_optimum()
    mid = sol.steps // 2
    assert sol.success
    np.testing.assert_allclose(sol.x[mid], x, atol=1e-4)
    np.testing.assert_allclose(sol.u[mid], u, atol=1e-4)


def test_resimulation_of_dynamics_with_structural_zeros():
    """dx0/dt = x1 + u, dx1/dt = 0 written as a structural zero: the frozen state stays put and, with u constant on
    each interval, x0 moves by h (x1 + u_k) per interval exactly."""
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u")
    f = ca.SX(2, 1)
    f[0] = x[1] + u
    prob = tp.Problem(state=x, control=u, x0=[0.1, 0.2], dynamics=f, running_cost=ca.sumsqr(x) + u**2)
    sol = tp.solve(prob, 1.0, steps=10)
    assert sol.success
    exact = 0.1 + np.concatenate([[0.0], np.cumsum(sol.h * (0.2 + sol.u[:, 0]))])
    states = tp.resimulate(prob, sol).reshape(sol.steps + 1, 2)
    np.testing.assert_allclose(states[:, 1], 0.2, atol=1e-14)
    np.testing.assert_allclose(states[:, 0], exact, atol=1e-10)

"""The ensemble form (samples sharing one control, per-sample data) and the exact L1 term."""

import casadi as ca
import numpy as np

import turnpike as tp
from problems import LinearQuadratic

A = np.array([[0.0, 1.0], [-1.0, -0.2]])
B = np.array([[0.0], [1.0]])
X0 = np.array([[0.0, 0.0], [1.0, -0.5], [-0.5, 0.3]])


def test_ensemble_equals_the_stacked_linear_system():
    """N samples sharing u with the mean cost is one LQ with block-diagonal A, stacked B, C/√N."""
    N = X0.shape[0]
    ens = LinearQuadratic(A=A, B=B, target=[1.0, 0.0], x0=X0)
    big = LinearQuadratic(
        A=np.kron(np.eye(N), A),
        B=np.tile(B, (N, 1)),
        C=np.eye(2 * N) / np.sqrt(N),
        target=np.tile([1.0, 0.0], N),
        x0=X0.ravel(),
    )
    a = tp.solve(ens, T=6.0, steps=60)
    b = tp.solve(big, T=6.0, steps=60)
    assert a.success and b.success
    assert a.x.shape == (61, N, 2) and a.adjoint.shape == (60, N, 2) and a.u.shape == (60, 1)
    np.testing.assert_allclose(a.x.reshape(61, -1), b.x, atol=1e-8)
    np.testing.assert_allclose(a.u, b.u, atol=1e-8)
    np.testing.assert_allclose(a.adjoint.reshape(60, -1), b.adjoint, atol=1e-8)
    np.testing.assert_allclose(a.cost, b.cost, rtol=1e-10)

    stat = tp.solve_static(ens)
    assert stat.success and stat.x.shape == (N, 2)
    # one static state per sample, all equal here since A is invertible: ȳ_i = -A⁻¹ B ū
    np.testing.assert_allclose(stat.x, np.tile(-np.linalg.solve(A, B @ stat.u), (N, 1)), atol=1e-8)


def test_per_sample_data_enters_the_cost():
    """dx_i/dt = u, L = ½(x_i - y_i)²: the mean cost is ½(z - m)² + ½ var(y - x0) with z = ∫u, m = mean(y - x0)."""
    x, u, y = ca.SX.sym("x"), ca.SX.sym("u"), ca.SX.sym("y")
    x0 = np.array([[0.0], [1.0], [3.0]])
    labels = np.array([[2.0], [-1.0], [0.5]])
    common = {"state": x, "control": u, "dynamics": u, "l2": 0.5}
    ens = tp.Problem(**common, running_cost=0.5 * (x - y) ** 2, data=y, data_values=labels, x0=x0)
    m = float(np.mean(labels - x0))
    one = tp.Problem(**common, running_cost=0.5 * (x - m) ** 2, x0=[0.0])
    T = 5.0
    a, b = tp.solve(ens, T=T, steps=50), tp.solve(one, T=T, steps=50)
    np.testing.assert_allclose(a.u, b.u, atol=1e-8)
    np.testing.assert_allclose(a.cost, b.cost + T * 0.5 * np.var(labels - x0), rtol=1e-9)
    stat = tp.solve_static(ens)
    np.testing.assert_allclose(stat.x, labels, atol=1e-8)  # u = 0 at rest, each sample at its label
    np.testing.assert_allclose(stat.cost, 0.0, atol=1e-10)


def test_exact_l1_gives_bang_off_control_and_the_analytic_stopping_time():
    """dx/dt = u, L = ½(x - y)² + λ|u|, |u| <= M = 1, x(0) - y = 2.

    The optimum is u = -1 on (0, T*) and u = 0 after, with residual r = x(T) - y = 2 - T* solving
    r (T - T*) = λ (derivative of the cost in T*), i.e. r² + (T - 2) r - λ = 0.
    """
    lam = 0.3
    x, u, y = ca.SX.sym("x"), ca.SX.sym("u"), ca.SX.sym("y")
    prob = tp.Problem(state=x, control=u, dynamics=u, running_cost=0.5 * (x - y) ** 2, data=y,
                      data_values=[-2.0], x0=[0.0], l1=lam, l1_bound=1.0)
    for T in (4.0, 8.0):
        sol = tp.solve(prob, T=T, steps=int(50 * T), options={"ipopt.tol": 1e-10})
        assert sol.success
        r = -(T - 2) / 2 + np.sqrt(((T - 2) / 2) ** 2 + lam)
        t_star = 2 - r
        on = sol.t[:-1] < t_star - sol.h
        off = sol.t[:-1] > t_star + sol.h
        np.testing.assert_allclose(sol.u[on, 0], -1.0, atol=1e-5)
        assert np.abs(sol.u[off, 0]).max() < 1e-5
        assert abs(sol.x[-1, 0] + 2 - r) < 1e-3
        np.testing.assert_allclose(sol.cost_terms["l1"], lam * np.abs(sol.u[:, 0]).sum() * sol.h, rtol=1e-6)

"""LQ: turnpike's optimum against the Riccati solution and the static KKT system, computed with scipy."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import turnpike as tp
from problems import LinearQuadratic

A = np.array([[0.0, 1.0], [-2.0, -0.3]])
B = np.array([[0.0], [1.0]])
C = np.eye(2)
R = np.array([[0.5]])
TARGET = np.array([1.0, 0.0])
S = np.diag([2.0, 1.0])
X0 = np.array([0.0, 0.5])


def make_problem(**kw):
    return LinearQuadratic(A=A, B=B, C=C, R=R, target=TARGET, x0=X0, terminal_weight=S, **kw)


def riccati_solution(T):
    """The continuous optimum: u = -R⁻¹Bᵀ(P y + s), with the Riccati equation and its affine part.

    -dP/dt = AᵀP + PA - P B R⁻¹ Bᵀ P + CᵀC, P(T) = S;  -ds/dt = (A - BR⁻¹BᵀP)ᵀ s - CᵀC y_d, s(T) = -S y_d.
    The costate is p = P y + s.
    """
    n = A.shape[0]
    Rinv = np.linalg.inv(R)
    Q = C.T @ C

    def backward(t, z):
        P, s = z[: n * n].reshape(n, n), z[n * n :]
        dP = -(A.T @ P + P @ A - P @ B @ Rinv @ B.T @ P + Q)
        ds = -((A - B @ Rinv @ B.T @ P).T @ s - Q @ TARGET)
        return np.concatenate([dP.ravel(), ds])

    zT = np.concatenate([S.ravel(), -S @ TARGET])
    back = solve_ivp(backward, (T, 0.0), zT, method="DOP853", rtol=1e-12, atol=1e-12, dense_output=True)

    def feedback(t, y):
        z = back.sol(t)
        P, s = z[: n * n].reshape(n, n), z[n * n :]
        return -Rinv @ B.T @ (P @ y + s), P @ y + s

    fwd = solve_ivp(lambda t, y: A @ y + B @ feedback(t, y)[0], (0.0, T), X0, method="DOP853",
                    rtol=1e-12, atol=1e-12, dense_output=True)
    return fwd.sol, feedback


@pytest.fixture(scope="module")
def reference():
    return riccati_solution(8.0)


def errors(sol, reference):
    y, feedback = reference
    t_mid = 0.5 * (sol.t[:-1] + sol.t[1:])
    x_err = np.max(np.abs(sol.x - y(sol.t).T))
    u_err = np.max(np.abs(sol.u[:, 0] - [feedback(t, y(t))[0][0] for t in t_mid]))
    p_err = np.max(np.abs(sol.adjoint - np.array([feedback(t, y(t))[1] for t in sol.t[1:]])))
    return x_err, u_err, p_err


def test_solve_matches_riccati_to_1e_4(reference):
    sol = tp.solve(make_problem(), T=8.0, steps=800)
    assert sol.success, sol.status
    x_err, u_err, p_err = errors(sol, reference)
    assert x_err < 1e-4
    assert u_err < 1e-4
    # the adjoint approximates the costate p = P y + s (sign convention of Solution.adjoint)
    assert p_err < 1e-4


def test_error_against_riccati_falls_like_h_squared(reference):
    """Piecewise-constant controls are second-order accurate at interval midpoints and grid points."""
    steps = np.array([100, 200, 400])
    errs = np.array([errors(tp.solve(make_problem(), T=8.0, steps=n), reference) for n in steps])
    for col in errs.T:
        slope = np.polyfit(np.log(steps), np.log(col), 1)[0]
        assert -2.3 < slope < -1.7


def test_fatrop_and_ipopt_reach_the_same_optimum():
    prob = make_problem()
    a = tp.solve(prob, T=8.0, steps=200)
    b = tp.solve(prob, T=8.0, steps=200, solver="fatrop")
    assert a.success and b.success
    np.testing.assert_allclose(b.x, a.x, atol=1e-7)
    np.testing.assert_allclose(b.u, a.u, atol=1e-7)
    np.testing.assert_allclose(b.cost, a.cost, rtol=1e-9)


def test_static_matches_kkt_linear_system():
    """min ½(|u|²_R + |C(y - y_d)|²) s.t. Ay + Bu = 0: the KKT system is linear.

    [[CᵀC, 0, Aᵀ], [0, R, Bᵀ], [A, B, 0]] (y, u, p) = (CᵀC y_d, 0, 0), p the multiplier of Ay + Bu = 0.
    """
    n, m = B.shape
    K = np.block([
        [C.T @ C, np.zeros((n, m)), A.T],
        [np.zeros((m, n)), R, B.T],
        [A, B, np.zeros((n, n))],
    ])
    y, u, p = np.split(np.linalg.solve(K, np.concatenate([C.T @ C @ TARGET, np.zeros(m + n)])), [n, n + m])
    stat = tp.solve_static(make_problem())
    assert stat.success, stat.status
    np.testing.assert_allclose(stat.x, y, atol=1e-8)
    np.testing.assert_allclose(stat.u, u, atol=1e-8)
    np.testing.assert_allclose(stat.adjoint, p, atol=1e-8)


def test_hamiltonian_gap_is_the_closed_loop_decay_rate():
    """The gap equals min |Re λ| of the Riccati closed loop A - BR⁻¹BᵀP∞ (algebraic Riccati, scipy)."""
    from scipy.linalg import solve_continuous_are

    prob = make_problem()
    P = solve_continuous_are(A, B, C.T @ C, R)
    closed = A - B @ np.linalg.solve(R, B.T @ P)
    assert prob.spectral_gap() == pytest.approx(np.abs(np.linalg.eigvals(closed).real).min(), rel=1e-10)


def test_no_gap_is_reported_as_none():
    """An undamped oscillator observed through nothing (C = 0) has eigenvalues on the imaginary axis."""
    prob = LinearQuadratic(A=[[0, 1], [-1, 0]], B=[[0], [1]], C=np.zeros((1, 2)))
    assert prob.spectral_gap() is None

"""Self-attention dynamics against the theory: equiangular reduced ODE, energy identity, collapse on the circle."""

import casadi as ca
import numpy as np
import pytest

import turnpike.attention as ta
from turnpike.errors import InputError


def test_equiangular_rate_formula_from_the_field():
    """Check the reduced ODE of docs/mathematics.md §3 algebraically: at <x_i, x_j> = ρ, d<x_0, x_1>/dt from the field.

    SA: ẋ_i = (e^{βρ}/Z)(S_i - <x_i, S_i> x_i), S_i = Σ_{j≠i} x_j, Z = e^β + (n-1)e^{βρ}, so
    d<x_0,x_1>/dt = 2(e^{βρ}/Z)(1 + (n-2)ρ - (n-1)ρ²) = 2 e^{βρ}(1-ρ)((n-1)ρ+1)/Z; USA: 1/Z -> 1/n.
    """
    n, beta = 8, 2.0
    for rho in (0.0, 0.3, -0.1):
        x = ta.equiangular_start(n, n, rho)
        for kind in ("sa", "usa"):
            v = ta.SelfAttention(n, beta=beta, kind=kind).field(0.0, x)
            rate = v[0] @ x[1] + x[0] @ v[1]
            norm = np.exp(beta) + (n - 1) * np.exp(beta * rho) if kind == "sa" else n
            expected = 2 * np.exp(beta * rho) * (1 - rho) * ((n - 1) * rho + 1) / norm
            assert rate == pytest.approx(expected, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("kind", ["sa", "usa"])
def test_equiangular_start_follows_the_reduced_ode(kind):
    """n = d = 8, ρ0 = 0, β = 2: every <x_i, x_j> (RK4, dt = 1e-3) equals ρ(t) (DOP853 on the scalar ODE)."""
    n, beta = 8, 2.0
    x0 = ta.equiangular_start(n, n, 0.0)
    np.testing.assert_allclose(ta.gram(x0), np.eye(n), atol=1e-15)
    t = np.linspace(0.0, 3.0, 31)
    traj = ta.simulate(ta.SelfAttention(n, beta=beta, kind=kind), x0, t, dt=1e-3)
    rho = ta.equiangular_rho(t, 0.0, n, beta, kind=kind)
    assert rho[-1] - rho[0] > 0.5  # the test covers a real change of ρ
    iu = np.triu_indices(n, 1)
    G = ta.gram(traj.x)[:, iu[0], iu[1]]
    assert np.max(np.abs(G - rho[:, None])) < 1e-8


def test_usa_rescaled_clock_is_the_physical_flow():
    """The global shift s = β: integrating e^{-s}F in τ and reporting t = e^{-s}τ is the physical flow."""
    x0 = ta.random_sphere((5,), 3, seed=3)
    beta = 3.0
    phys = ta.simulate(ta.SelfAttention(3, beta=beta, kind="usa"), x0, np.linspace(0, 1, 11), dt=1e-3)
    resc = ta.SelfAttention(3, beta=beta, kind="usa", rescaled=True)
    tau = np.linspace(0, 1, 11) * np.exp(beta)
    traj = ta.simulate(resc, x0, tau, method="adaptive", rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(traj.t, phys.t, rtol=1e-12)
    np.testing.assert_allclose(traj.x, phys.x, atol=1e-9)
    with pytest.raises(InputError, match="rescaled=True"):
        ta.SelfAttention(3, beta=1e3, kind="usa")


def test_sa_with_beta_1e3_does_not_overflow():
    x = ta.random_sphere((4, 16), 5, seed=0)
    v = ta.SelfAttention(5, beta=1e3, Q=2.0, K=np.eye(5), V=-np.eye(5)).field(0.0, x)
    assert np.all(np.isfinite(v)) and np.max(np.abs(np.sum(v * x, axis=-1))) < 1e-12  # tangent


def _energy_and_gradient(n: int, d: int, beta: float) -> ca.Function:
    """E_β written directly with CasADi symbols and its Euclidean gradient by AD (independent of the package)."""
    X = ca.SX.sym("X", n, d)
    E = ca.sum1(ca.sum2(ca.exp(beta * X @ X.T))) / (2 * beta * n**2)
    return ca.Function("E", [X], [E, ca.jacobian(E, ca.vec(X))])


@pytest.mark.parametrize("kind", ["sa", "usa"])
def test_energy_increases_and_its_derivative_matches_the_identity(kind):
    """Q = K = V = I: dE/dt = <∇E, ẋ> (CasADi AD, the field tangent) equals the identity to 1e-6 relative."""
    n, d, beta = 12, 3, 1.5
    E_ad = _energy_and_gradient(n, d, beta)
    x0 = ta.random_sphere((n,), d, seed=1)
    for sign in (1.0, -1.0):
        model = ta.SelfAttention(d, beta=beta, V=sign * np.eye(d), kind=kind)
        traj = ta.simulate(model, x0, np.linspace(0, 6, 61), method="adaptive")
        E = ta.energy(traj.x, beta)
        assert np.all(sign * np.diff(E) >= -1e-12)  # never decreases (V = I) / never increases (V = -I)
        assert sign * (E[-1] - E[0]) > 1e-3
        for x in traj.x[::10]:
            v = model.field(0.0, x)
            e, grad = E_ad(x)
            assert float(e) == pytest.approx(float(ta.energy(x, beta)), rel=1e-12)
            # ca.vec is column-major: gradient entries ordered by coordinate, then token
            exact = float(np.asarray(grad).ravel() @ v.T.ravel())
            identity = float(ta.energy_rate(x, v, beta, kind=kind, sign=sign))
            assert identity == pytest.approx(exact, rel=1e-6)
    assert ta.energy(np.tile([1.0, 0, 0], (n, 1)), beta) == pytest.approx(np.exp(beta) / (2 * beta))


def test_casadi_field_equals_the_numpy_field():
    rng = np.random.default_rng(2)
    d, n = 3, 5
    Q, K, V = rng.standard_normal((3, d, d))
    x = ta.random_sphere((n,), d, seed=4)
    for kind in ("sa", "usa"):
        model = ta.SelfAttention(d, beta=2.5, Q=Q, K=K, V=V, kind=kind)
        sym = ca.SX.sym("x", n * d)
        f = ca.Function("f", [sym], [model.casadi(sym, n)])
        np.testing.assert_allclose(np.asarray(f(x.ravel())).ravel(), model.field(0.0, x).ravel(), atol=1e-12)


def test_circle_angles_equal_the_sphere_form():
    """USA/SA in angles (DOP853) against the d = 2 sphere form (RK4): the same tokens."""
    theta0 = np.random.default_rng(5).uniform(0, 2 * np.pi, 10)
    t = np.linspace(0, 4, 9)
    for kind in ("sa", "usa"):
        ang = ta.simulate(ta.CircleAttention(2.0, kind=kind), theta0, t, method="adaptive", rtol=1e-11, atol=1e-13)
        sph = ta.simulate(ta.SelfAttention(2, beta=2.0, kind=kind), ta.CircleAttention.to_points(theta0), t, dt=1e-3)
        np.testing.assert_allclose(ta.CircleAttention.to_points(ang.x), sph.x, atol=1e-9)


def _enclosing_arc_radius(theta: np.ndarray) -> np.ndarray:
    """Half the shortest arc containing all angles (rows): every token lies within it of the arc's midpoint."""
    s = np.sort(np.mod(theta, 2 * np.pi), axis=-1)
    gaps = np.diff(np.concatenate([s, s[..., :1] + 2 * np.pi], axis=-1), axis=-1)
    return (2 * np.pi - gaps.max(axis=-1)) / 2


def test_circle_collapse_in_99_percent_of_256_runs():
    """d = 2, n = 32, β = 1, uniform start, SA: within 1e-3 rad of one point by t = 30 in >= 99% of runs."""
    x0 = ta.random_sphere((256, 32), 2, seed=2024)
    traj = ta.simulate(ta.SelfAttention(2, beta=1.0), x0, np.array([0.0, 15.0, 30.0]), dt=0.1)
    theta = np.arctan2(traj.x[-1, ..., 1], traj.x[-1, ..., 0])
    collapsed = _enclosing_arc_radius(theta) < 1e-3
    assert collapsed.mean() >= 0.99
    # the same eight prompts in angles with the adaptive integrator reach the same points
    ang = ta.simulate(ta.CircleAttention(1.0), np.arctan2(x0[:8, :, 1], x0[:8, :, 0]), np.array([0.0, 30.0]),
                      method="adaptive")
    np.testing.assert_allclose(ta.CircleAttention.to_points(ang.x[-1]), traj.x[-1, :8], atol=1e-6)


def test_inputs_are_checked():
    with pytest.raises(InputError, match="kind"):
        ta.SelfAttention(2, kind="softmax")
    with pytest.raises(InputError, match="beta"):
        ta.SelfAttention(2, beta=-1.0)
    with pytest.raises(InputError, match=r"Q must be .* shape \(3, 3\)"):
        ta.SelfAttention(3, Q=np.eye(2))
    with pytest.raises(InputError, match="d >= n"):
        ta.equiangular_start(8, 4)
    with pytest.raises(InputError, match="method"):
        ta.simulate(ta.CircleAttention(1.0), np.zeros(3), [0, 1], method="euler")
    with pytest.raises(InputError, match="strictly increasing"):
        ta.simulate(ta.CircleAttention(1.0), np.zeros(3), [0, 1, 1])

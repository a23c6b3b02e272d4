"""Limit geometry of unnormalised attention against constructed cases and the facts the theory gives.

Every reference here is computed in this file: reduced ODEs of symmetric configurations written out by
hand and integrated with DOP853, eigenvectors in closed form, the convex hull of the start, the sign
rule and the monotonicity of ``max h`` and ``min h``.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from scipy.spatial import ConvexHull
from scipy.special import softmax

import turnpike.attention as ta
from turnpike.errors import InputError

T = 12.0
TIMES = np.linspace(0.0, T, 121)


def _run(model, z0):
    return ta.simulate(model, z0, TIMES, method="adaptive", rtol=1e-11, atol=1e-13)


def _symmetric_limit(U: np.ndarray, r0: float, s0: float, beta: float) -> tuple[float, float]:
    """Radii (r, s) at T of the tokens r u_k (vertices) and s u_k (inside), V = Q = K = I.

    U (K, d): unit directions permuted by a group of rotations and reflections that fixes only the line
    through each u_k, so the configuration keeps its symmetry and every token stays on its ray. With
    ``g_l = <u_0, u_l>`` and logits ``β e^{2t} <z_0, z_j>`` (x = e^t z), the tokens on u_0 move by
    ``dr/dt = Σ_l p_l (r g_l - r) + Σ_l p_{K+l} (s g_l - r)`` and
    ``ds/dt = Σ_l q_l (r g_l - s) + Σ_l q_{K+l} (s g_l - s)``, p and q the softmax of their logits.
    """
    g = U @ U[0]

    def rhs(t, y):
        r, s = y
        e = beta * np.exp(2 * t)
        p = softmax(e * np.concatenate([r * r * g, r * s * g]))
        q = softmax(e * np.concatenate([s * r * g, s * s * g]))
        K = len(g)
        return [p[:K] @ (r * g - r) + p[K:] @ (s * g - r), q[:K] @ (r * g - s) + q[K:] @ (s * g - s)]

    out = solve_ivp(rhs, (0.0, T), [r0, s0], method="DOP853", rtol=1e-12, atol=1e-14)
    return tuple(out.y[:, -1])


def _pentagon():
    a = 2 * np.pi * np.arange(5) / 5
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _octahedron():
    return np.concatenate([np.eye(3), -np.eye(3)])


@pytest.mark.parametrize("directions", [_pentagon, _octahedron], ids=["pentagon", "octahedron"])
def test_symmetric_start_ends_on_the_known_polytope(directions):
    """K tokens at r0 u_k and K at s0 u_k: the limit polytope is {r∞ u_k}, each vertex holding tokens k and K + k."""
    U = directions()
    K, d = U.shape
    r0, s0, beta = 1.0, 0.5, 1.0
    z0 = np.concatenate([r0 * U, s0 * U])
    model = ta.Unnormalised(d, beta=beta)
    poly = ta.limit_polytope(model, _run(model, z0))
    r, s = _symmetric_limit(U, r0, s0, beta)
    assert 0 < r < r0 and abs(r - s) < 1e-4  # the vertices moved inwards; the inner tokens reached them
    assert poly.theory and poly.converged and poly.dimension == d
    assert len(poly.vertices) == K and poly.other_tokens == () and poly.clusters == K
    for v, tokens in zip(poly.vertices, poly.vertex_tokens, strict=True):
        k = int(np.argmax(U @ v))
        np.testing.assert_allclose(v, (r + s) / 2 * U[k], atol=1e-8)
        assert tokens == (k, K + k)


@pytest.mark.parametrize("d", [2, 3])
def test_random_starts_end_on_vertices_inside_the_initial_hull(d):
    """V = I: every token on a vertex; the vertices lie in conv(z(0)) (the hull never grows) and each attends
    to itself at least as much as to any other vertex (a limit point keeps its tokens only then)."""
    model = ta.Unnormalised(d, beta=4.0)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        u = rng.standard_normal((24, d))
        z0 = u / np.linalg.norm(u, axis=1, keepdims=True) * rng.uniform(0.3, 1.2, (24, 1))
        poly = ta.limit_polytope(model, _run(model, z0))
        assert poly.converged and poly.other_tokens == ()
        assert sorted(i for v in poly.vertex_tokens for i in v) == list(range(24))
        assert 2 <= len(poly.vertices) <= 24
        facets = ConvexHull(z0).equations  # a·z + b <= 0 inside, a a unit outer normal
        assert np.all(poly.vertices @ facets[:, :-1].T + facets[:, -1] <= 1e-9)
        G = poly.vertices @ poly.vertices.T
        assert np.all(np.diag(G)[:, None] >= G - 1e-9)


V_UPPER = np.array([[1.0, 0.5], [0.0, 0.3]])
N_UPPER = np.array([0.7, 0.5]) / np.hypot(0.7, 0.5)  # nᵀV = nᵀ: 0.5 n_1 + 0.3 n_2 = n_2


def test_two_opposite_tokens_end_on_two_known_hyperplanes():
    """z_2 = -z_1 stays so (the field is odd): dz_1/dt = -2 P_12 V z_1, P_12 = 1/(1 + e^{2β<Qx_1, Kx_1>})."""
    a = np.array([0.8, -0.6])
    beta = 1.0

    def rhs(t, z):
        # e^{tV} of V = [[1, b], [0, c]] is [[e^t, b (e^t - e^{ct})/(1 - c)], [0, e^{ct}]]
        b, c = V_UPPER[0, 1], V_UPPER[1, 1]
        x = np.array([np.exp(t) * z[0] + b * (np.exp(t) - np.exp(c * t)) / (1 - c) * z[1], np.exp(c * t) * z[1]])
        return -2.0 * np.exp(-np.logaddexp(0.0, 2 * beta * x @ x)) * (V_UPPER @ z)

    zT = solve_ivp(rhs, (0.0, T), a, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
    model = ta.Unnormalised(2, beta=beta, V=V_UPPER)
    planes = ta.limit_hyperplanes(model, _run(model, np.stack([a, -a])))
    np.testing.assert_allclose(planes.normal, N_UPPER, atol=1e-12)
    np.testing.assert_allclose(planes.eigenvector, [1.0, 0.0], atol=1e-12)
    assert planes.count == 2 and planes.tokens == ((1,), (0,)) and planes.theory
    np.testing.assert_allclose(planes.levels, [-N_UPPER @ zT, N_UPPER @ zT], atol=1e-8)


def test_hyperplanes_follow_the_sign_of_the_leading_coordinate():
    """Tokens dominated by their coordinate h = nᵀz: positive h end on the top level, negative on the bottom;
    the levels lie within [min h(0), max h(0)] (max h never grows, min h never decreases). All positive: one level."""
    rng = np.random.default_rng(3)
    a = np.array([2.5, 1.5, 1.0, 0.6, -0.8, -1.2, -2.0])
    z0 = np.stack([a, 0.1 * rng.standard_normal(a.size)], axis=1)
    model = ta.Unnormalised(2, beta=1.0, V=np.diag([1.0, 0.4]))
    planes = ta.limit_hyperplanes(model, _run(model, z0))
    assert planes.converged and planes.count == 2
    assert planes.tokens == (tuple(np.flatnonzero(a < 0)), tuple(np.flatnonzero(a > 0)))
    assert a.min() <= planes.levels[0] < 0 < planes.levels[1] <= a.max()
    single = ta.limit_hyperplanes(model, _run(model, np.abs(z0)))
    assert single.count == 1 and 0 < single.levels[0] <= a.max()


@pytest.mark.parametrize("d", [2, 3])
def test_at_most_three_hyperplanes_for_random_value_matrices(d):
    """V = R diag(1, μ) R⁻¹, μ in (-0.5, 0.2): at most three levels, within [min h(0), max h(0)].

    (With μ close to λ1 = 1 the tokens of one hyperplane keep switching leaders inside it and DOP853 needs
    1e5 steps and more: μ <= 0.2 keeps the test fast.)
    """
    rng = np.random.default_rng(10 + d)
    for _ in range(4):
        R = rng.standard_normal((d, d)) + 2 * np.eye(d)
        V = R @ np.diag([1.0, *rng.uniform(-0.5, 0.2, d - 1)]) @ np.linalg.inv(R)
        model = ta.Unnormalised(d, beta=1.0, V=V)
        z0 = rng.standard_normal((16, d))
        planes = ta.limit_hyperplanes(model, _run(model, z0))
        h0 = z0 @ planes.normal
        assert planes.theory and planes.converged and 1 <= planes.count <= 3
        assert h0.min() - 1e-9 <= planes.levels[0] and planes.levels[-1] <= h0.max() + 1e-9
        np.testing.assert_allclose(planes.normal @ V, planes.eigenvalue * planes.normal, atol=1e-10)


def test_d1_levels_are_the_two_leaders():
    """d = 1, V = Q = K = 1: two levels (points), each holding one leader: the largest and the smallest token."""
    z0 = np.random.default_rng(7).uniform(-1, 1, (12, 1))
    model = ta.Unnormalised(1, beta=1.0, Q=1.0, K=1.0, V=1.0)
    traj = _run(model, z0)
    planes = ta.limit_hyperplanes(model, traj)
    assert planes.count == 2 and planes.extent[0] < 1e-3 and planes.extent[1] < 1e-3
    lead = ta.leaders(model.attention(T, traj.x[-1]))
    assert sorted(lead) == sorted([int(np.argmin(z0)), int(np.argmax(z0))])
    assert int(np.argmin(z0)) in planes.tokens[0] and int(np.argmax(z0)) in planes.tokens[1]


@pytest.mark.parametrize("V", [None, np.diag([1.0, 0.4, -0.3]), [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]],
                               [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]],
                         ids=["identity", "diagonal", "defective", "rotation"])
def test_tokens_are_the_matrix_exponential(V):
    """x = e^{tV} z (eigendecomposition, or expm for the defective V) against scipy.linalg.expm."""
    z = np.random.default_rng(0).standard_normal((5, 3))
    model = ta.Unnormalised(3, V=V)
    for t in (0.5, 12.0):
        ref = z @ expm(t * (np.eye(3) if V is None else np.asarray(V))).T
        np.testing.assert_allclose(model.tokens(t, z), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_inputs_are_checked():
    model = ta.Unnormalised(2, beta=1.0)
    traj = _run(model, np.random.default_rng(0).standard_normal((4, 2)))
    with pytest.raises(InputError, match="model must be an Unnormalised"):
        ta.limit_polytope(ta.SelfAttention(2), traj)
    with pytest.raises(InputError, match="simple, real, positive"):
        ta.limit_hyperplanes(model, traj)  # V = I: λ1 = 1 is double
    with pytest.raises(InputError, match="simple, real, positive"):
        ta.leading_eigenpair([[0.0, -1.0], [1.0, 0.0]])
    with pytest.raises(InputError, match="window"):
        ta.limit_polytope(model, traj, window=100.0)
    with pytest.raises(InputError, match="tol"):
        ta.limit_polytope(model, traj, tol=0.0)
    with pytest.raises(InputError, match=r"shape \(time, n, 3\)"):
        ta.limit_polytope(ta.Unnormalised(3), traj)

"""Heat and wave turnpikes: the toolbox's gaps against Hamiltonian matrices written out here with numpy, the Δx/4 law,
the static optima against their linear KKT systems, and solves whose distance decays at the rate theory gives."""

import numpy as np
import pytest

import turnpike as tp
from problems.heat import Heat
from problems.wave import Wave


def second_difference(M):
    """The Dirichlet second difference on M interior nodes of (0, 1), as a dense matrix, and Δx."""
    dx = 1.0 / (M + 1)
    return (np.diag(np.full(M, -2.0)) + np.diag(np.ones(M - 1), 1) + np.diag(np.ones(M - 1), -1)) / dx**2, dx


def lq_gap(A, B, Q, R):
    """``min |Re λ|`` of ``[[A, -B R⁻¹ Bᵀ], [-Q, -Aᵀ]]``, the Hamiltonian of ``½(uᵀRu + yᵀQy)``."""
    H = np.block([[A, -B @ np.linalg.solve(R, B.T)], [-Q, -A.T]])
    return np.abs(np.linalg.eigvals(H).real).min()


def toolbox_gap(problem):
    static = tp.solve_static(problem)
    assert static.success, static.status
    return tp.predicted_rate(problem, static).rate


def heat_matrices(M, beta, shares=None):
    """A, B, Q, R of L = Δx|y - y_d|² + βΔx Σ χ_j u_j² (interior, cells with shares χ, a dict node -> χ, 1-based)
    or + βu² (boundary, shares None), written as ½(uᵀRu + yᵀQy) + linear terms."""
    A, dx = second_difference(M)
    Q = 2 * dx * np.eye(M)
    if shares is None:
        B = np.zeros((M, 1))
        B[0, 0] = 1 / dx**2
        return A, B, Q, np.array([[2 * beta]])
    nodes = sorted(shares)
    chi = np.array([shares[j] for j in nodes])
    B = np.zeros((M, len(nodes)))
    B[np.array(nodes) - 1, np.arange(len(nodes))] = chi
    return A, B, Q, 2 * beta * dx * np.diag(chi)


# Cells C_j = ((j - ½)Δx, (j + ½)Δx) against ω, counted by hand. M = 10 (Δx = 1/11), ω = (0.2, 0.7): 0.2 = 2.2Δx and
# 0.7 = 7.7Δx, so cell 2 holds 0.3 of its width, cells 3..7 all of it, cell 8 0.2. M = 19 (Δx = 0.05), ω = (0.225,
# 0.725): cells 5..14 exactly. M = 20 (Δx = 1/21), ω = (0.25, 0.75) = (5.25Δx, 15.75Δx): cell 5 0.25, 6..15, 16 0.25.
HEAT_CASES = [
    (10, (0.2, 0.7), 1e-2, {2: 0.3, **dict.fromkeys(range(3, 8), 1.0), 8: 0.2}),
    (19, (0.225, 0.725), 1.0, dict.fromkeys(range(5, 15), 1.0)),
    (20, None, 1e-2, {5: 0.25, **dict.fromkeys(range(6, 16), 1.0), 16: 0.25}),
]


@pytest.mark.parametrize("M, region, beta, shares", HEAT_CASES)
def test_heat_interior_gap_matches_the_hamiltonian_written_by_hand(M, region, beta, shares):
    heat = Heat(nodes=M, region=region, control_weight=beta)
    assert heat.nu == len(shares)
    assert toolbox_gap(heat) == pytest.approx(lq_gap(*heat_matrices(M, beta, shares)), rel=1e-8)


@pytest.mark.parametrize("M, beta", [(10, 1e-2), (20, 1.0), (40, 1e-2)])
def test_heat_boundary_gap_matches_the_hamiltonian_written_by_hand(M, beta):
    heat = Heat(nodes=M, control="boundary", control_weight=beta)
    assert toolbox_gap(heat) == pytest.approx(lq_gap(*heat_matrices(M, beta)), rel=1e-8)


def wave_matrices(M, beta):
    """State (y, v): A = [[0, I], [D, 0]], B = [0; I], Q = 2Δx [[I, 0], [0, 0]], R = 2βΔx I."""
    D, dx = second_difference(M)
    Z, I = np.zeros((M, M)), np.eye(M)
    return (np.block([[Z, I], [D, Z]]), np.vstack([Z, I]), np.block([[2 * dx * I, Z], [Z, Z]]), 2 * beta * dx * I)


@pytest.mark.parametrize("M, beta", [(10, 1.0), (20, 1.0), (40, 1.0), (15, 0.25)])
def test_wave_gap_matches_the_hamiltonian_written_by_hand(M, beta):
    wave = Wave(nodes=M, control_weight=beta)
    A, B, Q, R = wave_matrices(M, beta)
    assert toolbox_gap(wave) == pytest.approx(lq_gap(A, B, Q, R), rel=1e-8)
    # each discrete sine gives one quadruple ±r_k ± iω_k: the distinct |Re λ| are the mode rates
    H = np.block([[A, -B @ np.linalg.solve(R, B.T)], [-Q, -A.T]])
    re = np.sort(np.abs(np.linalg.eigvals(H).real))[::-4]
    np.testing.assert_allclose(wave.mode_rates(), re, rtol=1e-8)


def test_wave_gap_closes_like_dx_over_4():
    """REFERENCE values (B = [0; I], C = [I 0], R = I): 0.0230, 0.0119, 0.0061, 0.0031 for 10, 20, 40, 80 nodes."""
    nodes = np.array([10, 20, 40, 80])
    gaps = np.array([toolbox_gap(Wave(nodes=M)) for M in nodes])
    dx = 1.0 / (nodes + 1)
    np.testing.assert_allclose(gaps, [0.0230, 0.0119, 0.0061, 0.0031], atol=5e-5)
    assert np.all(np.abs(gaps / (dx / 4) - 1) < 0.1)
    assert np.polyfit(np.log(dx), np.log(gaps), 1)[0] == pytest.approx(1.0, abs=0.02)
    # and Δx/(4√β) for another weight: the highest mode, s² = -λ_M ± i/√β
    assert toolbox_gap(Wave(nodes=80, control_weight=4.0)) / (dx[-1] / 8) == pytest.approx(1.0, abs=0.1)


def test_heat_gap_converges_with_the_mesh():
    beta = 1e-2
    nodes = [10, 20, 40, 80]
    # control everywhere: ±√(λ_k² + 1/β) with λ_1 = (4/Δx²) sin²(πΔx/2), so the gap tends to √(π⁴ + 1/β) like Δx²
    full = np.array([toolbox_gap(Heat(nodes=M, region=(0.0, 1.0), control_weight=beta)) for M in nodes])
    dx = 1.0 / (np.array(nodes) + 1)
    lam1 = 4 / dx**2 * np.sin(np.pi * dx / 2) ** 2
    np.testing.assert_allclose(full, np.sqrt(lam1**2 + 1 / beta), rtol=1e-8)
    errors = np.abs(full - np.sqrt(np.pi**4 + 1 / beta))
    assert np.polyfit(np.log(dx), np.log(errors), 1)[0] == pytest.approx(2.0, abs=0.1)
    # interior control on (0.25, 0.75) and boundary control: successive differences falling geometrically (by about
    # 4 and 2 per refinement): if they go on falling so, the gaps converge, to within steps[-1]/(factor - 1) of the
    # last
    for control, factor in (("interior", 3.0), ("boundary", 1.8)):
        gaps = np.array([toolbox_gap(Heat(nodes=M, control=control, control_weight=beta)) for M in nodes])
        steps = np.abs(np.diff(gaps))
        assert np.all(steps[:-1] / steps[1:] > factor), (control, gaps)
        assert steps[-1] / (factor - 1) < 0.02 * gaps[-1]


@pytest.mark.parametrize("problem, matrices, target", [
    (Heat(nodes=10, region=(0.2, 0.7)), heat_matrices(10, 1e-2, HEAT_CASES[0][3]), np.ones(10)),
    (Heat(nodes=12, control="boundary", target=lambda x: x), heat_matrices(12, 1e-2), np.arange(1, 13) / 13),
    (Wave(nodes=8, target=1.0), wave_matrices(8, 1.0), np.concatenate([np.ones(8), np.zeros(8)])),
])
def test_static_optimum_solves_the_linear_kkt_system(problem, matrices, target):
    """min ½(uᵀRu + (y - y_d)ᵀQ(y - y_d)) s.t. Ay + Bu = 0:
    [[Q, 0, Aᵀ], [0, R, Bᵀ], [A, B, 0]] (y, u, p) = (Q y_d, 0, 0)."""
    A, B, Q, R = matrices
    n, m = B.shape
    K = np.block([[Q, np.zeros((n, m)), A.T], [np.zeros((m, n)), R, B.T], [A, B, np.zeros((n, n))]])
    y, u, p = np.split(np.linalg.solve(K, np.concatenate([Q @ target, np.zeros(m + n)])), [n, n + m])
    static = tp.solve_static(problem)
    assert static.success, static.status
    np.testing.assert_allclose(static.x, y, atol=1e-8)
    np.testing.assert_allclose(static.u, u, atol=1e-8 * max(1.0, np.abs(u).max()))
    np.testing.assert_allclose(static.adjoint, p, atol=1e-8 * max(1.0, np.abs(p).max()))


def test_heat_solve_converges_and_its_distance_decays_at_the_gap():
    heat = Heat(nodes=10)
    T, dt = 2.0, 1 / 512  # h λ_M = 0.93, a third of RK4's bound
    sol = tp.solve(heat, T, dt=dt, formulation="multiple-shooting")
    static = tp.solve_static(heat)
    assert sol.success, sol.status
    assert sol.stats["formulation"] == "multiple-shooting"
    assert sol.warnings == []
    report = tp.turnpike_report(sol, static, problem=heat, one_sided=False)
    d = report.distances.total
    assert d[len(d) // 2] < 1e-4 * d[0]
    # the slowest mode of the closed loop dominates the decay: the fitted rate is the gap, to the bias of the
    # faster modes on a finite horizon
    # ω = (0.25, 0.75) = (2.75Δx, 8.25Δx): cells 3 and 8 hold 0.75 of their width, 4..7 all of it
    gap = lq_gap(*heat_matrices(10, 1e-2, {3: 0.75, **dict.fromkeys(range(4, 8), 1.0), 8: 0.75}))
    assert report.predicted.rate == pytest.approx(gap, rel=1e-8)
    assert report.fit.success
    assert report.fit.rate == pytest.approx(gap, rel=0.05)


def test_wave_solve_stays_in_the_first_mode_and_decays_at_its_rate():
    """sin(πx_j) is an eigenvector of the second difference and the target is 0: the optimality system keeps the
    solution in that mode, which approaches the turnpike at Re √(-λ_1 + i) (β = 1), not at the gap."""
    wave = Wave(nodes=10)
    T, dt = 40.0, 1 / 16
    sol = tp.solve(wave, T, dt=dt, formulation="multiple-shooting")
    assert sol.success, sol.status
    assert sol.warnings == []
    mode = np.sin(np.pi * wave.x)
    mode /= np.linalg.norm(mode)
    for part in (sol.x[:, :10], sol.x[:, 10:], sol.u):
        assert np.abs(part - np.outer(part @ mode, mode)).max() < 1e-6
    report = tp.turnpike_report(sol, tp.solve_static(wave), problem=wave, one_sided=True)
    lam1 = 4 * 11**2 * np.sin(np.pi / 22) ** 2
    r1 = np.sqrt(-lam1 + 1j).real
    assert report.fit.success
    assert report.fit.rate == pytest.approx(r1, rel=0.05)
    assert report.predicted.rate < r1 / 5


def test_explicit_step_bounds():
    """RK4's amplification R(z) = 1 + z + z²/2 + z³/6 + z⁴/24 has modulus 1 at the bounds: z = -h λ_M for the heat
    equation, z = ih√λ_M for the wave (λ_M the largest eigenvalue of minus the second difference)."""
    def R(z):
        return 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24

    lam = -np.linalg.eigvalsh(second_difference(15)[0]).min()
    h = Heat(nodes=15).max_step()
    assert abs(R(-h * lam)) == pytest.approx(1.0, abs=1e-10)
    assert abs(R(-1.01 * h * lam)) > 1 > abs(R(-0.99 * h * lam))
    assert Heat(nodes=15).max_step("euler") == pytest.approx(2 / lam, rel=1e-12)
    wave = Wave(nodes=15)
    h = wave.max_step()
    assert abs(R(1j * h * np.sqrt(lam))) == pytest.approx(1.0, abs=1e-10)
    assert wave.max_step("midpoint") == 0.0
    lam_k = np.sort(-np.linalg.eigvalsh(second_difference(15)[0]))
    np.testing.assert_allclose(wave.rk4_damping(0.05), -np.log(np.abs(R(0.05j * np.sqrt(lam_k)))) / 0.05,
                               rtol=1e-6)


def test_the_catalogue_defaults_are_the_documented_instances():
    heat, wave = Heat.example(), Wave.example()
    assert (heat.nodes, heat.control, heat.region, heat.control_weight) == (20, "interior", (0.25, 0.75), 1e-2)
    np.testing.assert_array_equal(heat.target, np.ones(20))
    np.testing.assert_array_equal(heat.x0, np.zeros(20))
    assert (wave.nodes, wave.control_weight, wave.nx, wave.nu) == (20, 1.0, 40, 20)
    x = np.arange(1, 21) / 21
    np.testing.assert_allclose(wave.x0, np.concatenate([np.sin(np.pi * x), np.zeros(20)]), atol=1e-15)
    np.testing.assert_array_equal(wave.target, np.zeros(20))


@pytest.mark.parametrize("make, match", [
    (lambda: Heat(nodes=1), "nodes must be an integer >= 2, got 1"),
    (lambda: Heat(nodes=10.0), "nodes must be an integer >= 2, got 10.0"),
    (lambda: Heat(control="left"), "unknown control 'left'; accepted: 'boundary', 'interior'"),
    (lambda: Heat(region=(0.6, 0.2)), r"region must be an interval \(a, b\) with 0 <= a < b <= 1, got \(0.6, 0.2\)"),
    (lambda: Heat(region=(0.2,)), r"region must have shape \(2,\), got shape \(1,\)"),
    (lambda: Heat(control="boundary", region=(0.2, 0.4)), "region applies to control='interior' only"),
    (lambda: Heat(control_weight=0), "control_weight must be a finite number > 0, got 0"),
    (lambda: Heat(target="one"), "target must be a number or a callable of x, got 'one'"),
    (lambda: Heat(initial=lambda x: x[:3]), "initial must map the nodes"),
    (lambda: Wave(target=np.nan), "target must be finite"),
    (lambda: Wave(velocity=lambda x: np.inf * x), "velocity must be finite"),
    (lambda: Wave(nodes=0), "nodes must be an integer >= 2, got 0"),
    (lambda: Heat().max_step("rk45"), "unknown method 'rk45'"),
    (lambda: Wave().rk4_damping(-1.0), "h must be a finite number > 0, got -1.0"),
])
def test_bad_input_is_refused_with_its_name_and_value(make, match):
    with pytest.raises(tp.InputError, match=match):
        make()

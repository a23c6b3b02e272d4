"""Neural-ODE learning: time rescaling, the 1/T decay of the training error (A), the exponential decay under the
turnpike cost (B) and where it fails, the stopping of sparse controls (C), data sets, diagnostics."""

import numpy as np
import pytest

import turnpike as tp
from problems.datasets import DATASETS, concentric_spheres
from problems.neural_ode import NeuralODEClassification
from turnpike.analysis.learning import bang_off, switching_at_rest, switching_function, zero_threshold

rng = np.random.default_rng(0)
POINTS = rng.uniform(-1, 1, (12, 2))
LABELS = np.sign(POINTS[:, 1])  # separable by the second coordinate: zero loss is reachable


def outer_erm(weight):
    return NeuralODEClassification(POINTS, LABELS, field="outer", cost="erm", weight=weight)


def test_time_rescaling_of_the_outer_model():
    """f linear in u: problem (T, λ) is problem (1, λ/T) with u_T(t) = u_1(t/T)/T (docs/mathematics.md §1).

    Both are solved from corresponding seeded starts; the optimal costs agree to 1e-6 and the controls map.
    """
    T, lam, steps = 4.0, 0.5, 20
    v0 = 0.1 * np.random.default_rng(1).standard_normal((steps, 6))
    one = tp.solve(outer_erm(lam / T), 1.0, steps, initial_guess=v0, options={"ipopt.tol": 1e-10})
    long = tp.solve(outer_erm(lam), T, steps, initial_guess=v0 / T, options={"ipopt.tol": 1e-10})
    assert one.success and long.success
    assert long.cost == pytest.approx(one.cost, abs=1e-6)
    np.testing.assert_allclose(long.u, one.u / T, atol=1e-8)
    s, rescaled = tp.analysis.rescaled_controls(long)
    np.testing.assert_allclose(rescaled, one.u, atol=1e-7)
    np.testing.assert_allclose(s, 0.5 * (one.t[:-1] + one.t[1:]), atol=1e-14)


def test_final_training_error_decays_like_one_over_T():
    """Cost (A) with zero loss reachable: E(x(T)) <= C/T, log-log slope at most -0.9 over T = 1..32."""
    horizons = [1, 2, 4, 8, 16, 32]
    errors, previous = [], None
    for T in horizons:
        prob = outer_erm(1e-2)
        guess = None if previous is None else previous.u * previous.T / T  # the rescaled optimum
        sol = tp.solve(prob, float(T), 20, initial_guess=guess, options={"ipopt.tol": 1e-10})
        assert sol.success
        assert tp.resimulation_error(prob, sol) < 1e-4
        errors.append(prob.training_error(sol.x[-1]))
        previous = sol
    slope = np.polyfit(np.log(horizons), np.log(errors), 1)[0]
    assert slope <= -0.9


def test_training_error_and_accuracy_per_layer():
    prob = NeuralODEClassification(POINTS, LABELS, field="inner", cost="turnpike", weight=1e-2)
    sol = tp.solve(prob, 2.0, dt=0.1)
    assert sol.success
    err = prob.training_error(sol.x)
    assert err.shape == (sol.steps + 1,)
    z = sol.x[0] @ prob.output
    assert err[0] == pytest.approx(np.mean((z - LABELS) ** 2), rel=1e-12)
    assert err[-1] < err[0] and prob.accuracy(sol.x[-1]) == 1.0
    # the flow of new points with the solution's controls reproduces the training trajectories
    np.testing.assert_allclose(prob.flow(sol, POINTS), sol.x, atol=1e-10)


@pytest.mark.parametrize("field", ["inner", "outer", "bottleneck"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_every_field_and_activation_solves_and_resimulates(field, activation):
    prob = NeuralODEClassification(POINTS[:6], LABELS[:6], field=field, activation=activation,
                                   hidden=3 if field == "bottleneck" else None,
                                   augment=1, cost="turnpike", loss="logistic", weight=1.0)
    sol = tp.solve(prob, 1.0, 20)
    assert sol.success and sol.x.shape == (21, 6, 3)
    assert tp.resimulation_error(prob, sol) < 1e-5


def test_sparse_cost_splits_the_control_and_respects_the_bound():
    prob = NeuralODEClassification(POINTS[:6], LABELS[:6], field="outer", cost="sparse", weight=1e-2, l1_bound=1.0)
    assert prob.split_control and prob.l1 == 1e-2 and prob.l2 == 0.0
    sol = tp.solve(prob, 2.0, 10)
    assert sol.success
    assert np.abs(sol.u).sum(axis=1).max() <= 1.0 + 1e-6


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_datasets_are_seeded_and_labelled(name):
    a, la = DATASETS[name](n=21, seed=3)
    b, lb = DATASETS[name](n=21, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert a.shape[0] == 21 and set(np.unique(la)) == ({0, 1, 2} if name == "rings" else {-1.0, 1.0})


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"field": "deep"}, "unknown field 'deep'"),
        ({"activation": "gelu"}, "unknown activation 'gelu'"),
        ({"cost": "sparse"}, r"l1_bound \(M\) is required"),
        ({"cost": "tracking", "tracking_target": np.zeros((3, 2))}, r"tracking_target must have shape \(12, 2\)"),
        ({"output": np.zeros(2)}, "output must be a nonzero vector"),
        ({"field": "bottleneck"}, "hidden"),
        ({"weight": -1.0}, "weight must be a finite number >= 0"),
        ({"labels": np.full(12, 2.0)}, r"class\(es\) \[0, 1\] have no point"),
    ],
)
def test_bad_arguments_are_named(kw, match):
    args = {"points": POINTS, "labels": LABELS, **kw}
    with pytest.raises(tp.InputError, match=match):
        NeuralODEClassification(**args)


# -- results 3 and 4 -----------------------------------------------------------------------------------------
# Two spheres in R^3, N = 4 = d + 1 points: the outer field has d + 1 = 4 parameters acting on the output at
# first order, so the output residuals are controllable near the zero-error set (rank G = N, see
# NeuralODEClassification.linearised_rate), the hypothesis of the exponential estimate under cost (B).
SPHERES = concentric_spheres(4, 3, seed=0)
HORIZONS = (5.0, 10.0, 20.0)
DT, TOL = 0.1, 1e-10
MS = {"options": {"ipopt.tol": TOL}, "formulation": "multiple-shooting"}


def solved(prob, T):
    sol = tp.solve(prob, T, dt=DT, **MS)
    assert sol.success, sol.message
    assert tp.resimulation_error(prob, sol) < 1e-5
    return sol


def window_fit(t, values, start=1.0, stop=5.0, floor=1e-12):
    """One-sided fit K e^{-μt} on the layers all horizons share, after the first transient layer."""
    keep = (t >= start) & (t <= stop + 1e-9)
    return tp.analysis.fit_rate(t[keep], values[keep], stop, one_sided=True, floor=floor)


def within(values, rel):
    return max(values) <= (1 + rel) * min(values)


def test_turnpike_cost_decays_exponentially_at_the_linearised_rate_for_every_horizon():
    """Cost (B), outer field, N <= D + 1: E(x(t)) <= C e^{-2μt}, |u(t)| <= C e^{-μt}, C and μ independent of T.

    μ is predicted by the LQ problem of the output residuals at the final state, √(α/(Nλ)) s_min(G); the fits
    over the shared layers [1, 5] agree across T = 5, 10, 20 within 25% (rate and constant), the fit over the
    whole of T = 20 matches μ (|u|) and 2μ (E) within 10%, and the depth t_ε to reach E = 1e-3 does not grow.
    """
    prob = NeuralODEClassification(*SPHERES, field="outer", cost="turnpike", weight=0.05, alpha=1.0)
    sols = [solved(prob, T) for T in HORIZONS]
    errors = [prob.training_error(s.x) for s in sols]
    norms = [tp.analysis.control_norm(s) for s in sols]
    fits_E = [window_fit(s.t, E) for s, E in zip(sols, errors, strict=True)]
    fits_u = [window_fit(s.t[:-1], u) for s, u in zip(sols, norms, strict=True)]
    for fits in (fits_E, fits_u):
        assert all(f.success for f in fits)
        assert within([f.rate for f in fits], 0.25) and within([f.constant for f in fits], 0.25)
    mu, s = prob.linearised_rate(sols[-1].x[-1])
    assert s[-1] > 0.1 * s[0]  # rank G = N: the hypothesis holds
    long = sols[-1]
    rate_u = tp.analysis.fit_rate(long.t[10:-1], norms[-1][10:], long.T, one_sided=True).rate
    rate_E = tp.analysis.fit_rate(long.t[10:], errors[-1][10:], long.T, one_sided=True, floor=1e-14).rate
    assert rate_u == pytest.approx(mu, rel=0.1) and rate_E == pytest.approx(2 * mu, rel=0.1)
    depths = [tp.analysis.first_time_below(s.t, E, 1e-3) for s, E in zip(sols, errors, strict=True)]
    assert None not in depths and depths == sorted(depths, reverse=True)


def test_tracking_variant_decays_at_the_rate_of_the_linearised_optimality_system():
    """Tracking x̄ = the projection of the inputs on the zero-error set: |x(t) - x̄| decays at the spectral gap of
    the Hamiltonian linearised at the static optimum (x̄, 0), a second method independent of the NLP."""
    prob = NeuralODEClassification(*SPHERES, field="outer", cost="tracking", weight=0.05, alpha=1.0)
    static = tp.solve_static(prob)
    assert static.success
    np.testing.assert_allclose(static.x, prob.tracking_target, atol=1e-8)
    predicted = tp.analysis.predicted_rate(prob, static)
    assert predicted.rate is not None
    sols = [solved(prob, T) for T in HORIZONS]
    dist = [np.sqrt(((s.x - prob.tracking_target) ** 2).sum(axis=2).mean(axis=1)) for s in sols]
    fits = [window_fit(s.t, d, floor=1e-8) for s, d in zip(sols, dist, strict=True)]
    assert within([f.rate for f in fits], 0.25) and within([f.constant for f in fits], 0.25)
    long = tp.analysis.fit_rate(sols[-1].t[20:], dist[-1][20:], 20.0, one_sided=True, floor=1e-8)
    assert long.rate == pytest.approx(predicted.rate, rel=0.15)


def test_static_optimum_under_the_turnpike_cost_is_zero_error_at_zero_weights():
    """σ(0) = 0: at ū = 0 every state is an equilibrium, so the static optimum of cost (B) is ū = 0 with every
    x̄_i on the zero-error set, cost 0. The default start (x̄ = x0, ū = 0) is feasible, and IPOPT gets there in
    a few iterations; from random ū of scale 0.1 it took 36 on these 200 points (and stalled at N = 1000)."""
    points, labels = concentric_spheres(200, 2, radii=(1.0, 2.0), seed=0)
    prob = NeuralODEClassification(points, labels, field="inner", activation="tanh", cost="turnpike", weight=1e-2)
    static = tp.solve_static(prob)
    assert static.success and static.stats["iterations"] <= 15
    assert static.cost == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(static.u, 0.0, atol=1e-6)
    np.testing.assert_allclose(prob.training_error(static.x), 0.0, atol=1e-12)


def test_inner_tanh_field_stops_under_the_turnpike_cost_and_keeps_a_residual_error():
    """Where result 3 fails: σ(0) = 0 makes the inner field bilinear at u = 0, so λ|u|² is an L1 price on the
    velocity. The control is zero after some T*, the error then stays constant (no exponential decay), and T*
    obeys the second-order stopping law (α(T - T*) + 1)|P||Σ r_i (x_i, 1)|/N = λ (within one layer)."""
    lam, alpha = 0.05, 1.0
    prob = NeuralODEClassification(*SPHERES, field="inner", cost="turnpike", weight=lam, alpha=alpha)
    residuals = []
    for T in HORIZONS[:2]:
        sol = solved(prob, T)
        zero = zero_threshold(TOL, sol.h, lam)
        t_star = tp.analysis.stopping_time(sol, zero)
        assert t_star < 0.5 * T
        E = prob.training_error(sol.x)
        after = sol.t >= t_star
        np.testing.assert_allclose(E[after], E[-1], rtol=1e-6)  # a plateau, not a decay
        price = prob.stopping_residual(sol.x[-1])
        assert (alpha * (T - t_star) + 1) * price == pytest.approx(lam, abs=alpha * sol.h * price)
        residuals.append(np.sqrt(E[-1]) * T)
    assert within(residuals, 0.25)  # √E(T) ~ 1/T


def test_scalar_switching_function_and_stopping_law():
    """dx/dt = u, L = ½(x - y)², λ|u|, |u| <= 1, x(0) - y = 2 (docs/mathematics.md §1, worked case).

    Re-derived: u = -1 on (0, T*), then 0; the cost's derivative in T* vanishes when r (T - T*) = λ with
    r = 2 - T*, i.e. r² + (T - 2) r - λ = 0. The switching function is s(t) = ∫_t^T (x - y) ds.
    """
    import casadi as ca

    lam, T = 0.3, 8.0
    x, u, y = ca.SX.sym("x"), ca.SX.sym("u"), ca.SX.sym("y")
    prob = tp.Problem(state=x, control=u, dynamics=u, running_cost=0.5 * (x - y) ** 2, data=y,
                      data_values=[-2.0], x0=[0.0], l1=lam, l1_bound=1.0)
    sol = tp.solve(prob, T=T, steps=160, options={"ipopt.tol": TOL})
    assert sol.success and tp.resimulation_error(prob, sol) < 1e-8
    r = -(T - 2) / 2 + np.sqrt(((T - 2) / 2) ** 2 + lam)
    t_star = tp.analysis.stopping_time(sol, zero_threshold(TOL, sol.h, lam))
    assert abs(t_star - (2 - r)) <= sol.h
    c = switching_at_rest(prob, sol.x[-1], 1.0)
    assert c[0] == pytest.approx(sol.x[-1, 0] + 2.0, rel=1e-12)  # c_L = f_u ∂L/∂x = x - y
    assert c[0] == pytest.approx(r, abs=1e-3)
    assert abs(T - lam / c[0] - t_star) <= sol.h  # the stopping law r (T - T*) = λ
    residual = 2 - np.minimum(sol.t, 2 - r)  # x - y of the exact optimum
    mid = 0.5 * (sol.t[:-1] + sol.t[1:])
    exact = np.array([np.trapezoid(residual[k:], sol.t[k:]) for k in range(sol.steps)])
    np.testing.assert_allclose(switching_function(prob, sol)[:, 0], exact, atol=3 * sol.h)
    assert np.abs(switching_function(prob, sol)[mid > 2 - r + sol.h, 0]).max() <= lam * (1 + 1e-6)


def test_sparse_cost_saturates_then_stops_and_the_stop_moves_at_most_one_layer():
    """Cost (C), outer field (linear in u, Pontryagin applies): where the switching function exceeds the price λ
    the control saturates |u|_1 = M (bound multiplier > 0), where it is below the control is zero (decided by
    zero_threshold at IPOPT's tol), active components tie in |s| (the control lies on the face of the L1 ball
    that the maximal switching components span). After T* the states rest and the switching function is
    (T - t) c_L(x(T)) (two computations: reverse mode through the scheme, and the formula at rest); it reaches λ
    at T*: the stopping law (T - T*)|c_L|_∞ = λ, to O(h). T* moves by at most one layer (dt fixed) when T
    doubles."""
    lam, M = 0.05, 4.0
    prob = NeuralODEClassification(*SPHERES, field="outer", cost="sparse", weight=lam, l1_bound=M)
    stops = []
    for T in HORIZONS:
        sol = solved(prob, T)
        zero = zero_threshold(TOL, sol.h, lam)
        s = switching_function(prob, sol)
        largest = np.abs(s).max(axis=1)
        l1 = np.abs(sol.u).sum(axis=1)
        assert np.all(l1[largest > lam * (1 + 1e-3)] >= M * (1 - 1e-6))
        assert np.all(np.abs(sol.u[largest < lam * (1 - 1e-3)]) <= zero)
        structure = bang_off(sol, M, zero, s)
        assert structure.summary()["kkt_consistent"]
        t_star = tp.analysis.stopping_time(sol, zero)
        c = np.abs(switching_at_rest(prob, sol.x[-1], 1.0)).max()
        off = sol.t[:-1] >= t_star - 1e-9
        np.testing.assert_allclose(largest[off], (T - sol.t[:-1][off] - sol.h / 2) * c, rtol=1e-4)
        assert (T - t_star - sol.h / 2) * c <= lam * (1 + 1e-6)  # the first off layer: |s| <= λ
        assert (T - t_star) * c == pytest.approx(lam, rel=0.02)  # the stopping law, to O(h)
        stops.append(t_star)
    assert all(b - a <= DT + 1e-9 for a, b in zip(stops, stops[1:], strict=False))
    assert stops == sorted(stops)


def test_catalogue_example_takes_parameters_and_names_unknown_ones():
    prob = tp.catalogue.load("neural-ode", n_points=10, d=3, cost="sparse", field="outer", seed=2)
    assert prob.n_samples == 10 and prob.nx == 3 and prob.l1_bound == 1.0 and prob.field == "outer"
    assert set(tp.catalogue.parameters("neural-ode")) >= {"n_points", "seed", "cost", "weight", "alpha", "augment",
                                                          "l1_bound"}
    tracking = NeuralODEClassification.example(cost="tracking", augment=1)
    np.testing.assert_allclose(tracking.tracking_target @ tracking.output, tracking.labels)
    with pytest.raises(tp.InputError, match="unknown parameter\\(s\\) 'depth', 'width'; accepted: dataset"):
        NeuralODEClassification.example(width=3, depth=2)
    with pytest.raises(tp.InputError, match="'moons' is two-dimensional"):
        NeuralODEClassification.example(dataset="moons", d=3)

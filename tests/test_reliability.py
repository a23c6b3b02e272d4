"""Regressions of the reliability pass: a failed solve has no cost, rate or tube; a curve that is not an
exponential has no rate; non-finite horizons end as failed rows, never as tracebacks."""

import json
import re
import subprocess
import sys
from pathlib import Path

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from turnpike.analysis.rates import MIN_R2, fit_rate


def test_failed_solves_give_no_cost_rate_or_tube():
    """dx2/dt = sqrt(x1 - 1) + u from x1 = 0: the dynamics are undefined at the start, every solve fails."""
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u")
    prob = tp.Problem(state=x, control=u, dynamics=ca.vertcat(x[1], ca.sqrt(x[0] - 1) + u), x0=[0.0, 0.0],
                      running_cost=ca.sumsqr(x) + u**2)
    study = tp.compare_horizons(prob, [5.0, 10.0], steps=20, progress=False)
    assert not study.success
    for row in study.rows():
        if not row["success"]:
            assert row["cost"] is None and row["cost_per_time"] is None and row["cost_excess"] is None
            assert row["rate"] is None and row["tube_entry"] is None and row["tube_fraction"] is None
            assert row["rate_message"] == "no rate for a failed solve"
    assert "—" in study.table()


def test_a_curve_that_is_not_exponential_gets_no_rate():
    """Noise around a constant: the log-model explains almost nothing (R² near 0) and no rate is given; the
    same fit on e^{-2t} (R² = 1) gives μ = 2."""
    t = np.linspace(0.0, 10.0, 101)
    noisy = np.exp(np.random.default_rng(0).normal(0.0, 1.0, t.size) - 0.3 * t)
    fit = fit_rate(t, noisy, 10.0, one_sided=True)
    assert not fit.success and np.isnan(fit.rate) and fit.r2 < MIN_R2
    assert fit.message.startswith("not exponential: R² =")
    clean = fit_rate(t, np.exp(-2.0 * t), 10.0, one_sided=True)
    assert clean.success and clean.rate == pytest.approx(2.0, rel=1e-10)


@pytest.mark.parametrize("T", [1e300, np.inf])
def test_fit_rate_on_non_finite_times_says_so(T):
    t = np.linspace(0.0, 1.0, 11) * (T if np.isfinite(T) else 1.0)
    fit = fit_rate(t, np.exp(-t / max(t[-1], 1.0)), T)
    assert not fit.success and "not finite" in fit.message


def test_the_cli_reports_a_non_finite_horizon_as_a_failed_row(tmp_path):
    """`turnpike compare pendulum --horizons 5 1e300` used to end in a traceback in fit_rate."""
    out = subprocess.run([sys.executable, "-m", "turnpike.cli", "compare", "pendulum", "--horizons", "5", "1e300",
                          "--steps", "10", "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip().startswith(("5 ", "1e+300"))]
    assert rows[0][2] == "yes" and rows[1][2:6] == ["NO", "—", "—", "—"]


def test_a_sweep_with_a_non_finite_horizon_finishes_and_rereads_its_checkpoints(tmp_path):
    command = [sys.executable, "-m", "turnpike.cli", "sweep", "pendulum", "--horizons", "5", "1e300", "--steps", "10",
               "--out", str(tmp_path / "s"), "--no-figures"]
    for reused in ("0 read from checkpoints", "3 read from checkpoints"):
        out = subprocess.run(command, capture_output=True, text=True)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert reused in out.stdout


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x, u, z: {"dynamics": ca.vertcat(x[1], z + u)},
         r"dynamics uses the symbol\(s\) z, which are not declared; it may use: state \(x_0, x_1\), control \(u\)"),
        (lambda x, u, z: {"dynamics": ca.vertcat(x[1], u), "running_cost": z**2}, "running_cost uses the symbol"),
        (lambda x, u, z: {"dynamics": ca.vertcat(ca.SX.sym("x", 2)[1], u)},
         "a new symbol with the name of a declared one"),
    ],
)
def test_an_undeclared_symbol_is_named(make, match):
    x, u, z = ca.SX.sym("x", 2), ca.SX.sym("u"), ca.SX.sym("z")
    with pytest.raises(tp.InputError, match=match):
        tp.Problem(state=x, control=u, x0=[0.0, 0.0], **make(x, u, z))


def test_unbounded_work_and_bad_seeds_are_refused_before_any_build(monkeypatch):
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u")
    prob = tp.Problem(state=x, control=u, dynamics=ca.vertcat(x[1], u), x0=[1.0, 0.0], running_cost=ca.sumsqr(x) + u**2)
    with pytest.raises(tp.InputError, match=r"steps=1000000000 needs an estimated .* GB for the multiple-shooting NLP"):
        tp.solve(prob, 10.0, 10**9)
    monkeypatch.setenv("TURNPIKE_MEMORY_GB", "0.001")  # 1 MB: 100 steps of this problem need about 0.5 MB
    assert tp.solve(prob, 10.0, 100).success
    with pytest.raises(tp.InputError, match="steps=1000 needs an estimated"):
        tp.solve(prob, 10.0, 1000)
    for seed in (-1, 1.5, "0", True):
        with pytest.raises(tp.InputError, match="seed must be None or an integer >= 0"):
            tp.solve(prob, 10.0, 10, seed=seed)


def test_the_cli_refuses_unbounded_steps_and_negative_seeds_with_exit_2(tmp_path):
    for extra, match in ((["--steps", "1000000000"], "needs an estimated"), (["--steps", "10", "--seed", "-1"],
                                                                            "seed must be None or an integer")):
        out = subprocess.run([sys.executable, "-m", "turnpike.cli", "solve", "pendulum", "--T", "10", *extra, "--out",
                              str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and match in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_sweep_claims_its_directory(tmp_path):
    """Refused: a directory holding a horizon comparison, the sweep of another problem, or a running sweep; and a
    comparison is not saved into a sweep's directory."""
    from turnpike.sweeps.arguments import claimed_directory

    sweep = dict(horizons=[2.0], steps=10, workers=1, figures=False, progress=False)
    tp.sweep("pendulum", out=tmp_path / "a", **sweep)
    with pytest.raises(tp.InputError, match="holds the sweep of 'pendulum', not of 'linear-quadratic'"):
        tp.sweep("linear-quadratic", out=tmp_path / "a", **sweep)
    assert tp.sweep("pendulum", out=tmp_path / "a", **sweep).reused  # the same sweep again: its checkpoints
    from problems import Pendulum

    study = tp.compare_horizons(Pendulum(), [2.0], steps=10, progress=False)
    with pytest.raises(tp.InputError, match="holds a sweep"):
        study.save(tmp_path / "a")
    study.save(tmp_path / "b")
    with pytest.raises(tp.InputError, match="holds a horizon comparison"):
        tp.sweep("pendulum", out=tmp_path / "b", **sweep)
    with claimed_directory(tmp_path / "a", "pendulum"):  # as another sweep running in it would
        with pytest.raises(tp.InputError, match=r"is in use by another sweep \(process \d+\)"):
            tp.sweep("pendulum", out=tmp_path / "a", **sweep)


def test_a_sweep_in_a_script_without_the_main_guard_stops_with_one_message(tmp_path):
    """The workers run the script again as they start; each such sweep call ends its worker at once and the
    parent stops with one message, not a row 'worker died' per solve."""
    script = tmp_path / "unguarded.py"
    script.write_text("import turnpike as tp\n"
                      f"tp.sweep('pendulum', [2.0, 3.0], {str(tmp_path / 'out')!r}, steps=10, workers=2, "
                      "figures=False, progress=False)\nprint('finished')\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 1 and "finished" not in out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("turnpike.errors.InputError: ")]
    assert errors == [
        f"turnpike.errors.InputError: the sweep's worker processes run {script} again as they start, and it calls "
        'turnpike.sweep outside `if __name__ == "__main__":`; put the call under that line, or pass workers=1'
    ], out.stderr
    assert "worker died" not in out.stderr + out.stdout
    guarded = tmp_path / "guarded.py"
    guarded.write_text("import turnpike as tp\nif __name__ == '__main__':\n"
                       f"    r = tp.sweep('pendulum', [2.0, 3.0], {str(tmp_path / 'out2')!r}, steps=10, workers=2, "
                       "figures=False, progress=False)\n    print(r.success)\n")
    out = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_parameters_named_like_the_tables_columns_are_swept(tmp_path):
    """The neural-ODE entry's own `cost` and `seed` (the data set's) sweep; their columns are param_cost and
    param_seed, beside the table's cost (J_T) and seed (the initial controls'). transport's cells sweep too."""
    result = tp.sweep("neural-ode", [1.0], tmp_path / "n", params={"cost": ["erm", "turnpike"], "seed": [3]},
                      steps=5, workers=1, figures=False, progress=False)
    assert [r["param_cost"] for r in result.rows] == ["erm", "turnpike"]
    assert [r["param_seed"] for r in result.rows] == [3, 3] and [r["seed"] for r in result.rows] == [0, 0]
    assert all(r["success"] and r["cost"] > 0 for r in result.rows)
    assert tp.catalogue.parameters("transport") == ["cells", "initial"]
    cells = tp.sweep("transport", [2.0], tmp_path / "t", params={"cells": [5, 10]}, dt=0.1, workers=1,
                     figures=False, progress=False)
    assert [r["cells"] for r in cells.rows] == [5, 10] and cells.success


def test_an_unstable_explicit_step_is_flagged_and_a_resolved_one_is_not():
    """Transport, 20 upwind cells: RK4 is stable for h <= 1.39 Δx = 0.069. At h = 0.1 the NLP converges (to
    J ≈ 20, u ≈ 0) but halving the step moves the states by 19% and the observed order is far from 4: flagged.
    At h = 0.01 the states move by less than 1e-4 and the observed order is 4: no warning. An adaptive
    integration (DOP853) agrees with the check's estimate of the error."""
    from problems import Transport

    problem = Transport()
    coarse = tp.solve(problem, 20.0, 200)
    assert coarse.success and len(coarse.warnings) == 1
    assert "the step is unstable or too coarse" in coarse.warnings[0] and "warning" in coarse.message
    assert abs(coarse.stats["step_check"]["observed_order"] - 4) > 1
    fine = tp.solve(problem, 5.0, 500)
    check = fine.stats["step_check"]
    assert fine.success and fine.warnings == [] and check["change"] < 1e-4
    assert abs(check["observed_order"] - 4) < 0.5
    assert tp.resimulation_error(problem, fine) == pytest.approx(check["estimated_error"], rel=0.5)


def test_an_open_loop_unstable_system_is_said_to_amplify():
    """dx/dt = 3x + u over T = 10: a perturbation of x0 grows like e^{30}; the warning says so."""
    x, u = ca.SX.sym("x"), ca.SX.sym("u")
    prob = tp.Problem(state=x, control=u, dynamics=3 * x + u, running_cost=u**2 + (x - 1) ** 2, x0=[0.0])
    sol = tp.solve(prob, 10.0, 50)
    assert sol.success and "the dynamics amplify perturbations of x0 by" in sol.warnings[0]
    assert sol.stats["step_check"]["amplification"] == pytest.approx(np.exp(30.0), rel=1e-2)


def test_the_cli_prints_the_warning_and_exits_3(tmp_path):
    out = subprocess.run([sys.executable, "-m", "turnpike.cli", "solve", "transport", "--T", "20", "--steps", "200",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("turnpike: warning: halving the step changes the states by")


def double_well():
    """dx/dt = -x + u, L = (x² - 1)² + 0.3x + u²: static optima near x = 0.61 (J̄ = 0.949, reached from x0 = 1) and
    x = -0.77 (J̄ = 0.528, the global one)."""
    x, u = ca.SX.sym("x"), ca.SX.sym("u")
    return tp.Problem(state=x, control=u, dynamics=-x + u, running_cost=(x**2 - 1) ** 2 + 0.3 * x + u**2, x0=[1.0])


def test_a_local_static_optimum_is_flagged_and_more_starts_find_the_global_one():
    """From x0 = 1 the static solve stops in the upper well; J_T then grows like 0.528 T, below J̄ = 0.949: the
    study says the static solution is not the optimal steady state. With 4 starts the static cost is the slope
    of J_T (a theorem's identity: J_T = T J̄ + O(1)) and the excess J_T - T J̄ is constant in T."""
    problem = double_well()
    local = tp.compare_horizons(problem, [10.0, 20.0, 40.0], dt=0.1, progress=False)
    assert local.success and len(local.warnings) == 1 and "not the optimal steady state" in local.warnings[0]
    best = tp.solve_static(problem, starts=4)
    assert best.cost < local.static.cost - 0.4 and len(best.stats["starts"]) == 4
    assert all(start["cost"] >= best.cost - 1e-12 for start in best.stats["starts"])
    good = tp.compare_horizons(problem, [10.0, 20.0, 40.0], dt=0.1, progress=False, static_starts=4)
    assert good.warnings == [] and good.static.cost == pytest.approx(best.cost, rel=1e-10)
    excess = [row["cost_excess"] for row in good.rows()]
    assert max(excess) - min(excess) < 1e-3
    with pytest.raises(tp.InputError, match="starts must be an integer >= 1"):
        tp.solve_static(problem, starts=0)


def test_the_cli_takes_static_starts(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "turnpike.cli", "solve", "pendulum", "--T", "2", "--steps", "20",
                         "--static-starts", "2", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "turnpike.cli", "solve", "pendulum", "--T", "2", "--steps", "20",
                          "--static-starts", "0", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert bad.returncode == 2 and "starts must be an integer >= 1, got 0" in bad.stderr


def test_study_figures_name_the_components_wrap_into_a_grid_and_name_the_sweep_point(monkeypatch, tmp_path):
    """A problem with 3 named states and 20 controls: the trajectories figure has 12 panels in rows of 4 titled by
    the names, its title says which are shown; a sweep point's figures name its parameters and seed."""
    from matplotlib.figure import Figure

    drawn = {}
    original = Figure.savefig

    def record(self, path, *args, **kwargs):
        drawn[Path(path).name] = self
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    x, u = ca.SX.sym("x", 3), ca.SX.sym("u", 20)
    prob = tp.Problem(state=x, control=u, dynamics=ca.vertcat(-x[0] + ca.sum1(u), -x[1], -x[2]), x0=[1.0, 0.5, 0.2],
                      running_cost=ca.sumsqr(x) + ca.sumsqr(u), state_names=["position", "speed", "load"],
                      control_names=[f"force {j}" for j in range(20)])
    study = tp.compare_horizons(prob, [2.0, 4.0], steps=20, progress=False)
    study.plot(tmp_path / "study")
    figure = drawn["trajectories.png"]
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles[:3] == ["position", "speed", "load"] and titles[3:] == [f"force {j}" for j in range(9)]
    assert figure.get_size_inches()[0] == pytest.approx(4 * 3.6)
    assert "(panels: 3 of 3 states, 9 of 20 controls)" in figure.get_suptitle()
    assert "dotted" not in drawn["distance.png"].get_suptitle()  # nothing failed

    tp.sweep("pendulum", [2.0], tmp_path / "sweep", params={"damping": [0.3]}, steps=10, workers=1, progress=False)
    assert drawn["distance.png"].get_suptitle().startswith("pendulum, point 0 (damping=0.3), seed 0: turnpike")
    assert [ax.get_title() for ax in drawn["trajectories.png"].axes][:2] == pendulum_panel_titles()


def pendulum_panel_titles():
    from problems import Pendulum

    p = Pendulum()
    return [*p.state_names, *p.control_names][:2]


def _tagged_processes(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment holds ``tag``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "environ").read_bytes():
                    state = (entry / "status").read_text().split("State:")[1].splitlines()[0]
                    found += [] if "\tZ" in state else [int(entry.name)]
            except (OSError, IndexError):
                pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the process table in /proc")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_signal_to_a_pool_sweep_leaves_no_process_and_keeps_finished_solves(tmp_path, sig):
    """`turnpike sweep --workers 2` on a workload of about a minute, signalled after 6 s: TERM and INT end it
    with 143/130 and the count of checkpointed solves; KILL cannot be handled, and the workers end by
    themselves (each watches the sweep's process); nothing tagged with this test's environment survives."""
    import signal as signals
    import time
    import uuid

    tag = uuid.uuid4().hex
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "turnpike.cli", "sweep", "neural-ode", "--param", "n_points=300", "--horizons", "2", "4",
         "6", "8", "10", "12", "--steps", "200", "--workers", "2", "--out", str(out), "--no-figures"],
        env={**__import__("os").environ, "TURNPIKE_TEST_TAG": tag}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    time.sleep(6)
    assert len(_tagged_processes(tag)) >= 3  # the sweep, the fork server, the workers
    process.send_signal(getattr(signals, sig))
    _, err = process.communicate(timeout=60)
    for _ in range(50):
        if not _tagged_processes(tag):
            break
        time.sleep(0.2)
    assert _tagged_processes(tag) == []
    kept = len(list((out / "checkpoints").glob("*.npz")))
    if sig == "SIGKILL":
        assert process.returncode == -9
    else:
        assert process.returncode == {"SIGTERM": 143, "SIGINT": 130}[sig], err
        assert f"interrupted: {kept} of 7 solves are checkpointed" in err


def test_an_interrupted_comparison_keeps_its_finished_horizons(tmp_path):
    """SIGINT during the third horizon (sent by the callback of the solve: deterministic): StudyInterrupted holds
    the two finished horizons, which the CLI saves."""
    import os
    import signal as signals

    from problems import Pendulum

    def interrupt_third(phase, k, cost, u):
        if u.shape[0] == 30 and k == 2:
            os.kill(os.getpid(), signals.SIGINT)

    with pytest.raises(tp.StudyInterrupted, match="interrupted after 2 of 3 horizons") as caught:
        tp.compare_horizons(Pendulum(), [1.0, 2.0, 3.0], dt=0.1, progress=False, callback=interrupt_third)
    study = caught.value.study
    assert [s.T for s in study.solutions] == [1.0, 2.0] and all(s.success for s in study.solutions)
    study.save(tmp_path / "partial")
    assert tp.HorizonStudy.load(tmp_path / "partial").horizons == [1.0, 2.0]


def test_progress_shows_the_build_and_a_status_line_per_phase(capsys):
    """With progress on, stderr gets the build time and a status line from the first L-BFGS iteration on (then at
    most two a second), erased at the end; without it, nothing."""
    from problems.datasets import concentric_spheres
    from problems.neural_ode import NeuralODEClassification

    points, labels = concentric_spheres(30, 2, seed=1)
    prob = NeuralODEClassification(points, labels, augment=1)
    tp.solve(prob, 2.0, 10)
    assert capsys.readouterr().err == ""
    sol = tp.solve(NeuralODEClassification(points, labels, augment=1), 2.0, 10, progress=True)
    err = capsys.readouterr().err
    assert sol.success and err.startswith("built the reduced NLP in ")
    assert re.search(r"lbfgs iteration 1: J = [-+.\de]+ \(\d+ s\)", err) and err.endswith("\r\x1b[K")


def test_a_sweeps_progress_gives_an_estimate_of_the_time_left(tmp_path, capfd):
    tp.sweep("pendulum", [2.0, 4.0], tmp_path / "s", steps=10, workers=1, figures=False, progress=True)
    lines = [line for line in capfd.readouterr().err.replace("\r", "\n").splitlines() if "T=2 seed=0" in line]
    assert lines and re.search(r"about \d+ s left$", lines[-1])


def test_resimulation_of_an_interval_far_longer_than_the_dynamics_is_refused_quickly():
    """The pendulum on T = 1e12 with 10 steps: DOP853 would need about 1e11 steps per interval; it stops after its
    budget of evaluations with a message, instead of running for hours."""
    import time

    from problems import Pendulum

    problem = Pendulum()
    sol = tp.solve(problem, 1e12, 10)
    start = time.perf_counter()
    with pytest.raises(tp.SolverError, match=r"took more than 10000 evaluations of f"):
        tp.resimulation_error(problem, sol, max_evaluations=10_000)
    assert time.perf_counter() - start < 60


def test_write_json_stores_strict_json_and_never_half_a_file(tmp_path):
    """Records written as a long run goes (the examples, studies and sweeps use it): numpy values as numbers,
    non-finite numbers as null, and a value that cannot be stored leaves the previous file whole."""
    from turnpike.files import write_json

    path = tmp_path / "record.json"
    write_json(path, {"cost": np.float64(1.5), "rates": np.array([0.25, np.nan]), "steps": np.int64(3),
                      "fit": {"r2": float("inf")}, "T": (5.0, 10.0)})
    assert json.loads(path.read_text()) == {"cost": 1.5, "rates": [0.25, None], "steps": 3, "fit": {"r2": None},
                                            "T": [5.0, 10.0]}
    before = path.read_text()
    with pytest.raises(TypeError):
        write_json(path, {"unstorable": {1, 2}})
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]

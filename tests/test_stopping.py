"""Stopping a solve: the callback at a chosen iteration of any phase, the time limit, SIGINT and SIGTERM (noted
while a phase iterates, raised at once during a build), and the CLI's exit status on SIGTERM."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from compilers import compiler_gone, hanging_compiler

import turnpike as tp
from problems.datasets import concentric_spheres
from problems.neural_ode import NeuralODEClassification
from problems.pendulum import Pendulum
from turnpike.reduced import ReducedSpace
from turnpike.stopping import Interrupted, Stop


def spheres(n=30):
    points, labels = concentric_spheres(n, 2, seed=0)
    return NeuralODEClassification(points, labels, augment=1)  # N >= n_v: the reduced formulation


def test_the_callback_sees_ipopts_iterates_and_stops_it_at_a_chosen_iteration():
    """Reduced formulation: the cost given with each IPOPT iterate is J at the controls given (recomputed)."""
    prob, seen = spheres(), []

    def watch(phase, k, cost, u):
        seen.append((phase, k, cost, u))
        return phase == "ipopt" and k == 3

    sol = tp.solve(prob, 2.0, 10, presolve="none", callback=watch)
    assert not sol.success and sol.status == "stopped: stopped by the callback"
    assert sol.stats["iterations"] == 3 and [k for _, k, *_ in seen] == [0, 1, 2, 3]
    rs = ReducedSpace(prob, 10, "rk4")
    for _, _, cost, u in seen:
        assert rs._value_and_gradient(u.reshape(-1), rs.parameters(2.0))[0] == pytest.approx(cost, rel=1e-12)
    np.testing.assert_allclose(sol.u, seen[-1][3], rtol=0, atol=0)  # the solution is the iterate it stopped at


def test_the_callback_stops_the_presolve_and_ipopt_does_not_go_on():
    sol = tp.solve(spheres(), 2.0, 10, callback=lambda phase, k, cost, u: phase == "lbfgs" and k == 5)
    assert not sol.success and sol.status == "stopped: stopped by the callback"
    lbfgs = sol.stats["presolve"]["lbfgs"]
    assert lbfgs["iterations"] == 5 and lbfgs["message"] == "stopped: stopped by the callback"
    assert "newton" not in sol.stats["presolve"] or sol.stats["presolve"]["newton"]["iterations"] == 0
    assert sol.stats["iterations"] == 0


def test_a_stop_after_the_presolve_converged_leaves_ipopts_certificate():
    """IPOPT asks its iteration callback before its convergence test. A stop requested at the Newton phase's last
    step, where ‖∇J‖∞ <= tol, still lets IPOPT's iteration 0 test the point: certified, at the cost and controls
    of the solve that was not stopped. A stop at the phase's first step, where the gradient is larger, is not."""
    full = tp.solve(spheres(), 2.0, 10)
    newton = full.stats["presolve"]["newton"]
    assert full.success and full.stats["iterations"] == 0 and newton["gradient_norm"] <= 1e-8
    last = newton["iterations"]  # the phase's callback is told of every step, the last at the converged point

    stopped = tp.solve(spheres(), 2.0, 10, callback=lambda phase, k, cost, u: phase == "newton" and k == last)
    assert stopped.success and stopped.status == "Solve_Succeeded" and stopped.stats["iterations"] == 0
    assert stopped.cost == full.cost
    np.testing.assert_array_equal(stopped.u, full.u)

    early = tp.solve(spheres(), 2.0, 10, callback=lambda phase, k, cost, u: phase == "newton" and k == 1)
    rs = ReducedSpace(spheres(), 10, "rk4")
    assert np.abs(rs._value_and_gradient(early.u.reshape(-1), rs.parameters(2.0))[1]).max() > 1e-8
    assert not early.success and early.status == "stopped: stopped by the callback"


def test_the_callback_stops_multiple_shooting():
    sol = tp.solve(Pendulum(), 5.0, 50, formulation="multiple-shooting",
                   callback=lambda phase, k, cost, u: k == 2)
    assert not sol.success and sol.stats["iterations"] == 2 and sol.u.shape == (50, 1)


def test_a_time_limit_stops_a_long_solve_with_a_status_that_says_so():
    """Two spheres, N = 400, 100 steps: several seconds unlimited; stopped after 0.3 s in whichever phase."""
    sol = tp.solve(spheres(400), 5.0, 100, time_limit=0.3)
    assert not sol.success and sol.status == "stopped: time limit of 0.3 s"
    assert sol.stats["presolve"]["lbfgs"]["message"] == "stopped: time limit of 0.3 s"


def test_a_signal_while_iterating_stops_at_the_iterate_and_raises_interrupted():
    """SIGTERM from inside the L-BFGS phase (sent by the callback itself: deterministic) is noted, the phase and
    IPOPT stop, and Interrupted carries the last iterate (without the step check, which re-simulates it: seconds
    at thousands of steps after the signal); SIGINT's previous handler is back afterwards."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def kill_at_four(phase, k, cost, u):
        if phase == "lbfgs" and k == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted, match="solve interrupted by SIGTERM") as caught:
        tp.solve(spheres(), 2.0, 10, callback=kill_at_four)
    sol = caught.value.solution
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.signal == signal.SIGTERM
    assert not sol.success and sol.status == "stopped: interrupted by SIGTERM"
    assert sol.stats["presolve"]["lbfgs"]["iterations"] == 4 and sol.stats["iterations"] == 0
    assert "step_check" not in sol.stats  # the last iterate is not re-simulated with smaller steps: not an answer
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_stop_raises_at_once_outside_iterations_and_on_a_second_signal():
    stop = Stop()
    with stop.signals():
        with pytest.raises(Interrupted, match="SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
    stop = Stop()
    with stop.signals(), stop.iterating():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop() == "interrupted by SIGINT"
        with pytest.raises(Interrupted, match="SIGINT"):  # the first signal is the one reported
            os.kill(os.getpid(), signal.SIGTERM)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Stop().signals():  # a process that ignores SIGINT (a background job) keeps ignoring it
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads the process table in /proc")
def test_sigterm_during_a_compilation_raises_at_once_and_leaves_no_compiler(monkeypatch, tmp_path):
    pid_file = hanging_compiler(monkeypatch, tmp_path)

    def terminate_once_compiling():
        while not pid_file.exists():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_compiling, daemon=True).start()
    start = time.perf_counter()
    with pytest.raises(Interrupted) as caught:
        tp.solve(spheres(31), 2.0, 10)  # a new problem: its functions are compiled
    assert caught.value.solution is None and time.perf_counter() - start < 50  # not the 60 s of the child
    assert compiler_gone(pid_file)


def test_the_cli_exits_143_on_sigterm_with_one_line():
    """`turnpike solve` on a long problem, SIGTERM 2 s after it says it is solving (in the build or in a phase):
    one line on stderr, exit status 128 + 15, and well before the solve would have ended (53 s on one machine;
    with 200 steps it took 2.3 s there, and the signal could come after it, when the CLI is plotting)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"turnpike-sigterm-{os.getpid()}"
    process = subprocess.Popen([sys.executable, "-m", "turnpike.cli", "solve", "neural-ode", "--T", "20",
                                "--steps", "2000", "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("solving")  # past the imports (seconds on a loaded machine)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "turnpike: solve interrupted by SIGTERM", err


def test_bad_stopping_arguments_are_named():
    with pytest.raises(tp.InputError, match="callback must be callable"):
        tp.solve(spheres(), 2.0, 10, callback=3)
    with pytest.raises(tp.InputError, match="time_limit must be a finite number > 0"):
        tp.solve(spheres(), 2.0, 10, time_limit=-1)

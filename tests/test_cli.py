"""The `turnpike` command: files written, exit codes, one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

import turnpike as tp
from turnpike.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "turnpike.cli", *args], capture_output=True, text=True)


def test_list_shows_the_catalogue(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "linear-quadratic" in out and "pendulum" in out


def test_solve_writes_solution_and_figure(tmp_path, capsys):
    assert main(["solve", "pendulum", "--T", "8", "--steps", "80", "--out", str(tmp_path)]) == 0
    sol = tp.Solution.load(tmp_path / "pendulum_T8.npz")
    assert sol.success and sol.x.shape == (81, 2) and sol.T == 8.0
    png = (tmp_path / "pendulum_T8.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    static = tp.StaticSolution.load(tmp_path / "pendulum_T8_static.npz")
    np.testing.assert_allclose(static.u, np.sin(static.x[0]), atol=1e-8)
    assert "converged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "nope", "--T", "1", "--steps", "5"], "unknown problem name 'nope'"),
        (["solve", "pendulum", "--T", "-1", "--steps", "5"], "T must be a finite number > 0"),
        (["solve", "pendulum", "--T", "1", "--steps", "0"], "steps must be an integer >= 1"),
        (["solve", "pendulum", "--T", "1", "--dt", "0.3"], "must divide T"),
        (["solve", "pendulum", "--T", "1", "--steps", "5", "--solver", "snopt"], "invalid choice: 'snopt'"),
        (["solve", "pendulum", "--T", "1"], "one of the arguments --steps --dt is required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unwritable_output_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run("solve", "pendulum", "--T", "1", "--steps", "5", "--out", str(blocker / "sub"))
    assert proc.returncode == 2 and "is not a writable directory" in proc.stderr
    assert "Traceback" not in proc.stderr

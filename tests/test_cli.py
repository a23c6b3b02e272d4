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


def test_compare_writes_table_solutions_and_figures(tmp_path):
    import csv
    import json

    proc = run("compare", "linear-quadratic", "--horizons", "5", "10", "20", "--dt", "0.1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "3/3" in proc.stderr  # the progress bar
    summary = json.loads((tmp_path / "summary.json").read_text())
    required = {"T", "steps", "cost", "cost_per_time", "static_cost", "rate", "rate_constant", "predicted_rate",
                "tube_entry", "tube_exit", "status", "success", "total_seconds", "iterations"}
    rows = summary["horizons"]
    assert [r["T"] for r in rows] == [5.0, 10.0, 20.0]
    assert all(required <= set(r) for r in rows)
    assert all(r["success"] for r in rows)
    with open(tmp_path / "summary.csv") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [float(r["cost"]) for r in csv_rows] == [r["cost"] for r in rows]
    for name in ("T5.npz", "T10.npz", "T20.npz", "static.npz", "distance.png", "trajectories.png",
                 "value_and_rate.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "J_T/T" in proc.stdout


def test_compare_usage_errors_exit_2(tmp_path):
    proc = run("compare", "pendulum", "--horizons", "5", "-3", "--dt", "0.1", "--out", str(tmp_path))
    assert proc.returncode == 2 and "must be a finite number > 0" in proc.stderr
    assert "Traceback" not in proc.stderr

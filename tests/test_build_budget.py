"""Builds that cannot run away: the multiple-shooting build's memory estimate against measured peaks, and the
formulation rule that switches path or refuses past the memory budget, with the reason stated."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import turnpike as tp
from problems.datasets import concentric_spheres
from problems.neural_ode import NeuralODEClassification
from turnpike.transcription import build_bytes

MEASURE = """
import json, sys
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
from problems.datasets import concentric_spheres
from problems.neural_ode import NeuralODEClassification
from turnpike.solvers import built_solver, solver_options
from turnpike.transcription import MultipleShooting, build_bytes
field, hidden, n = sys.argv[1], (int(sys.argv[2]) or None), int(sys.argv[3])
points, labels = concentric_spheres(n, 2, seed=0)
problem = NeuralODEClassification(points, labels, field=field, hidden=hidden, augment=1)
estimate = build_bytes(problem, "rk4") / 2**20
before = peak_mb()
built_solver(problem, ("test", 20, "rk4"), lambda: MultipleShooting(problem, 20, "rk4"), "ipopt",
             solver_options("ipopt", None))
print(json.dumps({"estimate": estimate, "measured": peak_mb() - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak resident set in /proc")
@pytest.mark.parametrize(("field", "hidden", "n"), [("inner", 0, 40), ("bottleneck", 8, 20)])
def test_the_build_estimate_is_within_a_factor_of_two_of_the_measured_peak(field, hidden, n):
    """Each build in a fresh process; its peak resident set grows by what the estimate says, to a factor 2."""
    out = subprocess.run([sys.executable, "-c", MEASURE, field, str(hidden), str(n)], capture_output=True,
                         text=True, check=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.5 <= result["measured"] / result["estimate"] <= 2.0, result


def narrow_ensemble():
    """N = 8 samples < n_v = 30 (outer field in R^5): multiple shooting under 'auto'."""
    points, labels = concentric_spheres(8, 5, seed=0)
    return NeuralODEClassification(points, labels, field="outer")


def test_auto_takes_multiple_shooting_within_the_budget_and_says_why():
    sol = tp.solve(narrow_ensemble(), 1.0, 5)
    assert sol.stats["formulation"] == "multiple-shooting"
    assert sol.stats["formulation_reason"] == "N = 8 samples < n_v = 30"


def test_past_the_budget_auto_switches_to_reduced_and_the_rest_is_refused(monkeypatch):
    problem = narrow_ensemble()
    estimate = build_bytes(problem, "rk4")
    monkeypatch.setenv("TURNPIKE_MEMORY_GB", str(0.5 * estimate / 2**30))
    sol = tp.solve(problem, 1.0, 5)
    assert sol.success and sol.stats["formulation"] == "reduced"
    assert sol.stats["formulation_reason"].startswith(
        f"multiple shooting's build is estimated at {estimate / 2**30:.3g} GB, over the memory budget of")
    for kw in ({"formulation": "multiple-shooting"}, {"solver": "fatrop"}):
        with pytest.raises(tp.InputError, match="over the memory budget .* use formulation='reduced'"):
            tp.solve(problem, 1.0, 5, **kw)
    monkeypatch.setenv("TURNPIKE_MEMORY_GB", str(2 * estimate / 2**30))
    assert tp.solve(problem, 1.0, 5, formulation="multiple-shooting").stats["formulation_reason"] == "asked for"


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_a_bad_memory_budget_is_named(monkeypatch, value):
    monkeypatch.setenv("TURNPIKE_MEMORY_GB", value)
    with pytest.raises(tp.InputError, match=f"TURNPIKE_MEMORY_GB must be a number > 0, got '{value}'"):
        tp.solve(narrow_ensemble(), 1.0, 5)


def test_the_estimate_grows_with_the_samples_and_the_width():
    """Linear in N (the stage is the same per sample) and superlinear in the bottleneck width (n_f and n_z both
    grow with it)."""
    points, labels = concentric_spheres(20, 2, seed=0)
    small = NeuralODEClassification(points[::2], labels[::2], field="bottleneck", hidden=8)
    assert build_bytes(NeuralODEClassification(points, labels, field="bottleneck", hidden=8), "rk4") == \
        pytest.approx(2 * build_bytes(small, "rk4"))
    wide = NeuralODEClassification(points[::2], labels[::2], field="bottleneck", hidden=16)
    assert build_bytes(wide, "rk4") > 3 * build_bytes(small, "rk4")
    assert np.isfinite(build_bytes(small, "euler"))

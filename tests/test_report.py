"""The study report: one self-contained HTML page, rendered by a real headless browser (Debian's chromium, which
.ci/run installs where it can; skipped elsewhere) and checked by its pixels, not only by its text."""

import base64
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


def compare_with_report(tmp_path):
    out = tmp_path / "study"
    run = subprocess.run([sys.executable, "-m", "turnpike.cli", "compare", "pendulum", "--horizons", "5", "10", "--dt",
                          "0.1", "--out", str(out), "--report"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return out / "report.html"


def test_the_report_holds_the_table_every_figure_and_the_settings(tmp_path):
    page = compare_with_report(tmp_path).read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert page.count("<tr class=") == 2 and "Solve_Succeeded" in page and '"dt": 0.1' in page
    assert "http" not in page.replace("http-equiv", "")  # nothing to fetch: readable offline


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it where apt-get works)")
def test_the_report_renders_in_a_headless_browser_without_console_errors(tmp_path):
    report = compare_with_report(tmp_path)
    shot = tmp_path / "shot.png"
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                          "--window-size=1200,1600", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), run.stderr
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape == (1600, 1200, 3)
    blue = np.all(np.abs(pixels - [31, 119, 180]) <= 2, axis=-1).sum()  # matplotlib's C0: the figures' curves
    header = np.all(pixels == [238, 238, 238], axis=-1).sum()  # the table's header cells
    assert blue > 500 and header > 500
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # a page with pictures, not a blank one


def test_a_sweep_report_lists_every_solve_and_its_figures(tmp_path):
    out = tmp_path / "sweep"
    run = subprocess.run([sys.executable, "-m", "turnpike.cli", "sweep", "pendulum", "--param", "damping=0.2,0.5",
                          "--horizons", "2", "--steps", "20", "--out", str(out), "--workers", "1", "--report"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    page = (out / "report.html").read_text()
    assert page.count("<tr class=") == 2 and page.count("data:image/png;base64,") == 6

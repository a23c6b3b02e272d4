"""Figures, drawn with matplotlib's object API (no pyplot state, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .solution import Solution, StaticSolution

__all__ = ["plot_solution"]

_MAX_SAMPLES = 50  # ensemble samples drawn per panel; more only clutter the figure


def plot_solution(
    solution: Solution,
    path=None,
    *,
    static: StaticSolution | None = None,
    state_names: list[str] | None = None,
    control_names: list[str] | None = None,
) -> Figure:
    """States (one panel per component) and controls over time, static values as dashed lines.

    For an ensemble every sample is a thin line (at most 50 are drawn). The control is drawn
    as the step function it is. Written to ``path`` as PNG if given.
    """
    x = solution.x.reshape(solution.steps + 1, -1, solution.x.shape[-1])  # (time, sample, nx)
    nx, nu = x.shape[2], solution.u.shape[1]
    state_names = state_names or [f"x{i + 1}" for i in range(nx)]
    control_names = control_names or [f"u{j + 1}" for j in range(nu)]
    panels = nx + nu
    ncols = min(panels, 3)
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    t = solution.t
    samples = x[:, :_MAX_SAMPLES, :]
    many = samples.shape[1] > 1
    for i in range(nx):
        ax = axes[i]
        ax.plot(t, samples[:, :, i], lw=0.8 if many else 1.6, alpha=0.6 if many else 1.0, color="C0")
        if static is not None:
            for value in np.unique(np.round(static.x.reshape(-1, nx)[:_MAX_SAMPLES, i], 12)):
                ax.axhline(value, ls="--", color="C3", lw=1)
        ax.set(title=state_names[i], xlabel="t")
    for j in range(nu):
        ax = axes[nx + j]
        ax.stairs(solution.u[:, j], t, color="C2", lw=1.4, baseline=None)
        if static is not None:
            ax.axhline(static.u[j], ls="--", color="C3", lw=1)
        ax.set(title=control_names[j], xlabel="t")
    for ax in axes[panels:]:
        ax.set_visible(False)
    verdict = "converged" if solution.success else f"NOT converged ({solution.status})"
    legend = " — dashed: static optimum" if static is not None else ""
    fig.suptitle(f"{solution.problem}: T = {solution.T:g}, {solution.steps} steps, "
                 f"cost {solution.cost:.5g}, {verdict}{legend}", fontsize=10)
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig

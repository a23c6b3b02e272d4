"""Figures, drawn with matplotlib's object API (no pyplot state, no display needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .solution import Solution, StaticSolution

__all__ = ["plot_solution", "plot_starts", "plot_study"]

_MAX_SAMPLES = 50  # ensemble samples drawn per panel; more only clutter the figure
_MAX_PANELS = 12  # state and control panels drawn per figure (the first states, then the first controls)


def _panels(nx: int, nu: int) -> tuple[int, int, str]:
    """How many states and controls get a panel (at most :data:`_MAX_PANELS` in all, states first but leaving
    half to the controls), and a note saying what is left out (empty when nothing is)."""
    states = min(nx, _MAX_PANELS - min(nu, _MAX_PANELS // 2))
    controls = min(nu, _MAX_PANELS - states)
    note = "" if (states, controls) == (nx, nu) else f" (panels: {states} of {nx} states, {controls} of {nu} controls)"
    return states, controls, note


def _grid(panels: int, columns: int, width: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``panels`` axes in rows of ``columns`` (each ``width`` by 3 inches), the spare ones hidden."""
    ncols = min(panels, columns)
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(width * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes


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
    shown_x, shown_u, note = _panels(nx, nu)
    fig, axes = _grid(shown_x + shown_u, 3, 4.2)
    t = solution.t
    samples = x[:, :_MAX_SAMPLES, :]
    many = samples.shape[1] > 1
    for i in range(shown_x):
        ax = axes[i]
        ax.plot(t, samples[:, :, i], lw=0.8 if many else 1.6, alpha=0.6 if many else 1.0, color="C0")
        if static is not None:
            for value in np.unique(np.round(static.x.reshape(-1, nx)[:_MAX_SAMPLES, i], 12)):
                ax.axhline(value, ls="--", color="C3", lw=1)
        ax.set(title=state_names[i], xlabel="t")
    for j in range(shown_u):
        ax = axes[shown_x + j]
        ax.stairs(solution.u[:, j], t, color="C2", lw=1.4, baseline=None)
        if static is not None:
            ax.axhline(static.u[j], ls="--", color="C3", lw=1)
        ax.set(title=control_names[j], xlabel="t")
    verdict = "converged" if solution.success else f"NOT converged ({solution.status})"
    legend = " — dashed: static optimum" if static is not None else ""
    fig.suptitle(f"{solution.problem}: T = {solution.T:g}, {solution.steps} steps, "
                 f"cost {solution.cost:.5g}, {verdict}{legend}{note}", fontsize=10)
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def plot_study(study, directory: Path) -> list[Path]:
    """The figures of a :class:`~turnpike.analysis.study.HorizonStudy`, written as PNG into ``directory``.

    * ``distance.png``: total distance to the static optimum on a log scale, all horizons
      overlaid, against t and against t/T, with the ε-tube and the noise floor;
    * ``trajectories.png``: states and controls over time, static values dashed;
    * ``value_and_rate.png``: J_T/T against T with J̄, J_T - T·J̄ against T, and the fitted rates (fits with
      R² >= MIN_R2 only, marked one- or two-sided) against the predicted one; notes below the panels say what
      is not drawn and why.
    """
    directory.mkdir(parents=True, exist_ok=True)
    colors = [f"C{i % 10}" for i in range(len(study.solutions))]
    title = study.settings.get("title") or study.problem
    paths = []

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_t, ax_s = fig.subplots(1, 2)
    for rep, c in zip(study.reports, colors, strict=True):
        d = rep.distances
        style = "-" if rep.success else ":"
        ax_t.semilogy(d.t_total, d.total, style, color=c, lw=1.2, label=f"T = {rep.T:g}")
        ax_s.semilogy(d.t_total / rep.T, d.total, style, color=c, lw=1.2)
    for ax in (ax_t, ax_s):
        ax.axhline(study.settings["epsilon"], color="k", ls="--", lw=0.8, label="ε-tube")
        ax.axhline(study.settings["floor"], color="0.6", ls=":", lw=0.8, label="noise floor (not fitted)")
        ax.set_ylabel("|x - x̄| + |u - ū| + |p - p̄|")
    ax_t.set(xlabel="t", title="distance to the static optimum")
    ax_s.set(xlabel="t / T", title="against rescaled time")
    ax_t.legend(fontsize=8)
    failed = "" if all(s.success for s in study.solutions) else " (dotted: not converged)"
    fig.suptitle(f"{title}: turnpike{failed}", fontsize=10)
    paths.append(directory / "distance.png")
    fig.savefig(paths[-1], dpi=110)

    first = study.solutions[0]
    nx = first.x.shape[-1]
    nu = first.u.shape[1]
    state_names = study.settings.get("state_names") or [f"state {i + 1}" for i in range(nx)]
    control_names = study.settings.get("control_names") or [f"control {j + 1}" for j in range(nu)]
    shown_x, shown_u, note = _panels(nx, nu)
    fig, axes = _grid(shown_x + shown_u, 4, 3.6)
    for sol, c in zip(study.solutions, colors, strict=True):
        x = sol.x.reshape(sol.steps + 1, -1, nx)[:, :_MAX_SAMPLES, :]
        for i in range(shown_x):
            axes[i].plot(sol.t, x[:, :, i], color=c, lw=0.9, alpha=0.8)
        for j in range(shown_u):
            axes[shown_x + j].stairs(sol.u[:, j], sol.t, color=c, lw=0.9, baseline=None, label=f"T = {sol.T:g}")
    static_x = study.static.x.reshape(-1, nx)[:_MAX_SAMPLES]
    for i in range(shown_x):
        for value in np.unique(np.round(static_x[:, i], 12)):
            axes[i].axhline(value, color="k", ls="--", lw=0.8)
        axes[i].set(title=state_names[i], xlabel="t")
    for j in range(shown_u):
        axes[shown_x + j].axhline(study.static.u[j], color="k", ls="--", lw=0.8)
        axes[shown_x + j].set(title=control_names[j], xlabel="t")
    axes[shown_x if shown_u else 0].legend(fontsize=8)
    fig.suptitle(f"{title}: optimal trajectories (dashed: static optimum){note}", fontsize=10)
    paths.append(directory / "trajectories.png")
    fig.savefig(paths[-1], dpi=110)

    paths.append(directory / "value_and_rate.png")
    _value_and_rate(study, title).savefig(paths[-1], dpi=110)
    return paths


def _value_and_rate(study, title: str) -> Figure:
    """J_T/T with J̄, J_T - T·J̄, and the fitted rates (only fits with R² >= MIN_R2: a row has a rate only then)
    against the predicted one. What is not drawn, and why, is said below the panels, never over them; the middle
    panel claims boundedness only where a spectral gap is predicted, the hypothesis of the turnpike estimate."""
    from .analysis.rates import MIN_R2

    rows = study.rows()
    T = np.array([r["T"] for r in rows])
    fig = Figure(figsize=(12, 4.0), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.plot(T, [np.nan if r["cost_per_time"] is None else r["cost_per_time"] for r in rows], "o-", label="J_T / T")
    ax1.axhline(study.static.cost, color="k", ls="--", lw=0.8, label="static J̄")
    ax1.set(xlabel="T", title="cost per unit time")
    ax1.legend(fontsize=8)
    ax2.plot(T, [np.nan if r["cost_excess"] is None else r["cost_excess"] for r in rows], "o-")
    ax2.set(xlabel="T", title="J_T - T·J̄")
    predicted, reason = rows[-1]["predicted_rate"], rows[-1]["predicted_reason"]
    notes = []
    if predicted is not None:
        notes.append(f"J_T - T·J̄ is O(1) in T where the exponential turnpike estimate holds (it needs a spectral gap "
                     f"of the linearisation at the static optimum: here μ = {predicted:.4g}).")
    else:
        notes.append(f"No predicted rate ({reason}): no bound is claimed for J_T - T·J̄, and the rate panel has no "
                     "predicted line.")
    fitted = [(r["T"], r["rate"], r["rate_r2"], r["rate_model"]) for r in rows
              if r["rate"] is not None and r["rate_r2"] is not None and r["rate_r2"] >= MIN_R2]
    for model, marker in (("two-sided", "o"), ("one-sided", "s")):
        points = [(t, mu, r2) for t, mu, r2, m in fitted if m == model]
        if points:
            ax3.plot([p[0] for p in points], [p[1] for p in points], marker + "-", color="C0",
                     label=f"fitted μ, {model} (R² >= {MIN_R2:g})")
            for t, mu, r2 in points:
                ax3.annotate(f"R² {r2:.2f}", (t, mu), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if predicted is not None:
        ax3.axhline(predicted, color="k", ls="--", lw=0.8, label="predicted (spectral gap)")
    missing = [f"T = {r['T']:g}: {r['rate_message']}" for r in rows if not any(r["T"] == f[0] for f in fitted)]
    if missing:
        notes.append(f"No fitted rate (none is drawn below R² = {MIN_R2:g}) at {'; '.join(missing)}.")
    ax3.set(xlabel="T", title="exponential rate μ", xlim=ax2.get_xlim())
    ax3.margins(y=0.15)
    if fitted or predicted is not None:
        ax3.legend(fontsize=8)
    else:
        ax3.text(0.5, 0.5, "no rate to draw", transform=ax3.transAxes, ha="center", va="center", color="0.4")
        ax3.set_yticks([])
    fig.suptitle(f"{title}: value and rate across horizons", fontsize=10)
    fig.supxlabel("\n".join(textwrap.fill(n, 150) for n in notes), fontsize=8)
    return fig


def plot_starts(solutions, path=None) -> Figure:
    """The local optima of a multistart (:func:`~turnpike.multistart`): cost against start, one colour per
    solution (a horizon). Hollow circles: each start's cost after its first-order phase; filled: its certified
    cost (a cross where the certification did not converge); a line at the cost returned.

    ``solutions``: one :class:`~turnpike.Solution` or several, each with ``stats["starts"]``.
    """
    solutions = [solutions] if isinstance(solutions, Solution) else list(solutions)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for k, sol in enumerate(s for s in solutions if "starts" in s.stats):
        rows, colour = sol.stats["starts"], f"C{k % 10}"
        seeds = [r["seed"] for r in rows]
        first = [np.nan if r["first_order_cost"] is None else r["first_order_cost"] for r in rows]
        ax.plot(seeds, first, "o", mfc="none", color=colour, label=f"T = {sol.T:g}: first-order phase")
        for r in rows:
            if r["cost"] is not None:
                ax.plot(r["seed"], r["cost"], "o" if r["certified"] else "x", color=colour, ms=7)
        ax.axhline(sol.cost, color=colour, lw=0.8, ls=":", label=f"T = {sol.T:g}: best, {sol.cost:.6g}")
    ax.plot([], [], "ko", label="certified")
    ax.plot([], [], "kx", label="certification not converged")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="start (seed)", ylabel="cost J", title="local optima of the starts")
    ax.legend(fontsize=7)
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig

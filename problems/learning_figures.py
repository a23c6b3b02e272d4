"""Figures of neural-ODE learning: samples through the layers, decision regions, error and |u| over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import turnpike as tp

from .neural_ode import NeuralODEClassification

__all__ = ["plot_layers", "plot_horizons"]


def plot_layers(problem: NeuralODEClassification, solution: tp.Solution, path=None, *, grid: int = 120) -> Figure:
    """Left: the samples' paths through the layers (first two coordinates, colour = label).
    Right: decision regions at the final layer, ``sign(P x(T))`` for a grid of inputs pushed through the
    trained flow, with the training points on top."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax_paths, ax_regions = fig.subplots(1, 2)
    x = solution.x
    colours = np.where(problem.labels > 0, "C0", "C3")
    for i in range(x.shape[1]):
        ax_paths.plot(x[:, i, 0], x[:, i, 1], color=colours[i], lw=0.7, alpha=0.7)
    ax_paths.scatter(x[0, :, 0], x[0, :, 1], c=colours, s=12, marker="o", label="input")
    ax_paths.scatter(x[-1, :, 0], x[-1, :, 1], c=colours, s=18, marker="x", label="output")
    ax_paths.set(title=f"samples through {solution.steps} layers (T = {solution.T:g})", xlabel="x1", ylabel="x2")
    ax_paths.legend(fontsize=8)

    inputs = x[0, :, : problem.d]
    lo, hi = inputs.min(axis=0) - 0.5, inputs.max(axis=0) + 0.5
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    pts = np.column_stack([g1.ravel(), g2.ravel()])
    if problem.d > 2:
        pts = np.hstack([pts, np.zeros((pts.shape[0], problem.d - 2))])
    out = problem.outputs(problem.flow(solution, pts)[-1]).reshape(grid, grid)
    ax_regions.contourf(g1, g2, np.sign(out), levels=[-2, 0, 2], colors=["#f4c7c3", "#c6dbef"])
    ax_regions.contour(g1, g2, out, levels=[0], colors="k", linewidths=0.8)
    ax_regions.scatter(inputs[:, 0], inputs[:, 1], c=colours, s=14, edgecolors="k", linewidths=0.3)
    acc = problem.accuracy(x[-1])
    ax_regions.set(title=f"decision regions, last layer (accuracy {acc:.0%})", xlabel="x1")
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def plot_horizons(problem: NeuralODEClassification, solutions, path=None) -> Figure:
    """Training error at every layer (log scale) and ``|u(t)|`` over time, several horizons overlaid."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_err, ax_u = fig.subplots(1, 2)
    for k, sol in enumerate(solutions):
        c = f"C{k % 10}"
        ax_err.semilogy(sol.t, problem.training_error(sol.x), color=c, label=f"T = {sol.T:g}")
        ax_u.stairs(tp.analysis.control_norm(sol), sol.t, color=c, baseline=None)
    ax_err.set(title="training error E(x(t))", xlabel="t (depth)")
    ax_u.set(title="|u(t)|", xlabel="t (depth)")
    ax_err.legend(fontsize=8)
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig

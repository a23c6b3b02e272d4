"""Figures of neural-ODE learning: samples through the layers, decision regions, error and |u| over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import turnpike as tp

from .neural_ode import NeuralODEClassification, class_labels

__all__ = ["class_colours", "plot_layers", "plot_depth", "plot_horizons", "plot_decay", "plot_sparse"]


def class_colours(problem: NeuralODEClassification, labels=None) -> np.ndarray:
    """A colour per label: C0 for +1 and C3 for -1 (two classes), C{k} for class k (K classes)."""
    labels = problem.labels if labels is None else labels
    if problem.classes == 2:
        return np.where(np.asarray(labels) > 0, "C0", "C3")
    return np.array([f"C{int(k) % 10}" for k in labels])


def plot_layers(problem: NeuralODEClassification, solution: tp.Solution, path=None, *, grid: int = 120,
                test=None) -> Figure:
    """Left: the samples' paths through the layers (first two coordinates, colour = label).
    Right (inputs in d = 2 or more; the first two coordinates, the others 0): the decision regions at the final
    layer, the predicted label of a grid of inputs pushed through the trained flow (sign of ``P x(T) + b`` for
    two classes, the largest score for K), with the training points on top, and the held-out points
    ``test = (points, labels)`` as crosses."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax_paths, ax_regions = fig.subplots(1, 2)
    x = solution.x
    colours = class_colours(problem)
    for i in range(x.shape[1]):
        ax_paths.plot(x[:, i, 0], x[:, i, 1], color=colours[i], lw=0.7, alpha=0.7)
    ax_paths.scatter(x[0, :, 0], x[0, :, 1], c=colours, s=12, marker="o", label="input")
    ax_paths.scatter(x[-1, :, 0], x[-1, :, 1], c=colours, s=18, marker="x", label="output")
    ax_paths.set(title=f"samples through {solution.steps} layers (T = {solution.T:g})", xlabel="x1", ylabel="x2")
    ax_paths.legend(fontsize=8)

    inputs = x[0, :, : problem.d]
    if problem.d < 2:
        ax_regions.set_axis_off()
    else:
        lo, hi = inputs.min(axis=0) - 0.5, inputs.max(axis=0) + 0.5
        g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
        pts = np.column_stack([g1.ravel(), g2.ravel(), np.zeros((grid * grid, problem.d - 2))])
        net = problem.network(solution)
        label = net.predict(pts).reshape(grid, grid)
        index = (label > 0).astype(int) if problem.classes == 2 else label
        palette = ["#f4c7c3", "#c6dbef"] if problem.classes == 2 else [
            _light(f"C{k % 10}") for k in range(problem.classes)]
        ax_regions.contourf(g1, g2, index, levels=np.arange(len(palette) + 1) - 0.5, colors=palette)
        ax_regions.contour(g1, g2, index, levels=np.arange(len(palette)) + 0.5, colors="k", linewidths=0.8)
        ax_regions.scatter(inputs[:, 0], inputs[:, 1], c=colours, s=14, edgecolors="k", linewidths=0.3)
        title = f"decision regions (training accuracy {problem.accuracy(x[-1], solution.u):.0%}"
        if test is not None:
            points, labels = test
            stored = class_labels(labels, len(points), problem.classes)[1]
            ax_regions.scatter(points[:, 0], points[:, 1], c=class_colours(problem, stored), s=20, marker="x")
            title += f", held out {net.accuracy(points, labels):.0%}"
        ax_regions.set(title=title + ")", xlabel="x1")
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def _light(colour: str) -> tuple:
    """``colour`` mixed with two parts of white, for filled regions under the points."""
    from matplotlib.colors import to_rgb

    return tuple((c + 2.0) / 3.0 for c in to_rgb(colour))


def plot_depth(problem: NeuralODEClassification, solution: tp.Solution, path=None, *, test=None) -> Figure:
    """Over depth t: the training error ``E(x(t))`` (log scale), the accuracy of the label read at each layer
    (training points, and the held-out ``test = (points, labels)``), and ``|u(t)|`` (the weights' Euclidean norm
    on each interval)."""
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax_err, ax_acc, ax_u = fig.subplots(1, 3)
    ax_err.semilogy(solution.t, problem.training_error(solution.x, solution.u), color="C0")
    ax_err.set(title="training error E(x(t))", xlabel="t (depth)")
    ax_acc.plot(solution.t, problem.accuracy(solution.x, solution.u), color="C0", label="training")
    if test is not None:
        points, labels = test
        stored = class_labels(labels, len(points), problem.classes)[1]
        layers = problem.flow(solution, points)
        ax_acc.plot(solution.t, (problem.predict_classes(layers, solution.u) == stored).mean(axis=-1), color="C1",
                    label="held out")
    ax_acc.set(title="accuracy of the label read at layer t", xlabel="t (depth)", ylim=(-0.02, 1.02))
    ax_acc.legend(fontsize=8)
    ax_u.stairs(tp.analysis.control_norm(solution), solution.t, color="C0", baseline=None)
    ax_u.set(title="|u(t)|", xlabel="t (depth)")
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def plot_horizons(problem: NeuralODEClassification, solutions, path=None) -> Figure:
    """Training error at every layer (log scale) and ``|u(t)|`` over time, several horizons overlaid."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_err, ax_u = fig.subplots(1, 2)
    for k, sol in enumerate(solutions):
        c = f"C{k % 10}"
        ax_err.semilogy(sol.t, problem.training_error(sol.x, sol.u), color=c, label=f"T = {sol.T:g}")
        ax_u.stairs(tp.analysis.control_norm(sol), sol.t, color=c, baseline=None)
    ax_err.set(title="training error E(x(t))", xlabel="t (depth)")
    ax_u.set(title="|u(t)|", xlabel="t (depth)")
    ax_err.legend(fontsize=8)
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def plot_decay(problem: NeuralODEClassification, solutions, path=None, *, rate: float | None = None,
               failing: tuple[NeuralODEClassification, list] | None = None) -> Figure:
    """Cost (B): training error, ``|u(t)|`` (log scales) and the outputs ``P x_i(t)``, several horizons overlaid.

    ``rate`` μ draws the slopes ``e^{-2μt}`` (error) and ``e^{-μt}`` (control) through the longest horizon's
    value at t = 1. ``failing = (problem, solutions)`` adds a model on which the estimate fails, dashed.
    """
    fig = Figure(figsize=(13, 3.9), layout="constrained")
    ax_err, ax_u, ax_out = fig.subplots(1, 3)
    runs = [(problem, solutions, "-", f" ({problem.field})")]
    if failing is not None:
        runs.append((failing[0], failing[1], "--", f" ({failing[0].field})"))
    lowest = np.inf
    for prob, sols, style, tag in runs:
        for k, sol in enumerate(sols):
            c = f"C{k % 10}"
            E = prob.training_error(sol.x, sol.u)
            lowest = min(lowest, E.min())
            ax_err.semilogy(sol.t, E, style, color=c, label=f"T = {sol.T:g}{tag}")
            u = np.maximum(tp.analysis.control_norm(sol), 1e-300)
            ax_u.stairs(u, sol.t, color=c, linestyle=style, baseline=None)
        ax_u.plot([], [], style, color="0.3", label=prob.field + (" (exactly 0 after T*)" if style == "--" else ""))
    ax_u.set_yscale("log")
    if rate is not None:
        long = solutions[-1]
        t = np.linspace(1.0, long.T, 50)
        k1 = int(round(1.0 / long.h))
        E1, u1 = problem.training_error(long.x[k1], long.u), tp.analysis.control_norm(long)[k1]
        ax_err.semilogy(t, E1 * np.exp(-2 * rate * (t - 1)), "k:", lw=1.2,
                        label=f"e^(-2μt), μ = {rate:.3f} (linearised)")
        ax_u.semilogy(t, u1 * np.exp(-rate * (t - 1)), "k:", lw=1.2, label="e^(-μt)")
    ax_u.legend(fontsize=8, loc="lower left")
    ax_err.set_ylim(bottom=max(lowest / 10, 1e-16))
    ax_u.set_ylim(bottom=1e-9)
    ax_err.set(title="training error E(x(t))", xlabel="t (depth)")
    ax_u.set(title="|u(t)|", xlabel="t (depth)")
    ax_err.legend(fontsize=7, ncol=2 if failing is not None else 1, loc="lower left")
    long = solutions[-1]
    colours = class_colours(problem)
    for i, z in enumerate(problem.outputs(long.x, long.u).T):
        ax_out.plot(long.t, z, color=colours[i], lw=0.9)
    if failing is not None:
        other = failing[1][-1]
        for i, z in enumerate(failing[0].outputs(other.x, other.u).T):
            ax_out.plot(other.t, z, "--", color=colours[i], lw=0.9)
    ax_out.set(title=f"outputs P x_i(t), T = {long.T:g} (labels ±1)", xlabel="t (depth)", xlim=(0, min(long.T, 6)))
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def plot_sparse(problem: NeuralODEClassification, solutions, path=None, *, threshold: float,
                switching=None) -> Figure:
    """Cost (C): ``|u(t)|_1 / M`` for several horizons with their stopping times ``T*``, which parameter is
    active when (longest horizon), and the switching function ``max_j |s_j(t)| / λ`` against the price 1.

    ``threshold`` decides "zero"; ``switching`` (one array per solution, from
    :func:`turnpike.analysis.learning.switching_function`) enables the third panel.
    """
    M, lam = problem.l1_bound, problem.weight
    fig = Figure(figsize=(13, 3.9), layout="constrained")
    ax_l1, ax_act, ax_s = fig.subplots(1, 3)
    stops = [tp.analysis.stopping_time(sol, threshold) for sol in solutions]
    right = 1.6 * max(stops)
    for k, (sol, stop) in enumerate(zip(solutions, stops, strict=True)):
        c = f"C{k % 10}"
        ax_l1.stairs(np.abs(sol.u).sum(axis=1) / M, sol.t, color=c, baseline=None,
                     label=f"T = {sol.T:g}: T* = {stop:.2f}")
        ax_l1.axvline(stop, color=c, ls=":", lw=1)
    ax_l1.set(title="|u(t)|_1 / M", xlabel="t (depth)", xlim=(0, right), ylim=(-0.05, 1.1))
    ax_l1.legend(fontsize=8)
    long = solutions[-1]
    shown = int(np.ceil(right / long.h))
    u = long.u[:shown]
    used = np.flatnonzero(np.abs(u).max(axis=0) > threshold)
    image = np.where(np.abs(u[:, used]) > threshold, np.sign(u[:, used]) * np.abs(u[:, used]) / M, np.nan)
    shade = ax_act.imshow(image.T, aspect="auto", cmap="coolwarm", vmin=-1, vmax=1, interpolation="nearest",
                          extent=(0, shown * long.h, len(used) - 0.5, -0.5))
    fig.colorbar(shade, ax=ax_act, label="u_j / M", fraction=0.05)
    names = problem.control_names
    ax_act.set_yticks(range(len(used)), [names[j] for j in used], fontsize=7)
    ax_act.set(title=f"active parameters u_j / M, T = {long.T:g} (blank: 0)", xlabel="t (depth)")
    if switching is not None:
        for k, (sol, s) in enumerate(zip(solutions, switching, strict=True)):
            ax_s.stairs(np.abs(s).max(axis=1) / lam, sol.t, color=f"C{k % 10}", baseline=None, label=f"T = {sol.T:g}")
        ax_s.axhline(1.0, color="k", lw=0.8, ls="--", label="price λ")
        top = max(float(np.abs(s).max()) for s in switching) / lam
        ax_s.set(title="switching function max_j |s_j(t)| / λ", xlabel="t (depth)", xlim=(0, right), yscale="log",
                 ylim=(0.3, 1.5 * top))
        ax_s.legend(fontsize=8)
    else:
        ax_s.set_axis_off()
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig

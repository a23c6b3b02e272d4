"""Figures of the attention dynamics, drawn with matplotlib's object API (no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure` and writes it as PNG to ``path`` if given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

from .integrate import Trajectory
from .metastability import MetastableRun, fastest_mode
from .phase import PhaseDiagram

__all__ = ["plot_circle_tokens", "plot_sphere_tokens", "plot_clusters_energy", "plot_phase_diagram",
           "plot_attention_matrix"]


def _save(fig: Figure, path) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def _angles(traj: Trajectory) -> np.ndarray:
    """Angles (time, n) of the first prompt: the state itself on the circle, atan2 of points in d = 2."""
    x = np.asarray(traj.x)
    if x.shape[-1] == 2 and x.ndim >= 3:
        x = np.arctan2(x[..., 1], x[..., 0])
    return x.reshape(x.shape[0], -1, x.shape[-1])[:, 0, :]


def plot_circle_tokens(traj: Trajectory, path=None, *, snapshots: int = 4, log_time: bool = False,
                       title: str = "") -> Figure:
    """Token angles over time (top) and the tokens on the circle at ``snapshots`` times (bottom)."""
    theta = np.mod(_angles(traj), 2 * np.pi)
    t = traj.t
    fig = Figure(figsize=(3.0 * snapshots, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, snapshots, height_ratios=[1.1, 1])
    ax = fig.add_subplot(grid[0, :])
    tt = np.where(t > 0, t, np.nan) if log_time else t
    ax.plot(tt, theta, ".", ms=1.2, color="C0", alpha=0.6)
    ax.set(xlabel="t", ylabel="θ_i (rad)", ylim=(0, 2 * np.pi), title=title or "tokens on the circle")
    if log_time:
        ax.set_xscale("log")
    idx = np.unique(np.linspace(0, len(t) - 1, snapshots).round().astype(int))
    if log_time:
        # t = 0, then times spread evenly in log t from 10x the first positive output time to the end
        targets = np.geomspace(10 * t[t > 0].min(), t[-1], snapshots - 1)
        idx = np.unique(np.concatenate([[0], [int(np.argmin(np.abs(np.log(np.maximum(t, 1e-300) / s))))
                                              for s in targets]]))
    circle = np.linspace(0, 2 * np.pi, 200)
    for j, k in enumerate(idx[:snapshots]):
        a = fig.add_subplot(grid[1, j])
        a.plot(np.cos(circle), np.sin(circle), color="0.8", lw=1)
        a.plot(np.cos(theta[k]), np.sin(theta[k]), "o", ms=4, color="C3", alpha=0.5)
        a.set(aspect="equal", xticks=[], yticks=[], title=f"t = {t[k]:.3g}")
    return _save(fig, path)


def plot_sphere_tokens(traj: Trajectory, path=None, *, snapshots: int = 4, title: str = "") -> Figure:
    """Tokens of the first prompt on S² (the first three coordinates) at ``snapshots`` times."""
    x = np.asarray(traj.x)
    x = x.reshape(x.shape[0], -1, *x.shape[-2:])[:, 0]
    idx = np.unique(np.linspace(0, len(traj.t) - 1, snapshots).round().astype(int))
    fig = Figure(figsize=(3.2 * len(idx), 3.4), layout="constrained")
    u, v = np.mgrid[0:2 * np.pi:30j, 0:np.pi:15j]
    for j, k in enumerate(idx):
        ax = fig.add_subplot(1, len(idx), j + 1, projection="3d")
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
        ax.scatter(x[k, :, 0], x[k, :, 1], x[k, :, 2], color="C3", s=12)
        ax.set(title=f"t = {traj.t[k]:.3g}", xticks=[], yticks=[], zticks=[])
        ax.set_box_aspect((1, 1, 1))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_clusters_energy(runs: list[MetastableRun], path=None) -> Figure:
    """Cluster count (left) and energy over its global maximum, ``E_β/(e^β/(2β))`` (right), of several
    metastable runs against the rescaled time ``s = log(t)/β`` (t > 0)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for i, run in enumerate(runs):
        pos = run.trajectory.t > 0
        s = run.rescaled_time[pos]
        label = f"β = {run.beta:g} (k* = {fastest_mode(run.beta)})"
        ax1.step(s, run.counts[pos], where="post", color=f"C{i}", label=label)
        ax2.plot(s, run.energy_ratio[pos], color=f"C{i}", label=label)
    ax1.set(yscale="log", xlabel="s = log(t) / β", ylabel="clusters",
            title=f"cluster count (chord tol {runs[0].tol:g})")
    ax1.legend(fontsize=8)
    ax2.axhline(1.0, ls=":", color="0.3", label="global maximum e^β/(2β)")
    ax2.set(xlabel="s = log(t) / β", ylabel="E_β(t) / (e^β/(2β))", ylim=(0, 1.05), title="energy staircase")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def plot_phase_diagram(diag: PhaseDiagram, path=None) -> Figure:
    """P(two tokens within tol) as a colour map over (t, β)."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    mesh = ax.pcolormesh(diag.t, diag.betas, diag.probability, shading="nearest", vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=f"P(|θ_i - θ_j| < {diag.tol:g})")
    ax.set(xlabel="t", ylabel="β", title=f"{diag.kind.upper()}, n = {diag.n}, d = {diag.d}, {diag.runs} runs")
    if np.all(diag.betas > 0) and diag.betas.max() / diag.betas.min() > 20:
        ax.set_yscale("log")
    return _save(fig, path)


def plot_attention_matrix(matrices: list[np.ndarray], times: list[float], path=None, *, order=None) -> Figure:
    """Attention matrices side by side (rows: queries, columns: keys), tokens sorted by ``order``.

    Ticks are at integer positions (every token up to 24 tokens) and labelled with the token index shown
    there (``order[p]`` at position p when sorted).
    """
    fig = Figure(figsize=(3.3 * len(matrices), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(matrices)))
    index = None if order is None else np.asarray(order)
    for ax, P, t in zip(axes, matrices, times, strict=True):
        P = np.asarray(P)
        if index is not None:
            P = P[np.ix_(index, index)]
        im = ax.imshow(P, vmin=0, vmax=1, cmap="Greys", interpolation="nearest")
        sorted_ = "" if index is None else " (sorted)"
        ax.set(title=f"t = {t:g}", xlabel=f"key j{sorted_}", ylabel=f"query i{sorted_}")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MultipleLocator(1) if len(P) <= 24 else MaxNLocator(integer=True))
            axis.set_tick_params(labelsize=7 if len(P) <= 24 else 10)
            if index is not None:
                axis.set_major_formatter(FuncFormatter(
                    lambda p, _pos: f"{index[int(p)]}" if 0 <= p < len(index) and p == int(p) else ""))
        ax.tick_params(axis="x", labelrotation=90 if len(P) <= 24 else 0)
    fig.colorbar(im, ax=axes[-1], shrink=0.8)
    return _save(fig, path)

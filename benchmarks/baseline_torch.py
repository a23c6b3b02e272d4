"""Baseline 2: first-order training of the same network with PyTorch, as users do it today.

The model is the toolbox's :class:`problems.neural_ode.NeuralODEClassification` with the inner
field ``f(x, u) = W tanh(A x + b)``, ``u = (W, A, b)`` (matrices column-major in ``u``, as CasADi
reshapes them), squared loss ``(P x_i - y_i)²`` with ``P`` the output map, and cost (B):

.. math::

    J(u) = \\sum_k \\Big( \\alpha\\, \\frac{h}{6} \\big(E(x_k) + 2E(x_k^{(2)}) + 2E(x_k^{(3)}) + E(x_k^{(4)})\\big)
           + \\lambda h |u_k|^2 \\Big) + E(x_n),

where ``x_k^{(j)}`` are the inner points of the RK4 step ``k`` and ``E(x) = (1/N) Σ_i (P x_i - y_i)²``.
This is exactly how :mod:`turnpike.transcription` integrates the running cost (the augmented system
``(dx/dt, dq/dt) = (f, L)`` advanced by the same RK4 step), so ``J`` at the toolbox's controls equals
``sol.cost`` up to the solver's constraint tolerance (:func:`cost_at` is the cross-check).

The controls are the parameters (one ``u_k`` per RK4 step, i.e. per residual block), float64, full
batch (all N samples: the objective is the whole sum, not a stochastic estimate), one thread.

Training (:func:`train`):

* ``"lbfgs"``: ``torch.optim.LBFGS(lr=1, line_search_fn="strong_wolfe")``, its default history (100)
  and ``max_iter=20`` iterations per ``step`` call, repeated until it stops moving;
* ``"adam"``: ``torch.optim.Adam(lr)``, one full-batch gradient step per epoch.

A run stops at the first cost evaluation ``J <= target`` (reached), when the time budget is spent
(not reached), or when L-BFGS stops moving (converged to its own tolerance, not reached if above
the target). The time is the wall time of the training loop (forward, backward, optimizer).
"""

from __future__ import annotations

import time

import numpy as np
import torch

__all__ = ["TorchNeuralODE", "initial_controls", "train"]


def initial_controls(steps: int, nu: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    """The toolbox's default random start: ``scale * N(0, 1)`` of shape (steps, nu), numpy ``default_rng(seed)``.

    This mirrors ``turnpike.solve(..., seed=seed, guess_scale=0.1)`` for a problem without control
    bounds (the neural-ODE workloads here have none).
    """
    return scale * np.random.default_rng(seed).standard_normal((steps, nu))


class TorchNeuralODE:
    """The RK4-discretised neural ODE and its cost (B) in PyTorch, for a given problem and horizon.

    Arguments:
        problem: a :class:`~problems.neural_ode.NeuralODEClassification` with ``field="inner"``,
            ``activation="tanh"``, ``loss="squared"``, ``cost="turnpike"`` (checked).
        T: horizon; steps: number of RK4 steps (``h = T / steps``).
    """

    def __init__(self, problem, T: float, steps: int):
        expected = {"field": "inner", "activation": "tanh", "loss": "squared", "cost": "turnpike"}
        got = {k: getattr(problem, k) for k in expected}
        if got != expected:
            raise ValueError(f"the torch baseline implements {expected}, got {got}")
        self.D = problem.D
        self.steps, self.h = steps, T / steps
        self.alpha, self.weight = problem.alpha, problem.weight
        self.X0 = torch.tensor(problem.x0_samples, dtype=torch.float64)
        self.y = torch.tensor(problem.labels, dtype=torch.float64)
        self.P = torch.tensor(problem.output, dtype=torch.float64)
        self.nu = 2 * self.D * self.D + self.D

    def cost(self, U: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``J(U)`` for controls U (steps, nu) and its parts ``running``, ``l2``, ``terminal`` (floats).

        Written for few tensor operations per step (eager PyTorch pays ~10 µs per operation): ``W`` and
        ``A`` enter as their transposes, which is what the row-major reshape of their column-major
        entries in ``u`` gives; the outputs ``P x`` of the four RK4 stages are collected and the
        running error is evaluated once, vectorised over all steps.
        """
        D, h = self.D, self.h
        WT = U[:, : D * D].reshape(-1, D, D).unbind(0)  # W_k^T (u holds W column-major)
        AT = U[:, D * D : 2 * D * D].reshape(-1, D, D).unbind(0)
        b = U[:, 2 * D * D :].unbind(0)
        X, outputs = self.X0, []
        for k in range(self.steps):

            def f(Z, k=k):  # f(z, u_k) = W tanh(A z + b) for every sample (rows of Z)
                return torch.tanh(torch.addmm(b[k], Z, AT[k])) @ WT[k]

            k1 = f(X)
            X2 = torch.add(X, k1, alpha=h / 2)
            k2 = f(X2)
            X3 = torch.add(X, k2, alpha=h / 2)
            k3 = f(X3)
            X4 = torch.add(X, k3, alpha=h)
            k4 = f(X4)
            outputs += [X @ self.P, X2 @ self.P, X3 @ self.P, X4 @ self.P]
            X = torch.add(X, k1 + 2 * (k2 + k3) + k4, alpha=h / 6)
        errors = ((torch.stack(outputs).reshape(self.steps, 4, -1) - self.y) ** 2).mean(dim=2)  # E at each stage
        rk4_weights = torch.tensor([1.0, 2.0, 2.0, 1.0], dtype=torch.float64)
        running = self.alpha * h / 6 * (errors @ rk4_weights).sum()
        l2 = self.weight * h * (U**2).sum()
        terminal = ((X @ self.P - self.y) ** 2).mean()
        J = running + l2 + terminal
        parts = {"running": running.item(), "l2": l2.item(), "terminal": terminal.item()}
        return J, parts

    def cost_at(self, u: np.ndarray) -> tuple[float, dict]:
        """The cost and its parts at numpy controls u (steps, nu), without gradients."""
        with torch.no_grad():
            J, parts = self.cost(torch.tensor(np.asarray(u), dtype=torch.float64))
        return float(J), parts


class _Stop(Exception):
    """Raised inside the closure to leave the optimizer at once (target reached or budget spent)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def train(model: TorchNeuralODE, u0: np.ndarray, *, method: str, target: float | None, budget_seconds: float,
          lr: float = 1e-2) -> dict:
    """Train from controls ``u0`` with ``method`` (``"lbfgs"`` or ``"adam"``) until ``J <= target`` or the budget.

    ``target`` None: no target (train for the whole budget). Returns a dict: ``seconds`` (time to the
    target, or the time spent), ``iterations`` (L-BFGS iterations or Adam epochs), ``evaluations``
    (cost + gradient evaluations), ``cost`` (the lowest cost evaluated), ``terminal`` (the training
    error ``E(x(T))`` there), ``reached``, ``stop`` (why it stopped) and the settings used.
    """
    U = torch.tensor(np.asarray(u0), dtype=torch.float64, requires_grad=True)
    if method == "lbfgs":
        opt = torch.optim.LBFGS([U], lr=1.0, max_iter=20, line_search_fn="strong_wolfe")
        settings = {"optimizer": "torch.optim.LBFGS", "lr": 1.0, "max_iter_per_step": 20, "history_size": 100,
                    "line_search_fn": "strong_wolfe"}
    elif method == "adam":
        opt = torch.optim.Adam([U], lr=lr)
        settings = {"optimizer": "torch.optim.Adam", "lr": lr, "batch": "full"}
    else:
        raise ValueError(f"method must be 'lbfgs' or 'adam', got {method!r}")

    best = {"cost": np.inf, "terminal": np.nan}
    counts = {"evaluations": 0, "epochs": 0}
    start = time.perf_counter()

    def closure():
        opt.zero_grad()
        J, parts = model.cost(U)
        counts["evaluations"] += 1
        value = float(J)
        if value < best["cost"]:
            best.update(cost=value, terminal=parts["terminal"])
        if target is not None and value <= target:
            raise _Stop("reached")
        if time.perf_counter() - start >= budget_seconds:
            raise _Stop("budget")
        J.backward()
        return J

    stop = "budget"
    try:
        while True:
            if method == "lbfgs":
                before = best["cost"]
                opt.step(closure)
                if np.isfinite(before) and not best["cost"] < before - 1e-12 * abs(before):  # no progress
                    stop = "stopped moving (L-BFGS tolerances)"
                    break
            else:
                opt.step(closure)
                counts["epochs"] += 1
    except _Stop as why:
        stop = why.reason
    seconds = time.perf_counter() - start
    iterations = opt.state[U].get("n_iter", 0) if method == "lbfgs" else counts["epochs"]
    return {"seconds": seconds, "iterations": int(iterations), "evaluations": counts["evaluations"],
            "cost": best["cost"], "terminal": best["terminal"], "reached": stop == "reached", "stop": stop,
            "settings": settings}

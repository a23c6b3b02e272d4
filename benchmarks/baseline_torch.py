"""Baseline 2: first-order training of the same network with PyTorch, as users do it today.

The model is the toolbox's :class:`problems.neural_ode.NeuralODEClassification` with any of its
fields (inner ``W σ(A x + b)``, outer ``W σ(x) + b``, bottleneck ``W2 σ(W1 x + b1) + b2``; matrices
column-major in ``u``, as CasADi reshapes them) and activations, squared loss ``(P x_i - y_i)²`` with
``P`` the output map, and cost (B):

.. math::

    J(u) = \\sum_k \\Big( \\alpha\\, \\frac{h}{6} \\big(E(x_k) + 2E(x_k^{(2)}) + 2E(x_k^{(3)}) + E(x_k^{(4)})\\big)
           + \\lambda h |u_k|^2 \\Big) + E(x_n),

where ``x_k^{(j)}`` are the inner points of the RK4 step ``k`` and ``E(x) = (1/N) Σ_i (P x_i - y_i)²``.
This is exactly how :mod:`turnpike.transcription` integrates the running cost (the augmented system
``(dx/dt, dq/dt) = (f, L)`` advanced by the same RK4 step), so ``J`` at the toolbox's controls equals
``sol.cost`` up to the solver's constraint tolerance (:func:`cost_at` is the cross-check).

The controls are the parameters (one ``u_k`` per RK4 step, i.e. per residual block), float64, one
thread; full batch (all N samples: the objective is the whole sum, not a stochastic estimate) or
minibatches (the same cost with the means over a batch of samples).

Training (:func:`train`):

* ``"lbfgs"``: ``torch.optim.LBFGS(lr=1, line_search_fn="strong_wolfe")``, its default history (100)
  and ``max_iter=20`` iterations per ``step`` call, repeated until it stops moving;
* ``"adam"``: ``torch.optim.Adam(lr)``, one gradient step per batch, an epoch a pass over the shuffled
  samples (seeded).

A run stops at the first cost evaluation ``J <= target`` (reached), when the time budget is spent
(not reached), or when L-BFGS stops moving (converged to its own tolerance, not reached if above
the target). The time is the wall time of the training loop (forward, backward, optimizer).
"""

from __future__ import annotations

import time

import numpy as np
import torch

ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "softplus": lambda z: torch.log1p(torch.exp(-z.abs())) + z.clamp(min=0),  # as the toolbox writes it
}

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
        problem: a :class:`~problems.neural_ode.NeuralODEClassification` with ``loss="squared"``,
            ``cost="turnpike"``, no clip and terminal weight 1 (checked).
        T: horizon; steps: number of RK4 steps (``h = T / steps``).
    """

    def __init__(self, problem, T: float, steps: int):
        expected = {"loss": "squared", "cost": "turnpike", "clip": False, "terminal_weight": 1.0}
        got = {k: getattr(problem, k) for k in expected}
        if got != expected:
            raise ValueError(f"the torch baseline implements {expected}, got {got}")
        self.field, self.sigma = problem.field, ACTIVATIONS[problem.activation]
        self.D, self.hidden = problem.D, problem.hidden
        self.steps, self.h = steps, T / steps
        self.alpha, self.weight = problem.alpha, problem.weight
        self.X0 = torch.tensor(problem.x0_samples, dtype=torch.float64)
        self.y = torch.tensor(problem.labels, dtype=torch.float64)
        self.P = torch.tensor(problem.output, dtype=torch.float64)
        self.nu = problem.nu

    def _fields(self, U: torch.Tensor) -> list:
        """``f(Z, u_k)`` for every step k, Z the samples' states as rows. A matrix stored column-major in u,
        reshaped row-major, is its transpose: what a product with row states needs."""
        D, H, s = self.D, self.hidden, self.sigma
        if self.field == "inner":
            WT, AT, b = U[:, : D * D].reshape(-1, D, D), U[:, D * D : 2 * D * D].reshape(-1, D, D), U[:, 2 * D * D :]
            return [lambda Z, k=k: s(torch.addmm(b[k], Z, AT[k])) @ WT[k] for k in range(self.steps)]
        if self.field == "outer":
            WT, b = U[:, : D * D].reshape(-1, D, D), U[:, D * D :]
            return [lambda Z, k=k: torch.addmm(b[k], s(Z), WT[k]) for k in range(self.steps)]
        W2T, W1T = U[:, : D * H].reshape(-1, H, D), U[:, D * H : 2 * D * H].reshape(-1, D, H)
        b1, b2 = U[:, 2 * D * H : 2 * D * H + H], U[:, 2 * D * H + H :]
        return [lambda Z, k=k: torch.addmm(b2[k], s(torch.addmm(b1[k], Z, W1T[k])), W2T[k]) for k in range(self.steps)]

    def cost(self, U: torch.Tensor, rows=None) -> tuple[torch.Tensor, dict]:
        """``J(U)`` for controls U (steps, nu) and its parts ``running``, ``l2``, ``terminal`` (floats); with
        ``rows`` (indices), the same cost with the means over those samples only (a minibatch).

        Written for few tensor operations per step (eager PyTorch pays ~10 µs per operation): the
        outputs ``P x`` of the four RK4 stages are collected and the running error is evaluated once,
        vectorised over all steps.
        """
        h = self.h
        X, y = (self.X0, self.y) if rows is None else (self.X0[rows], self.y[rows])
        outputs = []
        for f in self._fields(U):
            k1 = f(X)
            X2 = torch.add(X, k1, alpha=h / 2)
            k2 = f(X2)
            X3 = torch.add(X, k2, alpha=h / 2)
            k3 = f(X3)
            X4 = torch.add(X, k3, alpha=h)
            k4 = f(X4)
            outputs += [X @ self.P, X2 @ self.P, X3 @ self.P, X4 @ self.P]
            X = torch.add(X, k1 + 2 * (k2 + k3) + k4, alpha=h / 6)
        errors = ((torch.stack(outputs).reshape(self.steps, 4, -1) - y) ** 2).mean(dim=2)  # E at each stage
        rk4_weights = torch.tensor([1.0, 2.0, 2.0, 1.0], dtype=torch.float64)
        running = self.alpha * h / 6 * (errors @ rk4_weights).sum()
        l2 = self.weight * h * (U**2).sum()
        terminal = ((X @ self.P - y) ** 2).mean()
        J = running + l2 + terminal
        parts = {"running": running.item(), "l2": l2.item(), "terminal": terminal.item(),
                 "accuracy": float((torch.sign(X @ self.P) == y).double().mean())}
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
          lr: float = 1e-2, batch: int | None = None, seed: int = 0, iterations_per_step: int = 20,
          monitor=None) -> dict:
    """Train from controls ``u0`` with ``method`` (``"lbfgs"`` or ``"adam"``) until ``J <= target`` or the budget.

    ``target`` None: no target (train for the whole budget). ``batch``: None (full batch) or the size of
    Adam's minibatches (an epoch visits the samples once, in an order drawn from ``seed``).
    ``iterations_per_step``: L-BFGS iterations per ``step`` call. ``monitor``, if given, is called after
    every step call of L-BFGS and every Adam epoch as ``monitor(seconds, U)`` (U numpy, its time not
    counted in ``seconds``); returning True stops the run as reached.

    Returns a dict: ``seconds`` (time to the target, or the time spent), ``iterations`` (L-BFGS
    iterations or Adam epochs), ``evaluations`` (cost + gradient evaluations), ``cost`` (the lowest
    full-batch cost evaluated), ``terminal`` (the training error ``E(x(T))`` there), ``reached``,
    ``stop`` (why it stopped) and the settings used.
    """
    U = torch.tensor(np.asarray(u0), dtype=torch.float64, requires_grad=True)
    if method == "lbfgs":
        if batch is not None:
            raise ValueError("L-BFGS is run full batch here (batch=None)")
        opt = torch.optim.LBFGS([U], lr=1.0, max_iter=iterations_per_step, line_search_fn="strong_wolfe")
        settings = {"optimizer": "torch.optim.LBFGS", "lr": 1.0, "max_iter_per_step": iterations_per_step,
                    "history_size": 100, "line_search_fn": "strong_wolfe"}
    elif method == "adam":
        opt = torch.optim.Adam([U], lr=lr)
        settings = {"optimizer": "torch.optim.Adam", "lr": lr, "batch": "full" if batch is None else batch}
    else:
        raise ValueError(f"method must be 'lbfgs' or 'adam', got {method!r}")

    best = {"cost": np.inf, "terminal": np.nan}
    counts = {"evaluations": 0, "epochs": 0}
    rng = np.random.default_rng(seed)
    clock = {"start": time.perf_counter(), "paused": 0.0}

    def elapsed():
        return time.perf_counter() - clock["start"] - clock["paused"]

    def closure(rows=None):
        opt.zero_grad()
        J, parts = model.cost(U, rows)
        counts["evaluations"] += 1
        value = J.item()
        if rows is None and value < best["cost"]:
            best.update(cost=value, terminal=parts["terminal"])
        if rows is None and target is not None and value <= target:
            raise _Stop("reached")
        if elapsed() >= budget_seconds:
            raise _Stop("budget")
        J.backward()
        return J

    def monitored():
        if monitor is None:
            return False
        paused = time.perf_counter()
        stop = monitor(elapsed(), U.detach().numpy().copy())
        clock["paused"] += time.perf_counter() - paused
        return stop

    stop = "budget"
    N = model.X0.shape[0]
    try:
        while True:
            if method == "lbfgs":
                before = best["cost"]
                opt.step(closure)
                if monitored():
                    raise _Stop("reached")
                if np.isfinite(before) and not best["cost"] < before - 1e-12 * abs(before):  # no progress
                    stop = "stopped moving (L-BFGS tolerances)"
                    break
            else:
                for rows in ([None] if batch is None else np.array_split(rng.permutation(N), -(-N // batch))):
                    opt.step(lambda rows=rows: closure(rows))
                counts["epochs"] += 1
                if monitored():
                    raise _Stop("reached")
    except _Stop as why:
        stop = why.reason
    seconds = elapsed()
    iterations = opt.state[U].get("n_iter", 0) if method == "lbfgs" else counts["epochs"]
    return {"seconds": seconds, "iterations": int(iterations), "evaluations": counts["evaluations"],
            "cost": best["cost"], "terminal": best["terminal"], "reached": stop == "reached", "stop": stop,
            "settings": settings}

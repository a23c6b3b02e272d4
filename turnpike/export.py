"""Trained neural ODEs out of the toolbox: plain arrays, a NumPy function, a PyTorch module.

A :class:`NeuralODE` is a trained network as plain arrays: for every layer ``k = 0..steps-1`` the weights of
the field ``f(x, θ_k)``, the step ``h`` and the integrator, and the output map. Its forward pass on raw
features ``p ∈ R^d`` is

    x_0 = ((p - shift) / scale, 0_a) ∈ R^D,   x_{k+1} = Φ_h(x_k, θ_k),   z = P x_steps + b (then hardtanh if clip),

``Φ_h`` one step of the explicit integrator with the weights constant on the interval (``euler``:
``x + h f(x)``; ``midpoint``: ``x + h f(x + h/2 f(x))``; ``rk4``: the classical four stages), and the fields

* ``"inner"``:      ``f = w σ(A x + b)``;
* ``"outer"``:      ``f = w σ(x) + b``;
* ``"bottleneck"``: ``f = W2 σ(W1 x + b1) + b2``;

``σ`` one of ``tanh``, ``sigmoid`` (``1/(1 + e^{-z})``), ``relu`` and ``softplus`` (``log(1 + e^{-|z|}) +
max(z, 0)``, the exact value, without PyTorch's linear cut-off). The scores are one per point for two classes
(classified by their sign) and K per point for K classes (by the largest). This is the discrete flow the
toolbox solves for, so the exported networks give its trajectories to rounding (float64).

* :func:`to_numpy` gives a function of NumPy arrays only;
* :func:`to_torch` gives a ``torch.nn.Module`` (:class:`NeuralODEModule`; PyTorch is an optional extra,
  ``pip install -e '.[torch]'``, imported only here) whose ``state_dict`` holds the weights as
  ``layers.{k}.{name}`` and the output map as ``output.weight``, ``output.bias``;
* :func:`save` and :func:`load` write and read ``model.json`` (the architecture) and ``weights.npz``;
  :func:`load_torch` builds the module from ``model.json`` and loads a state dict saved by :func:`save_torch`::

      module = turnpike.export.NeuralODEModule(**json.load(open("model.json"))["architecture"])
      module.load_state_dict(torch.load("model.pt"))

Weights are stored in the controls ``u`` of a layer field after field, matrices column-major (CasADi's
``reshape``), in the order of :func:`weight_shapes`; :func:`split_weights` reads them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, check_choice, check_finite
from .files import atomic_write, write_json

__all__ = ["NeuralODE", "FIELDS", "ACTIVATIONS", "INTEGRATORS", "weight_shapes", "split_weights", "to_numpy",
           "to_torch", "save", "load", "save_torch", "load_torch"]

FIELDS = ("inner", "outer", "bottleneck")
ACTIVATIONS = ("tanh", "sigmoid", "relu", "softplus")
INTEGRATORS = ("euler", "midpoint", "rk4")
FORMAT = 1
"""The version of ``model.json``; :func:`load` refuses others."""


def weight_shapes(field: str, D: int, hidden: int | None = None) -> dict[str, tuple[int, ...]]:
    """The weights of one layer of ``field`` on states of dimension D, in the order they are stored in u."""
    check_choice("field", field, FIELDS)
    if field == "inner":
        return {"w": (D, D), "A": (D, D), "b": (D,)}
    if field == "outer":
        return {"w": (D, D), "b": (D,)}
    if hidden is None:
        raise InputError("hidden (the bottleneck width) is required for field='bottleneck'")
    return {"W2": (D, hidden), "W1": (hidden, D), "b1": (hidden,), "b2": (D,)}


def split_weights(u, field: str, D: int, hidden: int | None = None) -> dict[str, np.ndarray]:
    """The weights of every layer from controls u (steps, n) whose first entries are the field's weights:
    ``{name: (steps, *shape)}``, matrices read column-major."""
    u = np.atleast_2d(np.asarray(u, dtype=float))
    out, start = {}, 0
    for name, shape in weight_shapes(field, D, hidden).items():
        size = int(np.prod(shape))
        block = u[:, start : start + size]
        out[name] = block.reshape(len(u), *shape[::-1]).swapaxes(1, -1) if len(shape) == 2 else block.copy()
        start += size
    if start > u.shape[1]:
        raise InputError(f"u has {u.shape[1]} controls per layer, the {field!r} field of D = {D} needs {start}")
    return out


@dataclass(frozen=True, eq=False)
class NeuralODE:
    """A trained neural ODE as plain arrays (the module docstring states its forward pass).

    Attributes:
        field, activation: the layer field and σ (see :data:`FIELDS`, :data:`ACTIVATIONS`).
        weights: ``{name: (steps, *shape)}`` with the names and shapes of :func:`weight_shapes`.
        step: h > 0; method: the integrator (:data:`INTEGRATORS`).
        augment: the zeros appended to the d features (D = d + augment).
        output, bias: P (rows, D) and b (rows,); rows = 1 for two classes, K for K classes.
        clip: hardtanh on the scores.
        classes: K >= 2.
        input_shift, input_scale: (d,), the standardisation of raw features applied first (0 and 1: none).
    """

    field: str
    activation: str
    weights: dict
    step: float
    method: str
    augment: int
    output: np.ndarray
    bias: np.ndarray
    clip: bool
    classes: int
    input_shift: np.ndarray
    input_scale: np.ndarray

    def __post_init__(self):
        check_choice("field", self.field, FIELDS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("method", self.method, INTEGRATORS)
        if not (np.isfinite(self.step) and self.step > 0):
            raise InputError(f"step must be a positive number, got {self.step!r}")
        P = check_finite("output", self.output)
        rows = 1 if self.classes == 2 else self.classes
        if P.ndim != 2 or P.shape[0] != rows:
            raise InputError(f"output must have shape ({rows}, D) for classes={self.classes}, got shape {P.shape}")
        D = P.shape[1]
        d = D - self.augment
        expected = weight_shapes(self.field, D, self.hidden)
        if set(self.weights) != set(expected):
            raise InputError(f"weights of field {self.field!r} are {sorted(expected)}, got {sorted(self.weights)}")
        steps = len(self.weights[next(iter(expected))])
        for name, shape in expected.items():
            check_finite(f"weights[{name!r}]", self.weights[name], shape=(steps, *shape))
        check_finite("bias", self.bias, shape=(rows,))
        check_finite("input_shift", self.input_shift, shape=(d,))
        scale = check_finite("input_scale", self.input_scale, shape=(d,))
        if np.any(scale <= 0):
            raise InputError(f"input_scale must be positive, got {scale!r}")

    @property
    def hidden(self) -> int | None:
        """The bottleneck width (None for the other fields)."""
        W1 = self.weights.get("W1") if self.field == "bottleneck" else None
        return None if W1 is None else int(np.shape(W1)[1])

    @property
    def steps(self) -> int:
        return len(next(iter(self.weights.values())))

    @property
    def D(self) -> int:
        return self.output.shape[1]

    @property
    def d(self) -> int:
        return self.D - self.augment

    def architecture(self) -> dict:
        """Everything but the weights, as JSON types: the keyword arguments of :class:`NeuralODEModule`."""
        return {"field": self.field, "activation": self.activation, "d": self.d, "augment": self.augment,
                "hidden": self.hidden, "steps": self.steps, "step": float(self.step), "method": self.method,
                "classes": self.classes, "clip": bool(self.clip)}


# -- NumPy -------------------------------------------------------------------------------------------------------

_NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0),
    "softplus": lambda z: np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0),
}


def _field(kind: str, sigma, x, W: dict):
    """``f(x, θ)`` for states x (M, D), rows as samples; ``W`` one layer's weights. Works on NumPy arrays and
    PyTorch tensors alike (``@``, ``+`` and transposes only)."""
    if kind == "inner":
        return sigma(x @ W["A"].T + W["b"]) @ W["w"].T
    if kind == "outer":
        return sigma(x) @ W["w"].T + W["b"]
    return sigma(x @ W["W1"].T + W["b1"]) @ W["W2"].T + W["b2"]


def _step(f, x, h: float, method: str):
    """One step of the integrator (constant weights) for ``f`` of the state alone."""
    if method == "euler":
        return x + h * f(x)
    if method == "midpoint":
        return x + h * f(x + h / 2 * f(x))
    k1 = f(x)
    k2 = f(x + h / 2 * k1)
    k3 = f(x + h / 2 * k2)
    k4 = f(x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def to_numpy(model: NeuralODE):
    """A function of NumPy arrays only: ``network(points)`` gives the scores of raw features (M, d), shape (M,)
    for two classes and (M, K) for K; ``network(points, layers=True)`` the states of every layer
    (steps+1, M, D). ``network.predict(points)`` gives labels (±1, or 0..K-1)."""
    if not isinstance(model, NeuralODE):
        raise InputError(f"model must be a turnpike.export.NeuralODE, got {type(model).__name__}")
    sigma = _NUMPY_ACTIVATIONS[model.activation]
    per_layer = [{name: w[k] for name, w in model.weights.items()} for k in range(model.steps)]

    def network(points, *, layers: bool = False):
        p = check_finite("points", points)
        if p.ndim != 2 or p.shape[1] != model.d:
            raise InputError(f"points must have shape (M, {model.d}), got shape {p.shape}")
        x = np.hstack([(p - model.input_shift) / model.input_scale, np.zeros((len(p), model.augment))])
        states = [x]
        for W in per_layer:
            x = _step(lambda z, W=W: _field(model.field, sigma, z, W), x, model.step, model.method)
            states.append(x)
        return np.array(states) if layers else _scores(model, x)

    def predict(points):
        z = network(points)
        return np.where(z >= 0, 1.0, -1.0) if model.classes == 2 else np.argmax(z, axis=-1)

    network.predict = predict
    return network


def _scores(model: NeuralODE, x):
    z = x @ model.output.T + model.bias
    if model.clip:
        z = np.clip(z, -1.0, 1.0)
    return z[:, 0] if model.classes == 2 else z


# -- files -------------------------------------------------------------------------------------------------------

def save(model: NeuralODE, directory, **record) -> Path:
    """Write ``model.json`` (the architecture, the output map, the input standardisation, and ``record``: any
    JSON-able facts such as accuracies and the solver's certificate) and ``weights.npz`` (one array per weight
    name, (steps, *shape)) into ``directory``, each file atomically. Returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **model.weights)
    atomic_write(directory / "weights.npz", lambda fh: fh.write(buffer.getvalue()))
    write_json(directory / "model.json", {
        "format": FORMAT, "architecture": model.architecture(), "output": model.output, "bias": model.bias,
        "input_shift": model.input_shift, "input_scale": model.input_scale, **record})
    return directory


def load(directory) -> NeuralODE:
    """The :class:`NeuralODE` that :func:`save` wrote into ``directory``.

    Raises:
        InputError: a file is missing or unreadable, or of another format.
    """
    directory = Path(directory)
    try:
        info = json.loads((directory / "model.json").read_text())
        with np.load(directory / "weights.npz") as data:
            weights = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read a saved network from {str(directory)!r}: {exc}") from exc
    if info.get("format") != FORMAT:
        raise InputError(f"{str(directory / 'model.json')!r} has format {info.get('format')!r}, this version reads "
                         f"{FORMAT}")
    a = info["architecture"]
    return NeuralODE(field=a["field"], activation=a["activation"], weights=weights, step=a["step"],
                     method=a["method"], augment=a["augment"], output=np.array(info["output"], dtype=float),
                     bias=np.array(info["bias"], dtype=float), clip=a["clip"], classes=a["classes"],
                     input_shift=np.array(info["input_shift"], dtype=float),
                     input_scale=np.array(info["input_scale"], dtype=float))


# -- PyTorch (optional) ------------------------------------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("turnpike.export.to_torch needs PyTorch: pip install -e '.[torch]' (the CPU build is "
                          "enough)") from exc
    return torch


_module_class = None


def _make_module_class():
    """Define :class:`NeuralODEModule` (a ``torch.nn.Module``); called on first use, when torch is imported."""
    torch = _torch()
    nn = torch.nn
    activations = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "softplus": lambda z: torch.log1p(torch.exp(-torch.abs(z))) + torch.relu(z),
    }

    class NeuralODEModule(nn.Module):
        """The discrete flow of a trained neural ODE and its output map (see :mod:`turnpike.export`).

        ``forward(points)`` gives the scores (M,) for two classes, (M, K) for K; :meth:`trajectory` the states
        of every layer (steps+1, M, D). Parameters: ``layers.{k}.{name}`` (the weights of layer k, shapes of
        :func:`turnpike.export.weight_shapes`), ``output.weight`` (rows, D) and ``output.bias`` (rows,);
        buffers ``input_shift``, ``input_scale``. Built from the keyword arguments of
        :meth:`NeuralODE.architecture` with zero weights; load a state dict into it.
        """

        def __init__(self, *, field: str, activation: str, d: int, augment: int, hidden: int | None, steps: int,
                     step: float, method: str, classes: int, clip: bool, dtype=None):
            super().__init__()
            check_choice("field", field, FIELDS)
            check_choice("method", method, INTEGRATORS)
            self.field, self.method, self.step, self.classes, self.clip = field, method, float(step), classes, clip
            self.sigma = activations[check_choice("activation", activation, ACTIVATIONS)]
            dtype = dtype or torch.float64
            D = d + augment
            self.augment = augment
            shapes = weight_shapes(field, D, hidden)
            self.layers = nn.ModuleList()
            for _ in range(steps):
                layer = nn.Module()
                for name, shape in shapes.items():
                    layer.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=dtype)))
                self.layers.append(layer)
            self.output = nn.Linear(D, 1 if classes == 2 else classes, dtype=dtype)
            self.register_buffer("input_shift", torch.zeros(d, dtype=dtype))
            self.register_buffer("input_scale", torch.ones(d, dtype=dtype))

        def trajectory(self, points):
            """The states of every layer (steps+1, M, D) for raw features (M, d)."""
            x = (points - self.input_shift) / self.input_scale
            x = torch.cat([x, x.new_zeros(x.shape[0], self.augment)], dim=1)
            states = [x]
            for layer in self.layers:
                W = dict(layer.named_parameters())
                x = _step(lambda z, W=W: _field(self.field, self.sigma, z, W), x, self.step, self.method)
                states.append(x)
            return torch.stack(states)

        def scores(self, x):
            """The scores of final states x (M, D)."""
            z = self.output(x)
            if self.clip:
                z = torch.clamp(z, -1.0, 1.0)
            return z[:, 0] if self.classes == 2 else z

        def forward(self, points):
            return self.scores(self.trajectory(points)[-1])

    return NeuralODEModule


def __getattr__(name: str):
    global _module_class
    if name == "NeuralODEModule":
        if _module_class is None:
            _module_class = _make_module_class()
        return _module_class
    raise AttributeError(f"module 'turnpike.export' has no attribute {name!r}")


def to_torch(model: NeuralODE, dtype=None):
    """A :class:`NeuralODEModule` with the weights of ``model`` (float64 unless ``dtype`` says otherwise)."""
    if not isinstance(model, NeuralODE):
        raise InputError(f"model must be a turnpike.export.NeuralODE, got {type(model).__name__}")
    torch = _torch()
    module = __getattr__("NeuralODEModule")(**model.architecture(), dtype=dtype)
    dtype = dtype or torch.float64
    state = {f"layers.{k}.{name}": torch.tensor(w[k], dtype=dtype) for name, w in model.weights.items()
             for k in range(model.steps)}
    state.update({"output.weight": torch.tensor(model.output, dtype=dtype),
                  "output.bias": torch.tensor(model.bias, dtype=dtype),
                  "input_shift": torch.tensor(model.input_shift, dtype=dtype),
                  "input_scale": torch.tensor(model.input_scale, dtype=dtype)})
    module.load_state_dict(state)
    return module


def save_torch(model: NeuralODE, path) -> Path:
    """Write the state dict of :func:`to_torch` of ``model`` to ``path`` (``torch.save``), atomically."""
    torch = _torch()
    buffer = io.BytesIO()
    torch.save(to_torch(model).state_dict(), buffer)
    return atomic_write(Path(path), lambda fh: fh.write(buffer.getvalue()))


def load_torch(directory, filename: str = "model.pt"):
    """The :class:`NeuralODEModule` described by ``directory/model.json`` with the state dict ``directory/filename``."""
    torch = _torch()
    directory = Path(directory)
    try:
        architecture = json.loads((directory / "model.json").read_text())["architecture"]
        state = torch.load(directory / filename, weights_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read a saved PyTorch network from {str(directory)!r}: {exc}") from exc
    module = __getattr__("NeuralODEModule")(**architecture)
    module.load_state_dict(state)
    return module

"""Transformers as interacting particles: self-attention dynamics, clustering, metastability, control.

See ``docs/mathematics.md`` §3 and Geshkovski, Letrouit, Polyanskiy, Rigollet, *A mathematical
perspective on Transformers* (arXiv 2312.10794). Modules: :mod:`.dynamics` (SA/USA on the sphere, the
circle, the unnormalised R^d form), :mod:`.integrate` (RK4 with projection, DOP853, BDF),
:mod:`.diagnostics` (energy, clusters, collapse, leaders, equiangular ODE), :mod:`.geometry` (limit
polytope and hyperplanes of the unnormalised form, by the spectrum of V), :mod:`.metastability`,
:mod:`.phase` (probability of two tokens within a tolerance over (t, β)), :mod:`.control` (the
measure-to-measure control problem as a :class:`turnpike.Problem`) and :mod:`.plots`.
"""

from .control import matching_loss as matching_loss
from .control import measure_matching as measure_matching
from .control import parameter_count as parameter_count
from .control import transformer_field as transformer_field
from .control import wasserstein2 as wasserstein2
from .diagnostics import cluster_count as cluster_count
from .diagnostics import cluster_counts as cluster_counts
from .diagnostics import collapse_time as collapse_time
from .diagnostics import diameter as diameter
from .diagnostics import energy as energy
from .diagnostics import energy_rate as energy_rate
from .diagnostics import equiangular_rho as equiangular_rho
from .diagnostics import equiangular_start as equiangular_start
from .diagnostics import gram as gram
from .diagnostics import is_boolean as is_boolean
from .diagnostics import leaders as leaders
from .diagnostics import pairwise_angles as pairwise_angles
from .diagnostics import proximity_probability as proximity_probability
from .dynamics import CircleAttention as CircleAttention
from .dynamics import SelfAttention as SelfAttention
from .dynamics import Unnormalised as Unnormalised
from .dynamics import random_sphere as random_sphere
from .dynamics import sphere_project as sphere_project
from .geometry import LimitHyperplanes as LimitHyperplanes
from .geometry import LimitPolytope as LimitPolytope
from .geometry import leading_eigenpair as leading_eigenpair
from .geometry import limit_hyperplanes as limit_hyperplanes
from .geometry import limit_polytope as limit_polytope
from .integrate import Trajectory as Trajectory
from .integrate import simulate as simulate
from .metastability import ExponentFit as ExponentFit
from .metastability import MetastableRun as MetastableRun
from .metastability import Plateau as Plateau
from .metastability import clustered_start as clustered_start
from .metastability import fastest_mode as fastest_mode
from .metastability import fit_exponent as fit_exponent
from .metastability import max_energy as max_energy
from .metastability import metastable_count as metastable_count
from .metastability import metastable_run as metastable_run
from .metastability import plateau_length as plateau_length
from .metastability import plateaus as plateaus
from .metastability import two_cluster_merge_time as two_cluster_merge_time
from .phase import PhaseDiagram as PhaseDiagram
from .phase import phase_diagram as phase_diagram

_PLOTS = ("plot_attention_matrix", "plot_circle_tokens", "plot_clusters_energy", "plot_phase_diagram",
          "plot_sphere_tokens")


def __getattr__(name: str):
    """The figure functions of :mod:`.plots`, imported on first use (matplotlib is not loaded before)."""
    if name in _PLOTS:
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PLOTS])

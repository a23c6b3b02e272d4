"""Turnpike analysis: distances to the static optimum, rates, tubes, horizon studies."""

from .distances import Distances as Distances
from .distances import Tube as Tube
from .distances import distances as distances
from .distances import tube as tube
from .learning import SparsityBounds as SparsityBounds
from .learning import ZeroErrorControl as ZeroErrorControl
from .learning import control_norm as control_norm
from .learning import discrete_cost as discrete_cost
from .learning import first_time_below as first_time_below
from .learning import rescaled_controls as rescaled_controls
from .learning import rescaled_distance as rescaled_distance
from .learning import sparsity_bounds as sparsity_bounds
from .learning import stopping_time as stopping_time
from .learning import zero_error_control as zero_error_control
from .rates import PredictedRate as PredictedRate
from .rates import RateFit as RateFit
from .rates import fit_rate as fit_rate
from .rates import predicted_rate as predicted_rate
from .report import DEFAULT_EPSILON as DEFAULT_EPSILON
from .report import TurnpikeReport as TurnpikeReport
from .report import turnpike_report as turnpike_report
from .study import HorizonStudy as HorizonStudy
from .study import StudyInterrupted as StudyInterrupted
from .study import compare_horizons as compare_horizons

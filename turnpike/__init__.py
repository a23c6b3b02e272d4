"""turnpike: optimal control of neural ODEs and the turnpike property, on CasADi.

Define a :class:`Problem` with CasADi symbols, solve it on a horizon with :func:`solve`,
solve its static problem with :func:`solve_static`, and compare the two.
"""

from . import attention as attention
from . import catalogue as catalogue
from .analysis import HorizonStudy as HorizonStudy
from .analysis import StudyInterrupted as StudyInterrupted
from .analysis import TurnpikeReport as TurnpikeReport
from .analysis import compare_horizons as compare_horizons
from .analysis import distances as distances
from .analysis import fit_rate as fit_rate
from .analysis import predicted_rate as predicted_rate
from .analysis import tube as tube
from .analysis import turnpike_report as turnpike_report
from .checks import resimulate as resimulate
from .checks import resimulation_error as resimulation_error
from .errors import InputError as InputError
from .errors import SolverError as SolverError
from .errors import TurnpikeError as TurnpikeError
from .errors import UnknownNameError as UnknownNameError
from .multistart import multistart as multistart
from .problem import Problem as Problem
from .solution import Solution as Solution
from .solution import StaticSolution as StaticSolution
from .solve import solve as solve
from .solve import solve_static as solve_static
from .solvers import SOLVERS as SOLVERS
from .stopping import Interrupted as Interrupted
from .sweeps import CheckpointWarning as CheckpointWarning
from .sweeps import SweepInterrupted as SweepInterrupted
from .sweeps import SweepResult as SweepResult
from .sweeps import sweep as sweep
from .transcription import INTEGRATORS as INTEGRATORS

__version__ = "0.1.0"

"""turnpike: optimal control of neural ODEs and the turnpike property, on CasADi.

Define a :class:`Problem` with CasADi symbols, solve it on a horizon with :func:`solve`,
solve its static problem with :func:`solve_static`, and compare the two.
"""

from . import catalogue as catalogue
from .checks import resimulate as resimulate
from .checks import resimulation_error as resimulation_error
from .errors import InputError as InputError
from .errors import SolverError as SolverError
from .errors import TurnpikeError as TurnpikeError
from .errors import UnknownNameError as UnknownNameError
from .problem import Problem as Problem
from .solution import Solution as Solution
from .solution import StaticSolution as StaticSolution
from .solve import solve as solve
from .solve import solve_static as solve_static
from .solvers import SOLVERS as SOLVERS
from .transcription import INTEGRATORS as INTEGRATORS

__version__ = "0.1.0"

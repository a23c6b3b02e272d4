"""The catalogue of problem classes for turnpike.

Each class subclasses :class:`turnpike.Problem`; calling it with no arguments gives the
documented default instance. They are registered in ``pyproject.toml`` under the entry-point
group ``turnpike.problems``, which is how ``turnpike list`` and ``turnpike solve NAME`` find them.
"""

from .heat import Heat as Heat
from .linear_quadratic import LinearQuadratic as LinearQuadratic
from .neural_ode import NeuralODEClassification as NeuralODEClassification
from .pendulum import Pendulum as Pendulum
from .transport import Transport as Transport
from .wave import Wave as Wave

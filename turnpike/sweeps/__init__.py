"""Parameter sweeps of horizon comparisons: parallel or distributed, checkpointed, resumable.

:func:`sweep` solves a problem family on a grid of parameters x horizons x seeds and writes one table;
``turnpike sweep`` is its command. Inside, in the order a sweep uses them: :mod:`~turnpike.sweeps.arguments`
(checked before any solve), :mod:`~turnpike.sweeps.tasks` (one solve as a picklable task, and the
worker's function), :mod:`~turnpike.sweeps.checkpoints` (atomic, verified files),
:mod:`~turnpike.sweeps.executors` (this process, a local pool, Dask) and :mod:`~turnpike.sweeps.runner`
(the sweep and its table).
"""

from .runner import CheckpointWarning as CheckpointWarning
from .runner import SweepInterrupted as SweepInterrupted
from .runner import SweepResult as SweepResult
from .runner import sweep as sweep

"""Stopping a solve from outside: a time limit, the user's callback, SIGINT and SIGTERM.

A :class:`Stop` is asked after every iteration of every phase of :func:`turnpike.solve` (each presolve
phase, and IPOPT through its ``iteration_callback``) whether to stop, and why. The phase then ends at its
current iterate, and the solve reports ``success=False`` with the reason in its status. Within
:meth:`Stop.signals` the first SIGINT or SIGTERM is noted the same way while a phase iterates, so the
solve stops at the end of the current iteration; and it raises :class:`Interrupted` (a
``KeyboardInterrupt``) at once outside the iterations (a build, a compilation) or on a second signal,
which Python delivers as soon as the running CasADi call returns.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

import numpy as np

__all__ = ["Interrupted", "Stop"]

#: Whether :meth:`Stop.signals` installs its handlers. A process-pool worker of :mod:`turnpike.sweeps` sets it
#: to False: its parent handles the signals and terminates it.
HANDLE_SIGNALS = True


class Interrupted(KeyboardInterrupt):
    """A solve stopped by SIGINT or SIGTERM (``signal``, a :class:`signal.Signals`). ``solution`` is its last
    iterate as a non-converged :class:`~turnpike.Solution` when the stop came while it iterated, else None."""

    def __init__(self, message: str, signal: signal.Signals = signal.SIGINT, solution=None):
        super().__init__(message)
        self.signal, self.solution = signal, solution


class Stop:
    """Whether to stop now: ``stop()`` is the reason (a string) or None.

    Reasons: ``"time limit of S s"`` once ``time_limit`` seconds have passed since ``start`` (a
    ``time.perf_counter()`` reading; default: when the Stop was made),
    what :meth:`request` was given (``"stopped by the callback"``), ``"interrupted by SIGINT"`` /
    ``"interrupted by SIGTERM"``. The first reason stays.
    """

    def __init__(self, time_limit: float = np.inf, *, start: float | None = None):
        self.time_limit = float(time_limit)
        self.start = time.perf_counter() if start is None else start
        self.deadline = self.start + self.time_limit
        self.reason: str | None = None
        self.signal: signal.Signals | None = None
        self._iterating = False

    def __call__(self) -> str | None:
        if self.reason is None and time.perf_counter() > self.deadline:
            self.reason = f"time limit of {self.time_limit:g} s"
        return self.reason

    def request(self, reason: str) -> None:
        """Stop at the end of the current iteration, for ``reason``."""
        if self.reason is None:
            self.reason = reason

    def remaining(self) -> float:
        """Seconds left before the time limit (inf without one)."""
        return self.deadline - time.perf_counter()

    @property
    def interrupted(self) -> bool:
        """Whether a signal came."""
        return self.signal is not None

    @contextmanager
    def iterating(self):
        """Within: a first signal is noted, to stop at the end of the current iteration."""
        self._iterating = True
        try:
            yield self
        finally:
            self._iterating = False

    @contextmanager
    def signals(self):
        """Within: SIGINT and SIGTERM stop the solve (see the module docstring); the previous handlers are
        restored after. Nothing is installed outside the main thread (signals reach that one only), for a
        signal whose handler is ``SIG_IGN`` (a background job), or when :data:`HANDLE_SIGNALS` is False."""
        if not HANDLE_SIGNALS or threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, _frame):
            first = self.signal is None
            self.signal = self.signal or signal.Signals(signum)
            self.reason = self.reason if self.reason and first else f"interrupted by {self.signal.name}"
            if not (self._iterating and first):
                raise Interrupted(f"solve interrupted by {self.signal.name}", self.signal)

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
        try:
            yield self
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

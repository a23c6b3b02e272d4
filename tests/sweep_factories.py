"""Problem factories for the sweep tests, in a module of their own so that a worker process imports
only this and the catalogue to unpickle them."""

import multiprocessing
import os

from problems import LinearQuadratic


def crashing_lq(crash: bool = False, **params):
    """The linear-quadratic example, whose construction kills the process if ``crash`` (in a worker only)."""
    if crash and multiprocessing.parent_process() is not None:
        os._exit(13)
    return LinearQuadratic.example(**params)

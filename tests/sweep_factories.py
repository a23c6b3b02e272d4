"""Problem factories and pool tasks for the sweep tests, in a module of their own so that a worker process
imports only this and the catalogue to unpickle them."""

import multiprocessing
import os
import struct
import sys
import time

from problems import LinearQuadratic


def crashing_lq(crash: bool = False, **params):
    """The linear-quadratic example, whose construction kills the process if ``crash`` (in a worker only)."""
    if crash and multiprocessing.parent_process() is not None:
        os._exit(13)
    return LinearQuadratic.example(**params)


def dies_sending_its_result(task: str) -> str:
    """A pool task that returns ``task`` after 0.2 s, except ``"die"``, whose worker ends in the middle of sending
    its result: holding the result queue's lock, with a part of the message written, as a worker killed at that
    moment (the parent then reads the message forever, and the other workers wait for the lock forever)."""
    if task != "die":
        time.sleep(0.2)
        return task
    frame = sys._getframe()
    while frame.f_code.co_name != "_process_worker":  # concurrent.futures' worker loop holds the queue
        frame = frame.f_back
    queue = frame.f_locals["result_queue"]
    queue._wlock.acquire()
    os.write(queue._writer.fileno(), struct.pack("!i", 1000) + b"part of a result")
    os._exit(1)

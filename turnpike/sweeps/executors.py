"""Where the tasks of a sweep or of a multistart run: in this process, on a local process pool, or on a Dask
cluster.

Each executor is a generator of ``(task, result)`` pairs in completion order, the result of ``run(task)``
(``run`` a module-level function, which pickles by reference; :func:`~turnpike.sweeps.tasks.run_task` for
a sweep); the sweep checkpoints every pair as it arrives. Closing the generator (or an exception, Ctrl-C
included, inside it) stops the work in flight: those solves are lost, every solve already yielded is kept.

Fault policy:

* a solve that raises returns a :class:`~turnpike.sweeps.tasks.SolveError` from the worker (a row);
* local pool: the workers ignore SIGINT (the parent alone handles Ctrl-C and then terminates them), and
  at most ``workers`` tasks are submitted at a time, so that "in flight" means "running". When a worker
  process dies, the whole pool is broken and every running task is lost (with a RuntimeWarning). Python
  notices the death itself, except when the worker died while sending a result: its manager thread then
  waits for the rest of the message forever, and the other workers for the lock of the result queue; so
  ``run_pool`` also looks at the workers' sentinels every ``_POLL_SECONDS`` while it waits. The lost
  tasks become *suspects*: a fresh pool runs them one at a time, with nothing beside them, so a
  task that kills its worker on its own is identified and yields
  :class:`~turnpike.sweeps.tasks.WorkerLost` (not checkpointed: the next run tries it again), while the
  others, victims of a neighbour or of a kill from outside, simply finish; then the pool is full again;
* Dask: the scheduler moves the tasks of a dead worker to other workers, and declares a task that
  killed ``distributed.scheduler.allowed-failures`` (default 3) workers a ``KilledWorker``, which yields
  :class:`~turnpike.sweeps.tasks.WorkerLost` likewise.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from .. import stopping
from ..errors import InputError, SolverError, check_positive
from .tasks import Task, WorkerLost, run_task

__all__ = ["run_serial", "run_pool", "distributed_api", "dask_client", "run_dask", "end_rerun_script", "executor",
           "local_workers"]

_POLL_SECONDS = 0.5  # how often run_pool looks for dead workers while it waits for results


@contextmanager
def _sigint_noted():
    """Within: Ctrl-C still raises KeyboardInterrupt, and is also noted in the yielded dict.

    Needed because CasADi turns a KeyboardInterrupt raised while IPOPT iterates into an ordinary,
    non-converged result (status ``NonIpopt_Exception_Thrown``), which must not be taken for a solve.
    """
    noted = {"interrupted": False}
    # Signals reach the main thread only; and a process started with SIGINT ignored (a background
    # job, nohup) stays immune to it, as Python itself leaves it.
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield noted
        return

    def handler(signum, frame):
        noted["interrupted"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def run_serial(tasks: Iterable[Task], run: Callable = run_task) -> Iterator[tuple[Task, object]]:
    """Run the tasks one after the other in this process."""
    for task in tasks:
        with _sigint_noted() as noted:
            result = run(task)
        if noted["interrupted"]:
            raise KeyboardInterrupt
        yield task, result


def _start_worker(parent: int) -> None:
    """A pool worker ignores Ctrl-C and leaves SIGTERM deadly (the parent handles the one and terminates the
    workers with the other) and, unless told otherwise, runs the compiled ensemble loop on one thread: the
    pool already uses the cores."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping.HANDLE_SIGNALS = False
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="turnpike-watch-parent").start()
    os.environ.setdefault("TURNPIKE_THREADS", "1")


_RERUN = "TURNPIKE_RERUN_MARKER"  # the file a worker that runs the user's script again writes (its path)


def end_rerun_script() -> None:
    """End this process at once if it is a pool worker running the user's script again.

    A new worker process runs the main script as the module ``__mp_main__`` (Python's multiprocessing does, so
    that functions defined there can be unpickled; the stack then holds that module's code); a script that
    calls :func:`turnpike.sweep` outside ``if __name__ == "__main__":`` would start a sweep in every worker.
    Called first by
    :func:`~turnpike.sweep`: in such a worker it leaves the script's path in the file the parent named and
    exits, and the parent, seeing it, stops the sweep with one message (:func:`run_pool`).
    """
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>"
                                     and frame.f_globals.get("__name__") == "__mp_main__"):
        frame = frame.f_back
    if frame is None:
        return
    marker = os.environ.get(_RERUN)
    if marker:  # written whole, then renamed: the parent never reads a half-written file
        partial = Path(f"{marker}.{os.getpid()}")
        partial.write_text(str(frame.f_globals.get("__file__") or "the main script"))
        os.replace(partial, marker)
    os._exit(70)


def _rerun_marker() -> Path:
    return Path(tempfile.gettempdir()) / f"turnpike-rerun-{os.getpid()}"


def _refuse_rerun_script() -> None:
    """An :class:`InputError` if a worker reported running the user's script again (see :func:`end_rerun_script`)."""
    marker = _rerun_marker()
    if marker.exists():
        script = marker.read_text()
        marker.unlink(missing_ok=True)
        raise InputError(f"the sweep's worker processes run {script} again as they start, and it calls turnpike.sweep "
                         "outside `if __name__ == \"__main__\":`; put the call under that line, or pass workers=1")


def _watch_parent(pid: int, seconds: float = 1.0) -> None:
    """End this worker once the sweep's process ``pid`` has ended (checked every ``seconds``). Run on a daemon
    thread: a sweep killed by any signal, SIGKILL included, then leaves no worker behind (and with the
    workers gone, the fork server ends too: each worker holds its liveness pipe open)."""
    while True:
        time.sleep(seconds)
        if not _alive(pid):
            os._exit(1)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists, is ours, and is not a zombie (a killed process stays one until
    its own parent reaps it, which may wait for the pipes that this worker holds)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the pid reused by another user's process
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc: os.kill had to do
        return True
    return state != "Z"


def _new_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of fresh interpreters: "forkserver" where there is one (POSIX), else "spawn".

    Not "fork": forking a process that has already run CasADi/IPOPT (threads, solver state) is unsafe.
    """
    os.environ[_RERUN] = str(_rerun_marker())  # inherited by the fork server and the workers
    _rerun_marker().unlink(missing_ok=True)  # left by a late worker of an earlier pool, or a process of this pid
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["turnpike"])  # workers fork from a server that has imported it
        with _one_blas_thread():  # the server loads numpy's BLAS with it, and the workers inherit that
            multiprocessing.forkserver.ensure_running()
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                               initargs=(os.getpid(),))


@contextmanager
def _one_blas_thread():
    """Within: the environment asks BLAS libraries for one thread (where the user did not choose a number).

    For the fork server, read when it imports numpy: the pool already uses the cores, and OpenBLAS threads
    spin while they wait; two workers with two BLAS threads each on two cores ran the L-BFGS phase of the
    two-circles problem 10x slower (7.7 s against 0.8 s per start)."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    unset = [name for name in names if name not in os.environ]
    os.environ.update({name: "1" for name in unset})
    try:
        yield
    finally:
        for name in unset:
            os.environ.pop(name, None)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the pool now, running solves included (there is no public way to do that before Python 3.14).

    Also how a broken pool is cleared: a worker started while the pool was breaking can escape CPython's
    own clean-up, which then waits for it forever (seen with Python 3.11).
    """
    processes = list((pool._processes or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
    # A worker stopped while it was sending a result leaves half a message in the result pipe, and the
    # pool's manager thread then waits for the rest forever (seen with Python 3.11, 1 Ctrl-C in 12). With
    # the workers gone, the parent holds the pipe's last write end: closing it ends that read (EOF), the
    # thread takes the pool for broken and stops.
    if pool._result_queue is not None:
        pool._result_queue._writer.close()
    pool.shutdown(wait=True, cancel_futures=True)


def _worker_died(pool: ProcessPoolExecutor) -> bool:
    """Whether a worker process of ``pool`` has ended (its sentinel is ready; nothing is read from it)."""
    sentinels = [process.sentinel for process in list((pool._processes or {}).values())]
    return bool(sentinels) and bool(multiprocessing.connection.wait(sentinels, timeout=0))


def _lost(future: Future) -> bool:
    """Whether the task of ``future`` was lost with its pool; only once the pool is terminated is a future
    that is not done lost too (a pool broken while a task was being submitted can leave it pending forever)."""
    return not future.done() or future.cancelled() or isinstance(future.exception(), BrokenProcessPool)


def run_pool(tasks: Iterable[Task], workers: int, run: Callable = run_task) -> Iterator[tuple[Task, object]]:
    """Run the tasks on ``workers`` local processes; see the module docstring for worker deaths."""
    queue: deque[Task] = deque(tasks)
    suspects: deque[Task] = deque()
    running: dict[Future, tuple[Task, bool]] = {}  # future -> (task, whether it runs alone as a suspect)
    pool = _new_pool(workers)

    def submitted(task: Task, alone: bool) -> bool:
        """Whether ``task`` could be submitted: not if a worker died since the last wait (a broken pool).

        A pool that is breaking can also fail with OSError while it starts a worker (CPython closes its pipes
        meanwhile); with nothing running, no worker died, and an OSError is a real failure to start one.
        """
        try:
            running[pool.submit(run, task)] = (task, alone)
        except BrokenProcessPool:
            return False
        except OSError:
            if not running:
                raise
            return False
        return True

    try:
        while queue or suspects or running:
            broken = False
            if suspects:
                if not running:  # a suspect runs alone: nothing else is submitted beside it
                    broken = not submitted(suspects[0], alone=True)
                    if not broken:
                        suspects.popleft()
            elif not any(alone for _, alone in running.values()):
                while not broken and queue and len(running) < workers:
                    broken = not submitted(queue[0], alone=False)
                    if not broken:
                        queue.popleft()
            done = set()
            while running and not broken and not done:
                done, _ = wait(running, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
                broken = not done and _worker_died(pool)
            if broken or any(_lost(f) for f in done):
                _terminate(pool)  # every future is final now: finished before the pool broke, or lost
                _refuse_rerun_script()
                done = set(running)
                pool = _new_pool(workers)
                lost = sum(_lost(f) and not running[f][1] for f in done)
                if lost:
                    warnings.warn(f"a worker process died; the {lost} solves in flight run again, one at a time",
                                  RuntimeWarning, stacklevel=2)
            for future in done:
                task, alone = running.pop(future)
                if not _lost(future):
                    yield task, future.result()
                elif alone:
                    yield task, WorkerLost("worker died: its process ended while solving this task alone")
                else:
                    suspects.append(task)
    except BaseException:
        _terminate(pool)
        raise
    pool.shutdown(wait=True)


def distributed_api():
    """``Client``, ``KilledWorker`` and ``as_completed`` from Dask distributed (imported only when a scheduler
    is given); InputError if Dask is not installed."""
    try:
        from distributed import Client, KilledWorker, as_completed
    except ImportError as exc:
        raise InputError(
            "a scheduler address needs Dask distributed, which is not installed: pip install 'turnpike[dask]'"
        ) from exc
    return Client, KilledWorker, as_completed


@contextmanager
def dask_client(address: str, connect_timeout: float = 30.0):
    """A ``distributed.Client`` connected to the scheduler at ``address``, closed on exit."""
    Client = distributed_api()[0]
    try:
        client = Client(address, timeout=connect_timeout)
    except ValueError as exc:
        raise InputError(f"scheduler={address!r} is not a Dask scheduler address: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise SolverError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()


def run_dask(tasks: Iterable[Task], client, run: Callable = run_task) -> Iterator[tuple[Task, object]]:
    """Run the tasks on the Dask cluster of ``client`` (see :func:`dask_client`).

    The workers must have turnpike (and the factory's module) installed; the results come back to this
    process, which writes the checkpoints, so the workers need no shared file system.
    """
    _, KilledWorker, as_completed = distributed_api()
    futures = {}
    try:
        futures = {client.submit(run, task, pure=False): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            if future.status == "error" and isinstance(future.exception(), KilledWorker):
                yield task, WorkerLost(f"worker died: {future.exception()}")
            else:
                yield task, future.result()
    finally:
        client.cancel(list(futures))


def local_workers(workers: int | None, scheduler) -> int | None:
    """The number of local workers (None with a scheduler), after checking the two arguments: ``scheduler`` is
    the address of a Dask scheduler or a ``distributed.Client``; ``workers`` defaults to the usable cores."""
    if scheduler is not None:
        if workers is not None:
            raise InputError(f"give workers or scheduler, not both (got workers={workers!r}, scheduler={scheduler!r})")
        Client = distributed_api()[0]
        if not isinstance(scheduler, Client) and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise InputError("scheduler must be the address of a Dask scheduler (tcp://host:port) or a "
                             f"distributed.Client, got {scheduler!r}")
        return None
    if workers is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return check_positive("workers", workers, integer=True)


@contextmanager
def executor(workers: int | None, scheduler=None, run: Callable = run_task):
    """The function that runs a list of tasks with ``run`` (see the module docstring), connected and ready: on the
    Dask cluster of ``scheduler`` (an address, connected here and closed on exit, or a ``Client``, left open),
    else on ``workers`` local processes (in this process for 1)."""
    if scheduler is not None:
        if isinstance(scheduler, str):
            with dask_client(scheduler) as client:
                yield lambda tasks: run_dask(tasks, client, run)
        else:
            yield lambda tasks: run_dask(tasks, scheduler, run)
    elif workers == 1:
        yield lambda tasks: run_serial(tasks, run)
    else:
        yield lambda tasks: run_pool(tasks, workers, run)

"""Executors: where a sweep's points run. Same points in, same rows out, on any executor.

* :func:`run_local`: in this process (``jobs=1`` without a timeout), or a ``pebble.ProcessPool``
  of worker processes, one point per worker in flight, each worker sending its point's row back
  to the driver. A point past ``timeout`` is stopped by the pool, which ends its worker (a
  ``status="timeout"`` row; a fresh worker takes its place), and a worker that dies (segfault,
  out of memory, SIGKILL) costs only its own point (a ``status="error"`` row, ``WorkerDied``).
  Workers ignore SIGINT (the parent handles Ctrl-C and stops the pool) and die with the parent
  (Linux ``PR_SET_PDEATHSIG``, set by the pool's initializer), so a killed sweep leaves no
  orphans. See docs/sweeps.md for why pebble, and what it measured.
* :func:`run_ray`: Ray tasks on a cluster (``ray.init(address)``, or a new local instance), one
  task per point, at most ``jobs`` (default: the cluster's CPUs) in flight, so workers need
  netsim installed but no shared filesystem. A task past ``timeout``
  is cancelled with ``ray.cancel(force=True)``, which kills its worker.

Every executor's driver writes the rows in batches (:class:`netsim.experiment.dataset.BatchWriter`:
a file per 64 rows or 2 s, and at the end or on Ctrl-C), so a small point does not pay a Parquet
file of its own, and a worker that is stopped or dies loses only the point it was running.

A row's randomness comes only from its point's ``seed`` (``numpy.random.SeedSequence`` inside the
scenario), so the executor and the number of workers never change a row (except the wall-clock
columns ``sim_wall_s`` and ``point_wall_s``).
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections import deque
from typing import Callable

from netsim.errors import ConfigError, NetsimError

OnDone = Callable[[str, str], None]  # (key, status)
BATCH_ROWS, BATCH_S = 64, 2.0  # in-process sweeps write a file per 64 rows or 2 s


def run_point(point: dict, fn: Callable | None = None) -> dict:
    """Run one point; never raises: failures become ``status="error"`` rows."""
    t0 = time.perf_counter()
    try:
        if fn is None:
            from netsim.scenario import run as fn
        row = fn(dict(point))
        row["status"] = "ok"
        row["error"] = ""
    except NetsimError as exc:
        row = dict(point) | {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001 -- a bug in one point must not stop the sweep
        tb = traceback.format_exc(limit=3)
        row = dict(point) | {"status": "error", "error": f"{type(exc).__name__}: {exc}\n{tb}"}
    row["point_wall_s"] = time.perf_counter() - t0
    return row


def _failed_row(point: dict, status: str, message: str, wall: float) -> dict:
    return dict(point) | {"status": status, "error": message, "point_wall_s": wall}


def empty_run(point: dict) -> dict:
    """A point that does nothing: measures an executor's own overhead (benchmarks)."""
    return dict(point)


# ---------------------------------------------------------------------------------------------
# local processes

def _set_pdeathsig() -> None:
    """Ask Linux to SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


_WORKER_FN: list = [None]  # the point function of a pool worker, set by _pool_init


def _pool_init(fn, parent_pid: int) -> None:
    """Pool worker start-up: ignore Ctrl-C (the parent handles it), die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _set_pdeathsig()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)
    _WORKER_FN[0] = fn


def _pool_task(point: dict) -> dict:
    """Run one point in a pool worker; its row goes back to the driver."""
    return run_point(point, _WORKER_FN[0])


def _warm_up() -> None:
    try:
        from netsim.scenario import run

        run({"topology": "crossbar", "gpus": 4, "tokens_per_gpu": 8})
    except Exception:  # noqa: BLE001 -- only a warm-up
        pass


def _mp_context():
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _batch(writer):
    from netsim.experiment.dataset import BatchWriter

    return BatchWriter(writer, BATCH_ROWS, BATCH_S)


def run_local(tasks: list[tuple[str, dict]], writer, on_done: OnDone, jobs: int = 1,
              timeout: float | None = None, fn: Callable | None = None) -> None:
    """Run ``tasks`` ((key, point) pairs) on local processes; every row goes to ``writer``, in
    batches written by this process."""
    if not tasks:
        return
    if fn is None:  # a cold numba cache: the first point's kernels in two processes
        from netsim.kernels import compile_ahead

        compile_ahead(str(tasks[0][1].get("fabric", "flow")))
    batch = _batch(writer)
    try:
        if jobs == 1 and timeout is None:
            for key, point in tasks:
                on_done(key, batch.add(key, point, run_point(point, fn)))
        else:
            _run_pool(tasks, batch, on_done, jobs, timeout, fn)
    finally:
        batch.flush()  # Ctrl-C too: every finished point reaches the disk


def _run_pool(tasks: list[tuple[str, dict]], batch, on_done: OnDone, jobs: int,
              timeout: float | None, fn: Callable | None) -> None:
    """The points on a ``pebble.ProcessPool`` of ``jobs`` workers, one point per worker in
    flight; the rows come back to this process, which adds them to ``batch``."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from pebble import ProcessExpired, ProcessPool

    ctx = _mp_context()
    pending = deque(tasks)
    if fn is None and ctx.get_start_method() == "fork":
        # Load the numba kernels once here, so that forked workers inherit them (loading them in
        # every worker at once is slower, and a worker replaced after a timeout would pay again):
        # without a timeout the first point itself warms up; with one, a tiny fixed run does.
        if timeout is None:
            key, point = pending.popleft()
            on_done(key, batch.add(key, point, run_point(point)))
        else:
            _warm_up()
        if not pending:
            return

    # SIGINT stays blocked while the pool starts: its threads inherit the mask, so Ctrl-C goes to
    # this (main) thread, and so do the workers they fork, which cannot print a KeyboardInterrupt
    # traceback before they ignore SIGINT (the parent gets the signal when unblocked)
    mask = hasattr(signal, "pthread_sigmask")
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if mask else None
    try:
        pool = ProcessPool(max_workers=min(jobs, len(pending)), initializer=_pool_init,
                           initargs=(fn, os.getpid()), context=ctx)
        inflight: dict = {}  # future -> (key, point, submitted)

        def submit() -> None:
            key, point = pending.popleft()
            inflight[pool.schedule(_pool_task, args=(point,), timeout=timeout)] = (
                key, point, time.monotonic())

        # one point per worker in flight: a point starts when it is handed over, so its
        # timeout and wall clock count from there
        while pending and len(inflight) < jobs:
            submit()
    finally:
        if mask:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    try:
        while inflight:
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                key, point, t0 = inflight.pop(fut)
                exc = fut.exception()
                if exc is None:
                    row = fut.result()
                else:
                    wall = time.monotonic() - t0
                    if isinstance(exc, TimeoutError):
                        row = _failed_row(point, "timeout", f"point ran past --timeout"
                                          f" {timeout:g} s and was stopped", wall)
                    elif isinstance(exc, ProcessExpired):
                        row = _failed_row(point, "error", "WorkerDied: the worker process"
                                          f" running this point died (exit code"
                                          f" {exc.exitcode})", wall)
                    else:  # the pool itself failed (BrokenProcessPool...)
                        row = _failed_row(point, "error", f"{type(exc).__name__}: {exc}", wall)
                if pending:  # the next point first: the worker does not wait for the write
                    submit()
                on_done(key, batch.add(key, point, row))
    finally:
        pool.stop()  # interrupted: running points are lost, finished ones are in the batch
        pool.join()


# ---------------------------------------------------------------------------------------------
# Ray

def _ray_point(point: dict, fn=None) -> dict:
    return run_point(point, fn)


def ray_connect(address: str | None, jobs: int | None):
    """``ray.init`` for a sweep; returns (ray module, whether this call started the connection)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'netsim[ray]'"
                          " (or pip install 'ray[default]')") from None
    if ray.is_initialized():
        return ray, False
    import logging

    kw = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address and "://" not in address:
        # Ray retries a dead address for minutes: check that something listens there first
        import socket

        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"--address {address!r}: expected HOST:PORT")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except OSError as exc:
            raise ConfigError(f"--backend ray: no Ray cluster at {address!r}"
                              f" ({exc.strerror or exc})") from None
    try:
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address or None, **kw)
        else:
            # "local": a new instance, even if a `ray start` cluster once ran on this machine
            ray.init(address="local", num_cpus=jobs, include_dashboard=False, **kw)
    except Exception as exc:  # noqa: BLE001 -- Ray raises many types; report one line
        where = f"at {address!r}" if address else "(local instance)"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--backend ray: cannot connect to a Ray cluster {where}: {msg}"
                          ) from None
    return ray, True


def run_ray(tasks: list[tuple[str, dict]], writer, on_done: OnDone, jobs: int | None = None,
            timeout: float | None = None, fn: Callable | None = None,
            address: str | None = None) -> None:
    """Run ``tasks`` as Ray tasks; the driver writes the rows in batches as they arrive."""
    ray, started = ray_connect(address, jobs)
    batch = _batch(writer)
    try:
        if not tasks:
            return
        window = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_point)
        pending = deque(tasks)
        inflight: dict = {}  # ref -> (key, point, submitted)
        try:
            while pending or inflight:
                while pending and len(inflight) < window:
                    key, point = pending.popleft()
                    inflight[remote.remote(point, fn)] = (key, point, time.monotonic())
                wait_s = None
                if timeout is not None:
                    wait_s = max(0.0, min(s for _, _, s in inflight.values()) + timeout
                                 - time.monotonic())
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=wait_s)
                rest = [r for r in inflight if r not in ready]
                if ready and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready = ready + more
                for ref in ready:
                    key, point, t0 = inflight.pop(ref)
                    try:
                        row = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 -- a task error is a row
                        msg = str(exc).strip().splitlines()
                        row = _failed_row(point, "error", f"{type(exc).__name__}: "
                                          f"{msg[0] if msg else ''}", time.monotonic() - t0)
                    on_done(key, batch.add(key, point, row))
                if timeout is not None:
                    now = time.monotonic()
                    for ref, (key, point, t0) in list(inflight.items()):
                        if now - t0 >= timeout:
                            ray.cancel(ref, force=True)
                            del inflight[ref]
                            row = _failed_row(point, "timeout", f"point ran past --timeout"
                                              f" {timeout:g} s and was stopped", now - t0)
                            on_done(key, batch.add(key, point, row))
        finally:
            for ref in inflight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001
                    pass
            batch.flush()
    finally:
        if started:
            ray.shutdown()

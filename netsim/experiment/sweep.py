"""Sweeps: a grid of parameters -> one run per point -> one Parquet part file per point.

An experiment module (``experiments/NAME.py``) defines:

* ``GRID``: dict of parameter -> list of values (the Cartesian product is swept);
* ``BASE`` (optional): parameters common to every point;
* ``SEEDS`` (optional, default ``[0]``): every point runs once per seed;
* ``NAME`` (optional, default the file name);
* ``points()`` (optional): yields point dicts instead of the product of ``GRID``.

Every point is written atomically (a temporary file renamed into place) to
``OUT/NAME/status=STATUS/part-<key>.parquet`` (a hive-partitioned dataset: see
:mod:`netsim.experiment.dataset`), where ``key`` is a hash of the point's parameters, so a rerun
skips the points already on disk and an interrupted sweep loses nothing it had finished. A point
that raises becomes a row with ``status="error"`` and the message, a point that runs past the
timeout a row with ``status="timeout"``; the sweep goes on. Points run on local processes or on a
Ray cluster (:mod:`netsim.experiment.executors`).
Each point's randomness comes from its own ``seed`` parameter (``numpy.random.SeedSequence``),
never from worker order: the same grid gives the same rows with any number of workers.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from netsim import __version__
from netsim.errors import ConfigError, NetsimError
from netsim.experiment.executors import run_point  # noqa: F401 -- public here too
from netsim.plugins import ROOT

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


@dataclass
class Experiment:
    """A loaded experiment module: its name, the points to run and the module itself."""

    name: str
    points: list[dict]
    grid: dict = field(default_factory=dict)
    module: object = None
    path: Path | None = None


def load_experiment(ref: str) -> Experiment:
    """Load ``experiments/NAME.py`` or a path; expand its grid into points (with seeds)."""
    from netsim.plugins import _import_file, available

    path = Path(ref)
    if not ref.endswith(".py"):
        found = available("experiments")
        if ref not in found:
            raise ConfigError(f"unknown experiment {ref!r}; expected a .py file or one of {sorted(found)}")
        path = found[ref]
    if not path.is_file():
        raise ConfigError(f"experiment file {ref!r} does not exist")
    mod = _import_file(path)
    name = getattr(mod, "NAME", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"experiment {path}: NAME = {name!r}; expected a plain folder name"
                          " (letters, digits, '_', '-', '.'; no path separator, not starting"
                          " with '.'), the dataset's folder under --out")
    base = getattr(mod, "BASE", {})
    if not isinstance(base, dict):
        raise ConfigError(f"experiment {path}: BASE is a {type(base).__name__}; expected a dict"
                          " of parameter -> value")
    base = dict(base)
    seeds = getattr(mod, "SEEDS", [0])
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple, range)):
        raise ConfigError(f"experiment {path}: SEEDS = {seeds!r}; expected a list of integers")
    seeds = [_plain(s) for s in seeds]
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
    if bad:
        raise ConfigError(f"experiment {path}: SEEDS holds {bad[0]!r}; expected integers")
    seeds = [int(s) for s in seeds]
    grid = getattr(mod, "GRID", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"experiment {path}: GRID is a {type(grid).__name__}; expected a dict"
                          " of parameter -> list of values (or define points())")
    grid = dict(grid)
    if hasattr(mod, "points"):
        from netsim.plugins import user_code_error

        try:
            raw = list(mod.points())
        except NetsimError:
            raise
        except Exception as exc:  # noqa: BLE001 -- the user's code: one line, their message
            raise ConfigError(user_code_error(path.resolve(), exc, "points() of")) from None
        for p in raw:
            if not isinstance(p, dict):
                raise ConfigError(f"experiment {path}: points() yielded {p!r}; expected dicts of"
                                  " parameter -> value")
        raw = [dict(p) for p in raw]
    else:
        if not grid:
            raise ConfigError(f"experiment {path} defines neither GRID nor points()")
        for k, v in grid.items():
            if not isinstance(v, (list, tuple)) or not v:
                raise ConfigError(f"experiment {path}: GRID[{k!r}] = {v!r}; expected a non-empty list")
        keys = list(grid)
        raw = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    pts = []
    for p in raw:
        for s in seeds if "seed" not in p else [_plain(p["seed"])]:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or s != int(s):
                raise ConfigError(f"experiment {path}: seed {s!r}; expected an integer")
            pts.append(base | p | {"seed": int(s)})
    return Experiment(name, _normalise(pts), grid | {"seed": seeds}, mod, path.resolve())


def _plain(v):
    """A numpy scalar as the Python value it holds (``np.int64(4)`` -> ``4``), so that rows,
    point keys and messages show ``4``, not a numpy repr; anything else unchanged."""
    item = getattr(v, "item", None)
    if item is not None and type(v).__module__ == "numpy" and getattr(v, "ndim", 1) == 0:
        return item()
    return v


def _normalise(points: list[dict]) -> list[dict]:
    """Give every column one type across points (int+float -> float, anything+str -> str);
    numpy scalars become Python values first."""
    for p in points:
        for k, v in p.items():
            p[k] = _plain(v)
    cols = {k for p in points for k in p}
    for k in cols:
        vals = [p[k] for p in points if k in p]
        types = {type(v) for v in vals}
        if types <= {int, float} and float in types:
            for p in points:
                if k in p:
                    p[k] = float(p[k])
        elif str in types and len(types) > 1:
            for p in points:
                if k in p:
                    p[k] = str(p[k])
    return points


def _describe(point: dict, grid: dict) -> str:
    """A point as the swept values that tell it apart (``gpus=8, routing='zipf:1.2', seed=0``)."""
    keys = [k for k in point if k in grid] or list(point)
    return ", ".join(f"{k}={point[k]!r}" for k in keys)


def check_points(exp: Experiment) -> None:
    """Parse every point's parameters (``netsim.spec.RunSpec.parse``) before the first run.

    A parameter no run accepts, or a name that does not exist (a topology, workload, routing
    source... misspelt), is a typo in the experiment: one :class:`ConfigError` naming the file,
    the first such point and how many points it affects. Other values a run refuses (``zipf:-1``
    in one point of a grid) stay error rows, as before, counted in the summary and exit code.
    """
    from netsim.errors import UnknownNameError
    from netsim.experiment.dataset import parse_error

    typos, first = 0, None
    for p in exp.points:
        exc = parse_error(p)
        if exc is None:
            continue
        if isinstance(exc, UnknownNameError) or str(exc).startswith("unknown parameter"):
            typos += 1
            first = first or (p, exc)
    if first is not None:
        p, exc = first
        where = f"experiment {exp.path}" if exp.path else f"experiment {exp.name!r}"
        raise ConfigError(f"{where}: {exc} (point {_describe(p, exp.grid)}; {typos} of"
                          f" {len(exp.points)} points)")


def point_key(point: dict) -> str:
    """Stable hash of a point's parameters (its part file name)."""
    blob = json.dumps(point, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_rows(rows: list[dict], path: Path, meta: dict) -> None:
    """Write rows to ``path`` atomically (temporary file, then rename); the writer of
    :mod:`netsim.experiment.dataset` (one code path for every Parquet file a run writes)."""
    from netsim.experiment.dataset import write_rows as write

    write(rows, Path(path), meta)


def _meta(exp: Experiment) -> dict:
    from netsim.experiment.dataset import run_tables

    UNITS = run_tables()[0]
    return {"netsim_version": __version__, "git_commit": git_commit(), "experiment": exp.name,
            "experiment_file": str(exp.path) if exp.path else "", "grid": exp.grid,
            "units": UNITS | {"point_wall_s": "s (host wall clock)"}, "partitioning": "status"}


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {str(out)!r} is not writable: {exc.strerror or exc}") from None


class _Bar:
    """Progress: points done / total, failed, rate, time left (tqdm on stderr)."""

    def __init__(self, total: int, name: str, quiet: bool):
        self.bar = None
        if not quiet and total:
            from tqdm import tqdm

            class Tqdm(tqdm):
                monitor_interval = 0  # no monitor thread: workers are forked while it runs

            self.bar = Tqdm(total=total, desc=name, unit="pt", dynamic_ncols=True,
                            bar_format="{desc}: {n_fmt}/{total_fmt} done{postfix} |{bar}| "
                                       "{rate_fmt}, {elapsed} elapsed, {remaining} left")
            self.bar.set_postfix_str("0 failed", refresh=False)

    def update(self, failed: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{failed} failed", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


BACKENDS = ("local", "ray")


def run_sweep(ref: str, out: str | Path, jobs: int | None = 1, quiet: bool = False,
              backend: str = "local", address: str | None = None, timeout: float | None = None,
              compact: bool = False, retry_failed: bool = False, fn=None) -> dict:
    """Run every missing point of experiment ``ref`` into ``out``; returns a summary dict.

    ``backend``: ``local`` (``jobs`` worker processes; in this process for ``jobs=1`` without a
    timeout) or ``ray`` (``address`` of a running cluster, else a new local instance; ``jobs``
    caps the tasks in flight, default the cluster's CPUs). ``timeout`` (s): a point that runs
    longer is stopped and stored as ``status="timeout"``. ``retry_failed``: rerun points stored
    with status error or timeout. ``compact``: merge part files when the sweep is done. ``fn``:
    run a point with this function instead of :func:`netsim.scenario.run` (benchmarks).
    If interrupted (Ctrl-C), the summary has ``interrupted=True`` and the exception propagates
    with it as ``exc.summary``."""
    from netsim.experiment import dataset, executors

    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}; expected one of {BACKENDS}")
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError(f"jobs={jobs!r}; expected a positive integer")
    if address and backend != "ray":
        raise ConfigError(f"address={address!r} is for --backend ray; the backend is {backend!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"timeout={timeout!r}; expected a positive number of seconds")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'netsim[ray]'") from None
    exp = load_experiment(ref)
    if fn is None:
        check_points(exp)
    out = Path(out)
    check_out_dir(out)
    ddir = out / exp.name
    ddir.mkdir(parents=True, exist_ok=True)
    def waiting(msg: str) -> None:
        if not quiet:
            import sys

            print(f"netsim: {msg}", file=sys.stderr, flush=True)

    with dataset.SweepLock(ddir, waiting):
        dataset.cleanup(ddir)
        # a truncated or unreadable file (a full disk, a copy cut short) holds no row: set it aside
        # where no reader looks, and run its points again
        set_aside = dataset.set_aside(ddir, dataset.unreadable_files(ddir))
        stored = dataset.done_points(ddir)
        keyed = [(point_key(p), p) for p in exp.points]
        if retry_failed:
            redo = {k for k, _ in keyed if k in stored and stored[k][0] != "ok"}
            if redo:
                dataset.drop(ddir, redo)
                stored = {k: v for k, v in stored.items() if k not in redo}
        todo = [(k, p) for k, p in keyed if k not in stored]
        todo = list({k: (k, p) for k, p in todo}.values())  # a grid may repeat a point
        layout = dataset.Layout.for_points(exp.points)
        writer = dataset.Writer(ddir, layout, _meta(exp) | {"params": list(layout.params)})
        counts = {"ok": 0, "error": 0, "timeout": 0}
        bar = _Bar(len(todo), exp.name, quiet)

        def on_done(key: str, status: str) -> None:
            counts[status] = counts.get(status, 0) + 1
            bar.update(sum(v for s, v in counts.items() if s != "ok"))

        t0 = time.perf_counter()
        interrupted = False
        try:
            if backend == "ray":
                executors.run_ray(todo, writer, on_done, jobs=jobs, timeout=timeout, fn=fn,
                                  address=address)
            else:
                executors.run_local(todo, writer, on_done, jobs=jobs or 1, timeout=timeout, fn=fn)
        except KeyboardInterrupt as exc:
            interrupted = True
            err = exc
        except dataset.WriteError as exc:
            bar.close()
            dataset.cleanup(ddir)
            on_disk = dataset.done_points(ddir)
            kept = sum(1 for k, _ in todo if k in on_disk)
            raise ConfigError(f"{exc}; the {kept} point(s) this run finished before are kept"
                              " (rerun to finish)") from None
        finally:
            bar.close()
        # again at the end: a writer of an earlier, killed sweep may have died only after the
        # clean-up at the start (its temporary file is left; its point is rerun here)
        dataset.cleanup(ddir)
        wall = time.perf_counter() - t0
        ran = sum(counts.values())
        # failures the dataset holds for this experiment's points, this run's and earlier ones
        now = dataset.done_points(ddir)
        stored_failed = {}
        for k in {k for k, _ in keyed}:
            st = now.get(k, (None,))[0]
            if st is not None and st != "ok":
                stored_failed[st] = stored_failed.get(st, 0) + 1
        summary = {"experiment": exp.name, "points": len(exp.points), "skipped": len(keyed) - len(todo),
                   "ran": ran, "failed": ran - counts["ok"], "timeouts": counts.get("timeout", 0),
                   "wall_s": wall, "rate": ran / wall if wall > 0 else 0.0, "out": str(ddir),
                   "interrupted": interrupted, "compacted": None,
                   "set_aside": [str(p) for p in set_aside],
                   "stored_failed": sum(stored_failed.values()), "stored_by_status": stored_failed}
        if compact and not interrupted:  # under the lock: one compaction at a time
            summary["compacted"] = dataset.compact(ddir)
    if interrupted:
        err.summary = summary
        raise err
    return summary


EXIT_FAILED = 3  # `netsim sweep`: finished, but the dataset holds error or timeout rows


def summary_line(s: dict) -> str:
    """The one-line summary the CLI prints after a sweep."""
    head = f"{s['experiment']}: " + ("interrupted, " if s.get("interrupted") else "")
    line = (f"{head}{s['ran']} points run, {s['skipped']} already done, {s['failed']} failed"
            f" ({s['timeouts']} timed out), {s['wall_s']:.1f} s"
            f" ({s['rate']:.1f} points/s) -> {s['out']}")
    if s.get("compacted"):
        line += f" (compacted {s['compacted']['parts_merged']} files)"
    if s.get("stored_failed"):
        by = ", ".join(f"{n} {st}" for st, n in sorted((s.get("stored_by_status") or {}).items()))
        line += (f"; the dataset holds {s['stored_failed']} failed point(s) ({by}):"
                 " rerun with --retry-failed")
    aside = list(s.get("set_aside") or [])
    if aside:
        line += (f"; {len(aside)} unreadable file(s) moved aside to {Path(aside[0]).parent}"
                 " (their points were run again)")
    late = list((s.get("compacted") or {}).get("set_aside") or [])
    if late:
        line += (f"; compaction moved {len(late)} unreadable file(s) aside to"
                 f" {Path(late[0]).parent} (rerun to run their points again)")
    return line


def read_results(path: str | Path, ok_only: bool = False):
    """All rows of a dataset folder (``OUT/NAME``) as a pandas DataFrame."""
    from netsim.experiment.dataset import read

    return read(path, ok_only=ok_only)

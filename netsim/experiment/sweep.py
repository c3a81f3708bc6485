"""Sweeps: a grid of parameters -> one run per point -> one Parquet part file per point.

An experiment module (``experiments/NAME.py``) defines:

* ``GRID``: dict of parameter -> list of values (the Cartesian product is swept);
* ``BASE`` (optional): parameters common to every point;
* ``SEEDS`` (optional, default ``[0]``): every point runs once per seed;
* ``NAME`` (optional, default the file name);
* ``points()`` (optional): yields point dicts instead of the product of ``GRID``.

Every point is written atomically (a temporary file renamed into place) to
``OUT/NAME/part-<key>.parquet``, where ``key`` is a hash of the point's parameters, so a rerun
skips the points already on disk and an interrupted sweep loses nothing it had finished. A point
that raises becomes a row with ``status="error"`` and the message; the sweep goes on.
Each point's randomness comes from its own ``seed`` parameter (``numpy.random.SeedSequence``),
never from worker order: the same grid gives the same rows with any number of workers.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netsim import __version__
from netsim.errors import ConfigError, NetsimError
from netsim.plugins import ROOT

METRIC_INT = ("n_gpus", "flows", "events", "rate_recomputes")


@dataclass
class Experiment:
    """A loaded experiment module: its name, the points to run and the module itself."""

    name: str
    points: list[dict]
    grid: dict = field(default_factory=dict)
    module: object = None


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
    base = dict(getattr(mod, "BASE", {}))
    seeds = list(getattr(mod, "SEEDS", [0]))
    grid = dict(getattr(mod, "GRID", {}))
    if hasattr(mod, "points"):
        raw = [dict(p) for p in mod.points()]
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
        for s in seeds if "seed" not in p else [p["seed"]]:
            pts.append(base | p | {"seed": int(s)})
    return Experiment(name, _normalise(pts), grid | {"seed": seeds}, mod)


def _normalise(points: list[dict]) -> list[dict]:
    """Give every column one type across points (int+float -> float, anything+str -> str)."""
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


def run_point(point: dict) -> dict:
    """Run one point; never raises: failures become ``status="error"`` rows."""
    from netsim.scenario import run

    t0 = time.perf_counter()
    try:
        row = run(dict(point))
        row["status"] = "ok"
        row["error"] = ""
    except NetsimError as exc:
        row = dict(point) | {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001 -- a bug in one point must not stop the sweep
        tb = traceback.format_exc(limit=3)
        row = dict(point) | {"status": "error", "error": f"{type(exc).__name__}: {exc}\n{tb}"}
    row["point_wall_s"] = time.perf_counter() - t0
    return row


def _table(rows: list[dict], meta: dict):
    import pyarrow as pa

    from netsim.scenario import UNITS

    cols: dict[str, list] = {}
    names = list(dict.fromkeys(k for r in rows for k in r))
    for m in UNITS:
        if m not in names:
            names.append(m)
    for k in names:
        cols[k] = [r.get(k) for r in rows]
    arrays, fields_ = [], []
    for k in names:
        v = cols[k]
        if k in UNITS or k == "point_wall_s":
            typ = pa.int64() if k in METRIC_INT else pa.float64()
        else:
            typ = None
        arr = pa.array(v, type=typ) if typ is not None else pa.array(v)
        if pa.types.is_null(arr.type):
            arr = pa.array(v, type=pa.string())
        arrays.append(arr)
        fields_.append(pa.field(k, arr.type))
    schema = pa.schema(fields_, metadata={k: json.dumps(v, default=str) for k, v in meta.items()})
    return pa.Table.from_arrays(arrays, schema=schema)


def write_rows(rows: list[dict], path: Path, meta: dict) -> None:
    """Write rows to ``path`` atomically (temporary file, then rename)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(_table(rows, meta), tmp)
    os.replace(tmp, path)


def _meta(exp: Experiment) -> dict:
    from netsim.scenario import UNITS

    return {"netsim_version": __version__, "git_commit": git_commit(), "experiment": exp.name,
            "grid": exp.grid, "units": UNITS}


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {str(out)!r} is not writable: {exc.strerror or exc}") from None


def run_sweep(ref: str, out: str | Path, jobs: int = 1, quiet: bool = False) -> dict:
    """Run every missing point of experiment ``ref`` into ``out``; returns a summary dict."""
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs={jobs!r}; expected a positive integer")
    exp = load_experiment(ref)
    out = Path(out)
    check_out_dir(out)
    ddir = out / exp.name
    ddir.mkdir(parents=True, exist_ok=True)
    meta = _meta(exp)
    todo = [p for p in exp.points if not (ddir / f"part-{point_key(p)}.parquet").exists()]
    skipped = len(exp.points) - len(todo)
    t0 = time.perf_counter()
    done = failed = 0
    from tqdm import tqdm

    bar = tqdm(total=len(todo), disable=quiet, unit="pt", desc=exp.name, dynamic_ncols=True)

    def store(p, row):
        nonlocal done, failed
        write_rows([row], ddir / f"part-{point_key(p)}.parquet", meta)
        done += 1
        failed += row.get("status") != "ok"
        bar.set_postfix(failed=failed, refresh=False)
        bar.update(1)

    try:
        if jobs == 1 or len(todo) <= 1:
            for p in todo:
                store(p, run_point(p))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futs = {pool.submit(run_point, p): p for p in todo}
                for fut in as_completed(futs):
                    store(futs[fut], fut.result())
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    return {"experiment": exp.name, "points": len(exp.points), "skipped": skipped, "ran": done,
            "failed": failed, "wall_s": wall, "out": str(ddir)}


def read_results(path: str | Path):
    """All rows under ``path`` (a dataset folder or an OUT folder) as a pandas DataFrame."""
    import pandas as pd

    return pd.read_parquet(path)

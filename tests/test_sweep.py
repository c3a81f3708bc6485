"""Sweeps: dataset layout and types, timeouts, crash safety (SIGINT, SIGKILL), compaction."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from netsim.cli import main
from netsim.experiment import dataset
from netsim.experiment.sweep import load_experiment, point_key, run_sweep

# a topology whose build sleeps: makes points slow or hung on demand
SLOW_TOPO = '''
import time
from netsim.topology import Topology
from netsim.units import gbps, us


def build(gpus: int = 4, sleep_s: float = 0.0) -> Topology:
    time.sleep(sleep_s)
    t = Topology("slow")
    sw = t.add_switch("x")
    for i in range(gpus):
        t.add_link(t.add_gpu(f"g{i}"), sw, gbps(400.0), us(0.5))
    return t
'''

TYPED = """
NAME = "typed"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 32, "topology": "crossbar"}
GRID = {"gpus": [4, 8], "routing": ["uniform", "zipf:1.2", "zipf:-1"], "link_gbps": [400, 800.0]}
SEEDS = [0, 1]
"""


def _exp(tmp_path, text, name="exp.py"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _slow_exp(tmp_path, name, sleeps, seeds=(0,)):
    topo = tmp_path / "slow_topo.py"
    topo.write_text(SLOW_TOPO)
    return _exp(tmp_path, f"""
NAME = "{name}"
BASE = {{"workload": "olmoe_1b_7b", "tokens_per_gpu": 16, "topology": {str(topo)!r}}}
GRID = {{"sleep_s": {list(sleeps)!r}}}
SEEDS = {list(seeds)!r}
""", f"{name}.py")


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("typed")
    exp = _exp(tmp, TYPED)
    s = run_sweep(str(exp), tmp / "out", jobs=2, quiet=True)
    return tmp / "out", s, exp


def test_layout_hive_partitions_and_summary(typed):
    out, s, exp = typed
    assert s["ran"] == 24 and s["failed"] == 8 and s["timeouts"] == 0
    ddir = out / "typed"
    assert sorted(p.name for p in ddir.iterdir()) == ["status=error", "status=ok"]
    # the pool's rows come back to the sweep's process, which writes them in batches
    assert len(_keys_on_disk(ddir / "status=ok")) == 16
    assert len(list((ddir / "status=ok").glob("*.parquet"))) < 16
    # status lives in the path only, and every file has the same schema
    schemas = {pq.read_schema(f).remove_metadata() for f in ddir.glob("status=*/*.parquet")}
    assert len(schemas) == 1 and "status" not in next(iter(schemas)).names
    meta = dataset.metadata(ddir)
    assert meta["experiment"] == "typed" and meta["units"]["layer_s"] == "s"
    assert meta["grid"]["gpus"] == [4, 8] and meta["git_commit"] and meta["netsim_version"]
    assert meta["experiment_file"] == str(exp.resolve())


def test_types_in_pandas_polars_duckdb(typed):
    out, _, _ = typed
    ddir = out / "typed"
    sch = pq.read_schema(next((ddir / "status=ok").glob("*.parquet")))
    import pyarrow as pa

    assert pa.types.is_dictionary(sch.field("routing").type)
    assert sch.field("layer_s").type == pa.float64() and sch.field("flows").type == pa.int64()
    assert sch.field("gpus").type == pa.int64() and sch.field("link_gbps").type == pa.float64()

    df = pd.read_parquet(ddir)
    assert len(df) == 24
    assert isinstance(df["routing"].dtype, pd.CategoricalDtype)
    assert df["layer_s"].dtype == "float64" and df["gpus"].dtype == "int64"
    ok = df[df.status == "ok"]
    assert len(ok) == 16 and (ok["layer_s"] > 0).all()
    assert pd.read_parquet(ddir, filters=[("status", "=", "ok")])["flows"].dtype == "int64"
    assert len(pd.read_parquet(out)) == 24  # the OUT folder reads too

    import duckdb

    rel = duckdb.sql(f"select * from read_parquet('{out}/**/*.parquet', hive_partitioning=true)")
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert types["routing"] == "VARCHAR" and types["layer_s"] == "DOUBLE"
    assert types["flows"] == "BIGINT" and types["status"] == "VARCHAR"
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet', "
                      "hive_partitioning=true) where status = 'ok'").fetchall()[0][0] == 16

    pl = pytest.importorskip("polars")
    lf = pl.scan_parquet(ddir, hive_partitioning=True)
    got = lf.filter(pl.col("status") == "ok").collect()
    assert got.height == 16
    assert got.schema["layer_s"] == pl.Float64 and got.schema["flows"] == pl.Int64
    assert got.schema["routing"] in (pl.Categorical, pl.String)


def test_compact_keeps_rows_and_resume(typed, tmp_path):
    out, _, exp = typed
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = pd.read_parquet(copy / "typed").sort_values("point_key").reset_index(drop=True)
    n_files = len(list((copy / "typed").rglob("*.parquet")))
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(copy), "--compact", "--quiet"])
    assert r.exit_code == 3, r.output  # the zipf:-1 points stored as errors by the first run
    assert "the dataset holds 8 failed point(s) (8 error): rerun with --retry-failed" in r.output
    assert "0 points run, 24 already done" in r.output
    assert f"(compacted {n_files} files)" in r.output
    files = sorted(str(p.relative_to(copy / "typed")) for p in (copy / "typed").rglob("*.parquet"))
    assert files == ["status=error/compact.parquet", "status=ok/compact.parquet"]
    after = pd.read_parquet(copy / "typed").sort_values("point_key").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after, check_categorical=False)
    # resume reads the compacted keys: nothing to do
    s = run_sweep(str(exp), copy, quiet=True)
    assert s["ran"] == 0 and s["skipped"] == 24
    # a compaction killed between its rename and its deletes leaves duplicates: cleaned up
    key = after.point_key[after.status == "ok"].iloc[0]
    part = copy / "typed" / "status=ok" / f"part-{key}.parquet"
    import pyarrow.compute as pc

    first = pq.read_table(_keys_on_disk(out / "typed" / "status=ok")[key])
    pq.write_table(first.filter(pc.equal(first["point_key"], key)), part)
    assert dataset.cleanup(copy / "typed") == 1 and not part.exists()
    # --retry-failed reruns the error rows (they fail again) and drops the old ones
    s = run_sweep(str(exp), copy, quiet=True, retry_failed=True)
    assert s["ran"] == 8 and s["failed"] == 8
    assert len(pd.read_parquet(copy / "typed")) == 24


def test_timeout_row_and_hung_point_does_not_block(tmp_path):
    exp = _slow_exp(tmp_path, "hang", [0.0, 60.0], seeds=[0, 1])
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--jobs", "2",
                                  "--timeout", "3", "--quiet"])
    wall = time.perf_counter() - t0
    assert r.exit_code == 3, r.output  # timeout rows: the documented "some points failed"
    assert "4 points run" in r.output and "2 failed (2 timed out)" in r.output
    assert wall < 30
    df = pd.read_parquet(tmp_path / "o" / "hang")
    df["status"] = df["status"].astype(str)
    assert sorted(df.status) == ["ok", "ok", "timeout", "timeout"]
    to = df[df.status == "timeout"]
    assert (to["sleep_s"] == 60.0).all() and to["error"].str.contains("timeout").all()
    assert (to["point_wall_s"] >= 3).all() and to["layer_s"].isna().all()
    assert (df[df.status == "ok"]["layer_s"] > 0).all()


def test_worker_that_dies_costs_only_its_point(tmp_path):
    topo = tmp_path / "die_topo.py"
    topo.write_text(SLOW_TOPO.replace("    time.sleep(sleep_s)\n",
                                      "    if sleep_s < 0:\n        import os\n"
                                      "        os._exit(3)\n"))
    exp = _exp(tmp_path, f"""
NAME = "die"
BASE = {{"workload": "olmoe_1b_7b", "tokens_per_gpu": 16, "topology": {str(topo)!r}}}
GRID = {{"sleep_s": [0.0, -1.0, 0.5]}}
""")
    s = run_sweep(str(exp), tmp_path / "o", jobs=2, quiet=True)
    assert s["ran"] == 3 and s["failed"] == 1
    df = dataset.read(tmp_path / "o" / "die")
    bad = df[df.status == "error"]
    assert list(bad["sleep_s"]) == [-1.0] and "WorkerDied" in bad["error"].iloc[0]


def _start_sweep(exp, out, jobs=2):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "netsim.cli", "sweep", str(exp), "--out",
                             str(out), "--jobs", str(jobs), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _keys_on_disk(ddir):
    """point key -> file of every row on disk under ``ddir`` (part files and batches), each file
    read whole (nothing on disk is corrupt) and holding only its own keys."""
    keys = {}
    for p in ddir.rglob("*.parquet"):
        got = pq.read_table(p).column("point_key").to_pylist()
        assert p.name.startswith(("part-", "batch-")) and got[0] in p.name
        if p.name.startswith("part-"):
            assert len(got) == 1
        keys |= {k: p for k in got}
    return keys


def _wait_rows(ddir, n, proc, limit=60):
    t0 = time.time()
    while time.time() - t0 < limit:
        if len(_keys_on_disk(ddir)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("sweep made no progress")


def _check_intact(ddir, before):
    keys = _keys_on_disk(ddir)
    assert before <= set(keys)  # nothing finished was lost
    assert not list(ddir.rglob("*.parquet.*"))
    return keys


def _wait_gone(pids, limit=10):
    t0 = time.time()
    while time.time() - t0 < limit:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(")")[-1].split()[0] != "Z":
                        alive.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker processes still alive: {alive}")


def _children(pid):
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True).stdout
    except OSError:
        return []
    return [int(x) for x in out.split()]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_sweep_loses_nothing_and_rerun_finishes(tmp_path, sig):
    # 0.1 s points on 2 workers: the first batch reaches the disk after 2 s of points' run time
    # (dataset.BatchWriter), long before the 80 points are done
    exp = _slow_exp(tmp_path, "killme", [0.1], seeds=list(range(80)))
    out = tmp_path / "o"
    ddir = out / "killme"
    proc = _start_sweep(exp, out)
    _wait_rows(ddir, 4, proc)
    workers = _children(proc.pid)
    before = set(_keys_on_disk(ddir))
    if sig == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    else:
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: workers must not linger
    _, err = proc.communicate(timeout=30)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    _wait_gone(workers)
    parts = _check_intact(ddir, before)
    assert len(parts) < 30
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(out), "--quiet", "--jobs", "2"])
    assert r.exit_code == 0, r.output
    assert f"{80 - len(parts)} points run, {len(parts)} already done, 0 failed" in r.output
    df = dataset.read(ddir)
    assert len(df) == 80 and (df.status == "ok").all() and df["seed"].nunique() == 80
    assert not [p for p in ddir.rglob("*") if p.name.endswith(".tmp")]


def test_stale_tmp_file_is_ignored_and_removed(tmp_path):
    exp = _exp(tmp_path, TYPED.replace('"typed"', '"tmpf"').replace("[0, 1]", "[0]"))
    out = tmp_path / "o"
    run_sweep(str(exp), out, quiet=True)
    okdir = out / "tmpf" / "status=ok"
    stale = okdir / ".part-deadbeef.999999999.tmp"  # a pid that cannot exist
    stale.write_bytes(b"PAR1 half a file")
    assert len(pd.read_parquet(out / "tmpf")) == 12
    import duckdb

    assert duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet', "
                      "hive_partitioning=true)").fetchall()[0][0] == 12
    s = run_sweep(str(exp), out, quiet=True)
    assert s["ran"] == 0 and not stale.exists()


def test_seeds_come_from_points_not_order(tmp_path):
    """Rows depend on the point only: a sweep in reverse order gives the same rows."""
    text = TYPED.replace('"typed"', '"order"').replace(', "zipf:-1"', "")
    exp = _exp(tmp_path, text)
    e = load_experiment(str(exp))
    from netsim.experiment.executors import run_point

    rev = {point_key(p): run_point(p) for p in reversed(e.points)}
    run_sweep(str(exp), tmp_path / "o", jobs=2, quiet=True)
    df = dataset.read(tmp_path / "o" / "order")
    for _, r in df.iterrows():
        assert rev[r.point_key]["layer_s"] == r.layer_s
        assert rev[r.point_key]["events"] == r.events


def test_bad_options(tmp_path):
    exp = _exp(tmp_path, TYPED)
    for args, text in [(["--timeout", "0"], "timeout"), (["--address", "1.2.3.4:6379"], "address"),
                       (["--backend", "nope"], "nope"), (["--jobs", "-1"], "jobs")]:
        r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o")] + args)
        assert r.exit_code == 2, (args, r.output)
        assert text in r.output and "Traceback" not in r.output


def test_empty_run_executor_overhead_is_small(tmp_path):
    from netsim.experiment.executors import empty_run

    exp = _exp(tmp_path, 'NAME = "empty"\nGRID = {"x": list(range(100))}\n')
    s = run_sweep(str(exp), tmp_path / "o", quiet=True, fn=empty_run)
    assert s["ran"] == 100 and s["failed"] == 0
    assert s["wall_s"] / 100 < 0.05  # the benchmark target is 20 ms; leave room for slow CI
    df = dataset.read(tmp_path / "o" / "empty")
    assert sorted(df["x"]) == list(range(100)) and df["layer_s"].isna().all()
    assert json.loads(json.dumps(dataset.metadata(tmp_path / "o" / "empty")["grid"]))["x"][0] == 0


def test_unset_parameter_stored_at_the_value_the_run_used(tmp_path):
    """A parameter only some points set is stored at its effective value in the others (it was
    null): from the row the run returned, else the point's run specification, else the default."""
    exp = _exp(tmp_path, """
NAME = "eff"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 16, "topology": "crossbar", "gpus": 4}
def points():
    return [{"fabric": "analytic"}, {}, {"fabric": "analytic", "routing": "zipf:-1"}]
""")
    s = run_sweep(str(exp), tmp_path / "o", quiet=True)
    assert s["ran"] == 3 and s["failed"] == 1
    df = pd.read_parquet(tmp_path / "o" / "eff")
    assert df["fabric"].notna().all() and df["routing"].notna().all()
    flow = df[df["fabric"] == "flow"]
    assert len(flow) == 1 and flow["layer_s"].iloc[0] > 0
    assert sorted(df["fabric"].astype(str)) == ["analytic", "analytic", "flow"]
    # run-level parameters nobody set, and the layer's preset values, are in every ok row
    ok = df[df["status"] == "ok"]
    assert ok["workload"].notna().all() and ok["seed"].notna().all()
    if "experts" in df:
        assert ok["experts"].notna().all()
    # one schema in every file
    schemas = {pq.read_schema(f).remove_metadata() for f in (tmp_path / "o" / "eff").glob("status=*/*.parquet")}
    assert len(schemas) == 1

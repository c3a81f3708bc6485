import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from netsim.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = """
NAME = "tiny"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 64, "topology": "crossbar"}
GRID = {"gpus": [4, 8], "routing": ["uniform", "zipf:1.2"]}
SEEDS = [0, 1]
"""


def _row(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_run_json_and_parquet_round_trip(tmp_path):
    out = tmp_path / "row.parquet"
    r = CliRunner().invoke(main, ["run", "--topology", "leaf_spine", "--set", "gpus=16",
                                  "--workload", "olmoe_1b_7b", "--set", "tokens_per_gpu=128",
                                  "--routing", "zipf:1.2", "--seed", "1", "--json",
                                  "--out", str(out)])
    row = _row(r)
    df = pd.read_parquet(out)
    assert len(df) == 1
    assert df["layer_s"].iloc[0] == row["layer_s"]
    assert df["gpus"].iloc[0] == 16
    import duckdb

    got = duckdb.sql(f"select layer_s, routing from read_parquet('{out}')").fetchall()
    assert got == [(row["layer_s"], "zipf:1.2")]
    import pyarrow.parquet as pq

    meta = pq.read_schema(out).metadata
    assert b"netsim_version" in meta and b"units" in meta


def test_run_prints_table():
    r = CliRunner().invoke(main, ["run", "--set", "gpus=4", "--set", "tokens_per_gpu=64"])
    assert r.exit_code == 0, r.output
    assert "layer_s" in r.output and "serial_ideal_s" in r.output


@pytest.mark.parametrize("args,text", [
    (["run", "--topology", "nope"], "nope"),
    (["run", "--set", "gpus=x"], "gpus"),
    (["run", "--set", "warp=9"], "warp"),
    (["run", "--routing", "zipf"], "zipf"),
    (["sweep", "nope.py"], "nope.py"),
    (["run", "--topology", "cluster", "--fabric", "analytic", "--aggregate", "server"],
     "aggregate='block'"),
])
def test_bad_input_exits_2_with_one_line(args, text):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert text in r.output
    assert "Traceback" not in r.output


def test_jobs_zero_and_unwritable_out(tmp_path):
    exp = tmp_path / "tiny.py"
    exp.write_text(TINY)
    r = CliRunner().invoke(main, ["sweep", str(exp), "--jobs", "0", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "jobs" in r.output
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions: use a path under a file instead
        bad = tmp_path / "afile"
        bad.write_text("x")
        target = str(bad / "sub")
    else:
        target = str(ro / "sub")
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", target])
    assert r.exit_code == 2 and "not writable" in r.output
    r = CliRunner().invoke(main, ["run", "--set", "gpus=4", "--out", target + "/x.parquet"])
    assert r.exit_code == 2 and "not writable" in r.output


def test_sweep_jobs_1_and_2_same_rows_and_resume(tmp_path):
    exp = tmp_path / "tiny.py"
    exp.write_text(TINY)
    r1 = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "a"), "--quiet",
                                   "--no-compact"])
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "b"), "--jobs", "2",
                                   "--quiet"])
    assert r2.exit_code == 0, r2.output
    cols = ["gpus", "routing", "seed", "layer_s", "dispatch_s", "bytes_total", "events"]
    a = pd.read_parquet(tmp_path / "a" / "tiny").sort_values(["gpus", "routing", "seed"])[cols]
    b = pd.read_parquet(tmp_path / "b" / "tiny").sort_values(["gpus", "routing", "seed"])[cols]
    assert len(a) == 8 and (a["layer_s"] > 0).all()
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    # resume: nothing left to do
    r3 = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "a"), "--quiet",
                                   "--no-compact"])
    assert "0 points run, 8 already done" in r3.output
    # a deleted point is redone, the others are kept
    from netsim.experiment import dataset
    keys = sorted(dataset.done_points(tmp_path / "a" / "tiny"))
    assert dataset.drop(tmp_path / "a" / "tiny", {keys[0]}) == 1
    r4 = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "a"), "--quiet"])
    assert "1 points run, 7 already done" in r4.output
    # compacted at the end by default: one file per status, every row there once
    files = sorted(p.name for p in (tmp_path / "a" / "tiny").glob("status=*/*.parquet"))
    assert set(files) == {"compact.parquet"}
    assert len(pd.read_parquet(tmp_path / "a" / "tiny")) == 8


def test_failing_point_becomes_error_row(tmp_path):
    exp = tmp_path / "bad.py"
    exp.write_text(TINY.replace('"zipf:1.2"', '"zipf:-1"').replace('"tiny"', '"bad"'))
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 3, r.output  # some points failed (docs/sweeps.md: exit status)
    assert "4 failed" in r.output and "--retry-failed" in r.output
    df = pd.read_parquet(tmp_path / "o" / "bad")
    assert len(df) == 8
    err = df[df.status == "error"]
    assert len(err) == 4 and err["error"].str.contains("-1").all()
    assert (df[df.status == "ok"]["layer_s"] > 0).all()
    import duckdb

    n = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/o/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
    assert n == 8


def test_list_commands():
    for what, expect in [("topologies", "leaf_spine"), ("workloads", "deepseek_v3"),
                         ("experiments", "quickstart"), ("routing", "zipf")]:
        r = CliRunner().invoke(main, ["list", what])
        assert r.exit_code == 0, r.output
        assert expect in r.output


def test_console_script_exit_code():
    exe = Path(sys.executable).with_name("netsim")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "netsim.cli"]
    p = subprocess.run(cmd + ["run", "--topology", "nope"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "nope" in p.stderr


def test_run_trace_links_writes_the_per_link_series(tmp_path):
    trace = tmp_path / "links.parquet"
    r = CliRunner().invoke(main, ["run", "--topology", "leaf_spine", "--set", "gpus=8",
                                  "--set", "tokens_per_gpu=64", "--fabric", "packet",
                                  "--set", "trace_bin_us=1", "--trace-links", str(trace),
                                  "--json"])
    row = _row(r)
    df = pd.read_parquet(trace)
    assert list(df.columns)[:2] == ["link", "time_bin"]
    assert {"bytes", "queue_bytes"} <= set(df.columns)
    assert (df["bytes"] >= 0).all() and (df["queue_bytes"] >= 0).all()
    # every byte on the wire is in the series: hops x bytes, dispatch and combine
    assert df["bytes"].sum() >= row["bytes_total"]
    assert df["time_bin"].max() * 1e-6 <= row["layer_s"]
    r = CliRunner().invoke(main, ["run", "--set", "gpus=4", "--trace-links", str(trace)])
    assert r.exit_code == 2 and "is a packet-model parameter" in r.output

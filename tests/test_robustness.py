"""Datasets that survive a bad file, sweeps that fail loudly, one-line errors (issue 16)."""
import os
import warnings

import pandas as pd
import pytest
from click.testing import CliRunner

from netsim.cli import main
from netsim.experiment import dataset
from netsim.experiment.sweep import run_sweep

SMALL = """
NAME = "small"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 16, "topology": "crossbar"}
GRID = {"gpus": [2, 4, 8]}
SEEDS = [0, 1]
"""


def _exp(tmp_path, text, name="exp.py"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _parts(ddir):
    return sorted(ddir.glob("status=*/part-*.parquet"))


# ---- (2) one bad file does not ruin the dataset ------------------------------------------------

def test_truncated_part_is_moved_aside_and_its_point_rerun(tmp_path):
    exp = _exp(tmp_path, SMALL)
    out = tmp_path / "out"
    run_sweep(str(exp), out, quiet=True)
    ddir = out / "small"
    victim = _parts(ddir)[2]
    _truncate(victim)
    # readers skip it with a warning naming it
    with pytest.warns(dataset.DatasetWarning, match=victim.name):
        df = dataset.read(ddir)
    assert len(df) == 5
    s = run_sweep(str(exp), out, quiet=True)
    assert s["ran"] == 1 and s["skipped"] == 5 and len(s["set_aside"]) == 1
    moved = s["set_aside"][0]
    assert os.path.dirname(moved) == str(ddir / dataset.SET_ASIDE) and os.path.exists(moved)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = dataset.read(ddir)
        assert len(df) == 6 and (df.status == "ok").all()
        assert len(pd.read_parquet(ddir)) == 6  # pandas' own reader skips the folder
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet',"
                   " hive_partitioning=true)").fetchall()[0][0]
    assert n == 6
    from netsim.experiment.sweep import summary_line
    assert f"moved aside to {ddir / dataset.SET_ASIDE}" in summary_line(s)


def test_truncated_compacted_file_is_set_aside_and_points_rerun(tmp_path):
    exp = _exp(tmp_path, SMALL)
    out = tmp_path / "out"
    run_sweep(str(exp), out, quiet=True, compact=True)
    comp = out / "small" / "status=ok" / dataset.COMPACT
    assert comp.is_file() and not _parts(out / "small")
    _truncate(comp, 0.9)
    s = run_sweep(str(exp), out, quiet=True)
    assert s["ran"] == 6 and len(s["set_aside"]) == 1
    assert len(dataset.read(out / "small")) == 6


def test_compaction_skips_bad_parts_and_keeps_parts_until_read_back(tmp_path, monkeypatch):
    exp = _exp(tmp_path, SMALL)
    out = tmp_path / "out"
    run_sweep(str(exp), out, quiet=True)
    ddir = out / "small"
    victim = _parts(ddir)[0]
    _truncate(victim)
    res = dataset.compact(ddir)
    assert res["rows"] == 5 and len(res["set_aside"]) == 1 and not victim.exists()
    assert not _parts(ddir)
    # a compacted file that does not read back whole: the parts stay, the old file stays
    run_sweep(str(exp), out, quiet=True)  # reruns the set-aside point as a part file
    before = _parts(ddir)
    assert len(before) == 1
    import pyarrow.parquet as pq
    real = pq.read_table

    def short_read(path, *a, **k):
        t = real(path, *a, **k)
        return t.slice(0, t.num_rows - 1) if str(path).endswith(".tmp") else t

    monkeypatch.setattr(pq, "read_table", short_read)
    with pytest.raises(OSError, match="did not read back whole"):
        dataset.compact(ddir)
    monkeypatch.undo()
    assert _parts(ddir) == before
    assert not list(ddir.glob("status=*/.*.tmp"))
    assert len(dataset.read(ddir)) == 6


def test_report_skips_unreadable_file_with_a_warning(tmp_path):
    exp = _exp(tmp_path, SMALL)
    out = tmp_path / "out"
    run_sweep(str(exp), out, quiet=True)
    victim = _parts(out / "small")[1]
    _truncate(victim)
    r = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert f"netsim: warning: skipped unreadable file {victim}" in r.output
    assert "Traceback" not in r.output


# ---- (3) sweeps that fail say so ---------------------------------------------------------------

@pytest.mark.parametrize("grid,names", [
    ('{"gpuz": [2, 4]}', "unknown parameter 'gpuz'"),
    ('{"gpus": [2, 4], "routing": ["uniform", "zipff:1.2"]}', "unknown routing source 'zipff'"),
])
def test_typo_in_any_point_is_one_line_before_any_run(tmp_path, grid, names):
    exp = _exp(tmp_path, f'NAME = "typo"\nBASE = {{"topology": "crossbar"}}\nGRID = {grid}\n')
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netsim: error: experiment ")
    assert str(exp) in lines[0] and names in lines[0] and "points)" in lines[0]
    assert not list((tmp_path / "o").rglob("*.parquet"))  # nothing ran


def test_failed_points_give_exit_3_and_the_summary_counts_earlier_ones(tmp_path):
    exp = _exp(tmp_path, SMALL.replace('GRID = {"gpus": [2, 4, 8]}',
                                       'GRID = {"gpus": [2, 4], "routing": ["zipf:-1"]}'))
    out = str(tmp_path / "o")
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", out, "--quiet"])
    assert r.exit_code == 3, r.output
    assert "4 failed" in r.output
    assert "the dataset holds 4 failed point(s) (4 error): rerun with --retry-failed" in r.output
    # nothing left to run: the earlier failures still count
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", out, "--quiet"])
    assert r.exit_code == 3 and "0 points run, 4 already done, 0 failed" in r.output
    assert "the dataset holds 4 failed point(s)" in r.output
    ok = _exp(tmp_path, SMALL, "ok.py")
    r = CliRunner().invoke(main, ["sweep", str(ok), "--out", out, "--quiet"])
    assert r.exit_code == 0 and "failed point" not in r.output  # another experiment's rows

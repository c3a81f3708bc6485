"""Datasets that survive a bad file, sweeps that fail loudly, one-line errors (issue 16)."""
import io
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


@pytest.fixture
def one_row_files(monkeypatch):
    """Sweeps write one file per point, not batches."""
    from netsim.experiment import executors
    monkeypatch.setattr(executors, "BATCH_ROWS", 1)


# ---- (2) one bad file does not ruin the dataset ------------------------------------------------

def test_truncated_part_is_moved_aside_and_its_point_rerun(one_row_files, tmp_path):
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
    assert os.path.dirname(moved) == str(out / dataset.SET_ASIDE / "small")
    assert os.path.exists(moved)
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
    assert f"moved aside to {out / dataset.SET_ASIDE / 'small'}" in summary_line(s)
    pl = pytest.importorskip("polars")
    assert pl.scan_parquet(ddir, hive_partitioning=True).collect().height == 6


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


def test_compaction_skips_bad_parts_and_keeps_parts_until_read_back(one_row_files, tmp_path, monkeypatch):
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


def test_report_skips_unreadable_file_with_a_warning(one_row_files, tmp_path):
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


# ---- (4) one line, exit 2, naming the file / value / path -------------------------------------

BAD_EXPERIMENTS = [
    ('NAME = "x"\nGRID = {"gpus": [2, 4]\n', "line 2: SyntaxError: '{' was never closed"),
    ("import not_a_module_xyz\nGRID = {'gpus': [2]}\n",
     "line 1: ModuleNotFoundError: No module named 'not_a_module_xyz'"),
    ("GRID = {'gpus': [2]}\nx = 1 / 0\n", "line 2: ZeroDivisionError: division by zero"),
    ("def points():\n    raise RuntimeError('my points broke')\n",
     "points() of {path}, line 2: RuntimeError: my points broke"),
    ("GRID = [{'gpus': 2}]\n", "GRID is a list; expected a dict"),
    ("GRID = {'gpus': [2]}\nSEEDS = ['a', 'b']\n", "SEEDS holds 'a'; expected integers"),
    ("GRID = {'gpus': [2]}\nSEEDS = '01'\n", "SEEDS = '01'; expected a list of integers"),
    ("NAME = '../../x'\nGRID = {'gpus': [2]}\n", "NAME = '../../x'; expected a plain folder"),
]


@pytest.mark.parametrize("text,want", BAD_EXPERIMENTS)
def test_bad_experiment_module_is_one_line(tmp_path, text, want):
    exp = _exp(tmp_path, text, "bad_exp.py")
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netsim: error: "), r.output
    assert want.replace("{path}", str(exp)) in lines[0] and "bad_exp.py" in lines[0]
    assert not (tmp_path / "x").exists()  # NAME never wrote outside --out


def test_topology_file_with_a_syntax_error_is_one_line(tmp_path):
    topo = _exp(tmp_path, "def build(gpus: int = 4)\n    pass\n", "topo_bad.py")
    r = CliRunner().invoke(main, ["run", "--topology", str(topo)])
    assert r.exit_code == 2
    assert r.output.strip() == (f"netsim: error: cannot load {topo}, line 1: SyntaxError:"
                                " expected ':'")


def test_traffic_npy_of_strings_is_one_line(tmp_path):
    import numpy as np
    p = tmp_path / "s.npy"
    np.save(p, np.array([["a", "b"], ["c", "d"]]))
    r = CliRunner().invoke(main, ["run", "--traffic", str(p), "--set", "gpus=2"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "s.npy" in r.output and "expected real numbers of bytes" in r.output


@pytest.mark.parametrize("fabric", ["flow", "analytic"])
@pytest.mark.parametrize("gpus", [100000, 10**9, pytest.param(1000000, marks=pytest.mark.slow)])
def test_huge_runs_are_refused_before_allocating(fabric, gpus):
    r = CliRunner().invoke(main, ["run", "--fabric", fabric, "--set", f"gpus={gpus}"])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert len(line.splitlines()) == 1
    assert f"a run of {gpus} GPUs" in line and "GiB available" in line and "needs at least" in line


def test_size_guard_counts_what_a_run_holds(monkeypatch):
    from netsim import prepare
    from netsim.errors import ConfigError
    from netsim.spec import RunSpec

    spec = RunSpec.parse(dict(topology="crossbar", gpus=64))
    topo = spec.build_topology(**spec.topo_kwargs)
    prepare.check_size(spec, topo)  # fits
    monkeypatch.setattr(prepare, "available_memory_bytes", lambda: 1e6)
    with pytest.raises(ConfigError, match=r"a run of 64 GPUs .* this machine has 0.000931 GiB"):
        prepare.check_size(spec, topo)


def test_size_guard_runs_before_a_topology_is_built():
    """The GPU count of the parameters (gpus, or servers x gpus_per_server) is checked before the
    builder runs: a 10^9-GPU crossbar or a 10^6-server cluster is refused without building it."""
    from netsim import prepare
    from netsim.errors import ConfigError
    from netsim.spec import RunSpec

    def never(**kw):
        raise AssertionError("built")

    for params, n in [(dict(gpus=10**9), 10**9),
                      (dict(topology="cluster", servers=10**6, gpus_per_server=8), 8 * 10**6)]:
        spec = RunSpec.parse(params)
        object.__setattr__(spec, "build_topology", never)
        with pytest.raises(ConfigError, match=f"a run of {n} GPUs"):
            prepare.context(spec)


def test_size_guard_counts_per_token_routing():
    """tokens_per_gpu=1e9 with per-token routing (a token's experts kept for de-duplication):
    refused before the draw, naming that part; with counts-only routing nothing that size is
    held (the draw takes long and shows its stage on the progress line instead)."""
    r = CliRunner().invoke(main, ["run", "--set", "tokens_per_gpu=1000000000", "--set",
                                  "dispatcher=rank"])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert len(line.splitlines()) == 1 and "per-token expert choices" in line, line
    assert "GiB available" in line and "tokens_per_gpu" in line


def test_progress_line_shows_stages_and_changes_no_row():
    from netsim import progress
    from netsim.scenario import run

    params = dict(gpus=16, tokens_per_gpu=256)
    quiet = run(params)
    buf = io.StringIO()
    with progress.active(buf, min_interval_s=0.0):
        shown = run(params)
    lines = [x.strip() for x in buf.getvalue().split("\r") if x.strip()]
    assert any("topology 'crossbar': 16 GPUs" in x for x in lines), lines
    assert any("routing: 16 GPUs x 256 tokens" in x for x in lines), lines
    ticks = [x for x in lines if "flow engine" in x and "of bytes delivered" in x]
    assert ticks and ticks[-1].endswith("100.0% of bytes delivered"), lines
    assert buf.getvalue().endswith("\r")  # the line is erased at the end
    drop = {"sim_wall_s"}
    assert {k: v for k, v in quiet.items() if k not in drop} == \
        {k: v for k, v in shown.items() if k not in drop}
    r = CliRunner().invoke(main, ["run", "--set", "gpus=4", "--fabric", "packet", "--progress"])
    assert r.exit_code == 0 and "packet engine: dispatch pass" in r.output
    r = CliRunner().invoke(main, ["run", "--set", "gpus=4", "--no-progress"])
    assert r.exit_code == 0 and "netsim:" not in r.output


def test_report_out_not_writable_is_one_line(tmp_path):
    exp = _exp(tmp_path, SMALL)
    run_sweep(str(exp), tmp_path / "o", quiet=True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = CliRunner().invoke(main, ["report", str(tmp_path / "o"), "--out", str(blocker / "rep")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "is not writable" in r.output and str(blocker / "rep") in r.output
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        r = CliRunner().invoke(main, ["report", str(tmp_path / "o"), "--out", str(ro)])
        assert r.exit_code == 2 and "is not writable" in r.output


def test_disk_full_during_a_sweep_keeps_what_was_written(one_row_files, tmp_path, monkeypatch):
    import errno

    exp = _exp(tmp_path, SMALL)
    real = dataset._atomic_write_table
    calls = []

    def filling(table, path):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(table, path)

    monkeypatch.setattr(dataset, "_atomic_write_table", filling)
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("netsim: error: disk full: cannot write")
    assert "the 3 point(s) this run finished before are kept" in line
    monkeypatch.undo()
    assert len(_parts(tmp_path / "o" / "small")) == 3
    s = run_sweep(str(exp), tmp_path / "o", quiet=True)
    assert s["ran"] == 3 and s["skipped"] == 3


def test_disk_full_stops_the_pool_sweep(tmp_path, monkeypatch):
    # the pool's rows come back to the sweep's process, which writes them: a full disk there
    # stops the sweep with one line, after the pool is stopped
    import errno

    exp = _exp(tmp_path, SMALL)

    def full(table, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset, "_atomic_write_table", full)
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--jobs", "2",
                                  "--timeout", "60", "--quiet"])
    assert r.exit_code == 2, r.output
    assert r.output.strip().startswith("netsim: error: disk full: cannot write")
    assert len(r.output.strip().splitlines()) == 1


# ---- (6) messages that say what is wrong --------------------------------------------------------

def test_unknown_topology_says_topology_and_a_directory_is_a_directory(tmp_path):
    r = CliRunner().invoke(main, ["run", "--topology", "nope"])
    assert r.exit_code == 2 and "unknown topology 'nope'" in r.output and "topologie " not in r.output
    d = tmp_path / "t.py"
    d.mkdir()
    r = CliRunner().invoke(main, ["run", "--topology", str(d)])
    assert r.exit_code == 2 and f"topology file {str(d)!r} is a directory" in r.output


# ---- (7) datasets that do not mix without saying ------------------------------------------------

def test_rows_name_their_experiment_and_a_grown_grid_reads(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "o"
    run_sweep(str(_exp(tmp_path, SMALL, "a.py")), out, quiet=True)
    other = SMALL.replace('NAME = "small"', 'NAME = "other"')
    run_sweep(str(_exp(tmp_path, other, "b.py")), out, quiet=True)
    # the grid grows: a new swept key (link_gbps as floats) and a new value
    grown = SMALL.replace('GRID = {"gpus": [2, 4, 8]}',
                         'GRID = {"gpus": [2, 4, 8, 16], "link_gbps": [400.0, 800.0]}')
    run_sweep(str(_exp(tmp_path, grown, "a2.py")), out, quiet=True)
    q = (f"select experiment, count(*) as n from read_parquet('{out}/**/*.parquet',"
         " hive_partitioning=true, union_by_name=true) where status = 'ok'"
         " group by all order by all")
    assert duckdb.sql(q).fetchall() == [("other", 6), ("small", 6 + 16)]
    df = dataset.read(out / "small")
    assert len(df) == 22 and set(df["experiment"].astype(str)) == {"small"}
    assert df["link_gbps"].notna().all()  # the effective value, in old rows too


def test_two_sweeps_into_one_out_do_not_both_run_every_point(tmp_path):
    import subprocess
    import sys
    topo = _exp(tmp_path, "import time\nfrom netsim.topology import crossbar\n\n"
                "def build(gpus: int = 2, sleep_s: float = 0.0):\n"
                "    time.sleep(sleep_s)\n    return crossbar(gpus, 5e10)\n", "sleepy.py")
    exp = _exp(tmp_path, f'NAME = "both"\nBASE = {{"topology": {str(topo)!r},'
                         ' "tokens_per_gpu": 8, "workload": "olmoe_1b_7b"}\n'
                         'GRID = {"sleep_s": [0.2, 0.21, 0.22, 0.23]}\n', "both.py")
    cmd = [sys.executable, "-m", "netsim.cli", "sweep", str(exp), "--out", str(tmp_path / "o")]
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time
    time.sleep(0.2)
    b = subprocess.Popen(cmd + ["--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    oa, _ = a.communicate(timeout=120)
    ob, _ = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0, (oa, ob)
    ran = [int(o.split(": ", 1)[1].split(" points run")[0]) for o in (oa, ob)]
    assert sorted(ran) == [0, 4], (oa, ob)  # the second waited, then found everything done
    assert len(dataset.read(tmp_path / "o" / "both")) == 4


def test_numpy_values_in_a_grid_are_plain_in_rows_and_messages(tmp_path):
    exp = _exp(tmp_path, "import numpy as np\nNAME = 'np'\nBASE = {'topology': 'crossbar',"
                         " 'tokens_per_gpu': 8}\nGRID = {'gpus': np.arange(2, 4),"
                         " 'routing': ['zipf:-1']}\nSEEDS = np.arange(1)\n".replace(
                             "np.arange(2, 4)", "list(np.arange(2, 4))").replace(
                             "SEEDS = np.arange(1)", "SEEDS = list(np.arange(1))"))
    s = run_sweep(str(exp), tmp_path / "o", quiet=True)
    assert s["ran"] == 2
    df = dataset.read(tmp_path / "o" / "np")
    assert sorted(df["gpus"].tolist()) == [2, 3] and str(df["gpus"].dtype) == "int64"
    assert not df["error"].str.contains("np.int64").any()



# ---- (8) rows written in batches ---------------------------------------------------------------

def test_in_process_sweep_writes_batches_that_resume_retry_and_survive_a_bad_one(tmp_path):
    exp = _exp(tmp_path, SMALL.replace('GRID = {"gpus": [2, 4, 8]}',
                                       'GRID = {"gpus": [2, 4, 8], "routing": ["uniform", "zipf:-1"]}'))
    out = tmp_path / "o"
    s = run_sweep(str(exp), out, quiet=True)
    ddir = out / "small"
    files = sorted(p.relative_to(ddir).as_posix() for p in ddir.glob("status=*/*.parquet"))
    assert len(files) == 2 and all("/batch-" in f for f in files)  # one per status, 12 rows
    assert len(dataset.read(ddir)) == 12 and s["failed"] == 6
    assert run_sweep(str(exp), out, quiet=True)["ran"] == 0  # keys read from the batches
    s = run_sweep(str(exp), out, quiet=True, retry_failed=True)  # drops rows inside a batch
    assert s["ran"] == 6 and len(dataset.read(ddir)) == 12
    ok = next(ddir.glob("status=ok/batch-*.parquet"))
    _truncate(ok)
    s = run_sweep(str(exp), out, quiet=True, compact=True)
    assert s["ran"] == 6 and len(s["set_aside"]) == 1  # the 6 rows of the bad batch, again
    df = dataset.read(ddir)
    assert len(df) == 12 and df["point_key"].is_unique
    assert sorted(p.name for p in ddir.glob("status=*/*.parquet")) == ["compact.parquet"] * 2


def test_batches_are_written_by_rows_by_age_and_by_the_waiting_points_run_time(tmp_path):
    """BatchWriter writes when 64 rows wait, when the oldest has waited 2 s, or when the waiting
    points took 2 s to run between them (a long point reaches the disk at once, so a SIGKILL
    cannot lose it while the next point runs)."""
    import pyarrow.parquet as pq

    from netsim.experiment.executors import BATCH_ROWS, BATCH_S

    layout = dataset.Layout.for_rows([{"x": 1, "point_wall_s": 0.1, "status": "ok"}])
    ddir = tmp_path / "d"
    w = dataset.BatchWriter(dataset.Writer(ddir, layout, {"experiment": "b"}), BATCH_ROWS,
                            BATCH_S)
    now = [0.0]
    w._clock = lambda: now[0]

    def add(i, wall):
        return w.add(f"{i:04x}", {"x": i}, {"x": i, "point_wall_s": wall, "status": "ok"})

    def on_disk():
        return sum(pq.read_metadata(f).num_rows for f in ddir.rglob("*.parquet"))

    for i in range(BATCH_ROWS - 1):
        add(i, 0.001)
    assert on_disk() == 0 and len(w.waiting) == BATCH_ROWS - 1
    add(BATCH_ROWS - 1, 0.001)  # the 64th row
    assert on_disk() == BATCH_ROWS and not w.waiting
    add(100, 0.5)
    now[0] = BATCH_S - 0.01
    add(101, 0.5)
    assert on_disk() == BATCH_ROWS  # 1 s of points, waiting under 2 s
    now[0] = BATCH_S
    add(102, 0.01)  # the oldest has waited 2 s
    assert on_disk() == BATCH_ROWS + 3
    add(103, BATCH_S)  # one long point: written at once
    assert on_disk() == BATCH_ROWS + 4
    add(104, 0.7)
    add(105, 0.7)
    assert on_disk() == BATCH_ROWS + 4
    add(106, 0.7)  # 2.1 s of points waiting
    assert on_disk() == BATCH_ROWS + 7 and not w.waiting
    keys = set(dataset.read(ddir)["point_key"])
    assert len(keys) == BATCH_ROWS + 7 and "0066" in keys


def test_ctrl_c_of_an_in_process_sweep_writes_its_waiting_batch(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    topo = _exp(tmp_path, "import time\nfrom netsim.topology import crossbar\n\n"
                "def build(gpus: int = 2, sleep_s: float = 0.0):\n"
                "    time.sleep(sleep_s)\n    return crossbar(gpus, 5e10)\n", "sleepy.py")
    exp = _exp(tmp_path, f'NAME = "cc"\nBASE = {{"topology": {str(topo)!r},'
                         ' "tokens_per_gpu": 8, "workload": "olmoe_1b_7b", "sleep_s": 0.1}\n'
                         'GRID = {"gpus": list(range(2, 60))}\n', "cc.py")
    proc = subprocess.Popen([sys.executable, "-m", "netsim.cli", "sweep", str(exp), "--out",
                             str(tmp_path / "o"), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    ddir = tmp_path / "o" / "cc"
    t0 = time.time()
    while not list(ddir.glob("status=*/*.parquet")) and time.time() - t0 < 60:
        time.sleep(0.05)  # the first row (the pool-less sweep's first batch) ...
    time.sleep(0.5)  # ... and a few more waiting in the next batch
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ran = int(err.split("interrupted, ")[1].split(" points run")[0])
    assert 0 < ran < 58 and len(dataset.read(ddir)) == ran  # every finished point on disk


# ---- (6) messages in the user's units, without numpy reprs, one line --------------------------

@pytest.mark.parametrize("args, want", [
    (["--set", "latency_us=-1"], "latency_us=-1.0; expected a finite number >= 0 of microseconds"),
    (["--set", "latency_us=nan"], "latency_us=nan; expected a finite number >= 0 of microseconds"),
    (["--set", "link_gbps=inf"], "link_gbps=inf; expected a finite number >= 0 of Gbit/s"),
    (["--topology", "leaf_spine", "--set", "nvlink_gbps=nan"], "nvlink_gbps=nan; expected a finite"),
    (["--topology", "leaf_spine", "--set", "pcie_gbps=-1"], "pcie_gbps=-1.0; expected a finite"),
    (["--topology", "leaf_spine", "--set", "oversubscription=nan"],
     "oversubscription=nan; expected a number, not NaN"),
    (["--fabric", "packet", "--buffer-kib", "-1"], "buffer_kib=-1.0; expected a finite number >= 0"),
    (["--batch-overhead-us", "nan"], "batch_overhead_us=nan; expected a finite number"),
    (["--seed", "1.5"], "Invalid value for '--seed': '1.5' is not a valid integer"),
    (["--fabric", "nosuch"], "Invalid value for '--fabric'"),
    (["--nosuch"], "No such option '--nosuch'"),
])
def test_bad_values_are_one_line_in_user_units(args, want):
    r = CliRunner().invoke(main, ["run", *args])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("netsim: error: "), line
    assert want in line, line
    assert "np." not in line and "Traceback" not in line


def test_numpy_scalars_read_as_plain_numbers_in_messages():
    import numpy as np

    from netsim.errors import ConfigError, plain
    from netsim.scenario import run

    for bad, want in [({"gpus": np.int64(0)}, "gpus=0;"),
                      ({"latency_us": np.float64(-2.0)}, "latency_us=-2.0;"),
                      ({"tokens_per_gpu": np.float64(1.5)}, "tokens_per_gpu=1.5:"),
                      ({"routing": np.str_("nosuch")}, "'nosuch'")]:
        with pytest.raises(ConfigError) as ei:
            run(bad)
        assert want in str(ei.value) and "np." not in str(ei.value), str(ei.value)
    e = ConfigError(f"{np.int64(3)!r} {np.float32(0.5)!r} {np.str_('a')!r} {np.True_!r} np.nan")
    assert str(e) == "3 0.5 'a' True np.nan"
    assert plain(np.int64(2)) == 2 and type(plain(np.int64(2))) is int and plain([1]) == [1]

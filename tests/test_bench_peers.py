"""benchmarks/bench_peers.py's own pure functions: the input writers it hands htsim and the
SimGrid driver, the parsers of their output, and the table it renders (no peer is run here)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_peers",
                                                  ROOT / "benchmarks" / "bench_peers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


bp = _load()


def test_uniform_matrix_and_hosts():
    m = bp.uniform_matrix(16, 1024)
    assert m.shape == (16, 16) and m.dtype == np.int64
    assert np.all(np.diag(m) == 0) and m.sum() == 16 * 15 * 1024
    assert [bp.hosts_of(k) for k in (4, 8, 16)] == [16, 128, 1024]
    # a host sends 15 x 1 KiB at 400 Gbit/s
    assert bp.ideal_makespan_s(16, 1024) == pytest.approx(15 * 1024 * 8 / 400e9)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 9), data=st.data())
def test_htsim_cm_lists_every_nonzero_entry_once(tmp_path_factory, n, data):
    m = np.array(data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=n * n,
                                    max_size=n * n)), dtype=np.int64).reshape(n, n)
    f = tmp_path_factory.mktemp("cm") / "m.cm"
    count = bp.write_htsim_cm(f, m)
    lines = f.read_text().splitlines()
    assert lines[0] == f"Nodes {n}" and lines[1] == f"Connections {count}"
    got = np.zeros_like(m)
    for ln in lines[2:]:
        pair, _, start, _, size = ln.split()
        s, d = (int(x) for x in pair.split("->"))
        assert start == "0" and got[s, d] == 0
        got[s, d] = int(size)
    assert count == np.count_nonzero(m) == len(lines) - 2
    assert np.array_equal(got, m)


def test_htsim_cm_refuses_what_htsim_cannot_read(tmp_path):
    with pytest.raises(ValueError):
        bp.write_htsim_cm(tmp_path / "a.cm", np.full((2, 2), 2**32))  # over uint32
    with pytest.raises(ValueError):
        bp.write_htsim_cm(tmp_path / "b.cm", np.ones((2, 3)))


@settings(max_examples=25, deadline=None)
@given(hosts=st.integers(2, 6), n_links=st.integers(1, 12), data=st.data())
def test_simgrid_platform_round_trip(tmp_path_factory, hosts, n_links, data):
    pairs = data.draw(st.lists(st.tuples(st.integers(0, hosts - 1), st.integers(0, hosts - 1))
                               .filter(lambda p: p[0] != p[1]), unique=True, max_size=12))
    routes = [data.draw(st.lists(st.integers(0, n_links - 1), min_size=1, max_size=5))
              for _ in pairs]
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    size = np.arange(1, len(pairs) + 1, dtype=float) * 4096.0
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in routes])]).astype(np.int64)
    links = np.array([x for r in routes for x in r], dtype=np.int64)
    bw = np.linspace(1e9, 5e10, n_links)
    lat = np.linspace(0.0, 2e-6, n_links)
    f = tmp_path_factory.mktemp("sg") / "p.bin"
    bp.write_simgrid_platform(f, hosts, bw, lat, src, dst, size, ptr, links)
    back = bp.read_simgrid_platform(f)
    assert back["hosts"] == hosts
    for name, want in (("link_bw", bw), ("link_lat", lat), ("src", src), ("dst", dst),
                       ("bytes", size), ("route_ptr", ptr), ("route_links", links)):
        assert np.array_equal(back[name], want), name
    # the driver reads exactly this many bytes: a header of 5 int64 and 8-byte arrays
    assert f.stat().st_size == 8 * (5 + 2 * n_links + 3 * len(pairs) + len(pairs) + 1
                                    + len(links))


def test_simgrid_platform_refuses_inconsistent_input(tmp_path):
    bw, lat = np.ones(2), np.zeros(2)
    ok = dict(src=np.array([0]), dst=np.array([1]), nbytes=np.array([1.0]),
              route_ptr=np.array([0, 1]), route_links=np.array([1]))
    bp.write_simgrid_platform(tmp_path / "ok.bin", 2, bw, lat, **ok)
    for bad in (dict(route_links=np.array([2])),                      # no such link
                dict(dst=np.array([2])),                              # no such host
                dict(route_ptr=np.array([0, 2])),                     # pointer past the end
                dict(src=np.array([0, 0]), dst=np.array([1, 1]), nbytes=np.ones(2),
                     route_ptr=np.array([0, 1, 1]))):                 # a pair twice
        with pytest.raises(ValueError):
            bp.write_simgrid_platform(tmp_path / "bad.bin", 2, bw, lat, **(ok | bad))


def test_parse_htsim_and_simgrid_output():
    out = ["Connection 0->1 starting at 0 size 4096",
           "Flow Roce_0_1 12 finished at 10.5 total bytes 4096",
           "startflow Roce_1_0 at 0",
           "Flow Roce_1_0 14 finished at 125.075 total bytes 4096",
           "Flow Roce_2_0 16 finished at 99 total bytes 4096"]
    n, t = bp.parse_htsim_output(out)
    assert n == 3 and t == pytest.approx(125.075e-6)
    assert bp.parse_htsim_output(["Done"]) == (0, 0.0)
    p = bp.parse_simgrid_output("simgrid_version SimGrid version 3.32\nflows 240\n"
                                "makespan_s 0.0001108576\nsetup_s 0.1\nsimulate_s 0.2\n")
    assert p == dict(simgrid_version="SimGrid version 3.32", flows=240,
                     makespan_s=0.0001108576, setup_s=0.1, simulate_s=0.2)


def _rows():
    base = dict(k=4, bytes=262144, limit_s=60.0, status="ok")
    return [dict(base, simulator="netsim-flow", process_wall_s=2.0, wall_s=0.01,
                 makespan_s=100e-6, version="netsim 0.1.0 @ abc"),
            dict(base, simulator="netsim-packet", process_wall_s=3.0, wall_s=0.02,
                 makespan_s=101e-6, version="netsim 0.1.0 @ abc"),
            dict(base, simulator="simgrid", process_wall_s=0.5, wall_s=0.5,
                 makespan_s=100e-6, version="SimGrid version 3.32 (CM02, max-min)"),
            dict(base, simulator="htsim", status="past limit", process_wall_s=60.0),
            dict(base, k=8, simulator="htsim", status="failed: exit 1: boom",
                 process_wall_s=1.0)]


def test_render_table_ratios_statuses_and_notes():
    text = bp.render_table(_rows())
    lines = text.splitlines()
    wall = next(ln for ln in lines if ln.startswith("| 16 (4) |"))
    assert "2 s [0.01 s]" in wall and "3 s (1.5x) [0.02 s]" in wall
    assert "0.5 s (0.25x)" in wall and "past limit (60 s)" in wall
    span = [ln for ln in lines if ln.startswith("| 16 (4) |")][1]
    assert "100 us |" in span and "101 us (1.0100)" in span and "(1.0000)" in span
    assert any(ln.startswith("| 128 (8) |") and "failed (1)" in ln for ln in lines)
    assert "1. htsim (RoCE), 128 hosts, 256 KiB: failed: exit 1: boom" in text
    assert "SimGrid version 3.32" in text and "netsim 0.1.0 at commit abc;" in text
    # rendered from the rows alone: the same rows give the same text, in any order
    assert bp.render_table(list(reversed(_rows()))) == text
    with pytest.raises(ValueError):
        bp.render_table([])


def test_replace_block_and_check(tmp_path):
    doc = f"intro\n{bp.BEGIN}\nold table\n{bp.END}\noutro\n"
    new = bp.replace_block(doc, "new table")
    assert new == f"intro\n{bp.BEGIN}\nnew table\n{bp.END}\noutro\n"
    assert bp.replace_block(new, "new table") == new
    with pytest.raises(SystemExit):
        bp.replace_block("no markers here", "x")


def test_write_then_check_from_rows(tmp_path):
    import pandas as pd

    out = tmp_path / "rows"
    out.mkdir()
    for i, r in enumerate(_rows()):
        pd.DataFrame([r]).to_parquet(out / f"{i}.parquet")
    doc = tmp_path / "doc.md"
    doc.write_text(f"# x\n{bp.BEGIN}\n{bp.END}\n")
    assert bp.main(["--out", str(out), "--check", str(doc)]) == 1
    assert bp.main(["--out", str(out), "--write", str(doc)]) == 0
    assert bp.main(["--out", str(out), "--check", str(doc)]) == 0
    assert "past limit (60 s)" in doc.read_text()


def test_timed_child_exit_limit_and_signal():
    py = sys.executable
    r, wall, rss = bp._timed([py, "-c", "import sys; print('hi'); sys.exit(3)"], 60)
    assert r.returncode == 3 and r.stdout.strip() == "hi" and wall > 0 and rss > 0
    assert bp._fail(r, wall, rss) == "failed: exit 3: hi"
    r, wall, _ = bp._timed([py, "-c", "import time; time.sleep(30)"], 0.5)
    assert r is None and 0.5 <= wall < 20
    r, wall, rss = bp._timed([py, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                             60)
    assert r.returncode == -9
    assert bp._fail(r, wall, rss).startswith("failed: killed by signal 9 (SIGKILL) after ")


def test_analytic_is_checked_as_a_bound_over_every_row():
    rows = _rows() + [dict(k=4, bytes=262144, limit_s=60.0, status="ok",
                           simulator="netsim-analytic", process_wall_s=1.0, wall_s=0.001,
                           makespan_s=80e-6, version="netsim 0.1.0 @ abc")]
    bp.check_bound(rows)
    assert "80 us (0.8000)" in bp.render_table(rows)
    rows[2] = dict(rows[2], makespan_s=79e-6)  # SimGrid below the bound: refused
    with pytest.raises(ValueError, match="simgrid, k=4, 262144 B per pair"):
        bp.render_table(rows)

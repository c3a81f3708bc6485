"""The SimGrid peer of the scale table (benchmarks/scale_table.py, benchmarks/peers/simgrid_layer.cpp):
the layer file netsim hands the driver, and, where SimGrid can be built, the layer time SimGrid's
max-min solver gives beside netsim's exact flow model on the same fabric, routes and compute."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


st = _script("scale_table")


def _layer(gpus: int, tokens: int):
    from netsim.prepare import prepare
    from netsim.spec import RunSpec

    return prepare(RunSpec.parse(st.params("flow", gpus, tokens)))


def _read(path: Path) -> dict:
    raw = path.read_bytes()
    head = np.frombuffer(raw, "<i8", 6)
    assert head[0] == st.LAYER_MAGIC
    hosts, nl, npairs, nr = (int(x) for x in head[1:5])
    out, pos = {"hosts": hosts, "combine": int(head[5])}, 48
    for name, dt, n in (("bw", "<f8", nl), ("lat", "<f8", nl), ("src", "<i8", npairs),
                        ("dst", "<i8", npairs), ("disp", "<f8", npairs),
                        ("comb", "<f8", npairs), ("ptr", "<i8", npairs + 1),
                        ("links", "<i8", nr), ("compute", "<f8", hosts)):
        out[name] = np.frombuffer(raw, dt, n, pos)
        pos += 8 * n
    assert pos == len(raw)
    return out


def test_layer_file_holds_the_layer_netsim_runs(tmp_path):
    """Every off-diagonal GPU pair with bytes in either phase once, its dispatch bytes, the
    combine as the dispatch's transpose, netsim's own ECMP route, the fabric's links and the
    per-GPU compute times; the flow count is both phases' nonzero pairs."""
    layer = _layer(32, 64)
    f = tmp_path / "layer.bin"
    flows = st.write_layer_platform(f, layer)
    got = _read(f)
    d = layer.dispatch.copy()
    np.fill_diagonal(d, 0.0)
    n = layer.n
    assert got["hosts"] == n and got["combine"] == 1
    assert np.array_equal(got["bw"], layer.topo.link_bw)
    assert np.array_equal(got["lat"], layer.topo.link_lat)
    assert np.array_equal(got["compute"], layer.compute_gpu_s)
    keys = got["src"] * n + got["dst"]
    assert len(np.unique(keys)) == len(keys) and np.all(got["src"] != got["dst"])
    D, C = np.zeros((n, n)), np.zeros((n, n))
    D[got["src"], got["dst"]] = got["disp"]
    C[got["src"], got["dst"]] = got["comb"]
    assert np.array_equal(D, d) and np.array_equal(C, d.T)
    assert flows == 2 * np.count_nonzero(d)
    ptr, links, _ = layer.topo.route(got["src"], got["dst"], layer.ecmp_seed)
    assert np.array_equal(got["ptr"], ptr) and np.array_equal(got["links"], links)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build benchmarks/peers/simgrid_layer.cpp")
    probe = subprocess.run(["g++", "-x", "c++", "-std=c++17", "-fsyntax-only", "-"],
                           input="#include <simgrid/s4u.hpp>\n", capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("SimGrid is not installed (apt-get install libsimgrid-dev)")
    exe, why = st.bench_peers().simgrid_binary(None, tmp_path_factory.mktemp("sg"),
                                               st.SIMGRID_LAYER_SRC)
    if exe is None:
        pytest.fail(why)
    return exe


def test_simgrid_layer_time_equals_the_exact_flow_model(driver, tmp_path):
    """The same 32-GPU DeepSeek-V3 layer (two servers' worth of rails, NVLink inside servers)
    in SimGrid's max-min solver and in netsim's flow model in exact mode (tolerance 0): the two
    solve the same max-min problem event by event, so dispatch end and layer time agree to
    round-off (measured: within 1e-14)."""
    from netsim.scenario import run

    case = dict(model="simgrid", gpus=32, tokens=64)
    row = st.run_simgrid(case, driver, tmp_path, 120.0)
    assert row["status"] == "ok"
    assert 0 < row["maxrss_gib"] < 1  # the driver's own peak (VmHWM), not its forking parent's
    ns = run(st.params("flow", 32, 64) | {"tolerance": 0.0})
    assert row["flows"] == ns["flows"]
    assert row["dispatch_s"] == pytest.approx(ns["dispatch_s"], rel=1e-9)
    assert row["layer_s"] == pytest.approx(ns["layer_s"], rel=1e-9)


def test_scale_table_counts_simgrid_among_the_simulators(tmp_path):
    """A SimGrid row is a column of its own, says in the caption how it was timed, and takes
    part in the fastest-simulator line (here slower than flow, faster than packet)."""
    pd = pytest.importorskip("pandas")
    ok = dict(status="ok", tokens=512, layer_s=2.5e-3, maxrss_gib=0.25, gpus=64)
    rows = [dict(ok, model="flow", wall_s=0.1), dict(ok, model="packet", wall_s=0.9),
            dict(ok, model="simgrid", wall_s=0.4),
            dict(model="simgrid", gpus=256, tokens=512, status="over 300 s", wall_s=300.0)]
    for i, r in enumerate(rows):
        pd.DataFrame([r]).to_parquet(tmp_path / f"{i}.parquet")
    text = st.table(tmp_path)
    assert "| GPUs | flow | packet | simgrid |" in text
    assert "simgrid: SimGrid's max-min solver" in text
    assert "64: flow (simgrid 4.0x, packet 9.0x)" in text
    assert "| 256 |  |  | over 300 s |" in text

"""The Ray backend on a real Ray head started on this machine (one per module): same rows as the
local backend, bit for bit; timeouts. The cluster tests are marked slow (a Ray head takes 15-30 s
to start on 2 cores; about 30 s in all); everything is skipped when Ray is not installed.
Run with: pytest -m slow tests/test_sweep_ray.py"""
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from netsim.cli import main
from netsim.experiment import dataset

# Ray is imported only inside the fixture: it reads its authentication settings (set there) when
# first imported.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed")

EXP = """
NAME = "rayexp"
BASE = {"workload": "olmoe_1b_7b", "tokens_per_gpu": 32, "topology": "crossbar"}
GRID = {"gpus": [4, 8], "routing": ["uniform", "zipf:1.2", "zipf:-1"]}
SEEDS = [0, 1]
"""
WALL = ["sim_wall_s", "point_wall_s"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """``ray start --head`` on this machine, token-authenticated; stopped (its own process group
    only) after the module."""
    port = _free_port()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ray_exe = Path(sys.executable).with_name("ray")
    log = open(tmp_path_factory.mktemp("ray") / "head.log", "w")
    head = subprocess.Popen([str(ray_exe), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        import ray

        t0 = time.time()
        while True:  # wait until a driver can connect
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                ray.shutdown()
                break
            except Exception:  # noqa: BLE001
                if head.poll() is not None or time.time() - t0 > 90:
                    raise
                time.sleep(1)
        yield address
    finally:
        head.send_signal(signal.SIGINT)  # --block: tears down the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        try:
            os.killpg(head.pid, signal.SIGKILL)  # anything of its group still there
        except ProcessLookupError:
            pass
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rows(path):
    df = dataset.read(path).drop(columns=WALL)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df.sort_values("point_key").reset_index(drop=True)


@pytest.mark.slow
def test_ray_rows_equal_local_bit_for_bit(ray_head, tmp_path):
    exp = tmp_path / "rayexp.py"
    exp.write_text(EXP)
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "local"), "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "ray"), "--backend",
                                  "ray", "--address", ray_head, "--quiet"])
    assert r.exit_code == 0, r.output
    assert "12 points run, 0 already done, 4 failed" in r.output
    a, b = _rows(tmp_path / "local" / "rayexp"), _rows(tmp_path / "ray" / "rayexp")
    assert len(a) == 12 and (a.status == "ok").sum() == 8
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # resume on Ray: nothing left
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "ray"), "--backend",
                                  "ray", "--address", ray_head, "--quiet"])
    assert "0 points run, 12 already done" in r.output


@pytest.mark.slow
def test_ray_timeout(ray_head, tmp_path):
    topo = tmp_path / "slow_topo.py"
    topo.write_text("import time\nfrom topologies.crossbar import build as xbar\n\n\n"
                    "def build(gpus: int = 4, sleep_s: float = 0.0):\n"
                    "    time.sleep(sleep_s)\n    return xbar(gpus=gpus)\n")
    exp = tmp_path / "hang.py"
    exp.write_text(f'NAME = "hang"\nBASE = {{"workload": "olmoe_1b_7b", "tokens_per_gpu": 16,'
                   f' "topology": {str(topo)!r}}}\nGRID = {{"sleep_s": [0.0, 120.0]}}\n')
    t0 = time.time()
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--backend",
                                  "ray", "--address", ray_head, "--timeout", "8", "--quiet"])
    assert r.exit_code == 0, r.output
    assert time.time() - t0 < 60
    df = dataset.read(tmp_path / "o" / "hang")
    assert dict(zip(df.sleep_s, df.status)) == {0.0: "ok", 120.0: "timeout"}


def test_bad_address_is_one_line_error(tmp_path):
    exp = tmp_path / "rayexp.py"
    exp.write_text(EXP)
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(tmp_path / "o"), "--backend",
                                  "ray", "--address", f"127.0.0.1:{_free_port()}", "--quiet"])
    assert r.exit_code == 2, r.output
    assert "Ray" in r.output and "Traceback" not in r.output

"""Packaging: what the wheel holds, and how an installed netsim finds its shipped files.

The repository keeps top-level ``topologies/``, ``workloads/`` and ``experiments/`` folders; they
install as ``netsim.topologies``, ``netsim.workloads`` and ``netsim.experiments`` (pyproject's
``package-dir``), with the calibration tables as package data of ``netsim.workloads``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from importlib import resources
from pathlib import Path

import pytest

import netsim.plugins as plugins
from netsim.workload.calibration import CALIBRATION_DIR, get_compute_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("topologies", "workloads", "experiments")


def _repo_modules(kind: str) -> set[str]:
    return {p.stem for p in (ROOT / kind).glob("*.py") if not p.stem.startswith("_")}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NETSIM_PATH")}


# --------------------------------------------------------------------------- fast


def test_calibration_table_is_package_data():
    table = resources.files("netsim.workloads") / "calibration" / "h200.csv"
    assert table.is_file()
    assert (resources.files("netsim.workloads") / "calibration" / "h200.json").is_file()
    assert Path(str(table)).resolve() == (CALIBRATION_DIR / "h200.csv").resolve()
    assert get_compute_model("h200-measured").time_s(1024, 4096, 14336) > 0


def test_shipped_modules_found_from_empty_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NETSIM_PATH", raising=False)
    for kind in SHIPPED:
        found = plugins.available(kind)
        assert _repo_modules(kind) <= set(found), kind
        assert all(p.parent in plugins.shipped_dirs(kind) for p in found.values())
    _, fn = plugins.resolve("topologies", "crossbar")
    assert fn(gpus=4) is not None
    assert plugins._import_file(plugins.available("experiments")["quickstart"]).NAME == "quickstart"


def test_cwd_and_netsim_path_come_before_shipped(tmp_path, monkeypatch):
    mine = tmp_path / "cwd" / "topologies"
    extra = tmp_path / "extra" / "topologies"
    for d in (mine, extra):
        d.mkdir(parents=True)
    (mine / "crossbar.py").write_text("def build():\n    return 'cwd'\n")
    (extra / "crossbar.py").write_text("def build():\n    return 'netsim_path'\n")
    monkeypatch.chdir(mine.parent)
    monkeypatch.delenv("NETSIM_PATH", raising=False)
    assert plugins.resolve("topologies", "crossbar")[1]() == "cwd"
    monkeypatch.setenv("NETSIM_PATH", str(extra.parent))
    assert plugins.search_dirs("topologies")[:2] == [extra.resolve(), mine.resolve()]
    assert plugins.resolve("topologies", "crossbar")[1]() == "netsim_path"


def test_no_top_level_topologies_or_workloads_installed(tmp_path):
    code = ("import importlib.util as u\n"
            "print([n for n in ('topologies', 'workloads', 'experiments') if u.find_spec(n)])\n"
            "print(u.find_spec('netsim.topologies').submodule_search_locations[0])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert Path(out[1]).is_dir()


def test_pyproject_lists_every_package():
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "netsim").rglob("__init__.py")
               if "__pycache__" not in p.parts}
    on_disk |= {f"netsim.{k}" for k in SHIPPED}
    missing, stale = sorted(on_disk - set(cfg["packages"])), sorted(set(cfg["packages"]) - on_disk)
    assert not missing and not stale, (
        f"pyproject.toml [tool.setuptools] packages: add {missing}, remove {stale} (the list is "
        "explicit because netsim.topologies/workloads/experiments are mapped from top-level folders)")
    assert cfg["package-dir"] == {f"netsim.{k}": k for k in SHIPPED}
    for kind in SHIPPED:
        assert (ROOT / kind / "__init__.py").is_file()


# --------------------------------------------------------------------------- wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the working tree (so no build/ is left in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for d in ("netsim",) + SHIPPED:
        shutil.copytree(ROOT / d, src / d, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
                       capture_output=True, text=True, env=_clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("netsim-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"netsim"}
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["netsim"]
    cal = ROOT / "workloads" / "calibration"
    for p in cal.rglob("*"):
        if p.is_file() and p.suffix in (".csv", ".json", ".npy"):
            assert "netsim/workloads/" + p.relative_to(ROOT / "workloads").as_posix() in names, p
    assert "netsim/workloads/calibration/h200.csv" in names
    assert "netsim/workloads/calibration/h200.json" in names
    for kind in SHIPPED:
        assert f"netsim/{kind}/__init__.py" in names
        for m in _repo_modules(kind):
            assert f"netsim/{kind}/{m}.py" in names
    assert "netsim/tools/nvlink_fit.py" in names
    assert "netsim/kernels.json" in names  # the compile-ahead manifest
    assert "netsim/workload/nvlink_fit.py" not in names


@pytest.mark.slow
def test_installed_wheel_from_empty_dir(wheel, tmp_path):
    """Non-editable install into a fresh venv (system site-packages for the dependencies)."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   env=_clean_env(), capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import netsim, netsim.plugins as p, netsim.workload.calibration as c\n"
            "print(netsim.__file__)\nprint(c.CALIBRATION_DIR)\n"
            "print(c.get_compute_model('h200-measured').source)\n"
            "print(sorted(p.available('experiments')))")
    out = subprocess.run([py, "-c", code], cwd=empty, env=_clean_env(), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    site = str(env_dir)
    assert all(line.startswith(site) for line in out[:3]), out
    assert set(eval(out[3])) >= _repo_modules("experiments")
    r = subprocess.run([env_dir / "bin" / "netsim", "list", "experiments"], cwd=empty,
                       env=_clean_env(), capture_output=True, text=True)
    assert r.returncode == 0 and "quickstart" in r.stdout, r.stdout + r.stderr


# --------------------------------------------------------------------------- start-up


def test_single_run_loads_only_what_it_uses():
    """A single-layer analytic run imports no data-frame, plotting, sparse-graph or SimPy library
    (start-up: each costs tenths of a second a process; bench_startup.py times the rest)."""
    code = ("import sys\nfrom netsim.scenario import run\n"
            "run({'gpus': 4, 'fabric': 'analytic'})\n"
            "heavy = ('pandas', 'pyarrow', 'matplotlib', 'scipy.sparse', 'scipy.optimize', 'simpy',"
            " 'netsim.mitigation.runner', 'netsim.fabric.flow', 'netsim.fabric.packet')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == "[]", out


def test_cli_loads_numba_only_for_commands_that_run():
    """``netsim --version`` / ``list`` / ``report`` import neither the run specification nor
    numba (``run``'s parameter options are made when ``run`` is parsed or asked for help)."""
    code = "import sys, netsim.cli\nprint(sorted(m for m in ('numba', 'netsim.spec') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out
    from click.testing import CliRunner

    from netsim.cli import main
    r = CliRunner().invoke(main, ["run", "--help"])
    assert r.exit_code == 0 and "--fabric" in r.output and "--mtu-bytes" in r.output


@pytest.mark.slow
def test_compile_cache_survives_reinstall(wheel, tmp_path):
    """numba's cache of a non-editable install lives in site-packages' __pycache__ and is keyed
    by the source's content (numba >= 0.68), which pip leaves in place: after a reinstall of the
    same wheel the first run loads every kernel and compiles none."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in _clean_env().items() if k != "NUMBA_CACHE_DIR"}
    env["NUMBA_DEBUG_CACHE"] = "1"

    def install(*extra):
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", *extra, str(wheel)],
                       check=True, env=env, capture_output=True)

    def run():
        r = subprocess.run([py, "-m", "netsim.cli", "run", "--set", "gpus=4", "--fabric",
                            "analytic"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout + r.stderr

    install()
    first = run()
    assert "data saved" in first and str(env_dir) in first
    install("--force-reinstall")
    again = run()
    assert "data saved" not in again and "data loaded" in again, again[-2000:]

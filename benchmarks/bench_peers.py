"""netsim beside its peers, htsim and SimGrid, on one uniform all-to-all (issue 17).

Every ordered pair of hosts sends ``--bytes`` bytes (256 KiB and 1 MiB by default) at time 0 on a
k-ary fat tree (Al-Fares: k pods, k^3/4 hosts, full bisection), every link 400 Gbit/s and 1 us,
in each of these simulators:

* ``netsim-flow``: netsim's max-min fair flow model, default settings (``tolerance=1e-3``);
* ``netsim-packet``: netsim's packet model (``--fabric packet``: 4 KiB MTU, FIFO output queues,
  unbounded lossless buffers, per-flow ECMP, no congestion control);
* ``netsim-analytic``: netsim's closed-form line-sum bound (no simulation);
* ``simgrid``: SimGrid's flow-level max-min LMM solver (``network/model:CM02``, no
  cross-traffic) driven by ``benchmarks/peers/simgrid_a2a.cpp`` on netsim's own fabric: the
  same directed links and, for every pair, netsim's ECMP route, so it solves the same max-min
  problem as ``netsim-flow`` (links at latency 0, each flow's route latency added to its
  completion: CM02 would otherwise weight shares by 1/latency);
* ``htsim``: htsim's packet-level RoCE model (``htsim_roce``: line-rate senders, no congestion
  control, PFC-lossless queues with thresholds far above what the run fills, per-flow ECMP on
  its own ``FatTreeTopology``), the protocol closest to netsim's packet model.

netsim runs its fat tree as ``fat_tree`` with ``k``, ``latency_us=1`` and ``--traffic`` a
hosts x hosts byte matrix. Each case runs in a fresh process under a wall-clock limit
(``--limit-s``; a case over it is a row with status ``past limit``). Times per row:

* ``process_wall_s``: the wall time of the simulator's whole process as the user runs it,
  measured by this script: ``netsim run ...`` (Python start-up, imports and loading the kernels
  from numba's cache included; an untimed run of the same case warms the cache first, so no
  compilation is counted),
  ``htsim_roce ...``, ``simgrid_a2a PLATFORM``;
* ``wall_s``: netsim: the run's own time in a warm process (after an untimed 16-host warm-up
  of the same model: start-up and kernel loading excluded); peers: equal to
  ``process_wall_s`` (SimGrid also reports its ``setup_s`` / ``simulate_s`` split).

``makespan_s`` is the simulated completion time each reports: netsim the last byte's arrival;
SimGrid the last completion plus that flow's route latency; htsim the time the last RoCE
sender saw its final ACK (about one path latency after the last byte arrived).

Rows go to ``--out`` (one Parquet file a case; a rerun skips cases on disk). ``--write FILE``
replaces the block between ``<!-- peers -->`` and ``<!-- /peers -->`` in FILE with the table
rendered from the rows; ``--check FILE`` exits 1 when that block differs from the rows.

    python benchmarks/bench_peers.py --out results/peers --htsim /tmp/htsim
    python benchmarks/bench_peers.py --out results/peers --write docs/peers.md

Peers are found by option or environment variable: ``--htsim DIR`` / ``HTSIM_DIR`` (an htsim
checkout with ``sim/datacenter/htsim_roce`` built, or that directory itself), ``--simgrid-bin``
/ ``SIMGRID_A2A`` (the compiled driver; by default it is compiled into ``--out/bin`` with
``g++ -O2 -std=c++17 ... -lsimgrid``, ``SIMGRID_PREFIX`` adding ``-I``/``-L``). A peer that is
not built is skipped with a line saying how to build it (docs/peers.md). Wall times depend on
the machine: compare simulators within one run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from netsim.tools import docblock

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIMULATORS = ("netsim-flow", "netsim-packet", "netsim-analytic", "simgrid", "htsim")
NETSIM_FABRIC = {"netsim-flow": "flow", "netsim-packet": "packet", "netsim-analytic": "analytic"}
DEFAULT_K = (4, 6, 8, 16)
DEFAULT_BYTES = (256 * 1024, 1024 * 1024)
LINK_GBPS = 400.0
LATENCY_US = 1.0
MTU_BYTES = 4096
BEGIN, END = "<!-- peers -->", "<!-- /peers -->"
SIMGRID_SRC = HERE / "peers" / "simgrid_a2a.cpp"
# CM02: plain max-min, no bandwidth/latency factors, no RTT weight; no reverse-path cross-traffic;
# Full (not Lazy) updates without selective update: every flow of an all-to-all shares links
# with every other, so the lazy/selective bookkeeping only costs (128 hosts: 9.8 s against 19 s)
SIMGRID_CFG = ("--cfg=network/model:CM02", "--cfg=network/crosstraffic:0",
               "--cfg=network/optim:Full", "--cfg=network/maxmin-selective-update:no")
PLATFORM_MAGIC = 0x53474132  # "SGA2", checked by simgrid_a2a.cpp
HTSIM_BUILD = ("git clone https://github.com/Broadcom/csg-htsim DIR && make -C DIR/sim -j2 "
               "libhtsim.a && make -C DIR/sim/datacenter -j2 htsim_roce  (or "
               "benchmarks/peers/build_htsim.sh DIR)")
SIMGRID_BUILD = ("apt-get install libsimgrid-dev (SimGrid >= 3.32) and g++, or pass --simgrid-bin "
                 "/ SIMGRID_A2A, or SIMGRID_PREFIX for a SimGrid installed elsewhere")


@dataclass(frozen=True)
class Case:
    """One (simulator, fat-tree arity, bytes per ordered pair) measurement."""

    simulator: str
    k: int
    bytes: int

    @property
    def hosts(self) -> int:
        return hosts_of(self.k)

    def key(self) -> str:
        return hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(),
                               digest_size=6).hexdigest()


def hosts_of(k: int) -> int:
    """Hosts of a k-ary fat tree (one NIC each)."""
    return k ** 3 // 4


def ideal_makespan_s(hosts: int, nbytes: int, gbps: float = LINK_GBPS) -> float:
    """Time a host needs to inject its (hosts - 1) x nbytes at its NIC's rate (seconds): the
    all-to-all's injection bound without latency (what sizes htsim's end time)."""
    return (hosts - 1) * nbytes * 8.0 / (gbps * 1e9)


# ---------------------------------------------------------------- input writers (pure)

def uniform_matrix(hosts: int, nbytes: int) -> np.ndarray:
    """hosts x hosts int64 byte matrix: ``nbytes`` for every ordered pair, 0 on the diagonal."""
    m = np.full((hosts, hosts), int(nbytes), dtype=np.int64)
    np.fill_diagonal(m, 0)
    return m


def write_htsim_cm(path: Path, matrix: np.ndarray) -> int:
    """Write ``matrix`` (bytes, hosts x hosts) as an htsim connection matrix: ``Nodes N``,
    ``Connections C`` and one ``src->dst start 0 size B`` line per non-zero entry (row-major
    order; start in us). Returns the number of connections."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix shape {m.shape}; expected hosts x hosts")
    if np.any(m < 0) or np.any(m != np.rint(m)) or np.any(m > 2**32 - 1):
        raise ValueError("htsim sizes are whole bytes in 0..2^32-1 (uint32)")
    src, dst = np.nonzero(m)
    size = m[src, dst].astype(np.int64)
    with open(path, "w") as f:
        f.write(f"Nodes {m.shape[0]}\nConnections {len(src)}\n")
        f.writelines(f"{s}->{d} start 0 size {b}\n" for s, d, b in zip(src.tolist(),
                                                                       dst.tolist(),
                                                                       size.tolist()))
    return len(src)


def write_simgrid_platform(path: Path, hosts: int, link_bw: np.ndarray, link_lat: np.ndarray,
                           src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray,
                           route_ptr: np.ndarray, route_links: np.ndarray) -> None:
    """Write the binary platform + flow list ``simgrid_a2a.cpp`` reads (little-endian): five
    int64 (magic, hosts, links, flows, route length), link bandwidths (bytes/s) and latencies
    (s) as float64, flow sources and destinations (int64 host numbers), sizes (float64 bytes),
    route pointers (int64, flows + 1) and route links (int64). Flow i crosses
    ``route_links[route_ptr[i]:route_ptr[i + 1]]``; every (src, dst) pair at most once."""
    bw = np.ascontiguousarray(link_bw, dtype="<f8")
    lat = np.ascontiguousarray(link_lat, dtype="<f8")
    s, d = (np.ascontiguousarray(a, dtype="<i8") for a in (src, dst))
    b = np.ascontiguousarray(nbytes, dtype="<f8")
    ptr = np.ascontiguousarray(route_ptr, dtype="<i8")
    rl = np.ascontiguousarray(route_links, dtype="<i8")
    nf = len(s)
    if not (len(d) == len(b) == nf and len(ptr) == nf + 1 and len(bw) == len(lat)):
        raise ValueError("flow arrays and route pointers disagree in length")
    if nf and (ptr[0] != 0 or ptr[-1] != len(rl) or np.any(np.diff(ptr) < 0)):
        raise ValueError("route pointers must rise from 0 to len(route_links)")
    if len(rl) and (rl.min() < 0 or rl.max() >= len(bw)):
        raise ValueError("a route names a link that does not exist")
    if nf and (min(s.min(), d.min()) < 0 or max(s.max(), d.max()) >= hosts):
        raise ValueError("a flow names a host that does not exist")
    if len(np.unique(s * hosts + d)) != nf:
        raise ValueError("a (src, dst) pair appears twice: the driver keeps one route a pair")
    head = np.array([PLATFORM_MAGIC, hosts, len(bw), nf, len(rl)], dtype="<i8")
    with open(path, "wb") as f:
        for a in (head, bw, lat, s, d, b, ptr, rl):
            f.write(a.tobytes())


def read_simgrid_platform(path: Path) -> dict:
    """Read back what :func:`write_simgrid_platform` wrote (the C++ driver's view of it)."""
    raw = Path(path).read_bytes()
    head = np.frombuffer(raw, dtype="<i8", count=5)
    if head[0] != PLATFORM_MAGIC:
        raise ValueError(f"{path}: not a platform file")
    hosts, nl, nf, nr = (int(x) for x in head[1:])
    out, pos = {"hosts": hosts}, 40
    for name, dt, n in (("link_bw", "<f8", nl), ("link_lat", "<f8", nl), ("src", "<i8", nf),
                        ("dst", "<i8", nf), ("bytes", "<f8", nf), ("route_ptr", "<i8", nf + 1),
                        ("route_links", "<i8", nr)):
        out[name] = np.frombuffer(raw, dtype=dt, count=n, offset=pos)
        pos += 8 * n
    if pos != len(raw):
        raise ValueError(f"{path}: {len(raw) - pos} bytes after the route links")
    return out


# ---------------------------------------------------------------- output parsers (pure)

_HTSIM_DONE = re.compile(r"^Flow \S+ \d+ finished at ([0-9.eE+-]+)")


def parse_htsim_output(lines: Iterable[str]) -> tuple[int, float]:
    """(flows finished, makespan in seconds) from htsim_roce's stdout: the latest ``Flow NAME
    ID finished at T`` (T in us)."""
    n, last = 0, 0.0
    for line in lines:
        m = _HTSIM_DONE.match(line)
        if m:
            n += 1
            last = max(last, float(m.group(1)))
    return n, last * 1e-6


def parse_simgrid_output(text: str) -> dict:
    """The ``key value`` lines simgrid_a2a prints (makespan_s, flows, setup_s, simulate_s,
    simgrid_version)."""
    out: dict = {}
    for line in text.splitlines():
        key, _, val = line.partition(" ")
        if key in ("makespan_s", "setup_s", "simulate_s"):
            out[key] = float(val)
        elif key == "flows":
            out[key] = int(val)
        elif key == "simgrid_version":
            out[key] = val.strip()
    return out


# ---------------------------------------------------------------- table (pure)

def _fmt_s(x: float) -> str:
    return f"{x:.3g}" if x < 10 else f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def _label(sim: str) -> str:
    return {"netsim-flow": "netsim flow", "netsim-packet": "netsim packet",
            "netsim-analytic": "netsim analytic", "simgrid": "SimGrid (max-min LMM)",
            "htsim": "htsim (RoCE)"}.get(sim, sim)


def check_bound(rows: list[dict], rel: float = 1e-9) -> None:
    """netsim analytic is a lower bound (the NICs' line sums plus the longest path latency):
    raise ValueError naming the first finished row of another simulator whose makespan is below
    the bound of its (k, bytes) case."""
    bound = {(int(r["k"]), int(r["bytes"])): float(r["makespan_s"]) for r in rows
             if r["simulator"] == "netsim-analytic" and r.get("status") == "ok"}
    for r in rows:
        b = bound.get((int(r["k"]), int(r["bytes"])))
        if (b is not None and r["simulator"] != "netsim-analytic" and r.get("status") == "ok"
                and float(r["makespan_s"]) < b * (1 - rel)):
            raise ValueError(f"{r['simulator']}, k={r['k']}, {r['bytes']} B per pair: makespan "
                             f"{float(r['makespan_s']):.9g} s is below the analytic bound "
                             f"{b:.9g} s")


def render_table(rows: list[dict]) -> str:
    """Markdown from the rows: one line per (hosts, bytes per pair); for each simulator the
    process wall time with its ratio to netsim flow's process wall time (netsim models: the
    warm in-process time in brackets), then the makespans with their ratio to netsim flow's."""
    if not rows:
        raise ValueError("no rows")
    by = {(r["simulator"], int(r["k"]), int(r["bytes"])): r for r in rows}
    sims = [s for s in SIMULATORS if any(k[0] == s for k in by)]
    shapes = sorted({(int(r["k"]), int(r["bytes"])) for r in rows})
    notes: list[str] = []

    def status_cell(r: dict) -> str | None:
        st = str(r.get("status", "ok"))
        if st == "ok":
            return None
        if st.startswith("past limit"):
            return f"past limit ({float(r['limit_s']):g} s)"
        notes.append(f"{len(notes) + 1}. {_label(r['simulator'])}, {hosts_of(int(r['k'])):,} "
                     f"hosts, {_bytes_label(int(r['bytes']))}: {st}")
        return f"{st.split(':', 1)[0]} ({len(notes)})"

    check_bound(rows)
    head = "| hosts (k) | per pair | " + " | ".join(_label(s) for s in sims) + " |"
    sep = "|---|---|" + "---|" * len(sims)
    wall, span = [head, sep], [head, sep]
    for k, nb in shapes:
        ref = by.get(("netsim-flow", k, nb))
        ref_ok = ref is not None and ref.get("status") == "ok"
        wcells, mcells = [], []
        for s in sims:
            r = by.get((s, k, nb))
            if r is None:
                wcells.append("")
                mcells.append("")
                continue
            st = status_cell(r)
            if st is not None:
                wcells.append(st)
                mcells.append("")
                continue
            pw = float(r["process_wall_s"])
            cell = f"{_fmt_s(pw)} s"
            if ref_ok and s != "netsim-flow":
                cell += f" ({pw / float(ref['process_wall_s']):.2g}x)"
            if s.startswith("netsim-"):
                cell += f" [{_fmt_s(float(r['wall_s']))} s]"
            wcells.append(cell)
            ms = float(r["makespan_s"])
            mc = f"{ms * 1e6:.4g} us" if ms < 1e-2 else f"{ms * 1e3:.4g} ms"
            if ref_ok and s != "netsim-flow":
                mc += f" ({ms / float(ref['makespan_s']):.4f})"
            mcells.append(mc)
        lead = f"| {hosts_of(k):,} ({k}) | {_bytes_label(nb)} | "
        wall.append(lead + " | ".join(wcells) + " |")
        span.append(lead + " | ".join(mcells) + " |")
    versions = []
    for fam, members in (("netsim", [s for s in sims if s.startswith("netsim-")]),
                         ("SimGrid", ["simgrid"]), ("htsim", ["htsim"])):
        v = sorted({str(r.get("version", "")) for r in rows if r["simulator"] in members}
                   - {"", "nan"})
        if v and fam == "netsim":  # "netsim X @ COMMIT": one line for the commits seen
            heads = sorted({x.split(" @ ")[0] for x in v})
            commits = sorted({x.split(" @ ")[1] for x in v if " @ " in x})
            versions.append(f"{', '.join(heads)} at commit{'s' if len(commits) > 1 else ''} "
                            f"{', '.join(commits)}")
        elif v:
            versions.append(", ".join(v))
    text = ("Uniform all-to-all, every ordered pair of hosts sends the bytes shown at time 0; "
            f"k-ary fat tree, {LINK_GBPS:g} Gbit/s links, {LATENCY_US:g} us per link. Wall "
            "time of each simulator's process (netsim: `netsim run` with a warm numba cache, "
            "start-up included; its warm in-process run time in brackets) and its ratio to "
            "netsim flow's process:\n\n" + "\n".join(wall)
            + "\n\nSimulated completion time (makespan) each reports, and its ratio to netsim "
            "flow's:\n\n" + "\n".join(span)
            + "\n\nVersions: " + "; ".join(versions) + ".")
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


def _bytes_label(n: int) -> str:
    if n % 2**20 == 0:
        return f"{n // 2**20} MiB"
    if n % 2**10 == 0:
        return f"{n // 2**10} KiB"
    return f"{n} B"


def replace_block(text: str, block: str, name: str = "file") -> str:
    """``text`` with the part between the peers markers replaced by ``block``."""
    return docblock.replace_block(text, BEGIN, END, block, name)


# ---------------------------------------------------------------- running the cases

def netsim_params(k: int, traffic: Path, fabric: str) -> dict:
    """netsim run parameters of one case (the fat tree at 400 Gbit/s, 1 us per link)."""
    return dict(topology="fat_tree", k=int(k), link_gbps=LINK_GBPS, latency_us=LATENCY_US,
                traffic=str(traffic), fabric=fabric)


def netsim_cli(k: int, traffic: Path, fabric: str) -> list[str]:
    exe = shutil.which("netsim") or str(Path(sys.executable).with_name("netsim"))
    return [exe, "run", "--topology", "fat_tree", "--set", f"k={k}", "--set",
            f"link_gbps={LINK_GBPS:g}", "--set", f"latency_us={LATENCY_US:g}", "--traffic",
            str(traffic), "--fabric", fabric, "--json"]


def _git_commit(path: Path) -> str:
    try:
        r = subprocess.run(["git", "-C", str(path), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _matrix(work: Path, k: int, nbytes: int) -> Path:
    f = work / f"a2a_k{k}_{nbytes}.npy"
    if not f.exists():
        np.save(f, uniform_matrix(hosts_of(k), nbytes))
    return f


def run_netsim_inprocess(case: Case, work: Path) -> dict:
    """The child process's side: untimed 16-host warm-up, then the case, timed."""
    from netsim.scenario import run

    fabric = NETSIM_FABRIC[case.simulator]
    run(netsim_params(4, _matrix(work, 4, case.bytes), fabric))
    t0 = time.perf_counter()
    row = run(netsim_params(case.k, _matrix(work, case.k, case.bytes), fabric))
    return dict(wall_s=time.perf_counter() - t0, makespan_s=float(row["dispatch_s"]),
                flows=int(row.get("flows") or 0), events=int(row.get("events") or 0))


@dataclass
class Finished:
    """A finished child process: exit code (negative: killed by that signal) and its output."""

    returncode: int
    stdout: str
    stderr: str


def _timed(cmd: list[str], limit_s: float, cwd=None, stdout_path: Path | None = None):
    """Run ``cmd``: (Finished, or None when it ran past ``limit_s`` and was killed; wall
    seconds; the child's peak resident memory in GiB). The child is reaped by ``os.wait4`` in a
    thread, so the wall time ends when the child does and its own peak RSS is known. Output
    goes to files (``stdout_path`` keeps stdout), never to pipes that could fill."""
    res: dict = {}
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        out = open(stdout_path, "w") if stdout_path else fo
        try:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=out, stderr=fe, cwd=cwd)

            def reap() -> None:
                _, status, ru = os.wait4(p.pid, 0)
                res.update(t=time.perf_counter(), status=status, rss_kib=ru.ru_maxrss)

            th = threading.Thread(target=reap)
            th.start()
            th.join(limit_s)
            past = th.is_alive()
            if past:
                p.kill()
                th.join()
            p.returncode = os.waitstatus_to_exitcode(res["status"])  # reaped here, not by Popen
        finally:
            if stdout_path:
                out.close()
        wall, rss = res["t"] - t0, res["rss_kib"] / 2**20
        if past:
            return None, wall, rss
        fo.seek(0)
        fe.seek(0)
        return Finished(p.returncode, fo.read(), fe.read()), wall, rss


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _fail(r: Finished, wall: float, rss: float) -> str:
    if r.returncode < 0:  # a signal from outside: SIGKILL near the memory size is the OOM killer
        try:
            name = signal.Signals(-r.returncode).name
        except ValueError:
            name = "?"
        return (f"failed: killed by signal {-r.returncode} ({name}) after {wall:.0f} s at "
                f"{rss:.1f} GiB peak resident memory (the machine has {_memory_gib():.1f} GiB)")
    tail = (r.stderr or "").strip().splitlines() or (r.stdout or "").strip().splitlines() or ["?"]
    return f"failed: exit {r.returncode}: {tail[-1][:200]}"


def measure_netsim(case: Case, work: Path, limit_s: float) -> dict:
    fabric = NETSIM_FABRIC[case.simulator]
    m = _matrix(work, case.k, case.bytes)
    # warm the numba cache with this very case, untimed: kernels a larger run reaches (solver
    # hand-overs, threaded paths) are then cached too, so no timed run compiles anything
    warm, wall, rss = _timed(netsim_cli(case.k, m, fabric), limit_s)
    if warm is None:
        return dict(status="past limit", process_wall_s=wall, peak_rss_gib=rss)
    r, wall, rss = _timed(netsim_cli(case.k, m, fabric), limit_s)
    if r is None:
        return dict(status="past limit", process_wall_s=wall, peak_rss_gib=rss)
    if r.returncode != 0:
        return dict(status=_fail(r, wall, rss), process_wall_s=wall, peak_rss_gib=rss)
    row = json.loads(r.stdout)
    out = dict(process_wall_s=wall, makespan_s=float(row["dispatch_s"]),
               flows=int(row.get("flows") or 0), peak_rss_gib=rss)
    r2, wall2, rss2 = _timed([sys.executable, __file__, "--one", json.dumps(asdict(case)),
                              "--work", str(work)], limit_s)
    if r2 is None:
        return dict(out, status="past limit")
    if r2.returncode != 0:
        return dict(out, status=_fail(r2, wall2, rss2))
    inproc = json.loads(r2.stdout.strip().splitlines()[-1])
    if inproc["makespan_s"] != out["makespan_s"]:
        return dict(out, status=f"failed: in-process makespan {inproc['makespan_s']!r} != "
                                f"CLI's {out['makespan_s']!r}")
    ver = f"netsim {row.get('netsim_version', '?')} @ {_git_commit(ROOT) or '?'}"
    return dict(out, wall_s=inproc["wall_s"], events=inproc["events"], version=ver,
                status="ok")


def htsim_binary(htsim: str | None) -> Path | None:
    """htsim_roce under ``htsim`` (a checkout or its sim/datacenter directory), or None."""
    if not htsim:
        return None
    d = Path(htsim)
    for cand in (d / "sim" / "datacenter" / "htsim_roce", d / "datacenter" / "htsim_roce",
                 d / "htsim_roce", d):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def htsim_command(binary: Path, cm: Path, hosts: int, nbytes: int, log: Path) -> list[str]:
    """htsim_roce arguments of one case: 400 Gbit/s (in Mbit/s), 1 us per hop, 4 KiB packets,
    per-flow ECMP (``ecmp_host``, one path entropy value a flow), queues of 2000 packets with
    PFC pause/resume at 1000/800 packets (lossless, and far above what a run fills), an end
    time of 50 x the injection bound (+1 ms)."""
    end_us = int(50 * ideal_makespan_s(hosts, nbytes) * 1e6) + 1000
    return [str(binary), "-tm", str(cm), "-nodes", str(hosts), "-linkspeed",
            f"{LINK_GBPS * 1000:g}", "-hop_latency", f"{LATENCY_US:g}", "-mtu", str(MTU_BYTES),
            "-strat", "ecmp_host", "-paths", "1", "-q", "2000", "-pfc_thresholds", "800",
            "1000", "-end", str(end_us), "-o", str(log)]


def _differing(root: Path, paths: list[str]) -> list[str]:
    """Those of ``paths`` (under checkout ``root``) whose content differs from the commit's blob
    (a file that the index lists as deleted, as after ``clone --no-checkout``, but that is on
    disk unchanged, does not): two git calls for all of them."""
    git = ["git", "-C", str(root)]
    head = dict(ln.split("\t", 1)[::-1] for ln in subprocess.run(
        git + ["ls-tree", "-r", "--format=%(objectname)\t%(path)", "HEAD", "--", *paths],
        capture_output=True, text=True, timeout=20).stdout.splitlines())
    on_disk = [p for p in paths if (root / p).is_file()]
    here = subprocess.run(git + ["hash-object", "--stdin-paths"], input="\n".join(on_disk),
                          capture_output=True, text=True, timeout=60).stdout.split()
    same = {p for p, h in zip(on_disk, here) if head.get(p) == h}
    return [p for p in paths if p not in same]


def htsim_version(binary: Path) -> str:
    """``csg-htsim @ COMMIT`` of the checkout ``binary`` was built in, saying whether its
    sources carry build_htsim.sh's one change (or other local changes)."""
    root = binary.parents[2] if binary.parent.name == "datacenter" else binary.parent
    ver = f"csg-htsim @ {_git_commit(root) or '?'}"
    roce = root / "sim" / "roce.cpp"
    patched = roce.exists() and "removed by build_htsim.sh" in roce.read_text(errors="replace")
    try:
        r = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                            "--untracked-files=no", "--", "sim"], capture_output=True,
                           text=True, timeout=20)
        changed = [ln[3:] for ln in r.stdout.splitlines()]
        changed = _differing(root, changed) if changed else []
    except (OSError, subprocess.TimeoutExpired):
        changed = []
    others = [c for c in changed if c != "sim/roce.cpp"]
    if patched:
        ver += " with build_htsim.sh's seed fix"
    if others or (changed and not patched):
        ver += f" + local changes ({len(changed)} files)"
    return ver + ", htsim_roce"


def measure_htsim(case: Case, work: Path, limit_s: float, binary: Path) -> dict:
    cm = work / f"a2a_k{case.k}_{case.bytes}.cm"
    if not cm.exists():
        write_htsim_cm(cm, uniform_matrix(case.hosts, case.bytes))
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        out = Path(tmp) / "stdout.txt"
        r, wall, rss = _timed(htsim_command(binary, cm, case.hosts, case.bytes,
                                            Path(tmp) / "logout.dat"), limit_s, cwd=tmp,
                              stdout_path=out)
        if r is None:
            return dict(status="past limit", process_wall_s=wall, peak_rss_gib=rss)
        if r.returncode != 0:
            r.stdout = out.read_text(errors="replace")[-2000:]
            return dict(status=_fail(r, wall, rss), process_wall_s=wall, peak_rss_gib=rss)
        with open(out, errors="replace") as f:
            done, span = parse_htsim_output(f)
    flows = case.hosts * (case.hosts - 1)
    ver = htsim_version(binary)
    st = "ok" if done == flows else f"failed: {done} of {flows} flows finished by the end time"
    return dict(status=st, process_wall_s=wall, wall_s=wall, makespan_s=span, flows=done,
                version=ver, peak_rss_gib=rss)


def simgrid_binary(given: str | None, out: Path,
                   source: Path = SIMGRID_SRC) -> tuple[Path | None, str]:
    """The compiled SimGrid driver ``source`` (compiled into ``out/bin`` when missing or older
    than its source), or None and why."""
    if given:
        p = Path(given)
        return (p, "") if p.is_file() else (None, f"{p} does not exist")
    exe = out / "bin" / source.stem
    newest = max(f.stat().st_mtime for f in [source, *source.parent.glob("*.h")])
    if exe.exists() and exe.stat().st_mtime >= newest:
        return exe, ""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        return None, "no C++ compiler (g++)"
    exe.parent.mkdir(parents=True, exist_ok=True)
    prefix = os.environ.get("SIMGRID_PREFIX")
    cmd = [cxx, "-O2", "-std=c++17", "-o", str(exe), str(source)]
    if prefix:
        cmd[1:1] = [f"-I{prefix}/include", f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib"]
    cmd.append("-lsimgrid")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["?"])[0]
        return None, f"compiling {source.name} failed: {msg}"
    return exe, ""


def simgrid_platform(case: Case, work: Path) -> Path:
    """The platform file of a case: netsim's fat tree (its directed links) and netsim's own
    ECMP route of every pair, taken from netsim's prepared layer."""
    f = work / f"platform_k{case.k}_{case.bytes}.bin"
    if f.exists():
        return f
    from netsim.prepare import prepare
    from netsim.spec import RunSpec

    layer = prepare(RunSpec.parse(netsim_params(case.k, _matrix(work, case.k, case.bytes),
                                                "flow")))
    ft, m = layer.topo, layer.dispatch
    src, dst = np.nonzero(m)
    ptr, links, _ = ft.route(src, dst, layer.ecmp_seed)
    tmp = f.with_suffix(".tmp")
    write_simgrid_platform(tmp, ft.n_gpus, ft.link_bw, ft.link_lat, src, dst, m[src, dst],
                           ptr, links)
    tmp.rename(f)
    return f


def measure_simgrid(case: Case, work: Path, limit_s: float, binary: Path) -> dict:
    plat = simgrid_platform(case, work)
    r, wall, rss = _timed([str(binary), str(plat), *SIMGRID_CFG, "--log=root.thres:warning"],
                          limit_s)
    if r is None:
        return dict(status="past limit", process_wall_s=wall, peak_rss_gib=rss)
    if r.returncode != 0:
        return dict(status=_fail(r, wall, rss), process_wall_s=wall, peak_rss_gib=rss)
    p = parse_simgrid_output(r.stdout)
    return dict(status="ok", process_wall_s=wall, wall_s=wall, makespan_s=p["makespan_s"],
                peak_rss_gib=rss,
                flows=p["flows"], setup_s=p["setup_s"], simulate_s=p["simulate_s"],
                version=p.get("simgrid_version", "SimGrid ?") + " (CM02, max-min)")


def read_rows(out: Path) -> list[dict]:
    import pandas as pd

    files = sorted(out.glob("*.parquet"))
    if not files:
        return []
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
            for r in df.to_dict("records")]


def run_cases(cases: list[Case], out: Path, limit_s: float, htsim: str | None,
              simgrid_bin: str | None) -> None:
    import pandas as pd

    out = out.resolve()  # htsim runs in a scratch directory: every path it is given is absolute
    out.mkdir(parents=True, exist_ok=True)
    work = out / "inputs"
    work.mkdir(exist_ok=True)
    hts = htsim_binary(htsim)
    if any(c.simulator == "htsim" for c in cases) and hts is None:
        print(f"htsim: skipped, htsim_roce not found under {htsim or '(no --htsim / HTSIM_DIR)'}"
              f"; build it: {HTSIM_BUILD}", flush=True)
    sgb, why = (simgrid_binary(simgrid_bin, out) if any(c.simulator == "simgrid" for c in cases)
                else (None, ""))
    if any(c.simulator == "simgrid" for c in cases) and sgb is None:
        print(f"simgrid: skipped, {why}; {SIMGRID_BUILD}", flush=True)
    for case in cases:
        f = out / f"{case.key()}.parquet"
        if f.exists():
            continue
        if (case.simulator == "htsim" and hts is None) or (case.simulator == "simgrid"
                                                           and sgb is None):
            continue
        print(f"running {case.simulator} k={case.k} ({case.hosts} hosts) "
              f"{_bytes_label(case.bytes)} per pair", flush=True)
        if case.simulator in NETSIM_FABRIC:
            res = measure_netsim(case, work, limit_s)
        elif case.simulator == "htsim":
            res = measure_htsim(case, work, limit_s, hts)
        else:
            res = measure_simgrid(case, work, limit_s, sgb)
        row = dict(asdict(case), hosts=case.hosts, limit_s=float(limit_s), **res)
        print("   ", {k: v for k, v in row.items() if k not in asdict(case)}, flush=True)
        tmp = f.with_suffix(".tmp")
        pd.DataFrame([row]).to_parquet(tmp)
        tmp.rename(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/peers"))
    ap.add_argument("--k", default=",".join(map(str, DEFAULT_K)),
                    help="fat-tree arities (hosts = k^3/4), comma separated")
    ap.add_argument("--bytes", default=",".join(map(str, DEFAULT_BYTES)),
                    help="bytes per ordered pair, comma separated")
    ap.add_argument("--simulators", default=",".join(SIMULATORS))
    ap.add_argument("--limit-s", type=float, default=300.0, help="wall-clock limit per process")
    ap.add_argument("--htsim", default=os.environ.get("HTSIM_DIR"),
                    help="htsim checkout (with sim/datacenter/htsim_roce built); env HTSIM_DIR")
    ap.add_argument("--simgrid-bin", default=os.environ.get("SIMGRID_A2A"),
                    help="compiled simgrid_a2a driver; env SIMGRID_A2A (default: compile it)")
    ap.add_argument("--write", type=Path, help="write the table into this Markdown file")
    ap.add_argument("--check", type=Path, help="exit 1 if this file's table differs")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(run_netsim_inprocess(Case(**json.loads(a.one)), a.work)))
        return 0
    if a.write or a.check:
        rows = read_rows(a.out)
        if not rows:
            raise SystemExit(f"no rows in {a.out}")
        return docblock.write_block(a.write or a.check, BEGIN, END, render_table(rows),
                                    bool(a.check), f"the peers table of the rows in {a.out}")
    sims = [s for s in a.simulators.split(",") if s]
    bad = [s for s in sims if s not in SIMULATORS]
    if bad:
        raise SystemExit(f"unknown simulator {bad[0]!r}; expected one of {', '.join(SIMULATORS)}")
    cases = [Case(s, int(k), int(b)) for k in a.k.split(",") for b in a.bytes.split(",")
             for s in sims]
    run_cases(cases, a.out, a.limit_s, a.htsim, a.simgrid_bin)
    rows = read_rows(a.out)
    if rows:
        print(render_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

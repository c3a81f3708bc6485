"""Compiling a run's numba kernels ahead of it, in two processes, when numba's cache is cold.

A process that finds numba's cache empty (the first run after ``pip install``, or after the cache
was cleared) compiles every kernel its run calls, one after another: most of a first run's wall
time. The kernels are independent programs, so on a machine with two cores or more
:func:`compile_ahead` compiles them in two processes at once: a child process
(``python -m netsim.kernels FABRIC 1``) compiles its share into the cache while this process
compiles the other share; the run then starts with every kernel compiled or in the cache. The
rows are the same either way (the same kernels, compiled from the same source for the same
types); only the wall time of the first run changes.

Which kernels a run of each fabric model calls, with their argument types and how long each took
to compile, is the manifest ``kernels.json`` beside this module: the kernels that the default
16-GPU run of that model (``netsim run --set gpus=16 --fabric F``) compiled at top level (called
from Python; the kernels they call are compiled inside them), recorded by ``python -m
netsim.kernels --write`` in fresh processes with an empty cache. A run whose kernels are not in
the manifest (another collective, a circuit scheduler) compiles them itself, as before; a stale
manifest entry (a kernel renamed, or called with other types) is skipped, and
``tests/test_kernels.py`` checks that every entry is one the default run really calls.

The shares are balanced by the recorded compile times (longest first, each to the share that
would finish earlier, the child's share counting its process's start-up). Nothing happens when
the cache holds every manifest kernel's index, with one core, or with ``NETSIM_COMPILE_AHEAD=0``;
a child that fails or takes longer than a few minutes is ignored (this process compiles what is
still missing when the run calls it).
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Kernel", "manifest", "cold", "shares", "compile_kernels", "compile_ahead"]

MANIFEST = Path(__file__).with_name("kernels.json")
#: fabric models whose default run the manifest records
FABRICS = ("flow", "packet", "analytic")
_CHILD_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Kernel:
    """One top-level kernel compile: ``module.name`` for argument types ``signature`` (numba type
    reprs, evaluated in :mod:`numba.types`), which took ``seconds`` (wall, with its callees)."""

    module: str
    name: str
    signature: tuple[str, ...]
    seconds: float

    def dispatcher(self):
        """The kernel's numba dispatcher."""
        from numba.core.registry import CPUDispatcher

        obj = getattr(importlib.import_module(self.module), self.name, None)
        if not isinstance(obj, CPUDispatcher):
            raise LookupError(f"{self.module}.{self.name} is not a numba kernel")
        return obj

    def types(self) -> tuple:
        """The argument types as numba types."""
        from numba import types

        ns = dict(vars(types))
        return tuple(eval(s, ns) for s in self.signature)  # noqa: S307 (our own manifest)


def manifest(fabric: str, path: Path = MANIFEST) -> list[Kernel]:
    """The recorded kernels of ``fabric``'s default run (empty when none are recorded)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [Kernel(k["module"], k["name"], tuple(k["signature"]), float(k["seconds"]))
            for k in data.get("fabrics", {}).get(fabric, [])]


def _index_exists(k: Kernel) -> bool:
    try:
        return Path(k.dispatcher()._cache._cache_file._index_path).exists()
    except Exception:  # a kernel that cannot be found or has no cache: nothing to warm
        return True


def cold(kernels: list[Kernel]) -> bool:
    """Whether numba's cache lacks the index of some kernel (so the run would compile it)."""
    return any(not _index_exists(k) for k in kernels)


def shares(kernels: list[Kernel], startup_s: float) -> tuple[list[Kernel], list[Kernel]]:
    """Split ``kernels`` into this process's share and the child's (module docstring), the
    child's counted from ``startup_s`` (its process's start). Each share keeps manifest order."""
    load = [0.0, startup_s]
    pick: dict[int, int] = {}
    for i in sorted(range(len(kernels)), key=lambda i: -kernels[i].seconds):
        p = 0 if load[0] <= load[1] else 1
        pick[i] = p
        load[p] += kernels[i].seconds
    own = [k for i, k in enumerate(kernels) if pick[i] == 0]
    child = [k for i, k in enumerate(kernels) if pick[i] == 1]
    return own, child


def compile_kernels(kernels: list[Kernel]) -> int:
    """Compile (or load from the cache) each kernel for its recorded types; returns how many
    were compiled or loaded (a stale entry is skipped)."""
    done = 0
    for k in kernels:
        try:
            disp, sig = k.dispatcher(), k.types()
        except Exception:
            continue
        if sig in disp.overloads:
            continue
        try:
            disp.compile(sig)
        except Exception:
            continue
        done += 1
    return done


def _startup_s(path: Path = MANIFEST) -> float:
    try:
        return float(json.loads(path.read_text()).get("child_startup_s", 1.5))
    except (OSError, ValueError):
        return 1.5


def compile_ahead(fabric: str) -> bool:
    """Compile ``fabric``'s manifest kernels in two processes when the cache is cold (module
    docstring); returns whether it did."""
    if os.environ.get("NETSIM_COMPILE_AHEAD", "1") == "0" or (os.cpu_count() or 1) < 2:
        return False
    kernels = manifest(fabric)
    if not kernels or not cold(kernels):
        return False
    own, child = shares(kernels, _startup_s())
    proc = None
    if child:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "netsim.kernels", fabric, "1"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        except OSError:
            own = kernels
    compile_kernels(own)
    if proc is not None:
        try:
            proc.wait(timeout=_CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    return True


# ---- recording the manifest (python -m netsim.kernels --write) ---------------------------------

_RECORD = r"""
import json, sys, time
from numba.core import event as ev
from numba.core.registry import CPUDispatcher
stack, out = [], []
class Listener(ev.Listener):
    def on_start(self, e):
        stack.append(time.perf_counter())
    def on_end(self, e):
        t0 = stack.pop()
        d = e.data["dispatcher"]
        if not stack and isinstance(d, CPUDispatcher) and d.py_func.__module__.startswith("netsim"):
            out.append(dict(module=d.py_func.__module__, name=d.py_func.__name__,
                            signature=[repr(t) for t in e.data["args"]],
                            seconds=round(time.perf_counter() - t0, 3)))
ev.register("numba:compile", Listener())
from netsim.scenario import run
run(dict(gpus=16, fabric=sys.argv[1]))
print(json.dumps(out))
"""


def record(fabric: str) -> list[dict]:
    """The top-level kernel compiles of ``fabric``'s default 16-GPU run, in a fresh process with
    an empty numba cache."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="netsim-kernels-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
        env["NUMBA_CACHE_DIR"] = cache
        res = subprocess.run([sys.executable, "-c", _RECORD, fabric], env=env, check=True,
                             capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _child_startup() -> float:
    code = ("import numba; from numba.core.registry import cpu_target;"
            " cpu_target.target_context.refresh(); import netsim.fabric.flow")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def write(path: Path = MANIFEST) -> None:
    """Record every fabric's kernels (:func:`record`) and write the manifest."""
    data = {"numba": __import__("numba").__version__,
            "child_startup_s": round(_child_startup(), 3),
            "fabrics": {f: record(f) for f in FABRICS}}
    path.write_text(json.dumps(data, indent=1) + "\n")
    for f, ks in data["fabrics"].items():
        print(f"{f}: {len(ks)} kernels, {sum(k['seconds'] for k in ks):.2f} s of compilation")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"]:
        write()
        return 0
    if len(argv) != 2 or argv[0] not in FABRICS or argv[1] not in ("0", "1"):
        print("usage: python -m netsim.kernels --write | FABRIC {0,1}", file=sys.stderr)
        return 2
    kernels = manifest(argv[0])
    own, child = shares(kernels, _startup_s())
    compile_kernels(child if argv[1] == "1" else own)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Finding user modules: topologies, workloads and experiments are plain Python files.

A NAME is looked up, in order, as ``<dir>/<kind>/NAME.py`` for each directory in the
``NETSIM_PATH`` environment variable and for the current directory, then in the modules shipped with
netsim (the package ``netsim.<kind>``: the repository's top-level ``topologies/``, ``workloads/`` and
``experiments/`` folders, installed as ``netsim.topologies`` etc.; found with
``importlib.util.find_spec``, so an editable install reads the checkout's folders).
``path/to/module.py`` (optionally ``:func``) names a file directly.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType

from netsim.errors import ConfigError, NetsimError, UnknownNameError

#: The folder holding the ``netsim`` package: the checkout for an editable install (used for
#: ``git rev-parse``), site-packages otherwise. Modules are no longer looked up here.
ROOT = Path(__file__).resolve().parent.parent

#: kinds shipped with netsim, as subpackages ``netsim.<kind>``
KINDS = ("topologies", "workloads", "experiments")
_SINGULAR = {"topologies": "topology", "workloads": "workload", "experiments": "experiment"}


def singular(kind: str) -> str:
    """``topologies`` -> ``topology`` (for messages)."""
    return _SINGULAR.get(kind, kind[:-1] if kind.endswith("s") else kind)


def shipped_dirs(kind: str) -> list[Path]:
    """The folders of the installed ``netsim.<kind>`` package ([] for another kind or if absent)."""
    if kind not in KINDS:
        return []
    try:
        spec = importlib.util.find_spec(f"netsim.{kind}")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def search_dirs(kind: str) -> list[Path]:
    """Folders searched for ``kind`` modules, first wins: NETSIM_PATH, cwd, then netsim's own."""
    dirs = [Path(p) / kind for p in os.environ.get("NETSIM_PATH", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / kind] + shipped_dirs(kind)
    out = []
    for d in dirs:
        p = d.resolve()
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    key = "netsim_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12] + "_" + path.stem
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    # a module may import its siblings (e.g. a quick experiment reusing a full one's plots)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    except BaseException as exc:
        del sys.modules[key]
        if isinstance(exc, Exception) and not isinstance(exc, NetsimError):
            raise ConfigError(user_code_error(path, exc, "cannot load")) from None
        raise
    finally:
        sys.path.remove(str(path.parent))
    return mod


def user_code_error(path: Path, exc: BaseException, what: str) -> str:
    """One line for an exception raised by the user's file ``path``: the file, the line the
    error is on (the innermost frame in that file; a syntax error's own line) and the user's
    own message, e.g. ``cannot load exp.py, line 3: ZeroDivisionError: division by zero``."""
    import traceback

    line = None
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == path:
        line = exc.lineno
        msg = f"SyntaxError: {exc.msg}"
    else:
        for fr in traceback.extract_tb(exc.__traceback__):
            try:
                if Path(fr.filename).resolve() == path:
                    line = fr.lineno
            except (OSError, ValueError):
                continue
        msg = f"{type(exc).__name__}: {exc}".rstrip(": ")
    msg = " ".join(msg.split())  # one line
    return f"{what} {path}" + (f", line {line}" if line else "") + f": {msg}"


def resolve(kind: str, ref: str, default_func: str = "build"):
    """Return ``(module, function)`` for ``NAME``, ``NAME:FUNC``, ``FILE.py`` or ``FILE.py:FUNC``."""
    name, func = ref, default_func
    if ":" in ref and not (len(ref) > 1 and ref[1] == ":" and ref.count(":") == 1):
        name, _, func = ref.rpartition(":")
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise UnknownNameError(f"{singular(kind)} file {name!r} "
                                   + ("is a directory" if path.is_dir() else "does not exist"))
        mod = _import_file(path)
    else:
        mod = None
        for d in search_dirs(kind):
            p = d / f"{name}.py"
            if p.is_file():
                mod = _import_file(p)
                break
        if mod is None:
            raise UnknownNameError(
                f"unknown {singular(kind)} {name!r}; expected one of {sorted(available(kind))} or a path to a .py file")
    fn = getattr(mod, func, None)
    if fn is None or not callable(fn):
        raise UnknownNameError(f"{singular(kind)} module {name!r} has no function {func!r}")
    return mod, fn


def available(kind: str) -> dict[str, Path]:
    """NAME -> file of every module of ``kind`` on the search path (first one wins)."""
    out: dict[str, Path] = {}
    for d in search_dirs(kind):
        for p in sorted(d.glob("*.py")):
            if not p.stem.startswith("_") and p.stem not in out:
                out[p.stem] = p
    return out


def describe(fn) -> list[tuple[str, object, str]]:
    """(parameter, default, annotation) of a builder function."""
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ann = p.annotation if p.annotation is not p.empty else ""
        out.append((p.name, None if p.default is p.empty else p.default,
                    ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))))
    return out

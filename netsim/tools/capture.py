"""Record the expert routing of a Hugging Face MoE model into a netsim trace: ``netsim capture``.

A forward hook on every MoE router of the model (the ``gate`` of each sparse MoE block: Mixtral,
Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2/V3 and other ``transformers`` >= 5 models whose routers
return ``(router_logits, top_k_weights, top_k_indices)``) records, for every token of every
sequence fed through the model, the k experts the router chose and the weights the block
multiplies their outputs by. Nothing is re-derived: the recorded choices are the router's own
output, so grouped / biased top-k rules (DeepSeek-V3's ``e_score_correction_bias`` and group
limit) are captured as the model applies them.

Two sources of tokens:

* **real text** -- strings (or files: ``.txt``, documents separated by blank lines; ``.jsonl``,
  one object a line with a ``text`` field), tokenized with the checkpoint's tokenizer and cut
  into sequences of at most ``seq_len`` tokens (file order kept);
* **mock** -- ``n`` sequences of ``seq_len`` token ids drawn uniformly from the vocabulary
  (``numpy`` seeded RNG): the "random token ids through the real model" of the DODOCO study,
  not the uniform random top-k of kernel benchmarks.

The trace is per-token (:mod:`netsim.workload.traces`): one row per (MoE layer, token) with
``layer`` (the decoder layer index, so a model whose first layers are dense starts above 0),
``sequence`` (the sequence's running index), ``token`` (position in the sequence),
``expert_ids[k]`` and ``gate_weights[k]`` (float32; the router's returned weights, so DeepSeek's
``routed_scaling_factor`` is in them), the k choices of a token ordered by decreasing weight
(ties by expert id), rows ordered by layer, then sequence, then position; ``n_experts`` is the
router's expert count. ``meta`` holds the model (path as given, ``model_type``, architecture,
experts, top-k, MoE layer ids, dtype, library versions) and the source (files with their SHA-256,
or the mock's seed and vocabulary size) and, per sequence, the document and chunk it came from.
It is written with :func:`netsim.workload.traces.write_trace` as ``.parquet`` or ``.npz`` (the
formats that keep ``meta``) and read back by ``--routing trace:FILE[:LAYER]``.

Sequences are batched ``batch_size`` at a time, right-padded, and padded positions are dropped
(causal attention: padding after a token does not change its hidden states; batched matrix
products may round differently from unbatched ones, so a near-tie can resolve differently).

The model is loaded with ``device_map=DEVICE`` when accelerate is installed (the weights go
straight to the GPU; ``auto`` spreads them over all visible GPUs), else on the CPU and moved;
the LM head runs on the last position only (``logits_to_keep=1``).

Needs the optional extra: ``pip install 'netsim[capture]'`` (torch, transformers, accelerate).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from netsim.errors import ConfigError

__all__ = ["CaptureError", "Router", "find_routers", "capture", "capture_model", "read_texts",
           "text_sequences", "mock_sequences"]

_FORMATS = (".parquet", ".pq", ".npz")
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


class CaptureError(ConfigError):
    """Bad input to ``netsim capture``: a model without MoE routers, a missing text file,
    torch / transformers not installed, an unsupported output suffix..."""


def _need_torch():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise CaptureError(f"netsim capture needs torch and transformers ({exc.name} is not"
                           f" installed): pip install 'netsim[capture]'") from None
    return torch, transformers


# ---------------------------------------------------------------------------------------------
# routers


@dataclass(frozen=True)
class Router:
    """One MoE router of a model: its decoder layer id, module name, expert count and top-k."""

    layer: int
    name: str
    n_experts: int
    top_k: int
    module: object = field(repr=False, compare=False)


def _is_router(name: str, mod, parent) -> bool:
    cls = type(mod).__name__
    if "Router" in cls and hasattr(mod, "top_k"):
        return True
    return (name.rsplit(".", 1)[-1] == "gate" and parent is not None
            and hasattr(parent, "experts") and hasattr(mod, "top_k"))


def find_routers(model) -> list[Router]:
    """Every MoE router of ``model``, in layer order (CaptureError if there is none)."""
    mods = dict(model.named_modules())
    found = []
    for i, (name, mod) in enumerate(mods.items()):
        parent = mods.get(name.rsplit(".", 1)[0]) if "." in name else None
        if not name or not _is_router(name, mod, parent):
            continue
        m = _LAYER_RE.search("." + name)
        layer = int(m.group(1)) if m else len(found)
        n_exp = getattr(mod, "num_experts", None) or getattr(mod, "n_routed_experts", None)
        if n_exp is None and hasattr(mod, "weight"):
            n_exp = int(mod.weight.shape[0])
        found.append(Router(layer=layer, name=name, n_experts=int(n_exp), top_k=int(mod.top_k),
                            module=mod))
    if not found:
        raise CaptureError(f"model {type(model).__name__} has no MoE router (a 'gate' module of"
                           f" a block with experts, or a *Router module); expected a Mixtral,"
                           f" Qwen-MoE, OLMoE or DeepSeek-style model")
    layers = [r.layer for r in found]
    if len(set(layers)) != len(layers):
        raise CaptureError(f"model {type(model).__name__}: routers {[r.name for r in found]}"
                           f" map to repeated layer ids {layers}; expected one router a layer")
    if len({(r.n_experts, r.top_k) for r in found}) != 1:
        raise CaptureError(f"model {type(model).__name__}: routers disagree on (experts, top_k):"
                           f" {sorted({(r.n_experts, r.top_k) for r in found})}; a netsim trace"
                           f" has one expert count and top-k")
    return sorted(found, key=lambda r: r.layer)


# ---------------------------------------------------------------------------------------------
# token sources


@dataclass
class Sequences:
    """Token-id sequences to feed the model, with where each came from."""

    ids: list[np.ndarray]
    source: dict
    origin: list[tuple[int, int]]  # (document, chunk) per sequence


def read_texts(paths: Iterable) -> tuple[list[str], list[dict]]:
    """Documents of text files: ``.txt`` (blank-line separated) or ``.jsonl`` (``text`` field).
    Returns the documents and, per file, its path, SHA-256 and document count."""
    docs, files = [], []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise CaptureError(f"text file {str(path)!r} does not exist; expected a .txt or"
                               f" .jsonl file")
        raw = p.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CaptureError(f"text file {str(path)!r} is not UTF-8 (byte {exc.start})") from None
        n0 = len(docs)
        if p.suffix.lower() in (".jsonl", ".ndjson"):
            for i, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise CaptureError(f"text file {str(path)!r}: line {i} is not JSON") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise CaptureError(f"text file {str(path)!r}: line {i} has no string field"
                                       f" 'text'")
                if obj["text"].strip():
                    docs.append(obj["text"])
        else:
            docs += [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]
        files.append({"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(),
                      "documents": len(docs) - n0})
    if not docs:
        raise CaptureError(f"text files {[str(p) for p in paths]} hold no text")
    return docs, files


def text_sequences(texts: Sequence[str], tokenize: Callable[[str], list[int]], seq_len: int,
                   max_sequences: int | None = None, files: list[dict] | None = None) -> Sequences:
    """Tokenize each document and cut it into sequences of at most ``seq_len`` tokens."""
    _check_len(seq_len)
    ids, origin = [], []
    for d, text in enumerate(texts):
        toks = np.asarray(tokenize(text), dtype=np.int64).ravel()
        for c, start in enumerate(range(0, len(toks), seq_len)):
            if max_sequences is not None and len(ids) >= max_sequences:
                break
            ids.append(toks[start:start + seq_len])
            origin.append((d, c))
    if not ids:
        raise CaptureError("the text source gives no tokens; expected non-empty text")
    src = {"kind": "text", "documents": len(texts), "seq_len": seq_len}
    if files:
        src["files"] = files
    return Sequences(ids, src, origin)


def mock_sequences(n: int, seq_len: int, vocab_size: int, seed: int = 0) -> Sequences:
    """``n`` sequences of ``seq_len`` token ids uniform on ``[0, vocab_size)`` (the study's mock)."""
    _check_len(seq_len)
    if n < 1:
        raise CaptureError(f"--mock {n}: expected a positive number of sequences")
    rng = np.random.default_rng(seed)
    ids = [rng.integers(0, vocab_size, seq_len, dtype=np.int64) for _ in range(n)]
    src = {"kind": "mock", "distribution": "uniform token ids", "seed": seed,
           "vocab_size": int(vocab_size), "sequences": n, "seq_len": seq_len}
    return Sequences(ids, src, [(i, 0) for i in range(n)])


def _check_len(seq_len):
    if int(seq_len) < 1:
        raise CaptureError(f"--seq-len {seq_len}: expected a positive number of tokens")


# ---------------------------------------------------------------------------------------------
# capture


def capture_model(model, seqs: Sequences, batch_size: int = 8, model_name: str = "",
                  pad_id: int = 0):
    """Feed ``seqs`` through ``model`` (already on its device, in eval mode) and return the
    per-token :class:`~netsim.workload.traces.Trace` of its routers."""
    torch, transformers = _need_torch()
    from netsim.version import __version__
    from netsim.workload.traces import Trace

    if batch_size < 1:
        raise CaptureError(f"--batch-size {batch_size}: expected a positive integer")
    routers = find_routers(model)
    got: dict[int, list] = {r.layer: [] for r in routers}

    def hook_for(r: Router):
        def hook(_mod, _inputs, out):
            if not (isinstance(out, tuple) and len(out) >= 3):
                raise CaptureError(
                    f"router {r.name} ({type(r.module).__name__}) returned"
                    f" {type(out).__name__}; expected (router_logits, top_k_weights,"
                    f" top_k_indices) as transformers >= 5 routers return")
            w, idx = out[1], out[2]
            got[r.layer].append((idx.detach().reshape(-1, r.top_k).to("cpu", torch.int64),
                                 w.detach().reshape(-1, r.top_k).to("cpu", torch.float32)))
        return hook

    handles = [r.module.register_forward_hook(hook_for(r)) for r in routers]
    device = model.get_input_embeddings().weight.device if hasattr(
        model, "get_input_embeddings") else next(model.parameters()).device
    # only the routers' outputs are kept: skip the LM head over every position when the model
    # allows it (transformers >= 4.45 causal LMs take logits_to_keep)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(
        model.forward).parameters else {}
    masks = []
    try:
        with torch.inference_mode():
            for b in range(0, len(seqs.ids), batch_size):
                batch = seqs.ids[b:b + batch_size]
                width = max(len(s) for s in batch)
                ids = np.full((len(batch), width), pad_id, np.int64)
                mask = np.zeros((len(batch), width), np.int64)
                for i, s in enumerate(batch):
                    ids[i, :len(s)] = s
                    mask[i, :len(s)] = 1
                model(input_ids=torch.from_numpy(ids).to(device),
                      attention_mask=torch.from_numpy(mask).to(device), use_cache=False,
                      **extra)
                masks.append(mask.ravel().astype(bool))
    finally:
        for h in handles:
            h.remove()

    keep = np.concatenate(masks)
    n_tok = int(keep.sum())
    seq_id = np.repeat(np.arange(len(seqs.ids), dtype=np.int64), [len(s) for s in seqs.ids])
    pos = np.concatenate([np.arange(len(s), dtype=np.int64) for s in seqs.ids])
    k = routers[0].top_k
    layer_col, ids_col, w_col = [], [], []
    for r in routers:
        if len(got[r.layer]) != len(masks):
            raise CaptureError(f"router {r.name} ran {len(got[r.layer])} times for"
                               f" {len(masks)} batches; expected once a batch")
        idx = torch.cat([x[0] for x in got[r.layer]]).numpy()
        w = torch.cat([x[1] for x in got[r.layer]]).numpy()
        if len(idx) != len(keep):
            raise CaptureError(f"router {r.name} saw {len(idx)} tokens for {len(keep)}"
                               f" positions; expected one routing decision a position")
        idx, w = idx[keep], w[keep]
        order = np.lexsort((idx, -w), axis=1) if k > 1 else np.zeros_like(idx)
        ids_col.append(np.take_along_axis(idx, order, axis=1))
        w_col.append(np.take_along_axis(w, order, axis=1))
        layer_col.append(np.full(n_tok, r.layer, np.int64))
    cfg = getattr(model, "config", None)
    meta = {
        "model": {"name": model_name or getattr(cfg, "_name_or_path", "") or "",
                  "model_type": getattr(cfg, "model_type", None),
                  "architecture": type(model).__name__,
                  "n_experts": routers[0].n_experts, "top_k": k,
                  "moe_layers": [r.layer for r in routers],
                  "num_hidden_layers": getattr(cfg, "num_hidden_layers", None),
                  "hidden_size": getattr(cfg, "hidden_size", None),
                  "moe_intermediate_size": (getattr(cfg, "moe_intermediate_size", None)
                                            or getattr(cfg, "intermediate_size", None)),
                  "dtype": str(next(model.parameters()).dtype).replace("torch.", "")},
        "source": seqs.source,
        "sequences": {"count": len(seqs.ids), "tokens": [len(s) for s in seqs.ids],
                      "document": [o[0] for o in seqs.origin],
                      "chunk": [o[1] for o in seqs.origin]},
        "versions": {"netsim": __version__, "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }
    L = len(routers)
    return Trace(layer=np.concatenate(layer_col), token=np.tile(pos, L),
                 expert_ids=np.concatenate(ids_col), gate_weights=np.concatenate(w_col),
                 sequence=np.tile(seq_id, L), n_experts=routers[0].n_experts,
                 path="<capture>", meta=meta)


def _check_out(out) -> Path:
    p = Path(out)
    if p.suffix.lower() not in _FORMATS:
        raise CaptureError(f"--out {str(out)!r} has suffix {p.suffix!r}; expected .parquet or"
                           f" .npz (the trace formats that keep the model and source)")
    if not p.parent.is_dir():
        raise CaptureError(f"--out {str(out)!r}: folder {str(p.parent)!r} does not exist")
    return p


def capture(model: str, out, texts: Sequence[str] | None = None, text_files: Sequence = (),
            mock: int | None = None, seq_len: int = 512, max_sequences: int | None = None,
            batch_size: int = 8, seed: int = 0, tokenizer: str | None = None,
            device: str | None = None, dtype: str = "auto", download: bool = False):
    """Load checkpoint ``model`` (a folder, or a hub id with ``download``), feed it real text
    (``texts`` strings and / or ``text_files``) or ``mock`` random-token sequences, and write
    the routing trace to ``out`` (.parquet / .npz). Returns (path, trace)."""
    torch, transformers = _need_torch()
    from netsim.workload.traces import write_trace

    p = _check_out(out)
    have_text = bool(texts) or bool(text_files)
    if have_text == (mock is not None):
        raise CaptureError("netsim capture needs exactly one source: --text FILE (real text) or"
                           " --mock N (random token ids)")
    _check_len(seq_len)
    if mock is not None and mock < 1:
        raise CaptureError(f"--mock {mock}: expected a positive number of sequences")
    if batch_size < 1:
        raise CaptureError(f"--batch-size {batch_size}: expected a positive integer")
    if max_sequences is not None and max_sequences < 1:
        raise CaptureError(f"--max-sequences {max_sequences}: expected a positive integer")
    # a missing or unreadable text file fails before the model loads
    file_docs, files = read_texts(text_files) if text_files else ([], [])
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise CaptureError(f"--dtype {dtype!r}; expected auto, float32, bfloat16 or float16")
    if not download and not Path(model).is_dir():
        raise CaptureError(f"model {model!r} is not a folder; expected a local checkpoint"
                           f" (config.json + weights), or pass --download to fetch a hub id")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kw = {"local_files_only": not download}
    dt = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        import accelerate  # noqa: F401 -- lets from_pretrained place the weights directly
        have_accelerate = True
    except ImportError:
        have_accelerate = False
    if device == "auto" and not have_accelerate:
        raise CaptureError("--device auto (device_map='auto') needs accelerate: pip install"
                           " 'netsim[capture]'")
    try:
        if have_accelerate:  # weights go straight to the device, not through host memory
            m = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=dt,
                                                                  device_map=device, **kw)
        else:
            m = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=dt, **kw)
            m = m.to(device)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaptureError(f"model {model!r} cannot be loaded: {first}") from None
    m.eval()
    if have_text:
        try:
            tok = transformers.AutoTokenizer.from_pretrained(tokenizer or model, **kw)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise CaptureError(f"tokenizer {tokenizer or model!r} cannot be loaded: {first};"
                               f" pass --tokenizer FOLDER") from None
        docs = list(texts or []) + file_docs
        if texts:
            files.append({"strings": len(texts)})
        seqs = text_sequences(docs, lambda s: tok(s)["input_ids"], seq_len, max_sequences,
                              files)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    else:
        vocab = int(m.config.vocab_size)
        seqs = mock_sequences(mock if max_sequences is None else min(mock, max_sequences),
                              seq_len, vocab, seed)
        pad = 0
    trace = capture_model(m, seqs, batch_size=batch_size, model_name=model, pad_id=pad)
    return write_trace(trace, p), trace

"""netsim capture: routing recorded from tiny randomly initialised Hugging Face MoE models.

Models are built from their configs (2 decoder layers, hidden 32, 8 experts, top-2; no download)
and run on the CPU. The recorded choices are checked against top-k recomputed from the router's
own logits, and the written trace is read back and simulated through ``trace:FILE``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="netsim capture needs torch: pip install"
                                            " 'netsim[capture]'")
transformers = pytest.importorskip("transformers", reason="netsim capture needs transformers:"
                                                          " pip install 'netsim[capture]'")

from netsim.tools import capture as cap  # noqa: E402
from netsim.workload.traces import read_trace, trace_layers  # noqa: E402

E, K, VOCAB = 8, 2, 96
COMMON = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _configs():
    out = {}
    if hasattr(transformers, "MixtralConfig"):
        out["mixtral"] = lambda: transformers.MixtralConfig(num_local_experts=E,
                                                            num_experts_per_tok=K, **COMMON)
    if hasattr(transformers, "Qwen2MoeConfig"):
        out["qwen2_moe"] = lambda: transformers.Qwen2MoeConfig(
            num_experts=E, num_experts_per_tok=K, moe_intermediate_size=16,
            shared_expert_intermediate_size=32, **COMMON)
    if hasattr(transformers, "Qwen3MoeConfig"):
        out["qwen3_moe"] = lambda: transformers.Qwen3MoeConfig(
            num_experts=E, num_experts_per_tok=K, moe_intermediate_size=16, head_dim=8, **COMMON)
    if hasattr(transformers, "OlmoeConfig"):
        out["olmoe"] = lambda: transformers.OlmoeConfig(num_experts=E, num_experts_per_tok=K,
                                                        **COMMON)
    if hasattr(transformers, "DeepseekV2Config"):
        # DeepSeek-V2(-Lite): softmax scores, group-limited greedy (2 groups of 4, top-1 group)
        out["deepseek_v2"] = lambda: transformers.DeepseekV2Config(
            n_routed_experts=E, num_experts_per_tok=K, moe_intermediate_size=16, n_group=2,
            topk_group=1, topk_method="group_limited_greedy", first_k_dense_replace=0,
            n_shared_experts=1, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
            qk_nope_head_dim=8, v_head_dim=8, **(COMMON | {"num_key_value_heads": 4}))
    if hasattr(transformers, "DeepseekV3Config"):
        # MLA attention; 2 groups of 4 experts, top-1 group; layer 0 dense (MoE from layer 1)
        out["deepseek_v3"] = lambda: transformers.DeepseekV3Config(
            n_routed_experts=E, num_experts_per_tok=K, moe_intermediate_size=16, n_group=2,
            topk_group=1, first_k_dense_replace=1, n_shared_experts=1, kv_lora_rank=16,
            q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8,
            **(COMMON | {"num_key_value_heads": 4}))
    return out


CONFIGS = _configs()


def _model(family, seed=0):
    torch.manual_seed(seed)
    m = transformers.AutoModelForCausalLM.from_config(CONFIGS[family]()).eval()
    if family == "deepseek_v3":
        # a non-zero score-correction bias, so the test sees the biased, group-limited rule
        for r in cap.find_routers(m):
            r.module.e_score_correction_bias.copy_(torch.randn(E) * 0.3)
    return m


def _reference_topk(family, router, logits):
    """Top-k experts recomputed from the router's logits with the family's published rule."""
    if family == "deepseek_v3":
        s = logits.float().sigmoid() + router.e_score_correction_bias
        # the config's n_group=2, topk_group=1: a group scores its best two experts
        g = s.view(-1, 2, E // 2).topk(2, dim=-1)[0].sum(-1)
        keep_g = g.topk(1, dim=-1)[1]
        gmask = torch.zeros_like(g).scatter_(1, keep_g, 1).bool()
        emask = gmask.repeat_interleave(E // 2, dim=1)
        return s.masked_fill(~emask, float("-inf")).topk(K, dim=-1)[1]
    if family == "deepseek_v2":
        # the config's n_group=2, topk_group=1: a group scores its best expert
        s = torch.softmax(logits.float(), dim=-1)
        g = s.view(-1, 2, E // 2).max(dim=-1).values
        gmask = torch.zeros_like(g).scatter_(1, g.topk(1, dim=-1)[1], 1).bool()
        return s.masked_fill(~gmask.repeat_interleave(E // 2, dim=1), 0.0).topk(K, dim=-1)[1]
    return torch.softmax(logits.float(), dim=-1).topk(K, dim=-1)[1]


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_choices_equal_the_routers_own_topk(family, device):
    m = _model(family).to(device)
    routers = cap.find_routers(m)
    want_layers = [1] if family == "deepseek_v3" else [0, 1]
    assert [r.layer for r in routers] == want_layers
    assert all((r.n_experts, r.top_k) == (E, K) for r in routers)
    logits = {r.layer: [] for r in routers}
    hooks = [r.module.register_forward_hook(
        lambda mod, i, o, L=r.layer: logits[L].append(o[0].detach().float()))
        for r in routers]
    lens = [7, 12, 3, 12, 9]
    rng = np.random.default_rng(1)
    seqs = cap.Sequences([rng.integers(3, VOCAB, n) for n in lens], {"kind": "test"},
                         [(i, 0) for i in range(len(lens))])
    t = cap.capture_model(m, seqs, batch_size=2, model_name=f"tiny-{family}")
    for h in hooks:
        h.remove()
    n = sum(lens)
    assert t.n_rows == n * len(routers) and t.top_k == K and t.n_experts == E
    assert t.layers.tolist() == want_layers
    for r in routers:
        rows = t.rows(r.layer)
        assert t.sequence[rows].tolist() == np.repeat(np.arange(len(lens)), lens).tolist()
        assert t.token[rows].tolist() == np.concatenate([np.arange(x) for x in lens]).tolist()
        # the router's logits of the real (unpadded) positions, batch by batch
        keep = []
        for b in range(0, len(lens), 2):
            w = max(lens[b:b + 2])
            keep += [j < x for x in lens[b:b + 2] for j in range(w)]
        lg = torch.cat(logits[r.layer])[torch.tensor(keep, device=device)]
        assert lg.shape == (n, E) and lg.std() > 0          # not a degenerate all-tie router
        ref = np.sort(_reference_topk(family, r.module, lg).cpu().numpy(), axis=1)
        assert (np.sort(t.expert_ids[rows], axis=1) == ref).all()
        w = t.gate_weights[rows]
        assert (np.diff(w, axis=1) <= 0).all() and (w > 0).all()  # ordered by weight
    assert t.meta["model"]["name"] == f"tiny-{family}"
    assert t.meta["model"]["moe_layers"] == want_layers
    assert t.meta["sequences"]["tokens"] == lens


def test_batching_does_not_change_the_trace():
    m = _model("mixtral")
    rng = np.random.default_rng(2)
    lens = [5, 11, 8]
    seqs = cap.Sequences([rng.integers(3, VOCAB, n) for n in lens], {}, [(i, 0) for i in
                                                                        range(3)])
    a = cap.capture_model(m, seqs, batch_size=1)
    b = cap.capture_model(m, seqs, batch_size=3)
    assert (a.expert_ids == b.expert_ids).all()
    np.testing.assert_allclose(a.gate_weights, b.gate_weights, rtol=1e-5)


def _tiny_checkpoint(tmp_path, family="mixtral"):
    """A saved tiny model and a word-level tokenizer: what a user's checkpoint folder holds."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    d = tmp_path / f"tiny-{family}"
    _model(family).save_pretrained(d)
    words = ("def return if else for in range print the a of and to is "
             "import class self value list").split()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {w: i + 4 for i, w in
                                                           enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>",
                                                bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")
    fast.save_pretrained(d)
    return d


def test_cli_text_capture_reads_back_and_runs(tmp_path):
    from click.testing import CliRunner

    from netsim.cli import main
    from netsim.scenario import run

    ck = _tiny_checkpoint(tmp_path)
    text = tmp_path / "code.txt"
    text.write_text("def f ( a ) : return a\n\nfor i in range ( 10 ) : print i\n"
                    "if a is the value : return self\n\nimport list\n" * 4)
    out = tmp_path / "routing.parquet"
    res = CliRunner().invoke(main, ["capture", str(ck), "--text", str(text), "--out", str(out),
                                    "--seq-len", "16", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "trace:" in res.output
    assert f"NETSIM_ROUTING_TRACE={out} netsim sweep routing_study" in res.output
    t = read_trace(out, cache=False)
    assert t.kind == "tokens" and t.top_k == K and t.n_experts == E
    assert trace_layers(out) == [0, 1]
    assert t.meta["model"]["model_type"] == "mixtral"
    assert t.meta["source"]["kind"] == "text"
    assert t.meta["source"]["files"][0]["path"] == str(text)
    assert len(t.meta["source"]["files"][0]["sha256"]) == 64
    docs = t.meta["sequences"]["document"]
    assert sorted(set(docs)) == list(range(t.meta["source"]["documents"]))
    assert len(np.unique(t.sequence)) == t.meta["sequences"]["count"] > 1
    row = run(topology="crossbar", gpus=4, workload="mixtral_8x7b", routing=f"trace:{out}:1",
              tokens_per_gpu=32, fabric="analytic")
    assert row["layer_s"] > 0 and row["bytes_total"] > 0
    # the run's per-expert counts are the trace's: a window of 128 consecutive layer-1 records
    assert 0 <= row["gini"] < 1


def test_mock_capture_npz(tmp_path):
    from netsim.scenario import run

    ck = _tiny_checkpoint(tmp_path, "olmoe")
    path, t = cap.capture(str(ck), tmp_path / "mock.npz", mock=6, seq_len=20, seed=3,
                          device="cpu")
    back = read_trace(path, cache=False)
    assert back.n_rows == 2 * 6 * 20 and (back.expert_ids == t.expert_ids).all()
    assert back.meta["source"] == {"kind": "mock", "distribution": "uniform token ids",
                                   "seed": 3, "vocab_size": VOCAB, "sequences": 6, "seq_len": 20}
    assert json.dumps(back.meta)  # JSON-able
    again = cap.capture(str(ck), tmp_path / "mock2.npz", mock=6, seq_len=20, seed=3,
                        device="cpu")[1]
    assert (again.expert_ids == t.expert_ids).all()  # same seed, same trace
    row = run(topology="crossbar", gpus=2, workload="olmoe_1b_7b", routing=f"trace:{path}",
              experts=E, top_k=K, tokens_per_gpu=40, fabric="analytic")
    assert row["bytes_total"] > 0


def test_capture_errors(tmp_path):
    from click.testing import CliRunner

    from netsim.cli import main

    ck = _tiny_checkpoint(tmp_path)
    r = CliRunner()
    cases = [
        (["capture", str(ck), "--out", str(tmp_path / "x.parquet")], "exactly one source"),
        (["capture", str(ck), "--mock", "2", "--out", str(tmp_path / "x.jsonl")], "'.jsonl'"),
        (["capture", str(tmp_path / "nope"), "--mock", "2", "--out",
          str(tmp_path / "x.parquet")], "is not a folder"),
        (["capture", str(ck), "--mock", "0", "--out", str(tmp_path / "x.parquet")],
         "--mock 0"),
        (["capture", str(ck), "--text", str(tmp_path / "missing.txt"), "--out",
          str(tmp_path / "x.parquet")], "missing.txt"),
    ]
    for args, msg in cases:
        res = r.invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.output and "Traceback" not in res.output
        errors = [x for x in res.output.splitlines() if x.startswith("netsim: error:")]
        assert len(errors) == 1 and msg in errors[0], res.output
    with pytest.raises(cap.CaptureError, match="no MoE router"):
        cap.find_routers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_text_sources(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("first doc\nstill first\n\n\nsecond doc\n\n  \nthird\n")
    jl = tmp_path / "b.jsonl"
    jl.write_text(json.dumps({"text": "from jsonl"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    docs, files = cap.read_texts([txt, jl])
    assert docs == ["first doc\nstill first", "second doc", "third", "from jsonl", "two"]
    assert [f["documents"] for f in files] == [3, 2]
    s = cap.text_sequences(["a b c d e f g", "h i"], lambda t: [ord(c) for c in t.split()[0]]
                           * len(t.split()), seq_len=3)
    assert [len(x) for x in s.ids] == [3, 3, 1, 2] and s.origin == [(0, 0), (0, 1), (0, 2),
                                                                    (1, 0)]
    assert len(cap.text_sequences(["a b c d e f g"], lambda t: list(range(7)), 3,
                                  max_sequences=2).ids) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(cap.CaptureError, match="line 2 has no string field 'text'"):
        cap.read_texts([bad])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(cap.CaptureError, match="hold no text"):
        cap.read_texts([tmp_path / "empty.txt"])
    m = cap.mock_sequences(3, 5, 50, seed=1)
    assert all(len(x) == 5 and x.min() >= 0 and x.max() < 50 for x in m.ids)
    assert all((a == b).all() for a, b in zip(m.ids, cap.mock_sequences(3, 5, 50, seed=1).ids))


@pytest.mark.parametrize("accelerate", [True, False])
def test_loading_with_and_without_accelerate(tmp_path, monkeypatch, accelerate):
    import sys

    if accelerate:
        pytest.importorskip("accelerate", reason="accelerate not installed")
    else:
        monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate -> ImportError
        with pytest.raises(cap.CaptureError, match="needs accelerate"):
            cap.capture(str(tmp_path), tmp_path / "x.npz", mock=1, device="auto")
    ck = _tiny_checkpoint(tmp_path, "qwen3_moe")
    path, t = cap.capture(str(ck), tmp_path / "q.npz", mock=2, seq_len=8, device="cpu")
    assert read_trace(path, cache=False).n_rows == 2 * 2 * 8 and t.meta["model"]["dtype"] == \
        "float32"


@CUDA
def test_cuda_bf16_capture(tmp_path):
    ck = _tiny_checkpoint(tmp_path, "deepseek_v3")
    path, t = cap.capture(str(ck), tmp_path / "g.parquet", mock=4, seq_len=32, device="cuda",
                          dtype="bfloat16")
    back = read_trace(path, cache=False)
    assert back.meta["model"]["dtype"] == "bfloat16" and back.layers.tolist() == [1]
    assert back.n_rows == 4 * 32 and back.expert_ids.max() < E

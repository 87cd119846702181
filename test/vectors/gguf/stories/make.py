#!/usr/bin/env python3
"""
GGUF files of Karpathy's stories260K (llama2.c, MIT: a 260K-parameter LLaMA trained on
TinyStories) for `ndiff measure` and test/gguf-measure.test.ts, and three deterministic
variations of it. No fine-tune: version 2 is the weights moved by seeded noise, said as such.

  stories260K.bin: git show 31d7cd1d04377d0f0a60f519aa1effd774c8eb57 of
  github.com/plctlab/rvspoc-s2311-llama2 (the llama2.c checkpoint, legacy format v0).

  python3 test/vectors/gguf/stories/make.py PATH/stories260K.bin

Writes, beside this script (F16, gguf-py 0.19.0's writer):
  v1.gguf    the checkpoint as trained
  v2.gguf    v1 with every matrix moved by seeded Gaussian noise of 8% of its RMS (seed 2)
  near.gguf  v1 + 0.9 (v2 - v1): most of the way to v2 (what a good lossy update gives)
  away.gguf  v1 moved by other noise of the same size (seed 3): no closer to v2 than v1
  logits.json  the checkpoint's next-token logits for a fixed token sequence, by a NumPy forward
               pass of llama2.c's model.py: the runtime's output is checked against them

Its 512-token sentencepiece vocabulary (tok512) is not in that repository. The vocabulary written
here keeps what sentencepiece's layout fixes: <unk>, <s>, </s> at 0..2 and the 256 byte-fallback
tokens <0x00>..<0xFF> at 3..258; the 253 merged pieces (259..511) are unknown and written as
unused tokens llama.cpp never produces. Text therefore reaches the model as UTF-8 bytes, which it
saw rarely in training: perplexities are high; how far one version is from another is what the
files are for.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf

HERE = Path(__file__).resolve().parent


def read_checkpoint(path):
    raw = Path(path).read_bytes()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // n_heads
    kv_dim = n_kv * hs
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        out = data[at:at + n].reshape(shape).copy()
        at += n
        return out

    w = {"tok": take(vocab, dim), "att_norm": take(n_layers, dim), "wq": take(n_layers, dim, dim),
         "wk": take(n_layers, kv_dim, dim), "wv": take(n_layers, kv_dim, dim), "wo": take(n_layers, dim, dim),
         "ffn_norm": take(n_layers, dim), "w1": take(n_layers, hidden, dim), "w2": take(n_layers, dim, hidden),
         "w3": take(n_layers, hidden, dim), "out_norm": take(dim)}
    take(seq_len, hs // 2)
    take(seq_len, hs // 2)
    w["out"] = w["tok"] if shared else take(vocab, dim)
    assert at == data.size, f"{data.size - at} floats left over: not a legacy llama2.c checkpoint"
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab, seq_len=seq_len, shared=shared)
    return cfg, w


def tensors(cfg, w):
    """GGUF names and arrays (NumPy shape (out, in), as llama.cpp reads them; llama2.c's q/k are in Meta's pair order already)."""
    out = [("token_embd.weight", w["tok"])]
    for i in range(cfg["n_layers"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", w["att_norm"][i]), (b + "attn_q.weight", w["wq"][i]), (b + "attn_k.weight", w["wk"][i]),
                (b + "attn_v.weight", w["wv"][i]), (b + "attn_output.weight", w["wo"][i]), (b + "ffn_norm.weight", w["ffn_norm"][i]),
                (b + "ffn_gate.weight", w["w1"][i]), (b + "ffn_down.weight", w["w2"][i]), (b + "ffn_up.weight", w["w3"][i])]
    out.append(("output_norm.weight", w["out_norm"]))
    if not cfg["shared"]:
        out.append(("output.weight", w["out"]))
    return out


def write(path, cfg, named, label):
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_name(f"stories260K {label}")
    wr.add_context_length(cfg["seq_len"])
    wr.add_embedding_length(cfg["dim"])
    wr.add_block_count(cfg["n_layers"])
    wr.add_feed_forward_length(cfg["hidden"])
    wr.add_head_count(cfg["n_heads"])
    wr.add_head_count_kv(cfg["n_kv"])
    wr.add_rope_dimension_count(cfg["dim"] // cfg["n_heads"])
    wr.add_rope_freq_base(10000.0)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    wr.add_tokenizer_model("llama")
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [f"<unused{i}>" for i in range(259, cfg["vocab"])]
    types = [2, 3, 3] + [6] * 256 + [5] * (cfg["vocab"] - 259)
    wr.add_token_list(toks)
    wr.add_token_scores([0.0] * cfg["vocab"])
    wr.add_token_types(types)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_unk_token_id(0)
    wr.add_add_bos_token(True)
    wr.add_add_eos_token(False)
    for name, a in named:
        # Norm weights stay F32 (llama.cpp's converters keep 1-D tensors so).
        wr.add_tensor(name, a.astype(np.float16) if a.ndim == 2 else a.astype(np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def forward(cfg, named, tokens):
    """llama2.c's model.py forward pass in NumPy (float64): logits after each token of `tokens`."""
    t = dict(named)
    dim, nh, nkv = cfg["dim"], cfg["n_heads"], cfg["n_kv"]
    hs = dim // nh
    f16 = lambda a: a.astype(np.float16).astype(np.float64) if a.ndim == 2 else a.astype(np.float32).astype(np.float64)
    t = {k: f16(v) for k, v in t.items()}
    rms = lambda x, g: x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * g
    n = len(tokens)
    x = t["token_embd.weight"][tokens]
    freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2) / hs))
    ang = np.outer(np.arange(n), freqs)
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(q):  # q: (n, heads, hs), adjacent pairs rotated
        a, b = q[..., 0::2], q[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        out = np.empty_like(q)
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
        return out

    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(cfg["n_layers"]):
        b = f"blk.{i}."
        h = rms(x, t[b + "attn_norm.weight"])
        q = rope((h @ t[b + "attn_q.weight"].T).reshape(n, nh, hs))
        k = rope((h @ t[b + "attn_k.weight"].T).reshape(n, nkv, hs))
        v = (h @ t[b + "attn_v.weight"].T).reshape(n, nkv, hs)
        rep = nh // nkv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hs) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", att, v).reshape(n, dim)
        x = x + o @ t[b + "attn_output.weight"].T
        h = rms(x, t[b + "ffn_norm.weight"])
        g = h @ t[b + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ t[b + "ffn_up.weight"].T)) @ t[b + "ffn_down.weight"].T
    x = rms(x, t["output_norm.weight"])
    return x @ t.get("output.weight", t["token_embd.weight"]).T


def moved(named, seed, scale):
    rng = np.random.default_rng(seed)
    out = []
    for name, a in named:
        if a.ndim == 2:
            r = float(np.sqrt((a.astype(np.float64) ** 2).mean()))
            a = (a + rng.standard_normal(a.shape) * scale * r).astype(np.float32)
        out.append((name, a))
    return out


def main():
    cfg, w = read_checkpoint(sys.argv[1])
    v1 = tensors(cfg, w)
    v2 = moved(v1, 2, 0.08)
    near = [(n, a + 0.9 * (b - a)) for (n, a), (_, b) in zip(v1, v2)]
    away = moved(v1, 3, 0.08)
    for name, named in (("v1", v1), ("v2", v2), ("near", near), ("away", away)):
        write(HERE / f"{name}.gguf", cfg, named, name)
    # "Once upon a time" as bytes after <s>: byte b is token 3 + b.
    tokens = [1] + [3 + b for b in "Once upon a time".encode()]
    logits = forward(cfg, v1, tokens)
    (HERE / "logits.json").write_text(json.dumps({"model": "v1.gguf", "tokens": tokens, "logits": [[round(float(v), 5) for v in row] for row in logits]}) + "\n")


if __name__ == "__main__":
    main()

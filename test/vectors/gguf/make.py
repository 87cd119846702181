#!/usr/bin/env python3
"""Makes the GGUF test fixtures of test/gguf-*.test.ts with llama.cpp's own Python package
(gguf-py, `pip install gguf==0.19.0`): its writer lays the files out and its quantizer gives
Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 blocks byte for byte as llama.cpp's does. K-quant blocks
(which gguf-py dequantizes but does not make) are built from seeded random bytes with finite
scales. expected.json holds, for every tensor, the SHA-256 of gguf-py's dequantized float32
values (little-endian), which the tests compare with this project's dequantizers.

Run from the repository root: python3 test/vectors/gguf/make.py (deterministic: same bytes every run).
"""
import hashlib
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V
from gguf.quants import dequantize, quantize

HERE = os.path.dirname(os.path.abspath(__file__))
N_EMBD = 32
N_VOCAB = 8
TOKENS = ["<unk>", "<s>", "</s>", "▁a", "▁b", "ab", "<0x0A>", "é"]


def tiny_llama_tensors():
    """A one-layer llama of width 32: (name, row-major shape) with seeded random weights."""
    rng = np.random.default_rng(20261127)
    shapes = [
        ("token_embd.weight", (N_VOCAB, N_EMBD)),
        ("blk.0.attn_norm.weight", (N_EMBD,)),
        ("blk.0.attn_q.weight", (N_EMBD, N_EMBD)),
        ("blk.0.attn_k.weight", (N_EMBD, N_EMBD)),
        ("blk.0.attn_v.weight", (N_EMBD, N_EMBD)),
        ("blk.0.attn_output.weight", (N_EMBD, N_EMBD)),
        ("blk.0.ffn_norm.weight", (N_EMBD,)),
        ("blk.0.ffn_gate.weight", (N_EMBD, N_EMBD)),
        ("blk.0.ffn_up.weight", (N_EMBD, N_EMBD)),
        ("blk.0.ffn_down.weight", (N_EMBD, N_EMBD)),
        ("output_norm.weight", (N_EMBD,)),
    ]
    return [(name, (rng.standard_normal(shape) * 0.1).astype(np.float32)) for name, shape in shapes]


def add_metadata(w, name, nested=True):
    w.add_name(name)
    w.add_context_length(64)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(1)
    w.add_feed_forward_length(N_EMBD)
    w.add_head_count(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(TOKENS)
    w.add_token_scores([float(-i) for i in range(N_VOCAB)])
    w.add_token_types([2, 3, 3, 1, 1, 1, 6, 1])
    # One value of every type, arrays of every item type, nested arrays.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, wörld")
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 1 / 3)
    for t in (V.UINT8, V.INT8, V.UINT16, V.INT16, V.UINT32, V.INT32, V.UINT64, V.INT64):
        w.add_key_value(f"test.array.{t.name.lower()}", [1, 2, 3], V.ARRAY, sub_type=t)
    w.add_key_value("test.array.float32", [0.5, -1.25], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.array.float64", [0.1, 2.5], V.ARRAY, sub_type=V.FLOAT64)
    w.add_key_value("test.array.bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("test.array.string", ["x", "", "yz"], V.ARRAY, sub_type=V.STRING)
    if nested:
        # gguf-py writes and reads nested arrays; ggml's gguf.c (llama.cpp) refuses them.
        w.add_array("test.array.nested", [[1, 2], [3, 4, 5]])
        w.add_array("test.array.nested3", [[["a"], ["b", "c"]], [["d"]]])


def write_model(path, qtype, name, alignment=None, split_max_tensors=0):
    w = gguf.GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    add_metadata(w, name)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for tname, data in tiny_llama_tensors():
        # Norms stay F32, as llama.cpp's quantizer leaves 1-D tensors.
        t = Q.F32 if data.ndim == 1 else qtype
        if t == Q.F32:
            w.add_tensor(tname, data)
        elif t == Q.F16:
            w.add_tensor(tname, data.astype(np.float16))
        else:
            w.add_tensor(tname, quantize(data, t), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def fill_padding(path, byte):
    """Fill every padding byte (after the header, between and after tensors) with `byte`."""
    r = gguf.GGUFReader(path)
    data = bytearray(open(path, "rb").read())
    covered = bytearray(len(data))
    last = r.tensors[-1].field
    end_of_infos = last.offset + sum(p.nbytes for p in last.parts)
    covered[:end_of_infos] = b"\1" * end_of_infos
    for t in r.tensors:
        covered[t.data_offset:t.data_offset + t.n_bytes] = b"\1" * t.n_bytes
    for i, c in enumerate(covered):
        if not c:
            data[i] = byte
    open(path, "wb").write(bytes(data))


def write_expected(doc):
    """expected.json with one line per file (its tensors' types and digests), so it stays short."""
    lines = ["{", f' "gguf": {json.dumps(doc["gguf"])},', f' "ggml_quant_sizes": {json.dumps(doc["ggml_quant_sizes"], sort_keys=True)},', ' "files": {']
    files = sorted(doc["files"].items())
    for i, (name, tensors) in enumerate(files):
        lines.append(f'  {json.dumps(name)}: {json.dumps(tensors, sort_keys=True)}{"," if i < len(files) - 1 else ""}')
    lines += [" }", "}", ""]
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        f.write("\n".join(lines))


def sha(values):
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f4").tobytes()).hexdigest()


def expected_of(path):
    r = gguf.GGUFReader(path)
    return {t.name: {"type": t.tensor_type.name, "sha256": sha(dequantize(t.data, t.tensor_type))} for t in r.tensors}


def k_quant_blocks():
    """Seeded random K-quant blocks whose half scales are finite (d, dmin in [2^-10, 1))."""
    rng = np.random.default_rng(7)
    out = {}
    layouts = {Q.Q2_K: (84, [80, 82]), Q.Q3_K: (110, [108]), Q.Q4_K: (144, [0, 2]), Q.Q5_K: (176, [0, 2]), Q.Q6_K: (210, [208])}
    for qtype, (size, half_at) in layouts.items():
        blocks = rng.integers(0, 256, size=(4, size), dtype=np.uint8)
        for at in half_at:
            halves = (rng.random(4) * 0.999 + 2**-10).astype(np.float16).view(np.uint8).reshape(4, 2)
            blocks[:, at:at + 2] = halves
        out[qtype.name] = (blocks.tobytes(), sha(dequantize(blocks, qtype)))
    # Q8_K: {float d; int8 qs[256]; int16 bsums[16]}; gguf-py has no dequantizer for it, so the
    # expected values are ggml's dequantize_row_q8_K (d * qs) in numpy float32.
    blocks = rng.integers(0, 256, size=(2, 292), dtype=np.uint8)
    d = np.array([0.0125, -3.5], dtype="<f4")
    blocks[:, 0:4] = d.view(np.uint8).reshape(2, 4)
    qs = blocks[:, 4:260].view(np.int8).astype(np.float32)
    out["Q8_K"] = (blocks.tobytes(), sha(d.reshape(2, 1) * qs))
    return out


def main():
    expected = {}
    for qtype in (Q.F32, Q.F16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
        file = f"tiny-llama-{qtype.name.lower()}.gguf"
        write_model(os.path.join(HERE, file), qtype, f"tiny llama {qtype.name}")
        expected[file] = expected_of(os.path.join(HERE, file))
    # Version 2: the same layout with the version field 2 (v3 only added big-endian files).
    v2 = bytearray(open(os.path.join(HERE, "tiny-llama-q8_0.gguf"), "rb").read())
    struct.pack_into("<I", v2, 4, 2)
    open(os.path.join(HERE, "tiny-llama-q8_0-v2.gguf"), "wb").write(bytes(v2))
    expected["tiny-llama-q8_0-v2.gguf"] = expected_of(os.path.join(HERE, "tiny-llama-q8_0-v2.gguf"))
    # general.alignment 64, every padding byte 0xA5 (a writer must keep them to give the file back).
    file = "tiny-llama-q4_0-align64.gguf"
    write_model(os.path.join(HERE, file), Q.Q4_0, "tiny llama aligned", alignment=64)
    fill_padding(os.path.join(HERE, file), 0xA5)
    expected[file] = expected_of(os.path.join(HERE, file))
    # A split model in three parts (4 + 4 + 3 tensors), as gguf-split names and marks them.
    write_model(os.path.join(HERE, "tiny-split.gguf"), Q.Q8_0, "tiny llama split", split_max_tensors=4)
    for i in range(1, 4):
        part = f"tiny-split-{i:05d}-of-00003.gguf"
        expected[part] = expected_of(os.path.join(HERE, part))
    blocks = k_quant_blocks()
    with open(os.path.join(HERE, "k-quant-blocks.bin"), "wb") as f:
        at = 0
        expected["k-quant-blocks.bin"] = {}
        for name, (raw, digest) in blocks.items():
            f.write(raw)
            expected["k-quant-blocks.bin"][name] = {"offset": at, "bytes": len(raw), "sha256": digest}
            at += len(raw)
    sizes = {t.name: [int(t), *gguf.GGML_QUANT_SIZES[t]] for t in Q if t in gguf.GGML_QUANT_SIZES}
    previous = os.path.join(HERE, "expected.json")
    if os.path.exists(previous):
        # Keep the entries make-k-quants.py added (llama.cpp's K-quant files).
        for name, tensors in json.load(open(previous))["files"].items():
            expected.setdefault(name, tensors)
    write_expected({"gguf": "0.19.0", "ggml_quant_sizes": sizes, "files": expected})

if __name__ == "__main__":
    main()

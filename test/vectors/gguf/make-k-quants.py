#!/usr/bin/env python3
"""Makes the K-quant GGUF fixtures with llama.cpp's own quantizer: a tiny llama of width 256
written in F32 by gguf-py, then `llama_model_quantize` (the code of `llama-quantize`) called
through ctypes on the prebuilt libllama that node-llama-cpp ships (llama.cpp release v0.4.0 in
`@node-llama-cpp/linux-x64` 3.21.1), once per K-quant mixture. Adds each file's tensors, with
the SHA-256 of gguf-py's dequantized values, to expected.json (run make.py first).

    npm i --prefix /tmp/nlc @node-llama-cpp/linux-x64@3.21.1 --ignore-scripts
    python3 test/vectors/gguf/make-k-quants.py /tmp/nlc/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64

The library is not a dependency of the project: only the files it writes are committed.
"""
import ctypes
import json
import os
import sys
import tempfile

import numpy as np
import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make import HERE, TOKENS, add_metadata, expected_of, write_expected  # noqa: E402

WIDTH = 256


class QuantizeParams(ctypes.Structure):
    """`llama_model_quantize_params` of llama.cpp v0.4.0 (include/llama.h)."""
    _fields_ = [
        ("nthread", ctypes.c_int32), ("ftype", ctypes.c_int), ("output_tensor_type", ctypes.c_int), ("token_embedding_type", ctypes.c_int),
        ("allow_requantize", ctypes.c_bool), ("quantize_output_tensor", ctypes.c_bool), ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool),
        ("keep_split", ctypes.c_bool), ("dry_run", ctypes.c_bool),
        ("imatrix", ctypes.c_void_p), ("kv_overrides", ctypes.c_void_p), ("tt_overrides", ctypes.c_void_p), ("prune_layers", ctypes.c_void_p),
        ("max_buf_size", ctypes.c_size_t),
    ]


def write_source(path):
    """A one-layer llama of width 256 with few rows per matrix (the quantizer does not check shapes against the hyperparameters)."""
    rng = np.random.default_rng(20261128)
    w = gguf.GGUFWriter(path, "llama")
    add_metadata(w, "tiny llama K", nested=False)  # llama.cpp refuses nested arrays
    shapes = [
        ("token_embd.weight", (len(TOKENS), WIDTH)),
        ("blk.0.attn_norm.weight", (WIDTH,)),
        ("blk.0.attn_q.weight", (4, WIDTH)),
        ("blk.0.attn_v.weight", (4, WIDTH)),
        ("blk.0.ffn_down.weight", (4, WIDTH)),
        ("output.weight", (len(TOKENS), WIDTH)),
    ]
    for name, shape in shapes:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    libdir = sys.argv[1]
    for dep in ["libggml-base.so", "libggml-cpu-x64.so", "libggml.v0.4.0.so"]:
        ctypes.CDLL(os.path.join(libdir, dep), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(os.path.join(libdir, "libllama.v0.4.0.so"))
    lib.llama_model_quantize_default_params.restype = QuantizeParams
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    lib.llama_model_quantize.restype = ctypes.c_uint32
    lib.llama_backend_init()
    expected_path = os.path.join(HERE, "expected.json")
    expected = json.load(open(expected_path))
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "tiny-llama-k-f32.gguf")
        write_source(source)
        # llama_ftype: the mixtures llama-quantize names Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K.
        for ftype, name in [(10, "q2_k"), (12, "q3_k_m"), (15, "q4_k_m"), (17, "q5_k_m"), (18, "q6_k")]:
            params = lib.llama_model_quantize_default_params()
            params.ftype = ftype
            params.nthread = 1
            out = os.path.join(HERE, f"tiny-llama-{name}.gguf")
            rc = lib.llama_model_quantize(source.encode(), out.encode(), ctypes.byref(params))
            if rc != 0:
                raise SystemExit(f"llama_model_quantize {name}: {rc}")
            expected["files"][os.path.basename(out)] = expected_of(out)
    write_expected(expected)


if __name__ == "__main__":
    main()

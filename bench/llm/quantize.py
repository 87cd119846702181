"""Quantize a GGUF model with llama.cpp's own `llama_model_quantize`, called through ctypes.

The library is node-llama-cpp's prebuilt libllama (the same code as llama.cpp's llama-quantize):
K-quants such as Q4_K_M are made exactly as llama.cpp makes them, including its per-tensor type
choices. The parameter struct's layout is llama.h's at the library's release; its values come from
the library's own `llama_model_quantize_default_params()`.

    python bench/llm/quantize.py --lib DIR IN.gguf OUT.gguf TYPE [--threads N]

TYPE is one of Q8_0, Q4_0, Q4_K_M, F16.
"""
import argparse
import ctypes
import os
import sys

# llama_ftype values of llama.h.
FTYPES = {'F16': 1, 'Q4_0': 2, 'Q8_0': 7, 'Q4_K_M': 15}


class QuantizeParams(ctypes.Structure):
    """struct llama_model_quantize_params of llama.h."""
    _fields_ = [
        ('nthread', ctypes.c_int32),
        ('ftype', ctypes.c_int),
        ('output_tensor_type', ctypes.c_int),
        ('token_embedding_type', ctypes.c_int),
        ('allow_requantize', ctypes.c_bool),
        ('quantize_output_tensor', ctypes.c_bool),
        ('only_copy', ctypes.c_bool),
        ('pure', ctypes.c_bool),
        ('keep_split', ctypes.c_bool),
        ('dry_run', ctypes.c_bool),
        ('imatrix', ctypes.c_void_p),
        ('kv_overrides', ctypes.c_void_p),
        ('tt_overrides', ctypes.c_void_p),
        ('prune_layers', ctypes.c_void_p),
        ('max_buf_size', ctypes.c_size_t),
    ]


def load_llama(lib_dir):
    """libllama with its ggml libraries loaded first (global symbols), from node-llama-cpp's bins folder."""
    names = sorted(os.listdir(lib_dir))
    pick = lambda prefix: next((os.path.join(lib_dir, n) for n in names if n.startswith(prefix) and '.so' in n), None)
    for dep in ('libggml-base', 'libggml.'):
        p = pick(dep)
        if p:
            ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL)
    lib = pick('libllama.') or pick('libllama')
    if not lib:
        sys.exit(f'no libllama*.so in {lib_dir}: run scripts/install-llama.sh')
    llama = ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    llama.llama_model_quantize_default_params.restype = QuantizeParams
    llama.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    llama.llama_model_quantize.restype = ctypes.c_uint32
    llama.llama_backend_init.restype = None
    llama.llama_backend_init()
    return llama


def quantize(llama, src, dst, type_name, threads):
    params = llama.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = FTYPES[type_name]
    tmp = dst + '.tmp'
    rc = llama.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f'llama_model_quantize({src} -> {type_name}) returned {rc}')
    os.replace(tmp, dst)


def main(argv):
    p = argparse.ArgumentParser(description='Quantize a GGUF model with llama.cpp (libllama through ctypes).')
    p.add_argument('--lib', required=True, help="folder of node-llama-cpp's libllama.so and libggml*.so")
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('type', choices=sorted(FTYPES))
    a = p.parse_args(argv)
    if not os.path.isfile(a.src):
        p.error(f'{a.src}: no such GGUF file')
    quantize(load_llama(a.lib), a.src, a.dst, a.type, a.threads)
    print(f'{a.dst}: {a.type} of {a.src} by llama_model_quantize ({os.path.getsize(a.dst)} bytes)')


if __name__ == '__main__':
    main(sys.argv[1:])

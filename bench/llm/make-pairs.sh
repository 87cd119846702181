#!/usr/bin/env bash
# Make the real GGUF model versions the GGUF benchmark diffs, with llama.cpp's own code, offline:
#   1. a Python virtualenv (torch, numpy, sentencepiece, transformers, safetensors, gguf) from the
#      machine's configured pip indexes, unless present;
#   2. llama.cpp's source, cloned from the git bundle node-llama-cpp ships (gitRelease.bundle),
#      for its convert_hf_to_gguf.py and gguf-py;
#   3. v1, v2, v3 and a merged LoRA of a small LLaMA model with its own tokenizer, trained on
#      Debian's own text (bench/llm/train_pairs.py), the LoRA's unmerged adapter too (a PEFT
#      folder, hf/lora-adapter), and held-out text of each domain;
#   4. each converted to an F16 GGUF by convert_hf_to_gguf.py, then quantized to Q8_0, Q4_0 and
#      Q4_K_M by libllama's llama_model_quantize (bench/llm/quantize.py); the adapter converted by
#      convert_lora_to_gguf.py (F16, base v1) to gguf/lora-adapter-f16.gguf, which llama.cpp
#      applies at run time on any of v1's GGUFs.
# Every output lands under the cache folder (default $HOME/.cache/neural-diff/llm-pairs); each step
# is skipped when its output exists, so a rerun only makes what is missing.
#
#   bench/llm/make-pairs.sh [--out DIR] [--steps-v1 N] [--steps-ft N] [--threads N]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${NEURAL_DIFF_CACHE:-$HOME/.cache/neural-diff}"
out="$cache/llm-pairs"
threads=2
train_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --threads) threads="${2:?--threads needs a number}"; train_args+=(--threads "$2"); shift 2 ;;
    --steps-v1|--steps-ft|--seed|--vocab) train_args+=("$1" "${2:?$1 needs a number}"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-pairs.sh: unknown argument $1 (expected --out DIR, --steps-v1 N, --steps-ft N, --threads N, --seed N, --vocab N)" >&2; exit 2 ;;
  esac
done
case "$threads" in ''|*[!0-9]*|0) echo "make-pairs.sh: --threads expects a positive integer, got '$threads'" >&2; exit 2 ;; esac

# node-llama-cpp where scripts/install-llama.sh puts it: $NEURAL_DIFF_LLAMA_DIR, else .cache/llama/
# beside package.json, else the shared cache's llama/ (where CI installs it).
if [ -n "${NEURAL_DIFF_LLAMA_DIR:-}" ]; then llama_dir="$NEURAL_DIFF_LLAMA_DIR"
elif [ -d "$here/../../.cache/llama/node_modules/node-llama-cpp" ]; then llama_dir="$(cd "$here/../.." && pwd)/.cache/llama"
else llama_dir="$cache/llama"; fi
llama_pkg="$llama_dir/node_modules/node-llama-cpp"
bundle="$llama_pkg/llama/gitRelease.bundle"
lib_dir="$(ls -d "$llama_dir"/node_modules/@node-llama-cpp/linux-x64/bins/* 2>/dev/null | head -n 1 || true)"
if [ ! -f "$bundle" ] || [ -z "$lib_dir" ]; then
  echo "make-pairs.sh: node-llama-cpp is not installed under $llama_dir (its llama.cpp bundle and libllama are needed): run NEURAL_DIFF_LLAMA_DIR=$llama_dir sh scripts/install-llama.sh" >&2
  exit 3
fi

py="$cache/py/bin/python"
if [ ! -x "$py" ] || ! "$py" -c 'import torch, numpy, sentencepiece, transformers, safetensors, gguf' 2>/dev/null; then
  echo "Python virtualenv: making $cache/py and installing torch numpy sentencepiece transformers safetensors gguf from pip's configured indexes (offline: $(pip config list 2>/dev/null | grep -E 'index-url|find-links' | tr '\n' ' '))"
  python3 -m venv "$cache/py"
  "$py" -m pip install --no-input --quiet torch numpy sentencepiece transformers safetensors gguf
else
  echo "Python virtualenv: $cache/py (present)"
fi

src="$cache/llama.cpp-src"
if [ ! -f "$src/convert_hf_to_gguf.py" ]; then
  echo "llama.cpp source: cloning $bundle into $src"
  rm -rf "$src"
  git clone --quiet "$bundle" "$src"
fi
echo "llama.cpp source: $src ($(git -C "$src" rev-parse --short HEAD), node-llama-cpp $(node -p "require('$llama_pkg/package.json').version" 2>/dev/null || echo '?'), llama.cpp release $(sed -n 's/.*"tag": *"\(.*\)".*/\1/p' "$llama_pkg/llama/llama.cpp.info.json"))"

mkdir -p "$out/gguf"
"$py" "$here/train_pairs.py" --out "$out" ${train_args[@]+"${train_args[@]}"}

# Every version named as one model's versions are (the converter otherwise names each after its
# folder: "Lora" with no version beside "v1", a header of another length, which no block payload
# can patch in place); the merged LoRA is shipped as that model's version 2.
for name in v1 v2 v3 lora; do
  f16="$out/gguf/$name-f16.gguf"
  if [ ! -f "$f16" ]; then
    version="$name"
    [ "$name" = lora ] && version=v2
    printf '{"general.name": "neural-diff-pairs", "general.version": "%s"}\n' "$version" > "$out/gguf/$name-metadata.json"
    "$py" "$src/convert_hf_to_gguf.py" "$out/hf/$name" --outtype f16 --metadata "$out/gguf/$name-metadata.json" --outfile "$f16.tmp" > "$out/gguf/$name-convert.log" 2>&1 \
      || { echo "convert_hf_to_gguf.py failed on $out/hf/$name; its log:" >&2; tail -n 20 "$out/gguf/$name-convert.log" >&2; exit 1; }
    mv "$f16.tmp" "$f16"
    echo "$f16: convert_hf_to_gguf.py --outtype f16 ($(stat -c %s "$f16") bytes)"
  fi
  for type in Q8_0 Q4_0 Q4_K_M; do
    q="$out/gguf/$name-$(echo "$type" | tr 'A-Z' 'a-z').gguf"
    [ -f "$q" ] || "$py" "$here/quantize.py" --lib "$lib_dir" --threads "$threads" "$f16" "$q" "$type" 2> "$q.log"
  done
done

# The LoRA unmerged: what a runtime that loads adapters is sent instead of the merged model.
adapter="$out/gguf/lora-adapter-f16.gguf"
if [ ! -f "$adapter" ]; then
  "$py" "$src/convert_lora_to_gguf.py" "$out/hf/lora-adapter" --base "$out/hf/v1" --outtype f16 --outfile "$adapter.tmp" > "$out/gguf/lora-adapter-convert.log" 2>&1 \
    || { echo "convert_lora_to_gguf.py failed on $out/hf/lora-adapter; its log:" >&2; tail -n 20 "$out/gguf/lora-adapter-convert.log" >&2; exit 1; }
  mv "$adapter.tmp" "$adapter"
  echo "$adapter: convert_lora_to_gguf.py --outtype f16 --base hf/v1 ($(stat -c %s "$adapter") bytes)"
fi
echo "pairs: $out/gguf (v1 -> v2, v2 -> v3, v1 -> lora; F16, Q8_0, Q4_0, Q4_K_M; lora-adapter-f16.gguf on v1), held-out text: $out/held-out"

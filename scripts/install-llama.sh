#!/bin/sh
# Install llama.cpp's Node binding, pinned, for `ndiff measure` (GGUF models measured through the
# runtime devices use): node-llama-cpp 3.21.1 with its prebuilt CPU build for the platform, and
# none of its optional GPU builds (about 650 MB). It goes into a cache folder of its own, ignored by
# git, where neural-diff looks for it: .cache/llama/ beside package.json, or $NEURAL_DIFF_LLAMA_DIR.
# An app that installs node-llama-cpp itself needs none of this: its own copy is used first.
#
#   sh scripts/install-llama.sh            # into .cache/llama/
#   NEURAL_DIFF_LLAMA_DIR=/opt/llama sh scripts/install-llama.sh
set -eu
VERSION=3.21.1
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${NEURAL_DIFF_LLAMA_DIR:-$root/.cache/llama}
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) prebuilt=linux-x64 ;;
  Linux-aarch64) prebuilt=linux-arm64 ;;
  Darwin-arm64) prebuilt=mac-arm64-metal ;;
  Darwin-x86_64) prebuilt=mac-x64 ;;
  *) echo "install-llama.sh: no prebuilt llama.cpp of node-llama-cpp for $(uname -s) $(uname -m); install node-llama-cpp@$VERSION in your app instead" >&2; exit 1 ;;
esac
mkdir -p "$dir"
# A package.json of its own: npm installs exactly these two, and nothing of the project's.
cat > "$dir/package.json" <<JSON
{
  "name": "neural-diff-llama-runtime",
  "private": true,
  "description": "llama.cpp for ndiff measure, installed by scripts/install-llama.sh",
  "dependencies": {
    "node-llama-cpp": "$VERSION",
    "@node-llama-cpp/$prebuilt": "$VERSION"
  }
}
JSON
# --omit=optional: no GPU builds; --ignore-scripts: node-llama-cpp's postinstall would look for
# (or try to build) other binaries, and the prebuilt one above is what it loads.
cd "$dir"
npm install --no-audit --no-fund --omit=optional --ignore-scripts --save-exact >&2
node --input-type=module -e "const m = await import('node-llama-cpp'); if (typeof m.getLlama !== 'function') process.exit(1);"
echo "$dir"

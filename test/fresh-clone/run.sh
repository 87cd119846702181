#!/usr/bin/env bash
# Runs the test suite from fresh clones in the places users keep code, so a test that depends on
# where the checkout lives, who runs it or where TMPDIR points is caught before a user finds it.
#
#   bash test/fresh-clone/run.sh           # quick: one clone that combines every condition below
#   bash test/fresh-clone/run.sh --full    # one clone per condition (about three times as long)
#   bash test/fresh-clone/run.sh --keep    # keep the clones (their paths are printed)
#   bash test/fresh-clone/run.sh --node 24.21.0   # on that Node release (scripts/node-release.sh fetches it)
#   bash test/fresh-clone/run.sh --shard 1/2      # the suite's first half of test files (Node's --test-shard)
#   bash test/fresh-clone/run.sh --shard 2,3/3    # the second and third of three parts, one after the other
#
# The conditions: the checkout inside a folder only its owner may enter (mode 0700, as `mktemp -d`
# makes it, and as /root is when working as root); a path with spaces and non-ASCII characters;
# TMPDIR pointing at another private folder, also with a space. Each clone is `git clone` of this
# checkout's HEAD (what is committed, not the working tree), then `npm install` and `npm test`
# exactly as the README says. Exit 0 only if every run passes.
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
mode=quick keep=0 node="" shard=""
# --node VERSION as two words too
args=()
while [ $# -gt 0 ]; do
  if { [ "$1" = --node ] || [ "$1" = --shard ]; } && [ $# -ge 2 ]; then args+=("$1=$2"); shift 2; else args+=("$1"); shift; fi
done
set -- "${args[@]+"${args[@]}"}"
for arg in "$@"; do
  case "$arg" in
    --full) mode=full ;;
    --quick) mode=quick ;;
    --keep) keep=1 ;;
    --node=*) node="${arg#--node=}" ;;
    --shard=*) shard="${arg#--shard=}" ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-clone: unknown option '$arg' (expected --quick, --full, --keep, --node VERSION or --shard K/N)" >&2; exit 2 ;;
  esac
done
parts=()
if [ -n "$shard" ]; then
  # K/N, or several parts of the same N (K,L/N), each once and in order.
  ok=1
  if [[ "$shard" =~ ^([1-9][0-9]*(,[1-9][0-9]*)*)/([1-9][0-9]*)$ ]]; then
    total="${BASH_REMATCH[3]}" prev=0
    IFS=, read -r -a ks <<<"${BASH_REMATCH[1]}"
    for k in "${ks[@]}"; do
      if [ "$k" -gt "$total" ] || [ "$k" -le "$prev" ]; then ok=0; fi
      prev="$k"; parts+=("$k/$total")
    done
  else ok=0; fi
  if [ "$ok" = 0 ]; then
    echo "fresh-clone: --shard takes K/N with 1 <= K <= N (the K-th of N parts of the test files), or parts K,L/N in increasing order, not '$shard'" >&2; exit 2
  fi
  # Node's test runner takes the files whose place in the sorted list is K-1 modulo N; npm test's
  # command line stays the README's (NODE_OPTIONS reaches the runner; children ignore the flag).
  # Several parts run one after the other in the same clone, each its own `npm test`.
  echo "fresh-clone: test files of part${parts[1]+s} ${parts[*]} only (--test-shard)"
fi

if [ -n "$node" ]; then
  bin="$(bash "$src/scripts/node-release.sh" "$node")"
  export PATH="$bin:$PATH"
  echo "fresh-clone: Node $(node --version) ($bin)"
  # The benchmark and example runs, the pages in Chromium and the builds by other tools (TypeDoc,
  # clang) and the long in-process checks (power-loss crash states under /dev/shm, the library's
  # training cases on MNIST and ONNX) are checked in CI's in-place suite (test/helpers/benchmarks.ts); on another
  # release the suite checks what a Node release can change.
  export NDIFF_SKIP_BENCHMARKS=1
  echo "fresh-clone: NDIFF_SKIP_BENCHMARKS=1 (benchmark and example runs, Chromium pages, TypeDoc, clang and TypeScript builds, power-loss crash states and the library's in-process training cases are checked once, in CI's in-place suite)"
fi

made=()
cleanup() { [ "$keep" = 1 ] || for d in "${made[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT

# run_in LABEL CHECKOUT_PARENT TMPDIR_OR_EMPTY
run_in() {
  local label="$1" parent="$2" tmp="$3" dest="$2/neural-diff"
  echo "== fresh clone: $label"
  echo "   checkout: $dest"
  [ -n "$tmp" ] && echo "   TMPDIR:   $tmp"
  git clone --quiet --no-hardlinks "$src" "$dest"
  ( cd "$dest" || exit 1
    [ -n "$tmp" ] && export TMPDIR="$tmp"
    # (set -e does not hold inside a command list ending in ||: each step's status is checked.)
    npm install --no-audit --no-fund --loglevel=error || exit 1
    if [ "${#parts[@]}" = 0 ]; then npm test
    else
      # Every part runs, so one log shows every failure; the clone fails if any part did.
      failed=()
      for part in "${parts[@]}"; do
        echo "fresh-clone: part $part (--test-shard=$part)"
        NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--test-shard=$part" npm test || failed+=("$part")
      done
      if [ "${#failed[@]}" -gt 0 ]; then echo "fresh-clone: part(s) ${failed[*]} failed" >&2; exit 1; fi
    fi ) || { echo "fresh-clone: the suite failed in '$dest' ($label)" >&2; return 1; }
}

# A new folder only its owner may enter, in $dir, and remembered for the cleanup (not called in
# $(...): a subshell's `made` would be lost and the clone left behind).
private() { dir="$(mktemp -d)"; chmod 700 "$dir"; made+=("$dir"); }

if [ "$mode" = quick ]; then
  private; top="$dir"; parent="$top/dir with space/naïve ü 模型"; mkdir -p "$parent"
  private; tmptop="$dir"; tmp="$tmptop/tmp dir é"; mkdir -p "$tmp"; chmod 700 "$tmp"
  run_in "0700 folder, spaces and non-ASCII in the path, TMPDIR elsewhere" "$parent" "$tmp"
else
  private; top="$dir"
  run_in "a folder only its owner may enter (0700)" "$top" ""
  private; top="$dir"; chmod 755 "$top"; parent="$top/dir with space/naïve ü 模型"; mkdir -p "$parent"
  run_in "spaces and non-ASCII characters in the path" "$parent" ""
  private; top="$dir"; chmod 755 "$top"; private; tmptop="$dir"; tmp="$tmptop/tmp dir é"; mkdir -p "$tmp"
  run_in "TMPDIR in another private folder, with a space" "$top" "$tmp"
fi
echo "fresh-clone: every run passed ($mode, Node $(node --version))"

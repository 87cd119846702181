#!/bin/sh
# The Python peers of bench/train-vs-torch.ts (--peers torch2,compile,jax), installed offline: a
# virtualenv under ~/.cache/neural-diff/py (NEURAL_DIFF_PEERS_VENV to put it elsewhere) holding
# PyTorch 2.13 (CPU wheel) and JAX 0.10 (jax, jaxlib), from the package indexes pip is configured
# with (`pip config list`: a local mirror or wheel folder on a machine without the internet).
#
#   sh bench/peers/install.sh [torch2] [jax]      # both when none is named
#
# Says what it installs; exits non-zero, naming what is missing, when a package cannot be had
# (bench/train-vs-torch.ts then skips that peer with a line saying so). Running it again installs
# nothing that is already there.
set -eu
venv="${NEURAL_DIFF_PEERS_VENV:-$HOME/.cache/neural-diff/py}"
want="${*:-torch2 jax}"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  echo "peers: creating the virtualenv $venv (python3 -m venv)"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
# --retries 0: an index that cannot be reached (no network) fails at once, the local ones still answer.
pip_install() {
  echo "peers: installing $* into $venv from pip's configured indexes"
  "$py" -m pip install --retries 0 --timeout 20 "$@"
}
failed=""
for peer in $want; do
  case "$peer" in
    torch2)
      if "$py" -c 'import sys, torch; sys.exit(0 if torch.__version__.startswith("2.13") else 1)' 2>/dev/null; then
        echo "peers: PyTorch $("$py" -c 'import torch; print(torch.__version__)') already in $venv"
      else
        pip_install 'torch==2.13.*' numpy || failed="$failed torch==2.13 (CPU wheel)"
      fi ;;
    jax)
      if "$py" -c 'import sys, jax; sys.exit(0 if jax.__version__.startswith("0.10") else 1)' 2>/dev/null; then
        echo "peers: JAX $("$py" -c 'import jax; print(jax.__version__)') already in $venv"
      else
        pip_install 'jax>=0.10,<0.11' 'jaxlib>=0.10,<0.11' || failed="$failed jax/jaxlib 0.10"
      fi ;;
    *) echo "peers: unknown peer '$peer' (torch2, jax)" >&2; exit 2 ;;
  esac
done
if [ -n "$failed" ]; then
  echo "peers: could not install:$failed (is a package index with them configured? see pip config list)" >&2
  exit 1
fi

/**
 * The training peers of bench/train-vs-torch.ts beyond Debian's PyTorch 1.13 (`--peers`):
 * PyTorch 2.13 eager (`torch2`), PyTorch 2.13 with `torch.compile` (`compile`) and JAX 0.10 under
 * `jit` (`jax`), each running the same step as bench/torch-train-step.py and
 * bench/torch-transformer.py (same batch, loss, optimizer, layers and sizes) at the same thread
 * counts. They live in a virtualenv bench/peers/install.sh makes offline from pip's configured
 * indexes; a peer that cannot be installed, or that has no version of a model (JAX has no
 * MobileNetV2 yet), is skipped with a line saying why.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A peer `--peers` names. */
export type PeerName = 'torch2' | 'compile' | 'jax';

/** Every peer, in the order the tables list them. */
export const peerNames: readonly PeerName[] = ['torch2', 'compile', 'jax'];

/** How each peer is labelled in the tables. */
export const peerLabels: Record<PeerName, string> = {
  torch2: 'PyTorch 2.13 eager',
  compile: 'PyTorch 2.13 torch.compile',
  jax: 'JAX 0.10 jit',
};

const here = path.dirname(fileURLToPath(import.meta.url));
const bench = path.dirname(here);

/** The peers' virtualenv (NEURAL_DIFF_PEERS_VENV, else ~/.cache/neural-diff/py, as install.sh). */
export const peersVenv = process.env.NEURAL_DIFF_PEERS_VENV ?? path.join(os.homedir(), '.cache', 'neural-diff', 'py');

/** `--peers a,b` parsed (none when the flag is absent); a name not known throws, listing the known ones. */
export function parsePeers(argv: readonly string[]): PeerName[] {
  const at = argv.indexOf('--peers');
  if (at < 0) return [];
  const list = (argv[at + 1] ?? '').split(',').filter(Boolean);
  if (!list.length || list.some((p) => !peerNames.includes(p as PeerName))) throw new Error(`--peers takes a comma-separated list of ${peerNames.join(', ')}; found ${JSON.stringify(argv[at + 1] ?? '')}`);
  return peerNames.filter((p) => list.includes(p));
}

/**
 * Runs bench/peers/install.sh for the peers wanted (JAX reads the transformer's weights through
 * PyTorch, so it brings PyTorch 2.13 too) and returns the ones ready, printing a line for each
 * one skipped.
 */
export function ensurePeers(wanted: readonly PeerName[]): PeerName[] {
  if (!wanted.length) return [];
  const install = (pkg: string) => spawnSync('sh', [path.join(here, 'install.sh'), pkg], { stdio: 'inherit' }).status === 0;
  const torchOk = install('torch2');
  const jaxOk = wanted.includes('jax') && torchOk && install('jax');
  const ready = wanted.filter((p) => (p === 'jax' ? jaxOk : torchOk));
  for (const p of wanted) if (!ready.includes(p)) console.log(`${peerLabels[p]} skipped: bench/peers/install.sh could not install ${p === 'jax' ? 'JAX 0.10 (and PyTorch 2.13, which reads the weights)' : 'PyTorch 2.13'} (its errors above)`);
  return ready;
}

/** Why `peer` has no run of `model`, or undefined when it has one. */
export function peerGap(peer: PeerName, model: string): string | undefined {
  return peer === 'jax' && model === 'mobilenetv2' ? 'MobileNetV2 is not written for JAX (bench/peers/jax-step.py has the keyword model and the transformer)' : undefined;
}

/**
 * One run of `peer` on `model` at `threads` threads: the child's JSON line. The thread count is
 * set as for PyTorch 1.13 (OMP_NUM_THREADS, torch.set_num_threads in the script) and for JAX by
 * XLA's flags at one thread (`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`)
 * and, below the machine's cores, by pinning the process to that many cores (jax-step.py: XLA
 * keeps threads of its own whatever the flags say). The table's "cores busy" column checks it.
 */
export function runPeer(peer: PeerName, model: string, threads: number, batch: number, steps: number, transformerDir: string): string {
  const python = path.join(peersVenv, 'bin', 'python');
  if (!existsSync(python)) throw new Error(`${peerLabels[peer]}: no ${python} (run sh bench/peers/install.sh)`);
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
  let args: string[];
  if (peer === 'jax') {
    if (threads === 1) env.XLA_FLAGS = [process.env.XLA_FLAGS, '--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'].filter(Boolean).join(' ');
    args = model === 'transformer' ? [path.join(here, 'jax-step.py'), 'transformer', transformerDir, String(threads), String(batch), String(steps)] : [path.join(here, 'jax-step.py'), model, String(threads), String(batch), String(steps)];
  } else {
    const tail = peer === 'compile' ? ['compile'] : [];
    args = model === 'transformer'
      ? [path.join(bench, 'torch-transformer.py'), 'distill', transformerDir, String(threads), String(batch), String(steps), ...tail]
      : [path.join(bench, 'torch-train-step.py'), model, String(threads), String(batch), String(steps), ...tail];
  }
  const r = spawnSync(python, args, { env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${peerLabels[peer]} ${model} at ${threads} thread(s) failed:\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}

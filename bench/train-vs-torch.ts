/**
 * Our training throughput beside PyTorch's on the same machine, in one run: the keyword model
 * (temporal convolutions, ~0.5M weights), MobileNetV2 (nsfwjs's, 2.6M weights, 224x224) and a small
 * transformer text classifier (73k weights, exported from PyTorch to ONNX), each
 * at 1 thread and at every core, on our wasm backend and (when its addon is built) our native
 * backend, with the ratios, wall and CPU time per sample and each run's peak memory.
 *
 *   node --conditions=neural-diff-source --import tsx bench/train-vs-torch.ts [--quick] [--skip-torch] [--rounds N] [--models keyword,mobilenetv2,transformer] [--peers torch2,compile,jax]
 *
 * `--models` runs only the models named (default all three). `--rounds N` (default 1) runs every
 * configuration N times, in rounds that alternate ours and PyTorch, prints each run's samples/s
 * and reports each configuration's median: two threads on two cores shared with other work
 * swing by a third from run to run (the transformer's 120 steps take about a second). `--baseline DIR` adds rows of an
 * earlier checkout of neural-diff in DIR (its own bench children, run from there: for a checkout
 * older than bench/train-transformer-child.ts, copy that file into its bench/), so before and
 * after come from one run on one machine state.
 *
 * Ours: full fine-tuning through our training loop (bench/train-step-child.ts); on wasm the batch
 * is split across worker threads when threads > 1, on native one thread trains and the addon's
 * threads run the convolutions and matmuls (cut into blocks; OpenBLAS on one thread in each). PyTorch: the same layers and sizes
 * (bench/torch-train-step.py), Debian's python3-torch, installed here with apt-get when missing
 * (said so). As Debian installs it torch links the reference BLAS (a few GFLOPS), a weak anchor, so
 * OpenBLAS's OpenMP build (libopenblas0-openmp) is unpacked with apt-get download + dpkg -x into
 * .cache/openblas-openmp and loaded through LD_LIBRARY_PATH (the pthread build fights torch's
 * own threads); each PyTorch row reports the SGEMM rate it measured, which shows the BLAS loaded.
 * Each row also gives the CPU time of all the run's threads per sample: on a shared machine the
 * wall-clock rates follow the scheduler, while CPU time per sample still shows what threads cost
 * (the same CPU time per sample at N threads as at 1 means N times the rate on N idle cores).
 * Every configuration runs in its own process (peak resident memory is per process; our workers'
 * memory counts in ours). MobileNetV2 trains at batch 32 as chunks of 8 per thread whose
 * gradients are summed (gradient accumulation, one optimizer step per 32) unless --quick, which
 * runs batch 8 and fewer steps, on every core only, with a briefly trained transformer of its own
 * (.cache/transformer-quick): enough to prove the mechanism, not to measure.
 * The transformer (bench/torch-transformer.py defines it, trains v1 and fine-tunes v2 on a
 * seeded synthetic task, exports both to ONNX into .cache/transformer on first use) is distilled
 * from v1 toward v2 at batch 32: ours through the ONNX program as `ndiff train --teacher` runs it
 * (bench/train-transformer-child.ts), PyTorch the same way (teacher forward, KL, Adam). On wasm
 * at every core the batch is split across worker threads, each building the program again from
 * v1.onnx; on native the program trains on one JavaScript thread and the addon's threads run
 * its GEMMs. Its timed steps hold the
 * capture of the step's plan (two eager steps); a line under its table gives ours over the steps
 * after the plan's check alone, what a longer run tends to.
 * `--peers` adds stronger peers, each the same step in a virtualenv bench/peers/install.sh makes
 * offline from pip's configured indexes (bench/peers/peers.ts): PyTorch 2.13 eager (`torch2`), PyTorch
 * 2.13 with torch.compile (`compile`), JAX 0.10 under jit (`jax`; no MobileNetV2). They run in the
 * same alternated rounds, timed after their warm-up (compile and warm-up seconds are reported apart),
 * and a second table per model gives each peer's samples/s and ours over it. None run unless named.
 * Writes bench/out/train-vs-torch.json.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultThreads } from '../src/train/parallel/pool.ts';
import { chooseOpenBlasCore, nativeAddonStatus, openBlasCoreChoice } from '../src/engine/kernels/native/loader.ts';
import { ensurePeers, parsePeers, peerGap, peerLabels, runPeer, type PeerName } from './peers/peers.ts';

const quick = process.argv.includes('--quick');
const skipTorch = process.argv.includes('--skip-torch');
const baselineAt = process.argv.indexOf('--baseline');
const baseline = baselineAt >= 0 ? path.resolve(process.argv[baselineAt + 1] ?? '') : undefined;
if (baseline !== undefined && !existsSync(path.join(baseline, 'bench'))) throw new Error(`--baseline takes an earlier checkout of neural-diff (a folder with bench/ in it); found ${JSON.stringify(process.argv[baselineAt + 1] ?? '')}`);
const roundsAt = process.argv.indexOf('--rounds');
const rounds = roundsAt >= 0 ? Number(process.argv[roundsAt + 1]) : 1;
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds takes a whole number of at least 1; found ${JSON.stringify(process.argv[roundsAt + 1] ?? '')}`);
const modelsAt = process.argv.indexOf('--models');
const models = modelsAt >= 0 ? (process.argv[modelsAt + 1] ?? '').split(',') : ['keyword', 'mobilenetv2', 'transformer'];
const known = ['keyword', 'mobilenetv2', 'transformer'];
if (!models.length || models.some((m) => !known.includes(m))) throw new Error(`--models takes a comma-separated list of ${known.join(', ')}; found ${JSON.stringify(process.argv[modelsAt + 1] ?? '')}`);
const native = nativeAddonStatus();
// PyTorch's OpenBLAS gets the kernels ours runs (the loader's choice, inherited through the
// environment): on a CPU newer than Debian's OpenBLAS both would otherwise get the generic ones.
const openBlasKernels = openBlasCoreChoice() ?? chooseOpenBlasCore();
type OurBackend = 'wasm' | 'native';
const backends: OurBackend[] = native.available ? ['wasm', 'native'] : ['wasm'];
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const python = '/usr/bin/python3';
const cores = defaultThreads();

interface Plan {
  key: 'keyword' | 'mobilenetv2' | 'transformer';
  label: string;
  batch: number;
  steps: number;
  /** Most examples a thread runs at once (ours; PyTorch runs the whole batch). */
  chunk: number;
}

const plans: Plan[] = [
  { key: 'keyword', label: 'keyword temporal-conv', batch: 64, steps: quick ? 3 : 20, chunk: 64 },
  // A quick run's MobileNetV2: two examples in chunks of one, so the pool still splits the batch and
  // sums gradients over chunks as the full run does (at batch 8 these two processes were half the
  // quick run's CPU).
  { key: 'mobilenetv2', label: 'MobileNetV2 224x224', batch: quick ? 2 : 32, steps: quick ? 1 : 3, chunk: quick ? 1 : 8 },
  { key: 'transformer', label: 'transformer text classifier (ONNX, distilled v1 -> v2)', batch: 32, steps: quick ? 3 : 120, chunk: 32 },
].filter((p) => models.includes(p.key)) as Plan[];
// The quick run's transformer is the same model trained briefly, in its own folder (its few timed
// steps prove the mechanism; `make` in full takes minutes on a busy machine).
const transformerDir = path.join(root, '.cache', quick ? 'transformer-quick' : 'transformer');

interface Row {
  samplesPerSecond: number;
  /** CPU time of all the run's threads per sample over the timed steps (robust to a shared machine). */
  cpuMsPerSample: number;
  peakRssBytes: number;
  weights: number;
  sgemmGflops?: number;
  /** The transformer's timed steps (after its plan's check) and the window with the capture's steps inside (bench/train-transformer-child.ts). */
  steps?: number;
  withCapture?: { samplesPerSecond: number; cpuMsPerSample: number; steps: number };
  /** A peer's warm-up: torch.compile's or jit's compile with the first steps (bench/peers/). */
  compileSeconds?: number | null;
}

function torchPresent(): boolean {
  return spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

/** Debian's python3-torch, installed when missing; false (and why) when it cannot be. */
function ensureTorch(): string | true {
  if (torchPresent()) return true;
  console.log('PyTorch is missing: installing Debian\'s python3-torch with apt-get (a few hundred MB, once)...');
  if (process.getuid?.() !== 0) return 'not root: install it with `sudo apt-get install python3-torch`';
  const update = spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit' });
  const install = update.status === 0 ? spawnSync('apt-get', ['install', '-y', '-q', 'python3-torch'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }) : update;
  return install.status === 0 && torchPresent() ? true : 'apt-get could not install python3-torch';
}

/** The folder holding OpenBLAS's OpenMP libblas.so.3, unpacked from its .deb on first use. */
function ensureOpenBlas(): string | undefined {
  const cache = path.join(root, '.cache', 'openblas-openmp');
  const lib = path.join(cache, 'usr', 'lib', `${os.arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`, 'openblas-openmp');
  if (existsSync(path.join(lib, 'libblas.so.3'))) return lib;
  console.log(`OpenBLAS (OpenMP) is not unpacked yet: apt-get download libopenblas0-openmp, dpkg -x into ${path.relative(root, cache)}`);
  mkdirSync(cache, { recursive: true });
  try {
    execFileSync('apt-get', ['download', 'libopenblas0-openmp'], { cwd: cache, stdio: 'inherit' });
    const deb = readdirSync(cache).find((f) => f.startsWith('libopenblas0-openmp') && f.endsWith('.deb'));
    if (!deb) return undefined;
    execFileSync('dpkg', ['-x', deb, '.'], { cwd: cache, stdio: 'inherit' });
  } catch {
    return undefined;
  }
  return existsSync(path.join(lib, 'libblas.so.3')) ? lib : undefined;
}

function lastJson(out: string): Row {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`no result line in:\n${out.slice(-2000)}`);
  return JSON.parse(line) as Row;
}

/** The transformer's v1.onnx, v2.onnx and distillation inputs, made by PyTorch on first use. */
function ensureTransformer(): void {
  if (['v1.onnx', 'v2.onnx', 'v1.pt', 'v2.pt', 'distill-tokens.bin'].every((f) => existsSync(path.join(transformerDir, f)))) return;
  if (torchState !== true) throw new Error(`the transformer rows need PyTorch to make ${path.relative(root, transformerDir)} (v1 and v2 exported to ONNX): ${torchState}`);
  console.log(`making the transformer's v1 and v2 (bench/torch-transformer.py make ${path.relative(root, transformerDir)}${quick ? ' quick' : ''}, ${quick ? 'briefly trained for a quick run' : 'a few minutes once'})...`);
  const r = spawnSync(python, [path.join(here, 'torch-transformer.py'), 'make', transformerDir, ...(quick ? ['quick'] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error('bench/torch-transformer.py make failed (its errors above)');
}

/** Our run of `p`, from this checkout or from `from` (--baseline). */
function ours(p: Plan, threads: number, backend: OurBackend, from = root): Row {
  const bench = path.join(from, 'bench');
  const args = p.key === 'transformer'
    ? [path.join(bench, 'train-transformer-child.ts'), transformerDir, String(threads), String(p.batch), String(p.steps), backend]
    : [path.join(bench, 'train-step-child.ts'), p.key, String(threads), String(p.batch), String(p.steps), String(p.chunk), backend];
  const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', ...args], { cwd: from, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`ours (${backend}${from === root ? '' : `, ${from}`}) ${p.key} at ${threads} thread(s) failed:\n${r.stderr.slice(-3000)}`);
  return lastJson(r.stdout);
}

function torch(p: Plan, threads: number, blas: string | undefined): Row {
  const env = { ...process.env, OMP_NUM_THREADS: String(threads), ...(blas ? { LD_LIBRARY_PATH: [blas, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') } : {}) };
  const args = p.key === 'transformer' ? [path.join(here, 'torch-transformer.py'), 'distill', transformerDir, String(threads), String(p.batch), String(p.steps)] : [path.join(here, 'torch-train-step.py'), p.key, String(threads), String(p.batch), String(p.steps)];
  const r = spawnSync(python, args, { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`PyTorch ${p.key} at ${threads} thread(s) failed:\n${r.stderr.slice(-3000)}`);
  return lastJson(r.stdout);
}

/**
 * A configuration's median run by samples/s (the lower middle of an even count): the rounds
 * alternate ours and PyTorch, so a burst of other work on the machine lands on one run of one
 * side, not on every run of it. A failed run counts as none; undefined when every run failed.
 */
function median(list: (Row | undefined)[]): Row | undefined {
  const ok = list.filter((r): r is Row => r !== undefined).sort((a, b) => a.samplesPerSecond - b.samplesPerSecond);
  return ok.length ? ok[Math.floor((ok.length - 1) / 2)] : undefined;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const rate = (r: Row | undefined) => (r ? r.samplesPerSecond.toFixed(r.samplesPerSecond < 100 ? 1 : 0) : 'n/a');
const ratio = (a: Row | undefined, b: Row | undefined) => (a && b ? `${(a.samplesPerSecond / b.samplesPerSecond).toFixed(2)}x` : 'n/a');

const peers = ensurePeers(parsePeers(process.argv));
const torchState = skipTorch ? '--skip-torch' : ensureTorch();
const blas = torchState === true ? ensureOpenBlas() : undefined;
if (torchState !== true) console.log(`PyTorch side skipped: ${torchState}`);
else if (!blas) console.log('OpenBLAS could not be unpacked: PyTorch runs on the BLAS Debian links (see its SGEMM rate)');
if (!native.available) console.log(`native backend skipped: ${native.reason} (apt-get install libopenblas-dev, then npm run build:native)`);
const loadBefore = os.loadavg();
console.log(`\nTraining throughput, ours beside PyTorch (${quick ? 'QUICK: too few steps to measure, proves the mechanism' : 'full'}); ${cores} core(s), load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} at the start; OpenBLAS kernels for both: ${openBlasKernels}`);

const wallMs = (r: Row | undefined) => (r ? (1000 / r.samplesPerSecond).toFixed(r.samplesPerSecond > 100 ? 2 : 0) : 'n/a');
const cpuMs = (r: Row | undefined) => (r ? r.cpuMsPerSample.toFixed(r.cpuMsPerSample < 10 ? 2 : 0) : 'n/a');
const cpuRatio = (a: Row | undefined, b: Row | undefined) => (a && b ? `${(b.cpuMsPerSample / a.cpuMsPerSample).toFixed(2)}x` : 'n/a');

if (models.includes('transformer')) ensureTransformer();
const results: Record<string, unknown>[] = [];
const failures: string[] = [];
// A quick run proves the mechanism on every core only (the thread count ndiff train uses by
// default): its few steps measure nothing, and the one-thread runs doubled its time.
const threadCounts = quick ? [cores] : [...new Set([1, cores])];
for (const p of plans) {
  // Each configuration's runs, one per round; the rows below are each configuration's median.
  const runs = new Map<string, (Row | undefined)[]>();
  const record = (key: string, row: Row | undefined) => runs.set(key, [...(runs.get(key) ?? []), row]);
  for (let round = 0; round < rounds; round++) for (const t of threadCounts) {
    for (const b of backends) {
      // A run that fails (an earlier checkout may not train a model at all) is a row saying so.
      const tryOurs = (from?: string) => {
        try {
          return ours(p, t, b, from);
        } catch (e) {
          const why = /(\w*Error: [^\n]*)/.exec((e as Error).message)?.[1] ?? (e as Error).message.split('\n')[0];
          failures.push(`${p.key}, ${from ? 'before' : 'ours'}, ${b}, ${t} thread(s): ${why.slice(0, 400)}`);
          return undefined;
        }
      };
      if (baseline) record(`before ${b} ${t}`, tryOurs(baseline));
      record(`${b} ${t}`, tryOurs());
    }
    record(`torch ${t}`, torchState === true ? torch(p, t, blas) : undefined);
    for (const peer of peers) {
      if (peerGap(peer, p.key)) continue;
      try {
        record(`${peer} ${t}`, lastJson(runPeer(peer, p.key, t, p.batch, p.steps, transformerDir)));
      } catch (e) {
        failures.push(`${p.key}, ${peerLabels[peer]}, ${t} thread(s): ${(e as Error).message.split('\n').filter(Boolean).slice(-1)[0]?.slice(0, 400)}`);
        record(`${peer} ${t}`, undefined);
      }
    }
  }
  const rows = new Map([...runs].map(([key, list]) => [key, median(list)]));
  if (rounds > 1) {
    console.log(`\n${p.label}, samples/s in each of ${rounds} rounds (the rows below: each configuration's median):`);
    for (const [key, list] of runs) if (list.some((r) => r)) console.log(`- ${/^(torch2|compile|jax) /.test(key) ? key.replace(/^\w+/, (w) => peerLabels[w as PeerName]) : key.replace('torch', 'PyTorch')}: ${list.map((r) => rate(r)).join(', ')}`);
  }
  console.log(`\n${p.label}: batch ${p.batch}${p.chunk < p.batch ? ` (ours in chunks of ${p.chunk} per thread, gradients summed: one step per batch)` : ''}, ${p.steps} timed step(s); weights ours ${rows.get(`wasm ${threadCounts[0]}`)?.weights}, PyTorch ${rows.get(`torch ${threadCounts[0]}`)?.weights ?? 'n/a'}`);
  console.log('| threads | run | samples/s | wall ms/sample | CPU ms/sample | / PyTorch (samples/s) | peak memory | SGEMM GFLOPS |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const t of threadCounts) {
    const q = rows.get(`torch ${t}`);
    for (const b of backends) {
      for (const [label, key] of baseline ? [[`before, ${b}`, `before ${b} ${t}`], [`ours, ${b}`, `${b} ${t}`]] : [[`ours, ${b}`, `${b} ${t}`]]) {
        const o = rows.get(key);
        console.log(`| ${t} | ${label} | ${rate(o)} | ${wallMs(o)} | ${cpuMs(o)} | ${ratio(o, q)} | ${o ? mib(o.peakRssBytes) : 'n/a'} | |`);
      }
    }
    console.log(`| ${t} | PyTorch | ${rate(q)} | ${wallMs(q)} | ${cpuMs(q)} | | ${q ? mib(q.peakRssBytes) : 'n/a'} | ${q?.sgemmGflops?.toFixed(1) ?? 'n/a'} |`);
  }
  for (const t of threadCounts) {
    for (const b of backends) {
      const o = rows.get(`${b} ${t}`);
      const q = rows.get(`torch ${t}`);
      const w = o?.withCapture;
      if (!w || w.steps === o.steps) continue;
      // The rows above time the steps after the plan's check; these hold the capture's two eager steps too.
      console.log(`ours (${b}, ${t} thread(s)), ${w.steps} steps with the plan's capture inside: ${w.samplesPerSecond.toFixed(0)} samples/s, ${w.cpuMsPerSample.toFixed(2)} CPU ms/sample${q ? `; / PyTorch ${(w.samplesPerSecond / q.samplesPerSecond).toFixed(2)}x samples/s, ${(q.cpuMsPerSample / w.cpuMsPerSample).toFixed(2)}x less CPU per sample` : ''}`);
    }
  }
  if (peers.length) peerTable(p, rows);
  if (baseline) for (const t of threadCounts) for (const b of backends) console.log(`ours / before (${b}, ${t} thread(s)): ${ratio(rows.get(`${b} ${t}`), rows.get(`before ${b} ${t}`))} samples/s, ${cpuRatio(rows.get(`${b} ${t}`), rows.get(`before ${b} ${t}`))} less CPU per sample`);
  for (const t of threadCounts) {
    if (native.available) console.log(`native / wasm at ${t} thread(s): ${ratio(rows.get(`native ${t}`), rows.get(`wasm ${t}`))} samples/s, ${cpuRatio(rows.get(`native ${t}`), rows.get(`wasm ${t}`))} less CPU per sample`);
  }
  if (threadCounts.length > 1) {
    for (const b of backends) console.log(`ours (${b}) ${cores} threads / 1 thread: ${ratio(rows.get(`${b} ${cores}`), rows.get(`${b} 1`))}${baseline ? `; before: ${ratio(rows.get(`before ${b} ${cores}`), rows.get(`before ${b} 1`))}` : ''}`);
    console.log(`PyTorch ${cores} / 1: ${ratio(rows.get(`torch ${cores}`), rows.get('torch 1'))}`);
  }
  results.push({ model: p.key, batch: p.batch, steps: p.steps, chunk: p.chunk, rounds: Object.fromEntries(runs), ...Object.fromEntries(rows) });
}
/** Every peer's median beside ours: samples/s, CPU a sample, warm-up, and ours over each. */
function peerTable(p: Plan, rows: Map<string, Row | undefined>): void {
  for (const peer of peers) {
    const gap = peerGap(peer, p.key);
    if (gap) console.log(`${peerLabels[peer]} skipped on ${p.key}: ${gap}`);
  }
  console.log(`\n${p.label}, every peer (median of ${rounds} round(s)); ours / peer by samples/s:`);
  console.log(`| threads | peer | samples/s | CPU ms/sample | cores busy | compile + warm-up s | peak memory | ${backends.map((b) => `ours ${b} / peer`).join(' | ')} |`);
  console.log(`|---:|---|---:|---:|---:|---:|---:|${backends.map(() => '---:').join('|')}|`);
  const over: string[] = [];
  /** A run busy on more cores than its threads, named in `over`. */
  const checkCores = (label: string, t: number, q: Row | undefined) => {
    if (q && coresBusy(q) > 1.1 * t) over.push(`${label} at ${t} thread(s): ${coresBusy(q).toFixed(2)} cores`);
  };
  for (const t of threadCounts) {
    for (const b of backends) checkCores(`ours ${b}`, t, rows.get(`${b} ${t}`));
    for (const [label, key] of [['PyTorch 1.13 (Debian)', `torch ${t}`], ...peers.filter((peer) => !peerGap(peer, p.key)).map((peer) => [peerLabels[peer], `${peer} ${t}`])]) {
      const q = rows.get(key);
      const warm = q?.compileSeconds;
      checkCores(label, t, q);
      console.log(`| ${t} | ${label} | ${rate(q)} | ${cpuMs(q)} | ${q ? coresBusy(q).toFixed(2) : 'n/a'} | ${typeof warm === 'number' ? warm.toFixed(1) : ''} | ${q ? mib(q.peakRssBytes) : 'n/a'} | ${backends.map((b) => ratio(rows.get(`${b} ${t}`), q)).join(' | ')} |`);
    }
  }
  if (over.length) console.log(`busy on more cores than its threads (its figure is not a figure at that thread count): ${over.join('; ')}`);
}
/** Cores a run kept busy while timed: its CPU time a sample over its wall time a sample. */
function coresBusy(r: Row): number {
  return (r.cpuMsPerSample * r.samplesPerSecond) / 1000;
}
if (failures.length) console.log(`\nruns that failed (n/a above):\n${failures.map((f) => `- ${f}`).join('\n')}`);
const loadAfter = os.loadavg();
console.log(`\nload average at the end: ${loadAfter.map((l) => l.toFixed(2)).join(' ')} (figures from a loaded machine are not representative)`);
mkdirSync(path.join(here, 'out'), { recursive: true });
writeFileSync(path.join(here, 'out', 'train-vs-torch.json'), JSON.stringify({ quick, rounds, cores, peers, baseline: baseline ?? null, failures, loadBefore, loadAfter, openblas: blas !== undefined, openBlasKernels, native: native.available ? true : native.reason, results }, null, 2));

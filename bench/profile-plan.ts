/**
 * Where a replayed training step's time goes (src/engine/compiled/): the keyword-spotting CNN
 * (examples/keyword-spotting, 12 classes, random log-mel inputs; full fine-tuning and the sparse
 * method's phases, trainDiff) and the small transformer (v1.onnx distilled toward v2.onnx,
 * trainOnnxDiff, as bench/train-transformer-child.ts trains it; bench/torch-transformer.py makes
 * the files, bench/train-vs-torch.ts --models transformer runs it first), one thread, batch 32, on
 * each backend in its own process. Every replay after the checked one is timed kernel by kernel
 * (StepPlan.replay's profile): calls, ms and share of the replay's wall time per kernel name,
 * the release of intermediates, the outputs and assignments, and the rest (the replay's own
 * JavaScript: reading slots, building inputs). Element-wise kernels are summed apart.
 *
 * With --compare, each training run is done twice, on and off, alternated in rounds in the same
 * process: CPU ms per replayed step (process CPU time inside the replays) and kernel calls per
 * replay, each way. What is switched: `fusion`, element-wise chains fused
 * (planSwitch.fuseElementwise); `kernels`, Transpose in WebAssembly, GatherV2 as row copies and
 * SplitV through our Slice (simdKernelSwitch.transposeInWasm, gatherRows, splitInMemory);
 * `epilogue`, bias adds in the GEMM before them on native (epilogueSwitch.fuseBias); `activation`,
 * on native the ReLUs in those epilogues, Relu's gradient in a max pool gradient's pass and the
 * addon's max pools (epilogueSwitch.fuseRelu, fusePoolGrad, nativePoolSwitch; the bias adds fused
 * both ways) against wasm's pools and separate Relu kernels; `bmm`, the
 * batched products of small items in WebAssembly against the stock BatchMatMul
 * (simdKernelSwitch.batchMatMulInWasm; wasm only, native multiplies with OpenBLAS); `conv`, the
 * convolutions and their gradients in WebAssembly (conv2d.c) against XNNPACK and the column
 * matrix (simdKernelSwitch.convInWasm; wasm only); `arena`, the
 * intermediates at offsets planned once in one block against an allocation per kernel output
 * (arenaSwitch.planMemory; it also runs each way alone in a process of its own, one round, for
 * the WebAssembly memory's size at the end: the memory never shrinks, so alternated runs cannot
 * tell it apart); `rows`, on native LayerNorm, Softmax, their gradients, Transpose, SplitV and the
 * binary ops in the addon at its limits (nativeElementwiseLimits rows, softmax, transpose, binary)
 * against wasm's kernels;
 * `all`, every one of these.
 *
 * --models keyword,transformer runs only the models named (default both).
 *
 * --threads N (native only; default 1) trains on N threads the way `ndiff train --threads N` does
 * (the native kernels on the addon's N threads, on the one JavaScript thread).
 *
 *   node --conditions=neural-diff-source --import tsx bench/profile-plan.ts [--backend wasm|native|both] [--threads N] [--compare fusion|kernels|epilogue|activation|bmm|conv|arena|rows|all] [--rounds N] [--transformer DIR] [--models keyword,transformer]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { seededRandom } from '../src/train/data.ts';
import { replayProfile, replayProfiler, type ReplayProfile } from '../src/engine/compiled/step.ts';
import { ELEMENTWISE_KERNELS, FUSED_ELEMENTWISE, planSwitch } from '../src/engine/compiled/fuse.ts';
import { simdKernelSwitch } from '../src/engine/kernels/train-kernels-simd.ts';
import { epilogueSwitch } from '../src/engine/compiled/epilogue.ts';
import { arenaSwitch } from '../src/engine/compiled/arena.ts';
import { nativePoolSwitch } from '../src/engine/kernels/native/kernels.ts';
import { nativeElementwiseLimits } from '../src/engine/kernels/native/elementwise.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const childBackend = args.includes('--child') ? opt('--child', 'wasm') : undefined;
const compare = args.includes('--compare') ? opt('--compare', 'fusion') : null;
if (compare !== null && !['fusion', 'kernels', 'epilogue', 'activation', 'bmm', 'conv', 'arena', 'rows', 'all'].includes(compare)) throw new Error(`--compare takes fusion, kernels, epilogue, activation, bmm, conv, arena, rows or all, got ${compare}`);
const models = opt('--models', 'keyword,transformer').split(',');
if (!models.length || models.some((m) => m !== 'keyword' && m !== 'transformer')) throw new Error(`--models takes keyword, transformer or both (comma-separated), got ${opt('--models', '')}`);
/** The limits of the addon's row kernels as set: the way rows on. */
const rowLimits = { ...nativeElementwiseLimits };
/** In a child: run only this way (on or off) of --compare. */
const onlyWay = args.includes('--way') ? opt('--way', 'on') === 'on' : null;
const rounds = Number(opt('--rounds', compare ? '3' : '1'));
const threads = Number(opt('--threads', '1'));
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads takes a positive integer, got ${opt('--threads', '1')}`);

/** Switch what --compare compares on or off. */
function setWay(on: boolean): void {
  if (compare === 'fusion' || compare === 'all') planSwitch.fuseElementwise = on;
  if (compare === 'kernels' || compare === 'all') Object.assign(simdKernelSwitch, { transposeInWasm: on, gatherRows: on, splitInMemory: on });
  if (compare === 'epilogue' || compare === 'all') epilogueSwitch.fuseBias = on;
  if (compare === 'activation' || compare === 'all') {
    Object.assign(epilogueSwitch, { fuseRelu: on, fusePoolGrad: on });
    nativePoolSwitch.addon = on;
  }
  if (compare === 'bmm' || compare === 'all') simdKernelSwitch.batchMatMulInWasm = on;
  if (compare === 'conv' || compare === 'all') simdKernelSwitch.convInWasm = on;
  if (compare === 'arena' || compare === 'all') arenaSwitch.planMemory = on;
  if (compare === 'rows' || compare === 'all') {
    const off = Number.POSITIVE_INFINITY;
    Object.assign(nativeElementwiseLimits, on ? { rows: rowLimits.rows, softmax: rowLimits.softmax, transpose: rowLimits.transpose, binary: rowLimits.binary } : { rows: off, softmax: off, transpose: off, binary: off });
  }
}
const transformerDir = path.resolve(root, opt('--transformer', '.cache/transformer'));

interface Row { model: string; backend: string; on: boolean; profiles: ReplayProfile[]; said: string; heapBytes?: number }

function serial(p: ReplayProfile) {
  return { ...p, kernels: [...p.kernels] };
}

async function child(backend: 'wasm' | 'native'): Promise<void> {
  const runThreads = backend === 'native' ? threads : 1;
  await initBackend(backend, { threads: runThreads });
  const random = seededRandom(7);
  const kws = keywordModel(12);
  const kwsBase = modelToStore(kws);
  const inputShape = (kws.inputs[0].shape as number[]).slice(1);
  const kwsCount = 384;
  const kwsX = Float32Array.from({ length: kwsCount * inputShape.reduce((a, b) => a * b, 1) }, () => random() * 2 - 1);
  const kwsY = Int32Array.from({ length: kwsCount }, () => Math.floor(random() * 12));
  const haveTransformer = ['v1.onnx', 'v2.onnx', 'distill-tokens.bin'].every((f) => existsSync(path.join(transformerDir, f)));
  const common = { seed: 1, tune: 'off' as const, validation: 0, batchSize: 32, distill: 0, threads: runThreads, allowWorse: true, refuseWorseOnEval: false, step: 'compiled' as const };
  const runs: { model: string; run: (say: (m: string) => void) => Promise<unknown> }[] = [
    ...(models.includes('keyword') ? (['full', 'sparse'] as const) : []).map((method) => ({
      model: `keyword CNN, ${method}`,
      run: async (say: (m: string) => void) => {
        setModelWeights(kws, (n) => kwsBase.values(n));
        const x = tf.tensor(kwsX, [kwsCount, ...inputShape]);
        try {
          await trainDiff(kws, { x, y: kwsY }, { ...common, epochs: 3, method, budgetBytes: method === 'full' ? 0 : 20_000, base: kwsBase, onProgress: say });
        } finally {
          x.dispose();
        }
      },
    })),
  ];
  if (!models.includes('transformer')) {
    // left out as asked
  } else if (haveTransformer) {
    const v1 = new Uint8Array(readFileSync(path.join(transformerDir, 'v1.onnx')));
    const v2 = new Uint8Array(readFileSync(path.join(transformerDir, 'v2.onnx')));
    const tokens = new Int32Array(readFileSync(path.join(transformerDir, 'distill-tokens.bin')).buffer.slice(0)).slice(0, 32 * 32 * 16);
    runs.push({
      model: 'transformer (ONNX, distilled)',
      run: (say) => trainOnnxDiff(v1, { inputs: { tokens: { values: tokens, shape: [32] } } }, { ...common, teacher: v2, method: 'full', budgetBytes: 0, epochs: 2, program: { source: 'v1.onnx' }, header: { modelId: 'transformer', sequence: 1 }, onProgress: say }),
    });
  } else console.error(`no transformer files in ${transformerDir}: its rows are left out`);
  const rows: Row[] = [];
  const ways = onlyWay !== null ? [onlyWay] : compare ? [true, false] : [true];
  for (let r = 0; r < rounds; r++) {
    for (const x of runs) {
      for (const on of r % 2 ? ways.slice().reverse() : ways) {
        setWay(on);
        const said: string[] = [];
        const profile = replayProfile();
        replayProfiler.into = profile;
        try {
          await x.run((m) => { if (m.startsWith('step')) said.push(m); });
        } finally {
          replayProfiler.into = null;
        }
        let row = rows.find((y) => y.model === x.model && y.on === on);
        if (!row) rows.push((row = { model: x.model, backend, on, profiles: [], said: [...new Set(said)].join('; ') }));
        row.profiles.push(profile);
      }
    }
  }
  // The WebAssembly memory's size now: its largest in this process (it never shrinks).
  const heapBytes = (tf.engine().backend as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.length;
  console.log(JSON.stringify(rows.map((row) => ({ ...row, heapBytes, profiles: row.profiles.map(serial) }))));
}

type Serial = Omit<ReplayProfile, 'kernels'> & { kernels: [string, { calls: number; ms: number }][] };
const median = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function table(row: Omit<Row, 'profiles'> & { profiles: Serial[] }): void {
  // Kernel breakdown of all rounds together.
  const sum = { replays: 0, wallMs: 0, freeMs: 0, finishMs: 0, calls: 0 };
  const kernels = new Map<string, { calls: number; ms: number }>();
  for (const p of row.profiles) {
    sum.replays += p.replays;
    sum.wallMs += p.wallMs;
    sum.freeMs += p.freeMs;
    sum.finishMs += p.finishMs;
    sum.calls += p.calls;
    for (const [n, e] of p.kernels) {
      const k = kernels.get(n) ?? { calls: 0, ms: 0 };
      k.calls += e.calls;
      k.ms += e.ms;
      kernels.set(n, k);
    }
  }
  const per = (v: number) => v / sum.replays;
  const inKernels = [...kernels.values()].reduce((a, e) => a + e.ms, 0);
  const rest = sum.wallMs - inKernels - sum.freeMs - sum.finishMs;
  const elementwise = [...kernels].filter(([n]) => ELEMENTWISE_KERNELS.has(n) || n === FUSED_ELEMENTWISE).reduce((a, [, e]) => a + e.ms, 0);
  const cpu = row.profiles.map((p) => p.cpuMs / p.replays);
  console.log(`\n### ${row.model}, ${row.backend}${row.backend === 'native' ? `, ${threads} thread(s)` : ''}${compare ? `, ${compare === 'fusion' ? 'element-wise fusion' : compare === 'kernels' ? 'Transpose, GatherV2 and SplitV kernels' : compare === 'epilogue' ? 'bias epilogues' : compare === 'activation' ? 'ReLUs in epilogues, the addon\'s max pools' : compare === 'bmm' ? 'batched products in WebAssembly' : compare === 'conv' ? 'convolutions in WebAssembly' : compare === 'arena' ? 'intermediates in one arena' : compare === 'rows' ? 'the addon\'s row kernels, Transpose, SplitV and binary ops' : 'this work'} ${row.on ? 'on' : 'off'}` : ''}`);
  console.log(`${sum.replays} replays; CPU ms per replay ${median(cpu).toFixed(2)} (per round ${cpu.map((v) => v.toFixed(2)).join(', ')}); wall ${per(sum.wallMs).toFixed(2)} ms; ${per(sum.calls).toFixed(0)} kernel calls; element-wise kernels ${((100 * elementwise) / sum.wallMs).toFixed(1)}% of the replay`);
  console.log(`plan: ${row.said}`);
  console.log('| kernel | calls per replay | ms per replay | share |');
  console.log('|---|---:|---:|---:|');
  const lines: [string, number, number][] = [...kernels].map(([n, e]) => [n, e.calls, e.ms]);
  lines.push(['(releasing intermediates)', 0, sum.freeMs], ['(outputs and assignments)', 0, sum.finishMs], ['(replay\'s own JavaScript)', 0, rest]);
  for (const [n, calls, ms] of lines.sort((a, b) => b[2] - a[2])) {
    console.log(`| ${n} | ${calls ? per(calls).toFixed(0) : ''} | ${per(ms).toFixed(3)} | ${((100 * ms) / sum.wallMs).toFixed(1)}% |`);
  }
}

/** Run a child process of this bench; its rows. */
function runChild(b: string, childArgs: string[]): (Omit<Row, 'profiles'> & { profiles: Serial[] })[] {
  const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...childArgs], { encoding: 'utf8', maxBuffer: 64 << 20, cwd: root });
  if (r.status !== 0) throw new Error(`the ${b} run failed: ${r.stderr.slice(-2000)}`);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('[')).pop();
  if (!line) throw new Error(`the ${b} run printed no result: ${r.stdout.slice(-1000)}`);
  return JSON.parse(line);
}

async function main(): Promise<void> {
  const which = opt('--backend', 'both');
  const backends = which === 'both' ? ['native', 'wasm'] : [which];
  const all: (Omit<Row, 'profiles'> & { profiles: Serial[] })[] = [];
  const heaps: { backend: string; on: boolean; bytes: number; said: string[] }[] = [];
  for (const b of backends) {
    const status = nativeAddonStatus();
    if (b === 'native' && !status.available) {
      console.log(`native: skipped (${status.reason})`);
      continue;
    }
    const childArgs = ['--child', b, '--rounds', String(rounds), '--threads', String(threads), '--transformer', transformerDir, '--models', models.join(','), ...(compare ? ['--compare', compare] : [])];
    all.push(...runChild(b, childArgs));
    if (compare === 'arena') {
      // Each way alone in its own process: the memory's size at the end is that way's.
      for (const on of [true, false]) {
        const alone = runChild(b, ['--child', b, '--rounds', '1', '--threads', String(threads), '--transformer', transformerDir, '--compare', compare, '--way', on ? 'on' : 'off']);
        heaps.push({ backend: b, on, bytes: alone[0]?.heapBytes ?? 0, said: alone.map((x) => `${x.model}: ${x.said}`) });
      }
    }
  }
  for (const row of all) table(row);
  if (compare) {
    console.log(`\n| model | backend | CPU ms per replay, ${compare} on | off | off/on | kernel calls per replay, on | off |`);
    console.log('|---|---|---:|---:|---:|---:|---:|');
    for (const on of all.filter((r) => r.on)) {
      const off = all.find((r) => !r.on && r.model === on.model && r.backend === on.backend);
      if (!off) continue;
      const cpu = (r: typeof on) => median(r.profiles.map((p) => p.cpuMs / p.replays));
      const calls = (r: typeof on) => r.profiles[0].calls / r.profiles[0].replays;
      const each = (r: typeof on) => r.profiles.map((p) => (p.cpuMs / p.replays).toFixed(2)).join(', ');
      console.log(`| ${on.model} | ${on.backend} | ${cpu(on).toFixed(2)} (${each(on)}) | ${cpu(off).toFixed(2)} (${each(off)}) | ${(cpu(off) / cpu(on)).toFixed(2)}x | ${calls(on).toFixed(0)} | ${calls(off).toFixed(0)} |`);
    }
    if (heaps.length) {
      console.log('\n| backend | WebAssembly memory at the end, arena on (MB) | off (MB) |');
      console.log('|---|---:|---:|');
      for (const b of new Set(heaps.map((h) => h.backend))) {
        const mb = (on: boolean) => ((heaps.find((h) => h.backend === b && h.on === on)?.bytes ?? 0) / 1048576).toFixed(1);
        console.log(`| ${b} | ${mb(true)} | ${mb(false)} |`);
      }
      for (const h of heaps) console.log(`\n${h.backend}, arena ${h.on ? 'on' : 'off'}:\n  ${h.said.join('\n  ')}`);
    }
  }
}

if (childBackend) await child(childBackend as 'wasm' | 'native');
else await main();

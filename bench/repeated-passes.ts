/**
 * Passes repeated over the same inputs outside a training step, eager against compiled forward
 * plans (src/engine/compiled/forward.ts), on the small transformer's ONNX program (v1.onnx, v2.onnx
 * and distill-tokens.bin: bench/train-vs-torch.ts --models transformer makes them in
 * .cache/transformer), one thread, eager and compiled alternated round by round in one process
 * per backend (the first round a warm-up, left out); the values are compared bit for bit:
 *
 * - calibration (`ndiff diff --calibrate`): onnxCalibration's measure, 8 candidates measured (a
 *   pass of the base over every calibration example each), CPU ms per candidate;
 * - evaluation: the program trainer's outputs on its evaluation examples before and after training
 *   (ProgramTrainingModel.rawOutputs twice), CPU ms for both;
 * - closeness (`ndiff diff --eval`): onnxPayloadCloseness of a payload (v2's every weight), CPU ms.
 *
 * Each compiled round makes its plans afresh: their capture is in the figure.
 *
 * `--train TREE`: a whole program training run (v1 distilled toward v2 through trainOnnxDiff,
 * method full, batch 32, one epoch over --train-examples, an evaluation set of --examples) run
 * as a child process from this checkout and from TREE (another checkout, e.g. the commit before
 * the evaluation passes were compiled), alternated: the process's CPU seconds, and whether both
 * wrote the same payload bytes.
 *
 *   node --conditions=neural-diff-source --import tsx bench/repeated-passes.ts [--backend wasm|native|both] [--rounds N] [--examples N] [--transformer DIR] [--train TREE] [--train-examples N]
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';
import { ForwardPlans, forwardSwitch } from '../src/engine/compiled/forward.ts';
import { onnxCalibration, onnxPayloadCloseness } from '../src/train/onnx/payload-closeness.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { ProgramTrainingModel } from '../src/engine/program/training-model.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { getHasher } from '../src/core/hasher.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    backend: { type: 'string', default: 'both' },
    rounds: { type: 'string', default: '4' },
    examples: { type: 'string', default: '1024' },
    'train-examples': { type: 'string', default: '512' },
    transformer: { type: 'string', default: path.join(root, '.cache', 'transformer') },
    train: { type: 'string' },
    child: { type: 'string' },
  },
});
const rounds = Math.max(2, Number(flags.rounds));
const examples = Number(flags.examples);
const trainExamples = Number(flags['train-examples']);
const dir = path.resolve(flags.transformer);
const LENGTH = 32;

const cpuNow = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);

function files(n: number) {
  const v1 = new Uint8Array(readFileSync(path.join(dir, 'v1.onnx')));
  const v2 = new Uint8Array(readFileSync(path.join(dir, 'v2.onnx')));
  const all = new Int32Array(readFileSync(path.join(dir, 'distill-tokens.bin')).buffer.slice(0));
  if (all.length < n * LENGTH) throw new Error(`${dir}/distill-tokens.bin holds ${all.length / LENGTH} sequences, ${n} asked`);
  const data = (from: number, count: number) => ({ inputs: { tokens: { values: all.slice(from * LENGTH, (from + count) * LENGTH), shape: [LENGTH] } } });
  return { v1, v2, data };
}

interface Timed {
  name: string;
  unit: string;
  eager: number[];
  compiled: number[];
  sameBits: boolean;
}

/** Run `f`: its value and the CPU ms it took. */
async function timed(f: () => unknown | Promise<unknown>): Promise<{ value: unknown; ms: number }> {
  const c0 = cpuNow();
  const value = await f();
  return { value, ms: cpuNow() - c0 };
}

/** `run` (its value and CPU ms) eager and compiled in alternated rounds; the first round left out; ms divided by `per`. */
async function alternate(name: string, unit: string, per: number, run: () => Promise<{ value: unknown; ms: number }>): Promise<Timed> {
  const out: Timed = { name, unit, eager: [], compiled: [], sameBits: true };
  let reference: string | undefined;
  for (let r = 0; r < rounds; r++) {
    for (const compiled of r % 2 === 0 ? [false, true] : [true, false]) {
      forwardSwitch.compiled = compiled;
      const { value, ms } = await run();
      const text = JSON.stringify(value, (_k, v) => (v instanceof Float32Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : v));
      reference ??= text;
      if (text !== reference) out.sameBits = false;
      if (r > 0) (compiled ? out.compiled : out.eager).push(ms / per);
    }
  }
  forwardSwitch.compiled = true;
  return out;
}

async function child(backend: 'wasm' | 'native'): Promise<void> {
  await initBackend(backend, backend === 'native' ? { threads: 1 } : {});
  const { v1, v2, data } = files(examples);
  const store = new OnnxWeightStore(v1);
  const sizes = store.list().filter((t) => t.shape.length > 0).map((t) => [t.name, t.shape.reduce((a, d) => a * d, 1)] as const);
  const deltas = (seed: number) => {
    let s = seed;
    return new Map(sizes.map(([name, n]) => [name, Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 1e-3)]));
  };
  const candidates = 8;
  const results: Timed[] = [];
  // The session (its gradient probe, the target's pass, the base's) is made outside the timing: the candidates' passes are timed.
  results.push(await alternate('calibration: one candidate measured', 'CPU ms per candidate', candidates, async () => {
    const session = onnxCalibration(v1, v2, store, data(0, examples), { batchSize: 256 });
    try {
      return await timed(() => Array.from({ length: candidates }, (_, k) => session.measure.measureModel(deltas(k + 1))));
    } finally {
      session.dispose();
    }
  }));
  const model = new ProgramTrainingModel(new OnnxProgram(v1, { source: 'v1.onnx' }), { count: examples, inputs: data(0, examples).inputs }, { frozen: true });
  results.push(await alternate('evaluation: outputs before and after training', 'CPU ms for both', 1, () => timed(() => {
    const plans = forwardSwitch.compiled ? new ForwardPlans('evaluation', () => {}) : undefined;
    try {
      return [model.rawOutputs(0, examples, plans), model.rawOutputs(0, examples, plans)];
    } finally {
      plans?.dispose();
    }
  })));
  model.dispose();
  const payload = exactDiff(await getHasher(), store, new OnnxWeightStore(v2), { modelId: 'transformer', sequence: 1 }).bytes;
  results.push(await alternate('closeness of a payload (--eval)', 'CPU ms', 1, () => timed(() => onnxPayloadCloseness(v1, v2, payload, data(0, examples), { batchSize: 256 }))));
  console.log(JSON.stringify(results));
}

/** One training run (the `--train` child): CPU seconds and the payload's digest. */
async function trainChild(backend: 'wasm' | 'native'): Promise<void> {
  await initBackend(backend, backend === 'native' ? { threads: 1 } : {});
  const { v1, v2, data } = files(trainExamples + examples);
  const said: string[] = [];
  const c0 = cpuNow();
  const r = await trainOnnxDiff(v1, data(0, trainExamples), { teacher: v2, method: 'full', budgetBytes: 0, epochs: 1, batchSize: 32, threads: 1, validation: 0, eval: data(trainExamples, examples), tune: 'off', seed: 1, learningRate: 1e-3, onProgress: (m) => void said.push(m), header: { modelId: 'transformer', sequence: 1 }, program: { source: 'v1.onnx' } });
  console.log(JSON.stringify({ cpuS: (cpuNow() - c0) / 1000, sha: sha(r.bytes), evaluation: said.find((m) => m.startsWith('evaluation:')) ?? 'eager' }));
}

const mode = flags.child;
if (mode) {
  const backend = flags.backend === 'native' ? 'native' : 'wasm';
  await (mode === 'train' ? trainChild(backend) : child(backend));
} else {
  const asked = flags.backend;
  const native = nativeAddonStatus();
  const backends = (asked === 'both' ? ['wasm', 'native'] : [asked]).filter((b) => b !== 'native' || native.available || (console.log(`native skipped: ${native.available ? '' : native.reason}`), false));
  console.log(`repeated passes, eager against compiled; ${os.cpus().length} core(s), load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the start; ${rounds} rounds (the first a warm-up); ${examples} examples`);
  const spawn = (cwd: string, extra: string[]) => {
    const p = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', path.join(cwd, 'bench', 'repeated-passes.ts'), ...extra, '--transformer', dir, '--examples', String(examples), '--train-examples', String(trainExamples), '--rounds', String(rounds)], { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (p.status !== 0) throw new Error(`child in ${cwd} (${extra.join(' ')}) failed:\n${p.stderr.slice(-3000)}`);
    return JSON.parse(p.stdout.trim().split('\n').pop() as string);
  };
  for (const b of backends) {
    const results = spawn(root, ['--child', 'passes', '--backend', b]) as Timed[];
    console.log(`\n${b}, 1 thread: medians of ${rounds - 1} timed rounds each way`);
    console.log('| passes | eager | compiled | eager / compiled | same values |');
    console.log('|---|---:|---:|---:|---|');
    for (const t of results) {
      const [e, c] = [median(t.eager), median(t.compiled)];
      console.log(`| ${t.name} (${t.unit}) | ${e.toFixed(1)} | ${c.toFixed(1)} | ${(e / c).toFixed(2)}x | ${t.sameBits ? 'yes' : 'NO'} |`);
    }
    const before = flags.train;
    if (before) {
      const runs: Record<'before' | 'after', { cpuS: number; sha: string; evaluation: string }[]> = { before: [], after: [] };
      for (let r = 0; r < rounds; r++) {
        for (const which of r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const)) runs[which].push(spawn(which === 'after' ? root : path.resolve(before), ['--child', 'train', '--backend', b]));
      }
      const m = (w: 'before' | 'after') => median(runs[w].map((x) => x.cpuS));
      const shas = new Set([...runs.before, ...runs.after].map((x) => x.sha));
      console.log(`\ntraining run (${trainExamples} examples, batch 32, an evaluation set of ${examples}), CPU s, medians of ${rounds} runs each way, alternated: before ${m('before').toFixed(2)}, after ${m('after').toFixed(2)} (${(m('before') / m('after')).toFixed(3)}x); payload bytes ${shas.size === 1 ? 'the same in every run' : `DIFFER (${[...shas].join(', ')})`}; after: ${runs.after[0].evaluation}`);
    }
  }
  console.log(`\nload average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

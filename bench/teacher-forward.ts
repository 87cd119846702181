/**
 * The teacher's forward passes, eager against compiled (src/engine/compiled/forward.ts), side by
 * side in one process per backend, one thread, rounds alternated:
 *
 * - scoring: the teacher's outputs as the trainer computes them (src/train/teacher.ts
 *   outputRows), over the same examples each way: the small transformer's v2.onnx through the
 *   ONNX program (ProgramTrainingModel, batches of 32, as `ndiff train --teacher v2.onnx` scores
 *   its data) and the keyword-spotting CNN (examples/keyword-spotting, random log-mel inputs,
 *   batches of 64). CPU ms per example each way (the process's CPU time around the passes; each
 *   round's compiled pass has its plans from the round before, so the capture is timed only in
 *   the first round, which is left out), and whether the rows are the same bits.
 * - training (`--train`): bench/train-transformer-child.ts run with the teacher's passes eager
 *   (NDIFF_BENCH_FORWARD=eager) and compiled, alternated: the teacher's share of the CPU time,
 *   its CPU ms per sample and the run's.
 *
 *   node --conditions=neural-diff-source --import tsx bench/teacher-forward.ts [--backend wasm|native|both] [--rounds N] [--train] [--transformer DIR]
 *
 * DIR holds v1.onnx, v2.onnx and distill-tokens.bin (bench/train-vs-torch.ts --models transformer
 * makes them in .cache/transformer).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';
import { ForwardPlans } from '../src/engine/compiled/forward.ts';
import { outputRows } from '../src/train/teacher.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { ProgramTrainingModel } from '../src/engine/program/training-model.ts';
import { seededRandom } from '../src/train/data.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
};
const rounds = Math.max(2, Number(opt('--rounds', '4')));
const transformerDir = path.resolve(opt('--transformer', path.join(root, '.cache', 'transformer')));
const childBackend = args.includes('--child') ? opt('--child', 'wasm') : undefined;

interface Scored {
  model: string;
  examples: number;
  batch: number;
  eagerCpuMs: number[];
  compiledCpuMs: number[];
  sameBits: boolean;
  path: string;
}

const cpuNow = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One model's teacher rows, eager and compiled in alternated rounds. */
function score(name: string, model: tf.LayersModel, x: tf.Tensor, width: number, batch: number): Scored {
  let said = 'no plan';
  const plans = new ForwardPlans('teacher', (m) => (said = m));
  const n = x.shape[0];
  const out: Scored = { model: name, examples: n, batch, eagerCpuMs: [], compiledCpuMs: [], sameBits: true, path: '' };
  let reference: Float32Array | undefined;
  for (let r = 0; r < rounds; r++) {
    for (const compiled of r % 2 === 0 ? [false, true] : [true, false]) {
      const c0 = cpuNow();
      const rows = outputRows(model, x, width, batch, compiled ? plans : undefined);
      const ms = cpuNow() - c0;
      reference ??= rows;
      if (Buffer.compare(Buffer.from(rows.buffer), Buffer.from(reference.buffer)) !== 0) out.sameBits = false;
      // The first round warms up (and holds the plans' capture).
      if (r > 0) (compiled ? out.compiledCpuMs : out.eagerCpuMs).push(ms);
    }
  }
  out.path = said;
  plans.dispose();
  return out;
}

async function child(backend: 'wasm' | 'native'): Promise<void> {
  await initBackend(backend, { threads: 1 });
  const results: Scored[] = [];
  if (existsSync(path.join(transformerDir, 'v2.onnx'))) {
    const length = 32;
    const count = 32 * 31;
    const tokens = new Int32Array(readFileSync(path.join(transformerDir, 'distill-tokens.bin')).buffer.slice(0)).slice(0, count * length);
    const program = new OnnxProgram(new Uint8Array(readFileSync(path.join(transformerDir, 'v2.onnx'))), { source: 'v2.onnx' });
    const teacher = new ProgramTrainingModel(program, { count, inputs: { tokens: { values: tokens, shape: [length] } } }, { frozen: true });
    const ids = teacher.ids(0, count);
    results.push(score('transformer v2.onnx (ONNX program)', teacher.asLayersModel(), ids, teacher.classes, 32));
    ids.dispose();
    teacher.dispose();
  }
  const kws = keywordModel(12);
  const r = seededRandom(5);
  const n = 64 * 8;
  const x = tf.tensor4d(Float32Array.from({ length: n * 49 * 40 }, () => r() * 2 - 1), [n, 49, 40, 1]);
  results.push(score('keyword CNN (layers model)', kws, x, 12, 64));
  x.dispose();
  kws.dispose();
  console.log(JSON.stringify(results));
}

function trainRuns(backend: string): void {
  const child = path.join(root, 'bench', 'train-transformer-child.ts');
  const runs: Record<'eager' | 'compiled', Record<string, number>[]> = { eager: [], compiled: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of r % 2 === 0 ? (['eager', 'compiled'] as const) : (['compiled', 'eager'] as const)) {
      const p = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', child, transformerDir, '1', '32', '30', backend], { cwd: root, encoding: 'utf8', env: { ...process.env, NDIFF_BENCH_FORWARD: mode }, maxBuffer: 1 << 26 });
      if (p.status !== 0) throw new Error(`train-transformer-child (${backend}, ${mode}) failed:\n${p.stderr.slice(-2000)}`);
      runs[mode].push(JSON.parse(p.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop() as string));
    }
  }
  const m = (mode: 'eager' | 'compiled', key: string) => median(runs[mode].map((x) => x[key]));
  console.log(`\ntransformer distillation (bench/train-transformer-child.ts, ${backend}, 1 thread, batch 32, 30 steps; medians of ${rounds} runs each way, alternated)`);
  console.log('| teacher passes | teacher CPU share | teacher CPU ms/sample | run CPU ms/sample | samples/s |');
  console.log('|---|---:|---:|---:|---:|');
  for (const mode of ['eager', 'compiled'] as const) console.log(`| ${mode} | ${(100 * m(mode, 'teacherCpuShare')).toFixed(0)}% | ${m(mode, 'teacherCpuMsPerSample').toFixed(3)} | ${m(mode, 'cpuMsPerSample').toFixed(3)} | ${m(mode, 'samplesPerSecond').toFixed(0)} |`);
  console.log(`compiled / eager: the teacher ${(m('eager', 'teacherCpuMsPerSample') / m('compiled', 'teacherCpuMsPerSample')).toFixed(2)}x less CPU per sample, the run ${(m('eager', 'cpuMsPerSample') / m('compiled', 'cpuMsPerSample')).toFixed(2)}x`);
}

if (childBackend) {
  await child(childBackend === 'native' ? 'native' : 'wasm');
} else {
  const asked = opt('--backend', 'both');
  const native = nativeAddonStatus();
  const backends = (asked === 'both' ? ['wasm', 'native'] : [asked]).filter((b) => b !== 'native' || native.available || (console.log(`native skipped: ${native.available ? '' : native.reason}`), false));
  console.log(`teacher forward passes, eager against compiled; ${os.cpus().length} core(s), load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the start; ${rounds} rounds (the first a warm-up)`);
  for (const b of backends) {
    const p = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', b, '--rounds', String(rounds), '--transformer', transformerDir], { encoding: 'utf8', maxBuffer: 64 << 20, cwd: root });
    if (p.status !== 0) throw new Error(`${b} child failed:\n${p.stderr.slice(-3000)}`);
    const results = JSON.parse(p.stdout.trim().split('\n').pop() as string) as Scored[];
    console.log(`\n${b}, 1 thread: the teacher's rows (outputRows), CPU ms per example, medians of ${rounds - 1} timed rounds each way`);
    console.log('| teacher | examples (batch) | eager | compiled | eager / compiled | same bits | plan |');
    console.log('|---|---:|---:|---:|---:|---|---|');
    for (const s of results) {
      const [e, c] = [median(s.eagerCpuMs) / s.examples, median(s.compiledCpuMs) / s.examples];
      console.log(`| ${s.model} | ${s.examples} (${s.batch}) | ${e.toFixed(3)} | ${c.toFixed(3)} | ${(e / c).toFixed(2)}x | ${s.sameBits ? 'yes' : 'NO'} | ${s.path.replace(/^teacher: /, '')} |`);
    }
    if (args.includes('--train')) trainRuns(b);
  }
  console.log(`\nload average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

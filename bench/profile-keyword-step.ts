/**
 * Where the keyword model's training step goes on native at batch 64, as bench/train-step-child.ts
 * trains it (full fine-tuning through src/train/loop.ts, compiled steps): each replay timed kernel
 * by kernel (replayProfiler), and the wall time between steps beside the replay's, which shows what
 * runs outside the plan. OPTIMIZER `trainer` is adam.ts's Adam (inside the plan, as `ndiff train`
 * runs it), `tfjs` tfjs' own (eager, after each replay).
 *
 * THREADS may list several counts (`1,2`): the process then trains ROUNDS rounds of STEPS steps,
 * each round at every count in turn (reversed every other round), the addon's threads changed
 * between them (setNativeThreads), and prints ms a replay per kernel at each count with the ratio:
 * which kernels gain from more threads and which do not, under the same machine load. A count
 * written `2:500` runs 2 threads whose idle threads watch for the next call for 500 us before
 * they sleep (the addon's setThreads(2, 500); by default they sleep after a few microseconds).
 *
 *   node --conditions=neural-diff-source --import tsx bench/profile-keyword-step.ts [STEPS] [trainer|tfjs] [THREADS[:IDLE_US],...] [ROUNDS]
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { Identity } from '../src/train/full-params.ts';
import { trainLoop } from '../src/train/loop.ts';
import { namedVariables } from '../src/engine/model-weights.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';
import { seededRandom } from '../src/train/data.ts';
import { replayProfile, replayProfiler, type ReplayProfile } from '../src/engine/compiled/step.ts';
import { setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { loadNativeAddon } from '../src/engine/kernels/native/loader.ts';
import { adam } from '../src/engine/kernels/adam.ts';

const [stepsArg = '8', which = 'trainer', threadsArg = '1', roundsArg = '1'] = process.argv.slice(2);
if (which !== 'trainer' && which !== 'tfjs') throw new Error(`the optimizer is trainer or tfjs, got ${which}`);
/** Each configuration: its label as given, its thread count, and its idle watch in microseconds. */
const counts = threadsArg.split(',');
const parsed = new Map(counts.map((c): [string, { threads: number; idle: number }] => {
  const [t, idle = 0] = c.split(':').map(Number);
  if (!Number.isInteger(t) || t < 1 || !Number.isInteger(idle) || idle < 0) throw new Error(`THREADS takes whole numbers >= 1, each with :IDLE_US if wanted, separated by commas; got ${threadsArg}`);
  return [c, { threads: t, idle }];
}));
const rounds = Number(roundsArg);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`ROUNDS takes a whole number >= 1, got ${roundsArg}`);
await initBackend('native', { threads: parsed.get(counts[0])?.threads ?? 1 });
const model = keywordModel(12);
const batch = 64;
const steps = Number(stepsArg);
const random = seededRandom(7);
const x = tf.tensor(Float32Array.from({ length: batch * steps * 49 * 40 }, () => random() * 2 - 1), [batch * steps, 49, 40, 1]);
const y = Int32Array.from({ length: batch * steps }, () => Math.floor(random() * 12));
for (const layer of model.layers) layer.trainable = true;
const vars = namedVariables(model).filter((v) => v.trainable);
const param = new Identity(vars.map((v) => v.name), new Map(vars.map((v) => [v.name, v.variable.name])));
const opt = which === 'trainer' ? adam(1e-4) : tf.train.adam(1e-4);
const profiles = new Map(counts.map((t) => [t, replayProfile()]));
/** Each replay's own profile too, per count: the least ms of a kernel over replays is the figure least moved by other processes' load. */
const each = new Map<string, ReplayProfile[]>(counts.map((t) => [t, []]));
const between = new Map<string, number[]>(counts.map((t) => [t, []]));
for (let r = 0; r < rounds; r++) {
  for (const t of r % 2 ? counts.slice().reverse() : counts) {
    const { threads: n, idle } = parsed.get(t) as { threads: number; idle: number };
    setNativeThreads(n);
    loadNativeAddon().setThreads(n, idle);
    const stamps: number[] = [];
    const mine = each.get(t) as ReplayProfile[];
    replayProfiler.into = replayProfile();
    trainLoop(model, { x, y }, param, { epochs: 1, batchSize: batch, seed: 1, fromLogits: false, optimizerFor: () => opt, onBatch: () => {
      stamps.push(performance.now());
      if (replayProfiler.into?.replays) mine.push(replayProfiler.into);
      replayProfiler.into = replayProfile();
    } });
    if (replayProfiler.into?.replays) mine.push(replayProfiler.into);
    replayProfiler.into = null;
    between.get(t)?.push(...stamps.slice(1).map((s, i) => s - stamps[i]));
  }
}
for (const t of counts) {
  const all = profiles.get(t) as ReplayProfile;
  for (const p of each.get(t) as ReplayProfile[]) {
    for (const k of ['replays', 'wallMs', 'cpuMs', 'freeMs', 'finishMs', 'calls'] as const) all[k] += p[k];
    for (const [n, e] of p.kernels) {
      const k = all.kernels.get(n) ?? { calls: 0, ms: 0 };
      all.kernels.set(n, { calls: k.calls + e.calls, ms: k.ms + e.ms });
    }
  }
}
const per = (p: ReplayProfile, v: number) => v / p.replays;
const least = (t: string, ms: (p: ReplayProfile) => number) => Math.min(...(each.get(t) as ReplayProfile[]).map(ms));
for (const t of counts) {
  const p = profiles.get(t) as ReplayProfile;
  const gaps = (between.get(t) as number[]).slice().sort((a, b) => a - b);
  const walls = (each.get(t) as ReplayProfile[]).map((q) => q.wallMs).sort((a, b) => a - b);
  console.log(`${which} Adam, ${t} thread(s): ${p.replays} replays, ${per(p, p.wallMs).toFixed(2)} ms wall a replay (CPU ${per(p, p.cpuMs).toFixed(2)}, median wall ${walls[walls.length >> 1].toFixed(2)}); ms between steps, median ${gaps[gaps.length >> 1].toFixed(2)}, least ${gaps[0].toFixed(2)}`);
}
const first = profiles.get(counts[0]) as ReplayProfile;
const names = [...first.kernels].sort((a, b) => b[1].ms - a[1].ms).map(([n]) => n);
const two = counts.length > 1;
console.log(`mean ms a replay at each count; least: the least over replays (what a replay takes when nothing else ran)`);
console.log(`| kernel | calls | ${counts.map((t) => `ms at ${t}T | least`).join(' | ')} |${two ? ` ${counts[0]}T / ${counts[counts.length - 1]}T, least |` : ''}`);
console.log(`|---|---:|${counts.map(() => '---:|---:|').join('')}${two ? '---:|' : ''}`);
const row = (label: string, calls: string, ms: (p: ReplayProfile) => number) => {
  const v = counts.map((t) => per(profiles.get(t) as ReplayProfile, ms(profiles.get(t) as ReplayProfile)));
  const m = counts.map((t) => least(t, ms));
  console.log(`| ${label} | ${calls} | ${v.map((a, i) => `${a.toFixed(3)} | ${m[i].toFixed(3)}`).join(' | ')} |${two ? ` ${(m[0] / m[m.length - 1]).toFixed(2)}x |` : ''}`);
};
for (const n of names) row(n, String(per(first, first.kernels.get(n)?.calls ?? 0)), (p) => p.kernels.get(n)?.ms ?? 0);
row('(releasing intermediates)', '', (p) => p.freeMs);
row('(outputs and assignments)', '', (p) => p.finishMs);
row('(the replay\'s own JavaScript)', '', (p) => p.wallMs - p.freeMs - p.finishMs - [...p.kernels.values()].reduce((a, e) => a + e.ms, 0));
row('whole replay (wall)', '', (p) => p.wallMs);
row('whole replay (CPU)', '', (p) => p.cpuMs);

/**
 * Where the keyword model's training step goes on native at batch 64, as bench/train-step-child.ts
 * trains it (full fine-tuning through src/train/loop.ts, compiled steps): each replay timed kernel
 * by kernel (replayProfiler), and the wall time between steps beside the replay's, which shows what
 * runs outside the plan. OPTIMIZER `trainer` is adam.ts's Adam (inside the plan, as `ndiff train`
 * runs it), `tfjs` tfjs' own (eager, after each replay).
 *
 *   node --conditions=neural-diff-source --import tsx bench/profile-keyword-step.ts [STEPS] [trainer|tfjs] [THREADS]
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/train/backend.ts';
import { Identity } from '../src/train/full-params.ts';
import { trainLoop } from '../src/train/loop.ts';
import { namedVariables } from '../src/train/model-weights.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';
import { seededRandom } from '../src/train/data.ts';
import { replayProfile, replayProfiler } from '../src/train/compiled/step.ts';
import { adam } from '../src/train/kernels/adam.ts';

const [stepsArg = '8', which = 'trainer', threadsArg = '1'] = process.argv.slice(2);
if (which !== 'trainer' && which !== 'tfjs') throw new Error(`the optimizer is trainer or tfjs, got ${which}`);
await initBackend('native', { threads: Number(threadsArg) });
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
const profile = replayProfile();
replayProfiler.into = profile;
const stamps: number[] = [];
trainLoop(model, { x, y }, param, { epochs: 1, batchSize: batch, seed: 1, fromLogits: false, optimizerFor: () => opt, onBatch: () => void stamps.push(performance.now()) });
replayProfiler.into = null;
const per = (v: number) => v / profile.replays;
console.log(`${which} Adam, ${threadsArg} thread(s): ${profile.replays} replays, ${per(profile.wallMs).toFixed(2)} ms wall a replay (CPU ${per(profile.cpuMs).toFixed(2)}); ms between steps: ${stamps.slice(1).map((s, i) => (s - stamps[i]).toFixed(1)).join(' ')}`);
for (const [n, e] of [...profile.kernels].sort((a, b) => b[1].ms - a[1].ms)) console.log(`| ${n} | ${per(e.calls)} | ${per(e.ms).toFixed(3)} |`);

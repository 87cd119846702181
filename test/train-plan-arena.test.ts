/**
 * A compiled step's intermediates in one arena (src/engine/compiled/arena.ts): the layout never
 * lets two values alive at the same kernel share a byte (hostile lifetimes included); a replay
 * with the arena gives the bits of a replay without it and the eager step's values within
 * tolerance, while its kernels' outputs no longer go through the backend's `_malloc`; a kernel
 * whose output does not match the plan keeps a normal allocation and the plan says so; the
 * keyword CNN's payload bytes are the same either way.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ARENA_ALIGN, arenaConflict, arenaSwitch, planArena, type Lifetime } from '../src/engine/compiled/arena.ts';
import { CompiledSteps, planDetail, type StepOutputs } from '../src/engine/compiled/step.ts';
import { resolve, StepPlan } from '../src/engine/compiled/plan.ts';
import { record } from '../src/engine/compiled/record.ts';
import { UsageError } from '../src/core/errors.ts';
import { runSteps } from './helpers/compiled-steps.ts';
import { KEYWORD_EXAMPLES, keywordEagerAndCompiled } from './helpers/keyword-steps.ts';

before(async () => {
  await initBackend('wasm');
});

/** A layout for `items`, checked: no conflict, and at least the most bytes alive at one kernel. */
function checkedLayout(items: Lifetime[]): { offsets: number[]; bytes: number } {
  const layout = planArena(items);
  assert.equal(arenaConflict(items, layout), undefined);
  const round = (b: number) => Math.ceil(b / ARENA_ALIGN) * ARENA_ALIGN;
  const last = Math.max(0, ...items.map((it) => it.last));
  for (let k = 0; k <= last; k++) {
    const alive = items.filter((it) => it.first <= k && k <= it.last).reduce((a, it) => a + round(it.bytes), 0);
    assert.ok(layout.bytes >= alive, `the arena's ${layout.bytes} bytes hold the ${alive} alive at kernel ${k}`);
  }
  return layout;
}

test('the layout: values alive at one kernel never share a byte; ranges are reused after their last reader; zero-byte values take no room', () => {
  // A chain: each value is read by the next kernel only, so two ranges take turns.
  const chain = Array.from({ length: 10 }, (_, i) => ({ bytes: 1000, first: i, last: i + 1 }));
  assert.equal(checkedLayout(chain).bytes, 2 * 1008, 'a chain needs two ranges, not ten');
  // One value read by the last call, beside short ones: nothing is placed over it.
  const long = [{ bytes: 64, first: 0, last: 20 }, ...Array.from({ length: 20 }, (_, i) => ({ bytes: 4000 + 16 * i, first: i, last: i }))];
  const l = checkedLayout(long);
  assert.equal(l.bytes, 64 + 4000 + 16 * 19);
  // Every value alive at once: the arena is their sum, each aligned.
  const together = Array.from({ length: 12 }, (_, i) => ({ bytes: 4 * (i + 1), first: 0, last: 5 }));
  const t = checkedLayout(together);
  assert.equal(t.bytes, together.reduce((a, it) => a + Math.ceil(it.bytes / 16) * 16, 0));
  assert.ok(t.offsets.every((o) => o % ARENA_ALIGN === 0), 'every offset 16-byte aligned');
  // Zero-byte values among others: offset 0, no room, no conflict.
  const zeros = [{ bytes: 0, first: 0, last: 3 }, { bytes: 32, first: 1, last: 2 }, { bytes: 0, first: 2, last: 2 }, { bytes: 32, first: 0, last: 0 }];
  const z = checkedLayout(zeros);
  assert.equal(z.offsets[0], 0);
  assert.equal(z.offsets[2], 0);
  assert.equal(z.bytes, 32, 'the two 32-byte values never meet: one range');
  assert.deepEqual(checkedLayout([]), { offsets: [], bytes: 0 });
});

test('the layout over random lifetimes: no two values alive together overlap, the same input gives the same offsets, and the checker catches a bad layout', () => {
  let s = 5;
  const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let round = 0; round < 20; round++) {
    const items = Array.from({ length: 150 }, () => {
      const first = Math.floor(r() * 100);
      return { bytes: r() < 0.1 ? 0 : Math.floor(r() * 5000), first, last: first + Math.floor(r() * r() * 60) };
    });
    const a = checkedLayout(items);
    assert.deepEqual(planArena(items), a, 'deterministic');
  }
  // The checker itself: two overlapping live values, a misaligned offset, a value past the end.
  const two = [{ bytes: 32, first: 0, last: 1 }, { bytes: 32, first: 1, last: 2 }];
  assert.match(arenaConflict(two, { offsets: [0, 16], bytes: 48 }) ?? '', /both alive at kernel 1/);
  assert.match(arenaConflict(two, { offsets: [0, 40], bytes: 80 }) ?? '', /not a multiple of 16/);
  assert.match(arenaConflict(two, { offsets: [0, 32], bytes: 48 }) ?? '', /runs past/);
  assert.equal(arenaConflict([{ bytes: 32, first: 0, last: 0 }, { bytes: 32, first: 1, last: 1 }], { offsets: [0, 0], bytes: 32 }), undefined, 'values that never meet may share');
});

test('the layout refuses what is not a size or a lifetime, with a typed error', () => {
  for (const bad of [{ bytes: -4, first: 0, last: 1 }, { bytes: 4, first: 3, last: 1 }, { bytes: Number.NaN, first: 0, last: 0 }, { bytes: 4.5, first: 0, last: 0 }, { bytes: 4, first: -1, last: 0 }]) {
    assert.throws(() => planArena([{ bytes: 8, first: 0, last: 0 }, bad]), (e: unknown) => e instanceof UsageError && /value 1 to place in the arena needs whole bytes >= 0 and kernels first <= last/.test(e.message));
  }
  assert.throws(() => planArena([], 0), UsageError);
});

/** A step captured as a plan (recorded twice on `feeds`). */
function capture(step: (feeds: Record<string, tf.Tensor>) => StepOutputs, feeds: Record<string, tf.Tensor>): StepPlan {
  let plan: StepPlan | null = null;
  tf.tidy(() => {
    const first = resolve(record(() => step(feeds), feeds), feeds);
    plan = StepPlan.build(first, record(() => step(feeds), feeds), feeds);
  });
  return plan as unknown as StepPlan;
}

/** Count the backend's `_malloc` calls while `f` runs. */
function countMallocs<T>(f: () => T): { value: T; mallocs: number } {
  const wasm = (tf.engine().backend as unknown as { wasm: { _malloc: (n: number) => number } }).wasm;
  const malloc = wasm._malloc;
  let mallocs = 0;
  wasm._malloc = (n: number) => {
    mallocs++;
    return malloc.call(wasm, n);
  };
  try {
    return { value: f(), mallocs };
  } finally {
    wasm._malloc = malloc;
  }
}

/** A dense layer with a bias and Relu, a squared error with weight decay, plain SGD, as a step. */
function denseStep(tag: string) {
  const x = tf.tensor2d(Float32Array.from({ length: 20 * 8 }, (_, i) => Math.sin(i * 0.7)), [20, 8]);
  const w = tf.variable(tf.tensor2d(Float32Array.from({ length: 128 }, (_, i) => Math.cos(i * 0.3) / 2), [8, 16]), true, `arena_w_${tag}`);
  const b = tf.variable(tf.zeros([16]), true, `arena_b_${tag}`);
  const w2 = tf.variable(tf.tensor2d(Float32Array.from({ length: 48 }, (_, i) => Math.sin(i * 1.3)), [16, 3]), true, `arena_w2_${tag}`);
  const target = tf.oneHot(tf.tensor1d(Int32Array.from({ length: 20 }, (_, i) => i % 3), 'int32'), 3).toFloat();
  const opt = tf.train.sgd(0.05);
  const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
    const { value, grads } = tf.variableGrads(() => {
      const h = tf.relu(tf.add(tf.matMul(feeds.x, w), b));
      const err = tf.mean(tf.squaredDifference(tf.matMul(h, w2), target));
      return tf.add(err, tf.mul(1e-3, tf.sum(tf.square(tf.sub(tf.abs(w), 0.1))))) as tf.Scalar;
    }, [w, b, w2]);
    opt.applyGradients(grads as never);
    return [['loss', value]];
  };
  const dispose = () => {
    tf.dispose([w, b, w2, x, target]);
    opt.dispose();
  };
  return { x, weights: [w, b, w2], step, dispose };
}

test('replays with the arena: the bits of replays without it, the eager steps within tolerance, the progress states the arena', () => {
  const run = (mode: 'eager' | 'compiled', arena: boolean) => {
    const was = arenaSwitch.planMemory;
    arenaSwitch.planMemory = arena;
    const d = denseStep(`${mode}_${arena}`);
    try {
      return runSteps(mode, 'dense', { x: d.x }, d.step, d.weights);
    } finally {
      arenaSwitch.planMemory = was;
      d.dispose();
    }
  };
  const eager = run('eager', true);
  const on = run('compiled', true);
  const off = run('compiled', false);
  assert.ok(on.said.some((m) => /^step: compiled plan \(.*, [\d.]+ MB, [\d.]+ MB of it one arena\)$/.test(m)), on.said.join(' | '));
  assert.ok(off.said.some((m) => /^step: compiled plan \(.*, [\d.]+ MB\)$/.test(m)), off.said.join(' | '));
  assert.deepEqual(on.losses, off.losses, 'the arena changes where values live, not what they are');
  on.weights.forEach((v, i) => assert.deepEqual(v, off.weights[i], `weight ${i}`));
  on.losses.forEach((v, i) => assert.ok(Math.abs(v - eager.losses[i]) <= 1e-5 * Math.max(1, Math.abs(eager.losses[i])), `step ${i}: ${v} replayed, ${eager.losses[i]} eager`));
  assert.ok(on.weights[0].some((v) => v !== 0));
});

test('a replay with the arena calls the backend\'s _malloc for what leaves the step only; its memory does not grow; nothing is moved out', () => {
  const d = denseStep('mallocs');
  const plans = new Map<boolean, StepPlan>();
  const was = arenaSwitch.planMemory;
  try {
    for (const arena of [true, false]) {
      arenaSwitch.planMemory = arena;
      plans.set(arena, capture(d.step, { x: d.x }));
    }
  } finally {
    arenaSwitch.planMemory = was;
  }
  try {
    const on = plans.get(true) as StepPlan;
    const off = plans.get(false) as StepPlan;
    assert.equal(on.kernelCount, off.kernelCount);
    const replay = (plan: StepPlan) => countMallocs(() => tf.tidy(() => plan.replay({ x: d.x })[0][1].dataSync()[0]));
    replay(on);
    replay(off);
    const heap = () => (tf.engine().backend as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;
    const before = heap();
    const a = replay(on);
    const b = replay(off);
    // Without the arena every kernel's output is a _malloc; with it, the loss, the three new
    // weights and the scratch some kernels make for themselves (the fused chains', the GEMM's packing).
    const scratch = on.kernelNames().filter((n) => n === 'NeuralDiffElementwise').length + on.kernelNames().filter((n) => n === 'BatchMatMul').length;
    assert.ok(b.mallocs >= off.kernelCount, `without the arena ${b.mallocs} mallocs for ${off.kernelCount} kernels`);
    assert.ok(a.mallocs <= 4 + scratch, `with the arena ${a.mallocs} mallocs a replay (${scratch} kernels may make scratch)`);
    assert.ok(a.mallocs < b.mallocs - 10);
    assert.equal(heap(), before, 'the WebAssembly memory did not grow');
    assert.equal(on.arenaMoves, 0);
    assert.deepEqual(on.arenaMisses, []);
    assert.ok(on.peakBytes > 0 && on.bytes >= on.peakBytes, `arena and constants ${on.bytes} bytes, ${on.peakBytes} alive at most`);
  } finally {
    for (const p of plans.values()) p.dispose();
    d.dispose();
  }
});

test('a kernel whose output does not match the plan keeps a normal allocation: the replay computes what the kernel gave, and the plan says so once', () => {
  // A kernel whose output size JavaScript decides outside its inputs and attributes: the first `rows` rows of x.
  let rows = 4;
  const name = 'NeuralDiffArenaTestRows';
  tf.registerKernel({
    kernelName: name,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = (inputs as { x: TensorInfo }).x;
      const b = backend as unknown as { makeOutput(s: number[], d: string): TensorInfo; readSync(id: object): Float32Array; typedArrayFromHeap(t: TensorInfo): Float32Array };
      const cols = x.shape[1];
      const values = b.readSync(x.dataId).slice(0, rows * cols);
      const out = b.makeOutput([rows, cols], 'float32');
      b.typedArrayFromHeap(out).set(values);
      return out;
    },
  });
  const x = tf.tensor2d(Float32Array.from({ length: 30 }, (_, i) => i + 1), [6, 5]);
  const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
    const y = tf.engine().runKernel(name, { x: tf.mul(feeds.x, 2) }, {}) as tf.Tensor;
    return [['sum', tf.sum(y)]];
  };
  const expected = (n: number) => Array.from({ length: n * 5 }, (_, i) => 2 * (i + 1)).reduce((a, v) => a + v, 0);
  let plan: StepPlan | null = null;
  const was = arenaSwitch.planMemory;
  try {
    arenaSwitch.planMemory = true;
    plan = capture(step, { x });
    arenaSwitch.planMemory = was;
    assert.equal(tf.tidy(() => (plan as StepPlan).replay({ x })[0][1].dataSync()[0]), expected(4));
    assert.deepEqual(plan.arenaMisses, [], 'as planned');
    rows = 3;
    for (let i = 0; i < 3; i++) assert.equal(tf.tidy(() => (plan as StepPlan).replay({ x })[0][1].dataSync()[0]), expected(3), `replay ${i} with the other size`);
    assert.deepEqual(plan.arenaMisses, [`kernel ${name}'s output 0 (planned [4, 5] float32, made [3, 5] float32) was allocated outside the arena`], 'said once over three replays');
    assert.match(planDetail(plan), /MB of it one arena; not as planned: kernel NeuralDiffArenaTestRows's output 0 \(planned \[4, 5\] float32, made \[3, 5\] float32\) was allocated outside the arena$/);
  } finally {
    plan?.dispose();
    x.dispose();
    tf.unregisterKernel(name, 'wasm');
  }
});

test('the keyword CNN trained through compiled steps writes the same payload bytes with and without the arena, and the eager steps\' bytes', async () => {
  let s = 11;
  const x = Float32Array.from({ length: KEYWORD_EXAMPLES * 49 * 40 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
  const was = arenaSwitch.planMemory;
  let on: Awaited<ReturnType<typeof keywordEagerAndCompiled>>;
  let off: Awaited<ReturnType<typeof keywordEagerAndCompiled>>;
  try {
    arenaSwitch.planMemory = true;
    on = await keywordEagerAndCompiled(x);
    arenaSwitch.planMemory = false;
    off = await keywordEagerAndCompiled(x);
  } finally {
    arenaSwitch.planMemory = was;
  }
  assert.ok(on.said.some((m) => /^step: compiled plan \(.* MB of it one arena\)$/.test(m)), on.said.filter((m) => m.startsWith('step')).join(' | '));
  assert.deepEqual(Buffer.from(on.compiled.bytes), Buffer.from(off.compiled.bytes));
  assert.deepEqual(Buffer.from(on.compiled.bytes), Buffer.from(on.eager.bytes));
  assert.deepEqual(on.compiled.epochs.map((e) => e.loss), off.compiled.epochs.map((e) => e.loss));
});

test('a kernel that gives its input back as its output at replay (not when recorded): the value moves to its own allocation before its range is reused, and the replay keeps its values', () => {
  let passThrough = false;
  const name = 'NeuralDiffArenaTestPass';
  tf.registerKernel({
    kernelName: name,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = (inputs as { x: TensorInfo }).x;
      const b = backend as unknown as { makeOutput(s: number[], d: string): TensorInfo; incRef(id: object): void; readSync(id: object): Float32Array; typedArrayFromHeap(t: TensorInfo): Float32Array };
      if (passThrough) {
        b.incRef(x.dataId);
        return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
      }
      const values = b.readSync(x.dataId);
      const out = b.makeOutput([...x.shape], 'float32');
      b.typedArrayFromHeap(out).set(values);
      return out;
    },
  });
  const x = tf.tensor2d(Float32Array.from({ length: 64 }, (_, i) => i - 20), [8, 8]);
  // y outlives the product it passes on; later values of the same size would take that product's range.
  const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
    const y = tf.engine().runKernel(name, { x: tf.mul(feeds.x, 3) }, {}) as tf.Tensor;
    const a = tf.matMul(tf.abs(feeds.x), feeds.x);
    const c = tf.matMul(a, tf.neg(feeds.x));
    return [['out', tf.matMul(c, y)]];
  };
  const eager = tf.tidy(() => step({ x })[0][1].dataSync().slice());
  let plan: StepPlan | null = null;
  const was = arenaSwitch.planMemory;
  try {
    arenaSwitch.planMemory = true;
    plan = capture(step, { x });
    arenaSwitch.planMemory = was;
    passThrough = true;
    for (let i = 0; i < 3; i++) assert.deepEqual(tf.tidy(() => (plan as StepPlan).replay({ x })[0][1].dataSync().slice()), eager, `replay ${i}`);
    assert.equal(plan.arenaMoves, 3, 'moved once a replay');
    assert.deepEqual(plan.arenaMisses, [`kernel ${name}'s output 0 came back in the range of kernel 0's output 0: moved to its own allocation`]);
  } finally {
    plan?.dispose();
    x.dispose();
    tf.unregisterKernel(name, 'wasm');
  }
});

test('a kernel that throws mid-replay after its output was lent a range: the caller gets the error, the lent value is let go (no allocation or data id left behind), and the next replay is right', () => {
  let fail = false;
  const name = 'NeuralDiffArenaTestThrow';
  tf.registerKernel({
    kernelName: name,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = (inputs as { x: TensorInfo }).x;
      const b = backend as unknown as { makeOutput(s: number[], d: string): TensorInfo; readSync(id: object): Float32Array; typedArrayFromHeap(t: TensorInfo): Float32Array };
      const values = b.readSync(x.dataId);
      const out = b.makeOutput([...x.shape], 'float32');
      if (fail) throw new Error('the test kernel failed after allocating its output');
      b.typedArrayFromHeap(out).set(values.map((v) => v + 1));
      return out;
    },
  });
  const x = tf.tensor2d(Float32Array.from({ length: 48 }, (_, i) => i / 7 - 3), [6, 8]);
  const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
    const y = tf.engine().runKernel(name, { x: tf.mul(feeds.x, 3) }, {}) as tf.Tensor;
    return [['out', tf.sum(tf.matMul(tf.abs(y), feeds.x, false, true))]];
  };
  const eager = tf.tidy(() => step({ x })[0][1].dataSync()[0]);
  const backend = tf.engine().backend;
  let plan: StepPlan | null = null;
  const was = arenaSwitch.planMemory;
  try {
    arenaSwitch.planMemory = true;
    plan = capture(step, { x });
    arenaSwitch.planMemory = was;
    const p = plan as StepPlan;
    assert.equal(tf.tidy(() => p.replay({ x })[0][1].dataSync()[0]), eager);
    const ids = backend.numDataIds();
    fail = true;
    for (let i = 0; i < 3; i++) assert.throws(() => tf.tidy(() => p.replay({ x })), /the test kernel failed after allocating its output/);
    fail = false;
    assert.equal(backend.numDataIds(), ids, 'no data id left behind by the failed replays');
    assert.equal(p.arenaMoves, 0, 'nothing of a failed replay is moved out of the arena: it is let go');
    for (let i = 0; i < 2; i++) assert.equal(tf.tidy(() => p.replay({ x })[0][1].dataSync()[0]), eager, `replay ${i} after the failures`);
    assert.equal(backend.numDataIds(), ids);
  } finally {
    arenaSwitch.planMemory = was;
    plan?.dispose();
    x.dispose();
    tf.unregisterKernel(name, 'wasm');
  }
});

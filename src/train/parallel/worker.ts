/**
 * A data-parallel training worker: its own tfjs backend (with our wasm kernels when `wasm`), its
 * own copy of the model (a layers model, or a graph program built again from its model file),
 * and one job: the gradient of the shard of each step the parent sends
 * (src/train/parallel/pool.ts). It answers on its channel port and raises its signal word, which
 * the parent waits on synchronously; an exit raises the word too, so the parent never waits on a
 * worker that is gone.
 */
import { workerData, parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type TrainBackendName } from '../../engine/backend.ts';
import { namedVariables } from '../../engine/model-weights.ts';
import { silenceTfjsNodeBanner } from '../../engine/quiet.ts';
import { accumulatedShardGradients } from './accumulate.ts';
import { ShardSteps } from './shard-plans.ts';
import { writeVariable } from './heap.ts';
import { SIGNAL, type WorkerReply, type WorkerRequest, type WorkerSetup } from './protocol.ts';
import type { ShardLossSpec } from './shard-step.ts';

const setup = workerData as WorkerSetup;
const signal = new Int32Array(setup.signal);

function answer(reply: WorkerReply): void {
  setup.port.postMessage(reply);
  Atomics.store(signal, 0, SIGNAL.answered);
  Atomics.notify(signal, 0);
}

process.on('exit', () => {
  Atomics.store(signal, 0, SIGNAL.exited);
  Atomics.notify(signal, 0);
});

silenceTfjsNodeBanner();
// On native, a worker's kernels run on its own thread (no addon threads, OpenBLAS on one): N workers
// each asking for N threads would put N x N threads on N cores.
await initBackend(setup.backend as TrainBackendName, setup.backend === 'native' ? { threads: 1 } : {});
// A layers model from its topology; a graph program from its model file and its front's options.
const model = setup.model.kind === 'program'
  ? await (await import('../../engine/program/worker-rebuild.ts')).programModelFrom(setup.model)
  : await tf.loadLayersModel(tf.io.fromMemory(setup.model as tf.io.ModelArtifacts));
const byName = new Map(namedVariables(model).map((v) => [v.name, v]));
let targets: tf.Variable[] = [];
let shapes: number[][] = [];
let weights: Float32Array[] = [];
let spec: ShardLossSpec = { fromLogits: true };
let steps = 0;
/** This loop's compiled shard steps (plans read the variables above, which live as long as the worker). */
let compiled = new ShardSteps('eager');

setup.port.on('message', (req: WorkerRequest) => {
  try {
    if (req.kind === 'begin') {
      for (const [name, values] of req.values) {
        const v = byName.get(name);
        if (!v) throw new Error(`the parent has a weight ${name} that the worker's copy of the model lacks`);
        tf.tidy(() => v.variable.assign(tf.tensor(values, v.shape, 'float32')));
      }
      const list = req.targets.map((name) => {
        const v = byName.get(name);
        if (!v) throw new Error(`the step trains ${name}, which the worker's copy of the model lacks`);
        return v;
      });
      targets = list.map((v) => v.variable);
      shapes = list.map((v) => v.shape);
      weights = req.weights;
      spec = req.spec;
      compiled.dispose();
      compiled = new ShardSteps(req.step);
      answer({ kind: 'ok' });
      return;
    }
    steps++;
    const fault = setup.failAtStep;
    if (fault && fault.step === steps) {
      if (fault.how === 'exit') process.exit(3);
      throw new Error(`a fault injected at step ${steps}`);
    }
    // The step's weights, from the buffer the parent wrote, into each variable's own memory.
    targets.forEach((v, j) => writeVariable(v, weights[j]));
    const result = accumulatedShardGradients(model, targets, req.shard, spec, req.batchSize, req.maxChunk, compiled.steps);
    setup.port.postMessage({ kind: 'step', result, compiled: compiled.report() } satisfies WorkerReply, result.grads.map((g) => g.buffer as ArrayBuffer));
    Atomics.store(signal, 0, SIGNAL.answered);
    Atomics.notify(signal, 0);
  } catch (e) {
    const err = e as Error;
    answer({ kind: 'error', message: err?.message ?? String(e), stack: err?.stack });
  }
});

parentPort?.postMessage({ kind: 'ready', names: [...byName.keys()] });

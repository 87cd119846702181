/**
 * Data-parallel training steps on every core: a pool of worker threads (node:worker_threads),
 * each with its own tfjs backend and copy of the model. Each step the batch is cut into one shard
 * per thread (the parent thread computes the first), every thread computes its shard's gradient
 * (src/train/parallel/shard-step.ts), and the parent sums them in shard order and applies them
 * once. The sum's order is fixed, so a seed and a thread count give the same bytes every time;
 * another thread count sums in another order and rounds differently (float addition is not
 * associative), so its bytes differ slightly.
 *
 * The pool is synchronous for its caller (the training loop is): the parent posts each worker
 * its shard, computes its own, then waits on each worker's shared signal word (Atomics.wait) and
 * takes the reply from the channel (receiveMessageOnPort). A worker that throws answers with the
 * error; one that exits raises its word on the way out; either stops the run with a
 * {@link TrainingWorkerError}.
 */
import os from 'node:os';
import { MessageChannel, receiveMessageOnPort, type MessagePort, type Worker } from 'node:worker_threads';
import { startModuleWorker } from '../../io/worker-thread.ts';
import * as tf from '@tensorflow/tfjs';
import { TrainingWorkerError, UsageError } from '../../core/errors.ts';
import { nativeAddonStatus } from '../../engine/kernels/native/loader.ts';
import { namedVariables } from '../../engine/model-weights.ts';
import { accumulatedShardGradients, addInto, sliceShard } from './accumulate.ts';
import { valuesInPlace } from './heap.ts';
import type { StepMode } from '../../engine/compiled/step.ts';
import { poolPathMessages, ShardSteps, type ShardStepsReport } from './shard-plans.ts';
import { SIGNAL, type ModelPackage, type WorkerReply, type WorkerRequest, type WorkerSetup } from './protocol.ts';
import type { ShardExamples, ShardLossSpec, ShardResult } from './shard-step.ts';

/** Options of {@link TrainingPool.start}. */
export interface TrainingPoolOptions {
  /** Threads computing each step, the parent's included (1: no workers). */
  threads: number;
  /** The tfjs backend every worker initializes (the parent's own, normally). */
  backend: string;
  /**
   * Most examples a thread runs through the model at once; a larger shard is computed in chunks
   * whose gradients are summed (gradient accumulation: the same batch in less memory).
   * Default: no limit.
   */
  maxChunk?: number;
  /** Tests only: make worker `worker` (0-based) fail at its `step`-th step. */
  failAtStep?: { worker: number; step: number; how: 'throw' | 'exit' };
}

/** The cores this machine offers (`os.availableParallelism()`), the default thread count. */
export function defaultThreads(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** Check a thread count asked for by a user. */
export function checkThreads(threads: number): number {
  if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`threads must be a positive integer (1 trains on this thread alone), got ${threads}`, { threads });
  return threads;
}

interface Member {
  worker: Worker;
  port: MessagePort;
  signal: Int32Array;
  exited?: number;
}

/** Sizes of `threads` shards of a batch of `size`: as even as possible, the larger ones first. */
export function shardSizes(size: number, threads: number): number[] {
  const base = Math.floor(size / threads);
  return Array.from({ length: threads }, (_, i) => base + (i < size % threads ? 1 : 0));
}

/** A model that packages itself for the workers (a graph program: src/engine/program/worker-copy.ts). */
interface SelfPackaged {
  workerPackage(): ModelPackage;
}

/** A model whose batch `x` names examples it holds (a graph program): each shard carries its examples' input rows. */
interface HeldInputs {
  shardInputs(ids: ArrayLike<number>): NonNullable<ShardExamples['inputs']>;
}

async function packageOf(model: tf.LayersModel): Promise<ModelPackage> {
  const own = model as unknown as Partial<SelfPackaged>;
  if (own.workerPackage) return own.workerPackage();
  let pkg: ModelPackage | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      const data = a.weightData;
      const weightData = data === undefined ? new ArrayBuffer(0) : Array.isArray(data) ? tf.io.concatenateArrayBuffers(data) : data;
      pkg = { kind: 'layers', modelTopology: a.modelTopology, weightSpecs: a.weightSpecs ?? [], weightData };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return pkg as ModelPackage;
}

/** Start the worker file (`worker.ts` from source, `worker.js` built). */
function startWorker(setup: WorkerSetup): Worker {
  return startModuleWorker(import.meta.url, 'worker', { workerData: setup, transferList: [setup.port] as never[] });
}

/** Worker threads that compute shards of each training step beside the parent thread. */
export class TrainingPool {
  private shared: Float32Array[] = [];
  private targets: tf.Variable[] = [];
  private spec: ShardLossSpec = { fromLogits: true };
  private disposed = false;
  /** The parent's compiled shard steps for this loop. */
  private compiled = new ShardSteps('eager');
  private say: (message: string) => void = () => {};
  private counts: (ShardStepsReport | undefined)[] = [];

  private constructor(private readonly members: Member[], private readonly model: tf.LayersModel, private readonly maxChunk: number) {}

  /** Threads computing each step, the parent's included. */
  get threads(): number {
    return this.members.length + 1;
  }

  /**
   * Start `threads - 1` workers holding a copy of `model` (its topology and weights) on `backend`
   * and wait until each is ready. The model must be serializable (no custom layer classes a fresh
   * thread cannot rebuild); otherwise this throws a {@link TrainingWorkerError}.
   */
  static async start(model: tf.LayersModel, options: TrainingPoolOptions): Promise<TrainingPool> {
    checkThreads(options.threads);
    const maxChunk = options.maxChunk ?? Number.POSITIVE_INFINITY;
    if (!(maxChunk >= 1)) throw new UsageError(`maxChunk must be at least 1, got ${options.maxChunk}`);
    let pkg: ModelPackage | undefined;
    try {
      pkg = options.threads > 1 ? await packageOf(model) : undefined;
    } catch (e) {
      throw new TrainingWorkerError(`the model cannot be copied to worker threads (${(e as Error).message}). Train with threads 1 (--threads 1)`, {});
    }
    // OpenBLAS picks its kernels from the process's environment when first loaded, and a worker
    // thread's process.env is its own copy: load it here, where loader.ts's choice takes effect.
    if (options.backend === 'native') nativeAddonStatus();
    const names = namedVariables(model).map((v) => v.name);
    const members: Member[] = [];
    try {
      for (let i = 0; i < options.threads - 1; i++) {
        const { port1, port2 } = new MessageChannel();
        const signal = new SharedArrayBuffer(4);
        const fault = options.failAtStep?.worker === i ? { step: options.failAtStep.step, how: options.failAtStep.how } : undefined;
        const setup: WorkerSetup = { backend: options.backend, model: pkg as ModelPackage, port: port2, signal, ...(fault ? { failAtStep: fault } : {}) };
        const worker = startWorker(setup);
        const member: Member = { worker, port: port1, signal: new Int32Array(signal) };
        worker.on('exit', (code) => (member.exited = code));
        members.push(member);
      }
      await Promise.all(members.map((m, i) => new Promise<void>((resolve, reject) => {
        const fail = (why: string) => reject(new TrainingWorkerError(`training worker ${i + 1} did not start: ${why}. Train with threads 1 (--threads 1) to run without workers`, { worker: i + 1 }));
        m.worker.once('error', (e) => fail(e.message));
        m.worker.once('exit', (code) => fail(`it exited with code ${code}`));
        m.worker.once('message', (msg: { kind: string; names: string[] }) => {
          const theirs = msg.names.join('\n');
          if (theirs !== names.join('\n')) fail(`its copy of the model names its weights differently (${msg.names.slice(0, 3).join(', ')}…)`);
          else resolve();
        });
      })));
    } catch (e) {
      for (const m of members) void m.worker.terminate();
      throw e;
    }
    for (const m of members) {
      m.worker.removeAllListeners('error');
      m.worker.removeAllListeners('message');
      // A failure from here on reaches the parent through the signal word; keep errors quiet.
      m.worker.on('error', () => {});
      m.worker.unref();
    }
    return new TrainingPool(members, model, maxChunk);
  }

  /**
   * A training loop begins: give every worker the model's current weights (all of them, for the
   * parent may have changed any since the last loop), the tensors it trains and the loss.
   */
  begin(targets: { name: string; variable: tf.Variable }[], spec: ShardLossSpec, step: StepMode = 'compiled', say: (message: string) => void = () => {}): void {
    this.live();
    this.targets = targets.map((t) => t.variable);
    this.spec = spec;
    this.compiled.dispose();
    this.compiled = new ShardSteps(step);
    this.say = say;
    this.counts = [];
    this.shared = targets.map((t) => new Float32Array(new SharedArrayBuffer(t.variable.size * 4)));
    const values = namedVariables(this.model)
      .filter((v) => v.variable.dtype === 'float32')
      .map((v) => [v.name, v.variable.dataSync() as Float32Array] as [string, Float32Array]);
    this.exchange(this.members.map(() => ({ kind: 'begin', values, targets: targets.map((t) => t.name), weights: this.shared, spec, step })));
  }

  /**
   * One step's gradient over a whole batch: the parent's variables must already hold this step's
   * weights. Returns dL/dW per target (the batch's mean loss), the mean loss and the hits.
   */
  step(batch: ShardExamples): ShardResult {
    this.live();
    this.targets.forEach((v, j) => this.shared[j].set(valuesInPlace(v) ?? (v.dataSync() as Float32Array)));
    const held = (this.model as unknown as Partial<HeldInputs>).shardInputs;
    if (held && !batch.inputs) batch = { ...batch, inputs: held.call(this.model, batch.x) };
    const size = batch.y.length;
    const sizes = shardSizes(size, this.threads);
    const shards: ShardExamples[] = [];
    let from = 0;
    for (const s of sizes) {
      shards.push(sliceShard(batch, from, from + s, true));
      from += s;
    }
    const asked = this.members.map((m, i) => (sizes[i + 1] > 0 ? i : -1)).filter((i) => i >= 0);
    for (const i of asked) this.post(i, { kind: 'step', shard: shards[i + 1], batchSize: size, maxChunk: this.maxChunk });
    const own = accumulatedShardGradients(this.model, this.targets, shards[0], this.spec, size, this.maxChunk, this.compiled.steps);
    const reports: (ShardStepsReport | undefined)[] = [this.compiled.report(), ...this.members.map(() => undefined)];
    for (const i of asked) {
      const r = this.await(i);
      if (r.kind !== 'step') throw new TrainingWorkerError('a training worker answered a step out of turn', {});
      addInto(own.grads, r.result.grads);
      own.loss += r.result.loss;
      own.hits += r.result.hits;
      reports[i + 1] = r.compiled;
    }
    reports.forEach((r, i) => r && (this.counts[i] = r));
    for (const m of poolPathMessages(reports)) this.say(m);
    return own;
  }

  /**
   * Per thread (the parent first), what its compiled shard steps did in this loop so far: plans
   * ready, steps replayed and eager (undefined for a thread that computed no shard yet).
   */
  stepCounts(): ({ plans: number; replayed: number; eager: number } | undefined)[] {
    return Array.from({ length: this.threads }, (_, i) => {
      const r = this.counts[i];
      return r && { plans: r.plans, replayed: r.replayed, eager: r.eager };
    });
  }

  /** Stop the workers (idempotent). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.compiled.dispose();
    for (const m of this.members) {
      m.port.close();
      void m.worker.terminate();
    }
  }

  private live(): void {
    if (this.disposed) throw new UsageError('this training pool was disposed');
  }

  private exchange(requests: WorkerRequest[]): void {
    requests.forEach((r, i) => this.post(i, r));
    const replies = requests.map((_, i) => this.await(i));
    if (replies.some((r) => r.kind !== 'ok')) throw new TrainingWorkerError('a training worker did not acknowledge the start of a loop', {});
  }

  private post(i: number, request: WorkerRequest): void {
    const m = this.members[i];
    if (m.exited !== undefined || Atomics.load(m.signal, 0) === SIGNAL.exited) throw this.exitedError(i);
    Atomics.store(m.signal, 0, SIGNAL.waiting);
    const transfer = request.kind === 'step' ? [request.shard.x.buffer, request.shard.y.buffer, ...Object.values(request.shard.inputs ?? {}).map((v) => v.values.buffer)] : [];
    m.port.postMessage(request, transfer as ArrayBuffer[]);
  }

  private await(i: number): WorkerReply {
    const m = this.members[i];
    while (Atomics.load(m.signal, 0) === SIGNAL.waiting) Atomics.wait(m.signal, 0, SIGNAL.waiting);
    const received = receiveMessageOnPort(m.port);
    if (!received) {
      if (Atomics.load(m.signal, 0) === SIGNAL.exited) throw this.exitedError(i);
      throw new TrainingWorkerError(`training worker ${i + 1} raised its signal without an answer`, { worker: i + 1 });
    }
    const reply = received.message as WorkerReply;
    if (reply.kind === 'error') {
      this.dispose();
      throw new TrainingWorkerError(`training worker ${i + 1} failed during a step: ${reply.message}. The model is untouched; train with threads 1 (--threads 1) to run without workers`, { worker: i + 1, stack: reply.stack });
    }
    return reply;
  }

  private exitedError(i: number): TrainingWorkerError {
    this.dispose();
    return new TrainingWorkerError(`training worker ${i + 1} exited during training. The model is untouched; train with threads 1 (--threads 1) to run without workers`, { worker: i + 1 });
  }
}

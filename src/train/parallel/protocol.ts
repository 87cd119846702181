/**
 * Messages between the training parent thread and its workers (src/train/parallel/). Plain data
 * only: everything here crosses threads by structured clone.
 */
import type { MessagePort } from 'node:worker_threads';
import type { StepMode } from '../../engine/compiled/step.ts';
import type { ProgramPackage } from '../../engine/program/worker-copy.ts';
import type { ShardStepsReport } from './shard-plans.ts';
import type { ShardExamples, ShardLossSpec, ShardResult } from './shard-step.ts';

/** A layers model as tfjs saves it in memory (`tf.io.ModelArtifacts` without functions). */
export interface LayersPackage {
  kind: 'layers';
  modelTopology: unknown;
  weightSpecs: unknown[];
  weightData: ArrayBuffer;
}

/**
 * What a worker builds its copy of the model from: a layers model's topology and weights, or a
 * graph program's recipe (ONNX, TF.js graph, LiteRT: src/engine/program/worker-copy.ts).
 */
export type ModelPackage = LayersPackage | ProgramPackage;

/** What a worker is started with (`workerData`). */
export interface WorkerSetup {
  backend: string;
  model: ModelPackage;
  /** The channel port the worker answers steps on, and the flag it raises when it has answered. */
  port: MessagePort;
  signal: SharedArrayBuffer;
  /** Tests only: make this worker fail at its n-th step (1-based), by throwing or by exiting. */
  failAtStep?: { step: number; how: 'throw' | 'exit' };
}

/** Parent to worker, on the channel. */
export type WorkerRequest =
  /**
   * A training loop starts: every weight of the model as the parent has it, the trained tensors
   * (manifest names), views on shared memory where the parent writes their values each step, and
   * whether the shard steps are compiled (src/train/parallel/shard-plans.ts).
   */
  | { kind: 'begin'; values: [string, Float32Array][]; targets: string[]; weights: Float32Array[]; spec: ShardLossSpec; step: StepMode }
  /** One step: this worker's shard of the batch (the weights are already in shared memory). */
  | { kind: 'step'; shard: ShardExamples; batchSize: number; maxChunk: number };

/** Worker to parent, on the channel. */
export type WorkerReply = { kind: 'ok' } | { kind: 'step'; result: ShardResult; compiled: ShardStepsReport } | { kind: 'error'; message: string; stack?: string };

/** Values of the worker's signal word (Int32 at index 0). */
export const SIGNAL = { waiting: 0, answered: 1, exited: 2 } as const;

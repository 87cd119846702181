/**
 * How a training run uses the threads it was given, decided once before the first step:
 *
 * - wasm (and cpu): the worker pool (pool.ts) when threads > 1, for layers models and graph
 *   programs alike (a worker builds a program again from its model file: program/worker-copy.ts;
 *   a stateful sequence model cannot be, see there);
 * - native, a model with depthwise convolutions or batch norms: the worker pool with the native
 *   kernels on one thread in each worker (their gradients do not run in the addon), or, when the
 *   workers cannot rebuild the model, one JavaScript thread with the native kernels on the threads;
 * - native otherwise: one JavaScript thread with the native kernels (GEMMs, convolutions, their
 *   epilogues) on the threads, the addon's own pool (blas.c), OpenBLAS on one thread.
 *
 * The choice depends on the backend, the thread count and the model alone, so a seed still gives
 * the same bytes. A model the workers cannot rebuild trains on one thread unless threads were
 * asked for (then the error stands), but on native, where OpenBLAS can still use them.
 */
import type * as tf from '@tensorflow/tfjs';
import { TrainingWorkerError } from '../../core/errors.ts';
import { MAX_NATIVE_THREADS, NATIVE, nativePrefersWorkerPool, setNativeThreads } from '../../engine/kernels/native/index.ts';
import { TrainingPool } from './pool.ts';

/** Options of {@link startTrainingThreads}. */
export interface TrainingThreadsOptions {
  /** Threads computing each step (already bounded by the batch size). */
  threads: number;
  /** The active tfjs backend. */
  backend: string;
  /** Whether the user asked for the thread count (a pool that cannot start is then an error on wasm). */
  asked: boolean;
  progress: (message: string) => void;
}

/** Set the run's threads up as the module doc says; returns the pool when one runs (dispose it with {@link stopTrainingThreads}). */
export async function startTrainingThreads(model: tf.LayersModel, o: TrainingThreadsOptions): Promise<TrainingPool | undefined> {
  const { threads, backend, progress } = o;
  const tryPool = async (what: string, fallBack: boolean): Promise<TrainingPool | undefined> => {
    try {
      const pool = await TrainingPool.start(model, { threads, backend });
      progress(`training on ${threads} threads (the batch split across worker threads, gradients summed in a fixed order${what})`);
      return pool;
    } catch (e) {
      if (!(e instanceof TrainingWorkerError) || (o.asked && !fallBack)) throw e;
      if (!fallBack) progress(`training on one thread: ${e.message}`);
      return undefined;
    }
  };
  const blasThreads = () => {
    // Every core by default, up to what the addon's pool takes (a machine may offer more); a count asked above it is refused.
    const n = o.asked ? threads : Math.min(threads, MAX_NATIVE_THREADS);
    setNativeThreads(n);
    progress(n === 1 ? 'training on one thread (native backend)' : `training on one JavaScript thread, the native kernels on ${n} threads (the convolutions and matmuls cut into blocks over the addon's threads, OpenBLAS on one each)`);
  };
  if (backend === NATIVE && threads > 1 && nativePrefersWorkerPool(model)) {
    setNativeThreads(1);
    const pool = await tryPool('; native backend, the native kernels on one thread in each: the depthwise convolutions and batch norms do not run in the addon', true);
    if (!pool) blasThreads();
    return pool;
  }
  if (backend === NATIVE) {
    blasThreads();
    return undefined;
  }
  return threads > 1 ? tryPool('', false) : undefined;
}

/** Dispose the run's pool; on native, give the JavaScript thread's native kernels their threads back. */
export function stopTrainingThreads(pool: TrainingPool | undefined, backend: string): void {
  if (pool && backend === NATIVE) setNativeThreads(Math.min(pool.threads, MAX_NATIVE_THREADS));
  pool?.dispose();
}

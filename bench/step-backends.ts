/**
 * The backends bench/train-step-child.ts trains on, by the name its command line takes.
 *
 * - `wasm`: the wasm backend; THREADS > 1 splits each batch across worker threads.
 * - `native`: what `ndiff train` does on the native backend: the worker pool (the native kernels
 *   on one thread in each) for a model with depthwise convolutions or batch norms, else one
 *   JavaScript thread with the native kernels on THREADS threads (the addon's own).
 * - `native-pool`: always the worker pool.
 * - `native-threads`: always one JavaScript thread with the addon's THREADS threads. Named
 *   `native-blas` before the addon had threads of its own (OpenBLAS's threads then); that name is
 *   still taken and means the same.
 */
import { UsageError } from '../src/core/errors.ts';

export const STEP_BACKENDS = ['wasm', 'native', 'native-pool', 'native-threads'] as const;
export type StepBackend = (typeof STEP_BACKENDS)[number];

/** Old names still taken, and what they mean now. */
const ALIASES: Record<string, StepBackend> = { 'native-blas': 'native-threads' };

/** What a backend name asks for: the backend, and whether the worker pool trains ('auto': as `ndiff train` decides). */
export function stepBackend(name: string): { name: StepBackend; backend: 'wasm' | 'native'; pool: 'always' | 'never' | 'auto' } {
  const known = (STEP_BACKENDS as readonly string[]).includes(name) ? (name as StepBackend) : ALIASES[name];
  if (!known) throw new UsageError(`backend must be one of ${STEP_BACKENDS.join(', ')} (native-blas: the old name of native-threads), got ${JSON.stringify(name)}`, { backend: name });
  const pool = known === 'wasm' || known === 'native-pool' ? 'always' : known === 'native-threads' ? 'never' : 'auto';
  return { name: known, backend: known === 'wasm' ? 'wasm' : 'native', pool };
}

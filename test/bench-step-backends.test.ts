/**
 * The backends of bench/train-step-child.ts by name: `native-threads` is one JavaScript thread with
 * the addon's threads (its old name `native-blas` still taken, meaning the same), `native-pool`
 * the worker pool, `native` what `ndiff train` picks; anything else a typed error listing them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../src/core/errors.ts';
import { STEP_BACKENDS, stepBackend } from '../bench/step-backends.ts';

test('native-threads trains on one JavaScript thread with the addon\'s threads; native-blas is its old name', () => {
  assert.deepEqual(stepBackend('native-threads'), { name: 'native-threads', backend: 'native', pool: 'never' });
  assert.deepEqual(stepBackend('native-blas'), stepBackend('native-threads'));
  assert.deepEqual(stepBackend('native-pool'), { name: 'native-pool', backend: 'native', pool: 'always' });
  assert.deepEqual(stepBackend('native'), { name: 'native', backend: 'native', pool: 'auto' });
  assert.deepEqual(stepBackend('wasm'), { name: 'wasm', backend: 'wasm', pool: 'always' });
  assert.deepEqual([...STEP_BACKENDS], ['wasm', 'native', 'native-pool', 'native-threads']);
  assert.throws(() => stepBackend('blas'), (e: unknown) => e instanceof UsageError && /one of wasm, native, native-pool, native-threads .*got "blas"/.test(e.message));
});

/**
 * The payload's metadata `x` (docs/format/document.md §2.2: string or integer values) as the
 * encoder writes it: whole numbers and strings come back exactly; a fraction, NaN, an infinity or
 * an integer beyond 2^53 - 1 is refused with a UsageError before any byte is written (the
 * reference encoder stores non-integers as float32, so 0.1 used to reach devices as
 * 0.10000000149011612).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHasher } from '../src/core/hasher.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { decodePayload, type Payload } from '../src/core/format.ts';
import { encodePayload } from '../src/core/encode.ts';
import { UsageError } from '../src/core/errors.ts';
import { baseAndTarget } from './helpers/models.ts';

const hasher = await getHasher();
const { base, target } = baseAndTarget(5);
const build = (meta: Record<string, string | number>) => topkDiff(hasher, base, target, { budgetBytes: 2000, modelId: 'kws', sequence: 1, meta });

test('string and whole-number metadata comes back exactly, including integers written as float64 (beyond 2^32) and negative ones', () => {
  const meta = { loss: '0.1', steps: 300, delta: -5, big: 2 ** 40, low: -(2 ** 40), max: Number.MAX_SAFE_INTEGER };
  assert.deepEqual(decodePayload(build(meta).bytes).header.meta, meta);
});

test('a fraction in the metadata is refused when writing, saying what was expected, what was found and what to do', () => {
  assert.throws(
    () => build({ steps: 300, loss: 0.1 }),
    (e: unknown) => {
      assert.ok(e instanceof UsageError, `expected a UsageError, got ${String(e)}`);
      assert.match(e.message, /metadata value "loss" must be a string or a whole number/);
      assert.match(e.message, /found the number 0\.1/);
      assert.match(e.message, /write a fraction as a string \(e\.g\. "0\.1"\)/);
      assert.deepEqual(e.details, { key: 'loss', value: 0.1 });
      return true;
    },
  );
});

test('NaN, the infinities, integers beyond 2^53 - 1 and non-number values are refused too; re-encoding a decoded payload is checked the same way', () => {
  for (const value of [Number.NaN, Number.POSITIVE_INFINITY, -Infinity, 2 ** 53, 0.5, -1e-9, 1e300 + 0.5]) {
    assert.throws(() => build({ v: value }), (e: unknown) => e instanceof UsageError && /metadata value "v"/.test(e.message), String(value));
  }
  assert.throws(() => build({ v: true as unknown as number }), (e: unknown) => e instanceof UsageError && /found a value of type boolean/.test(e.message));
  const payload: Payload = decodePayload(build({ steps: 1 }).bytes);
  assert.throws(() => encodePayload({ ...payload, header: { ...payload.header, meta: { ratio: 0.25 } } }), UsageError);
});

/**
 * A payload is never written with a header its decoders refuse: a sequence that is not a whole
 * number >= 0 (ndiff train --sequence 1.5 or -1 wrote one, exit 0, and every device then called
 * it corrupt) or an expiry that is not whole seconds is the caller's UsageError at encoding.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../src/core/errors.ts';
import { packPayload } from '../src/core/encode.ts';
import { decodePayload, FORMAT_VERSION, type PayloadHeader } from '../src/core/format.ts';

const header: PayloadHeader = {
  version: FORMAT_VERSION, method: 'topk', modelId: 'm', baseFingerprint: '0123456789abcdef', targetFingerprint: 'fedcba9876543210', sequence: 3, budgetBytes: 100, createdBy: 'test',
};

test('a sequence or an expiry the decoders refuse is refused when encoding, naming it', () => {
  assert.equal(decodePayload(packPayload(header, [])).header.sequence, 3, 'a whole sequence encodes and decodes');
  for (const sequence of [1.5, -1, Number.NaN, 2 ** 53]) {
    assert.throws(() => packPayload({ ...header, sequence }, []), (e: unknown) => e instanceof UsageError && e.message.startsWith(`sequence (--sequence) must be a whole number >= 0 (the update's number in its chain, 1 for the first), found ${sequence}`));
  }
  for (const expiresAt of [1.5, -60]) {
    assert.throws(() => packPayload({ ...header, expiresAt }, []), (e: unknown) => e instanceof UsageError && e.message === `expiresAt must be whole seconds since 1970, found ${expiresAt}`);
  }
});

/**
 * Payload format v1 conformance: see docs/FORMAT.md.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { decodePayload } from '../src/core/format.ts';
import { PayloadFormatError } from '../src/core/errors.ts';

/** msgpack document with every integer written as uint64 (0xcf), as a u64-minded encoder would. */
function uint64Doc(sq: number): Uint8Array {
  const out: number[] = [];
  const u64 = (v: bigint) => {
    out.push(0xcf);
    for (let s = 56n; s >= 0n; s -= 8n) out.push(Number((v >> s) & 0xffn));
  };
  const str = (s: string) => out.push(0xa0 | s.length, ...new TextEncoder().encode(s));
  const bin = (b: number[]) => out.push(0xc4, b.length, ...b);
  out.push(0x89);
  str('nd'); u64(1n);
  str('m'); str('dense');
  str('id'); str('m');
  str('bf'); bin([1, 2, 3, 4, 5, 6, 7, 8]);
  str('tf'); bin([8, 7, 6, 5, 4, 3, 2, 1]);
  str('sq'); u64(BigInt(sq));
  str('bb'); u64(0n);
  str('cb'); str('x');
  str('p'); out.push(0x90);
  return Uint8Array.from(out);
}

describe('msgpack integer encodings', () => {
  test('integers written as uint64 decode like their shortest encoding', () => {
    const p = decodePayload(uint64Doc(5));
    assert.equal(p.header.version, 1);
    assert.equal(p.header.sequence, 5);
    assert.equal(decodePayload(uint64Doc(2 ** 53 - 1)).header.sequence, 2 ** 53 - 1);
  });
  test('a uint64 beyond 2^53 - 1 is refused as a format error', () => {
    assert.throws(() => decodePayload(uint64Doc(2 ** 53)), PayloadFormatError);
  });
});

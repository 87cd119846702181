/**
 * The decoder against hostile input: msgpack lengths that lie, extension types, nesting, bytes
 * after the document, and counts that would drive allocations. Each case would have cost
 * msgpackr time or memory far beyond the input's size; our reader (msgpack-read.ts) refuses each
 * where it is declared, which the tests check by the byte the refusal names, not by a clock.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import { decodePayload } from '../src/core/format.ts';
import { packPayload, type WirePatch } from '../src/core/encode.ts';
import { msgpackStructureProblem, PAYLOAD_MSGPACK_LIMITS } from '../src/core/msgpack-read.ts';
import { PayloadFormatError } from '../src/core/errors.ts';
import { getHasher } from '../src/core/hasher.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { baseAndTarget } from './helpers/models.ts';

const hasher = await getHasher();
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** `{"p": <value bytes>}` as raw msgpack: a map whose one value is given byte for byte. */
function mapWith(valueBytes: number[]): Uint8Array {
  return Uint8Array.from([0x81, 0xa1, 0x70, ...valueBytes]);
}

function refused(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => decodePayload(bytes), (e: unknown) => {
    assert.ok(e instanceof PayloadFormatError, `expected PayloadFormatError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, pattern);
    assert.match(e.message, /fetch it again or fall back to the full model/);
    return true;
  });
}

describe('msgpack lengths that exceed the input are refused before anything is allocated', () => {
  const cases: [string, number[], RegExp][] = [
    ['array16 of 65535', [0xdc, 0xff, 0xff], /array at byte 3 declares 65535 entries but only 0 bytes remain/],
    ['array32 of 30M (240 MB in msgpackr)', [0xdd, 0x01, 0xc9, 0xc3, 0x80], /the document holds more than 262144 values \(at byte 3\)/],
    ['array32 of 2^32-1', [0xdd, 0xff, 0xff, 0xff, 0xff], /the document holds more than 262144 values \(at byte 3\)/],
    ['array32 of 1000 with 3 bytes left', [0xdd, 0, 0, 0x03, 0xe8, 1, 2, 3], /declares 1000 entries but only 3 bytes remain/],
    ['map16 of 40000', [0xde, 0x9c, 0x40], /map at byte 3 declares 40000 entries but only 0 bytes remain/],
    ['map32 of 2^31', [0xdf, 0x80, 0, 0, 0], /the document holds more than 262144 values \(at byte 3\)/],
    ['str8 of 200', [0xd9, 200, 0x61], /value at byte 3 declares 200 bytes but only 1 remain/],
    ['str16 of 60000', [0xda, 0xea, 0x60], /declares 60000 bytes but only 0 remain/],
    ['str32 of 2^32-1', [0xdb, 0xff, 0xff, 0xff, 0xff], /declares 4294967295 bytes/],
    ['bin8 of 255', [0xc4, 0xff, 1, 2], /declares 255 bytes but only 2 remain/],
    ['bin16 of 65535', [0xc5, 0xff, 0xff], /declares 65535 bytes/],
    ['bin32 of 1 GiB', [0xc6, 0x40, 0, 0, 0], /declares 1073741824 bytes/],
    ['bin32 length cut off', [0xc6, 0x40, 0], /value at byte 3 declares 4 bytes but only 2 remain/],
    ['array32 length cut off', [0xdd, 0x40], /value at byte 3 declares 4 bytes but only 1 remain/],
    ['uint64 cut off', [0xcf, 1, 2], /declares 8 bytes but only 2 remain/],
    ['float64 cut off', [0xcb, 1], /declares 8 bytes but only 1 remain/],
  ];
  for (const [name, bytes, pattern] of cases) test(name, () => refused(mapWith(bytes), pattern));

  test('a fixarray/fixmap that promises more elements than remain', () => {
    refused(mapWith([0x9f, 1, 2]), /array at byte 3 declares 15 entries but only 2 bytes remain/);
    refused(mapWith([0x8f, 0xa1, 0x61]), /map at byte 3 declares 15 entries but only 2 bytes remain/);
  });
});

describe('msgpack features payloads never use', () => {
  for (const token of [0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8]) {
    test(`extension type 0x${token.toString(16)} (BigInt, RegExp, Error, Set, structured clone in msgpackr)`, () => {
      refused(mapWith([token, 1, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), new RegExp(`extension type \\(0x${token.toString(16)}\\)`));
    });
  }
  test('a 4 MB BigInt extension that msgpackr would build is refused without building it', () => {
    const n = 4_000_000;
    const doc = new Uint8Array(3 + 6 + n);
    doc.set([0x81, 0xa1, 0x70, 0xc9, 0, 0x3d, 0x09, 0x00, 0x42]);
    // Refused at its first byte (3): nothing after it is read.
    refused(doc, /byte 3 starts a msgpack extension type \(0xc9\)/);
  });
  test('the reserved byte 0xc1', () => refused(mapWith([0xc1]), /0xc1, which msgpack reserves/));
  test('map keys that are maps, arrays or binary', () => {
    refused(Uint8Array.from([0x81, 0x80, 0x01]), /map key at byte 1 is a map/);
    refused(Uint8Array.from([0x81, 0x90, 0x01]), /map key at byte 1 is an array/);
    refused(Uint8Array.from([0x81, 0xc4, 0x01, 0x61, 0x01]), /map key at byte 1 is binary/);
  });
  test('nesting deeper than 8 levels (msgpackr recurses: 2 MB of 0x91 is a stack overflow)', () => {
    const deep = new Uint8Array(2_000_000).fill(0x91);
    deep.set([0x81, 0xa1, 0x70]);
    refused(deep, /nest deeper than 8 levels at byte 10/);
    // 8 levels are fine for the reader (the schema then refuses the content)
    const ok = Uint8Array.from([0x81, 0xa1, 0x70, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90]);
    assert.equal(msgpackStructureProblem(ok), null);
  });
});

describe('documents with too many values', () => {
  /** `{"zz": [[elem x 65535] x arrays]}`: an unknown field full of cheap-to-send values. */
  function manyValues(elem: number[], n: number): Uint8Array {
    const out: number[] = [0x81, 0xa2, 0x7a, 0x7a];
    const arrays = Math.ceil(n / 65535);
    out.push(0xdc, arrays >> 8, arrays & 0xff);
    for (let a = 0; a < arrays; a++) {
      const k = Math.min(65535, n - a * 65535);
      out.push(0xdc, k >> 8, k & 0xff);
      for (let i = 0; i < k; i++) out.push(...elem);
    }
    return Uint8Array.from(out);
  }
  test('1M empty maps (64 MB of objects from 1 MB) and 1M empty binaries (104 MB from 2 MB) are refused', () => {
    // Refused where the fourth array declares its entries (byte 7 + 3 arrays of 3 + 65,535
    // elements), before any of them is read or built.
    refused(manyValues([0x80], 1_000_000), /the document holds more than 262144 values \(at byte 196621\); a payload holds about 30 per patched tensor/);
    refused(manyValues([0xc4, 0x00], 1_000_000), /more than 262144 values \(at byte 393226\)/);
  });
  test('a document just under the limit is read', () => {
    assert.equal(msgpackStructureProblem(manyValues([0xc0], 262_000)), null);
  });
});

describe('bytes after the document', () => {
  test('one stray byte after a 20 MB payload is refused at once (msgpackr took ~20 s and 1.7 GB)', () => {
    const doc = packr.pack({ nd: 1, v: new Uint8Array(20_000_000) });
    const withTrail = new Uint8Array(doc.length + 1);
    withTrail.set(doc);
    refused(withTrail, new RegExp(`1 byte\\(s\\) follow the end of the document at byte ${doc.length}`));
  });
  test('two payloads back to back', () => {
    const { base, target } = baseAndTarget(3);
    const b = topkDiff(hasher, base, target, { budgetBytes: 3000 }).bytes;
    const two = new Uint8Array(2 * b.length);
    two.set(b);
    two.set(b, b.length);
    refused(two, new RegExp(`${b.length} byte\\(s\\) follow the end of the document at byte ${b.length}`));
  });
});

describe('counts checked against the bytes before allocation', () => {
  const { base, target } = baseAndTarget(5);
  const built = topkDiff(hasher, base, target, { budgetBytes: 4000, codec: 'f16' });
  const header = built.payload.header;
  const wire = (): WirePatch => (unpackr.unpack(built.bytes) as { p: WirePatch[] }).p.find((p) => p.t === 'dense/kernel') as WirePatch;

  test('a bitmap count far above the value bytes is refused before positions are allocated', () => {
    // 4096-value tensor: a 512-byte bitmap of zeros, count 4096, no values: refused on the values
    const p: WirePatch = { ...wire(), ic: 'm', n: 4096, i: new Uint8Array(512), v: new Uint8Array(0) };
    assert.throws(() => decodePayload(packPayload(header, [p])), /values "v" must be 4096 x 2 = 8192 bytes for codec f16, found 0/);
  });
  test('a gap count above the gap bytes is refused', () => {
    const p: WirePatch = { ...wire(), ic: 'g', n: 100, i: new Uint8Array(10), v: new Uint8Array(200) };
    assert.throws(() => decodePayload(packPayload(header, [p])), /count 100 needs at least 100 bytes of gaps, found 10/);
  });
  test('a dense patch whose shape promises 2^32-1 values but carries 8 bytes', () => {
    const p: WirePatch = { ...wire(), k: 'd', s: [65535, 65537], v: new Uint8Array(8) };
    assert.throws(() => decodePayload(packPayload(header, [p])), /dense values "v" must be 4294967295 x 2 = 8589934590 bytes for codec f16, found 8/);
  });
  test('shape dimensions whose product overflows are refused', () => {
    const p: WirePatch = { ...wire(), s: [0xffffffff, 0xffffffff, 0xffffffff] };
    assert.throws(() => decodePayload(packPayload(header, [p])), /more than a patch can address/);
  });
});

describe('the reader accepts every well-formed document and refuses every truncation', () => {
  // msgpack-able values within the payload limits: what any conforming encoder may write
  const leaf = fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
    fc.double({ noNaN: true }),
    fc.boolean(),
    fc.constant(null),
    fc.string({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  );
  const value = fc.letrec((tie) => ({
    tree: fc.oneof({ depthSize: 'small', maxDepth: 5 }, leaf, fc.array(tie('tree'), { maxLength: 20 }), fc.dictionary(fc.string({ maxLength: 12 }), tie('tree'), { maxKeys: 10 })),
  })).tree;
  const wide = new Packr({ useRecords: false, variableMapSize: true, largeBigIntToFloat: false, useBigIntExtension: false });

  test('random documents: accepted, decoded by msgpackr without error; every strict prefix refused', () => {
    fc.assert(fc.property(fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 6 }), (doc) => {
      const bytes = wide.pack(doc);
      assert.equal(msgpackStructureProblem(bytes), null);
      unpackr.unpack(bytes); // must not throw
      for (let cut = 0; cut < bytes.length; cut += Math.max(1, Math.floor(bytes.length / 50))) {
        assert.notEqual(msgpackStructureProblem(bytes.subarray(0, cut)), null, `prefix of ${cut} bytes accepted`);
      }
    }), { numRuns: 120 });
  });

  test('random bytes: whatever our reader accepts, msgpackr decodes within the input (no throw, no trailing data)', () => {
    let accepted = 0;
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
      if (msgpackStructureProblem(bytes, PAYLOAD_MSGPACK_LIMITS) !== null) return;
      accepted++;
      unpackr.unpack(bytes);
    }), { numRuns: 20000 });
    assert.ok(accepted > 100, `only ${accepted} random inputs were well-formed: the property tested little`);
  });
});

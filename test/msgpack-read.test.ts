/**
 * The device's msgpack reader (src/core/msgpack-read.ts) against msgpackr, the encoder the build
 * side uses, as the oracle: every document msgpackr writes (within the reader's limits) reads
 * back to the same values. Plus what msgpackr's decoder does not do for us: strict UTF-8, an own
 * `__proto__` key, and every integer width as a number.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import { msgpackStructureProblem } from '../src/core/msgpack-read.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { writeWideMsgpack } from './vectors/payloads/generate.ts';

const leaf = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true }),
  fc.string({ unit: 'binary' }),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 40 }),
);
const doc = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  map: fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), tie('value'), { maxKeys: 6 }),
})).map;

/** Plain JSON-like form for comparison (binaries as arrays, -0 kept distinct). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bin: Array.from(v) };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  if (typeof v === 'number' && Object.is(v, -0)) return '-0';
  // Beyond 2^53 msgpackr gives a BigInt, our reader the nearest number; the format refuses both.
  if (typeof v === 'bigint') return Number(v);
  return v;
}

test('every document msgpackr writes (compact and wide encodings) reads back to the same values', () => {
  const packers = [new Packr({ useRecords: false, variableMapSize: true }), new Packr({ useRecords: false })];
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'bigint' });
  fc.assert(
    fc.property(doc, (value) => {
      for (const bytes of [...packers.map((p) => p.pack(value)), writeWideMsgpack(value)]) {
        const u8 = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const limits = { maxDepth: 64, maxValues: 1 << 18 };
        if (msgpackStructureProblem(u8, limits) !== null) continue;
        assert.deepEqual(plain(readMsgpack(u8, limits)), plain(unpackr.unpack(u8)));
      }
    }),
    { numRuns: 300, seed: 20261122 },
  );
});

test('"__proto__" is an own key, never the prototype', () => {
  const bytes = writeWideMsgpack({ ['__proto__']: { polluted: true }, a: 1 });
  const out = readMsgpack(bytes) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.ok(Object.prototype.hasOwnProperty.call(out, '__proto__'));
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('strings are strict UTF-8 (a lone continuation byte is refused) and keep a byte-order mark', () => {
  assert.throws(() => readMsgpack(Uint8Array.of(0xa2, 0x61, 0x80)), TypeError);
  assert.equal(readMsgpack(Uint8Array.of(0xa4, 0xef, 0xbb, 0xbf, 0x61)), '\ufeffa');
  assert.equal(readMsgpack(Uint8Array.of(0xa3, 0xe2, 0x82, 0xac)), '€');
});

test('integers of every width are numbers; uint64 beyond 2^53 is a number beyond the safe range', () => {
  assert.equal(readMsgpack(Uint8Array.of(0xcf, 0, 0, 0, 0, 0, 0, 0, 7)), 7);
  assert.equal(readMsgpack(Uint8Array.of(0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe)), -2);
  assert.equal(readMsgpack(Uint8Array.of(0xd0, 0x80)), -128);
  assert.ok((readMsgpack(Uint8Array.of(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)) as number) > Number.MAX_SAFE_INTEGER);
  assert.equal(readMsgpack(Uint8Array.of(0xca, 0x3f, 0xc0, 0, 0)), 1.5);
});

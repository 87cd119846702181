/**
 * Payload format v1 conformance (docs/FORMAT.md):
 *  - the committed vectors in test/vectors/payloads decode and apply to exactly the expected
 *    targets with both hasher kinds, and invalid ones fail with the expected error class;
 *  - a second, independent applier written from docs/FORMAT.md alone (its own msgpack reader,
 *    codecs, arithmetic and fingerprints; only XXH32/XXH64 are shared) agrees on every vector;
 *  - the generator reproduces the committed bytes; the hex dumps in docs/FORMAT.md are the
 *    vectors' bytes;
 *  - property tests: payload encode/decode, position codings, float16, varints.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { decodePayload, DIFF_METHODS, type Payload, type PayloadHeader, type TensorPatch } from '../src/core/format.ts';
import { encodePayload, encodePositions, packPayload, type WirePatch } from '../src/core/encode.ts';
import { PayloadFormatError, NeuralDiffError } from '../src/core/errors.ts';
import { fromHalfBits, toHalfBits } from '../src/core/float16.ts';
import { ByteWriter, readVarints, varintSize } from '../src/core/varint.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { generatePayloadVectors, hexF32, storeOf, fromHex, f32Hex, type ModelJson, type InvalidVector } from './vectors/payloads/generate.ts';
import { FAULT_OF, SpecError, bad, halfToFloatRef, hex, readMsgpack, specApply, specDecode, specDigest, specFingerprint, specModel, type Fault } from './helpers/spec-payload.ts';
import { specByteDelta } from './helpers/spec-byte-delta.ts';

const dir = new URL('./vectors/payloads/', import.meta.url);
const read = (name: string): Uint8Array => new Uint8Array(readFileSync(new URL(name, dir)));
const readJson = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, dir), 'utf8')) as T;

interface ValidVector {
  name: string;
  base: string;
  payload: string;
  target: string;
  bytes: number;
  sameAs?: string;
  header?: Record<string, unknown>;
  patches?: Record<string, unknown>[];
}
const index = readJson<{ valid: ValidVector[]; invalid: InvalidVector[] }>('vectors.json');

const pure = await getHasher({ prefer: 'pure' });
const wasm = await getHasher({ prefer: 'wasm' });
const HASHERS: Hasher[] = [pure, wasm];

const utf8 = new TextEncoder();
const le32 = (x: number): Uint8Array => Uint8Array.of(x & 255, (x >>> 8) & 255, (x >>> 16) & 255, x >>> 24);
const bitsOf = (v: Float32Array): string => f32Hex(v);
/** Codec x values are masks: their bytes as they are (read as floats, NaN bits could change). */
const maskHex = (v: Float32Array): string => Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), (b) => b.toString(16).padStart(2, '0')).join('');

/** A store's values, as hex per tensor, for byte-exact comparisons. */
function valuesHex(store: ReturnType<typeof storeOf>): Record<string, string> {
  return Object.fromEntries(store.list().map((t) => [t.name, bitsOf(store.values(t.name))]));
}
function modelHex(m: ModelJson): Record<string, string> {
  return Object.fromEntries(Object.entries(m.tensors).map(([n, t]) => [n, t.values]));
}

// ---------------------------------------------------------------------------------------------
// An independent applier, written from docs/FORMAT.md only.

// The independent applier (test/helpers/spec-payload.ts) and byte-delta decoder
// (test/helpers/spec-byte-delta.ts) are written from docs/FORMAT.md only.


// ---------------------------------------------------------------------------------------------
// The committed vectors

describe('payload vectors: valid', () => {
  test('the index lists the required cases', () => {
    const names = index.valid.map((v) => v.name);
    for (const n of ['sparse-gaps-f32', 'sparse-bitmap-f16', 'sparse-i8', 'hash-signed-f32', 'hash-unsigned-f16', 'dense-f32', 'lowrank-f32', 'multi-tensor', 'alt-encoding']) assert.ok(names.includes(n), n);
    assert.ok(HASHERS[1].kind === 'wasm' && HASHERS[0].kind === 'pure', 'both hasher kinds are available');
  });

  for (const v of index.valid) {
    for (const hasher of HASHERS) {
      test(`${v.name} applies to exactly the target (${hasher.kind} hasher)`, async () => {
        const bytes = read(v.payload);
        assert.equal(bytes.length, v.bytes);
        const baseJson = readJson<ModelJson>(v.base);
        const targetJson = readJson<ModelJson>(v.target);
        const decoded = decodePayload(bytes);
        // the model files' fingerprints and digests are what this hasher computes
        for (const m of [baseJson, targetJson]) {
          const fp = fingerprintStore(hasher, storeOf(m));
          assert.equal(fp.fingerprint, m.fingerprint);
          for (const [n, t] of Object.entries(m.tensors)) assert.equal(fp.digests.get(n), t.digest, n);
        }
        assert.equal(decoded.header.baseFingerprint, baseJson.fingerprint);
        assert.equal(decoded.header.targetFingerprint, targetJson.fingerprint);
        for (const p of decoded.patches) {
          assert.equal(p.baseDigest, baseJson.tensors[p.name].digest);
          assert.equal(p.targetDigest, targetJson.tensors[p.name].digest);
        }
        const store = storeOf(baseJson);
        const res = await applyPayload(store, bytes, { hasher });
        assert.equal(res.status, 'applied');
        assert.deepEqual(valuesHex(store), modelHex(targetJson));
        assert.deepEqual(res.changedTensors, decoded.patches.map((p) => p.name));
        // applying again finds the model at the target and writes nothing
        const again = await applyPayload(store, bytes, { hasher });
        assert.equal(again.status, 'already-applied');
        assert.deepEqual(valuesHex(store), modelHex(targetJson));
      });
    }

    test(`${v.name}: the independent applier written from docs/FORMAT.md agrees`, () => {
      for (const hasher of HASHERS) {
        const targetJson = readJson<ModelJson>(v.target);
        const out = specApply(hasher, specModel(readJson<ModelJson>(v.base)), read(v.payload));
        assert.equal(out.status, 'applied');
        assert.deepEqual(Object.fromEntries([...out.model].map(([n, t]) => [n, bitsOf(t.data)])), modelHex(targetJson));
        assert.equal(specApply(hasher, specModel(targetJson), read(v.payload)).status, 'already-applied');
      }
    });

    if (v.sameAs) {
      const same = v.sameAs;
      test(`${v.name} decodes to the same payload as ${same} and re-encodes to its bytes`, () => {
        const original = read(`${same}.ndiff`);
        const alt = read(v.payload);
        assert.notDeepEqual(alt, original);
        assert.deepEqual(decodePayload(alt), decodePayload(original));
        assert.deepEqual(encodePayload(decodePayload(alt)), original);
      });
    } else {
      test(`${v.name}: decoded fields match the index, and re-encoding gives the same bytes`, () => {
        const bytes = read(v.payload);
        const d = decodePayload(bytes);
        const h = v.header as Record<string, unknown>;
        assert.deepEqual(
          { nd: d.header.version, m: d.header.method, id: d.header.modelId, bf: d.header.baseFingerprint, tf: d.header.targetFingerprint, sq: d.header.sequence, bb: d.header.budgetBytes, cb: d.header.createdBy, ct: d.header.createdAt, ex: d.header.expiresAt, x: d.header.meta },
          { ct: undefined, ex: undefined, x: undefined, ...h },
        );
        assert.equal(d.patches.length, (v.patches as unknown[]).length);
        d.patches.forEach((p, i) => {
          const e = (v.patches as Record<string, unknown>[])[i];
          assert.equal(p.name, e.t);
          assert.equal(p.kind, e.kind);
          assert.deepEqual(p.shape, e.shape);
          assert.equal(p.codec, e.codec);
          assert.equal(p.scale, e.scale);
          if (p.kind === 'sparse') {
            assert.equal(p.positionCoding, e.coding);
            assert.deepEqual([...p.positions], e.positions);
            if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') assert.equal(maskHex(p.values), e.masks);
            else assert.equal(bitsOf(p.values), e.values);
          } else if (p.kind === 'hash') {
            assert.equal(p.seed, e.seed);
            assert.equal(p.signed, e.signed);
            assert.equal(bitsOf(p.buckets), e.buckets);
            for (const [pos, hash, bucket, sign] of (e.firstPositions as { rows: number[][] }).rows) {
              const hh = wasm.h32(le32(pos), p.seed);
              assert.deepEqual([hh, (hh >>> 1) % p.buckets.length, p.signed && hh & 1 ? -1 : 1], [hash, bucket, sign]);
            }
          } else if (p.kind === 'lowrank') {
            assert.equal(p.rank, e.rank);
            assert.equal(bitsOf(p.u), e.u);
            assert.equal(bitsOf(p.v), e.v);
          } else if (p.kind === 'composite') {
            assert.equal(p.rank, e.rank);
            if (p.dense) assert.equal(bitsOf(p.dense), e.dense);
            else {
              assert.equal(bitsOf(p.u), e.u);
              assert.equal(bitsOf(p.v), e.v);
            }
            assert.equal(p.positionCoding, e.coding);
            assert.deepEqual([...p.positions], e.positions);
            assert.equal(p.sparseCodec, e.sparseCodec);
            assert.equal(p.sparseScale, e.sparseScale);
            assert.equal(bitsOf(p.values), e.values);
          } else if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') assert.equal(maskHex(p.values), e.masks);
          else assert.equal(bitsOf(p.values), e.values);
        });
        assert.deepEqual(encodePayload(d), bytes);
      });
    }
  }

  test('multi-tensor: "p" is in UTF-16 order, the fingerprint in UTF-8 byte order, and they differ', () => {
    const d = decodePayload(read('multi-tensor.ndiff'));
    const names = d.patches.map((p) => p.name);
    assert.deepEqual(names, [...names].sort());
    const byUtf8 = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.notDeepEqual(byUtf8, names);
    // recomputing the fingerprint in UTF-16 order would give another value
    const model = readJson<ModelJson>('multi-tensor.base.json');
    const utf16 = Object.keys(model.tensors).sort();
    const wrong = wasm.h64(fromHex(utf16.map((n) => model.tensors[n].digest).join('')), 0n).toString(16).padStart(16, '0');
    assert.notEqual(wrong, model.fingerprint);
    assert.equal(specFingerprint(wasm, new Map(Object.entries(model.tensors).map(([n, t]) => [n, t.digest]))), model.fingerprint);
  });

  test('i8 values are fround(int8 x scale), not the exact product', () => {
    const p = decodePayload(read('sparse-i8.ndiff')).patches[0];
    assert.equal(p.codec, 'i8');
    const q = p.scale as number;
    const wire = ((readMsgpack(read('sparse-i8.ndiff')) as Map<string, unknown>).get('p') as Map<string, unknown>[])[0];
    const ints = [...(wire.get('v') as Uint8Array)].map((b) => (b << 24) >> 24);
    assert.deepEqual(ints, [127, -87, 32, -127, 1]);
    if (p.kind !== 'sparse') assert.fail('sparse expected');
    assert.deepEqual([...p.values], ints.map((k) => Math.fround(k * q)));
    assert.notEqual(p.values[0], 127 * q);
  });
});

describe('payload vectors: invalid', () => {
  test('the index lists the required cases', () => {
    const names = index.invalid.map((v) => v.name);
    for (const n of ['truncated', 'gap-out-of-range', 'nan-value', 'bitmap-past-end', 'unsupported-version']) assert.ok(names.includes(n), n);
  });

  for (const v of index.invalid) {
    test(`${v.name}: ${v.error} at the ${v.stage} stage`, async () => {
      const bytes = read(v.payload);
      const opts = v.maxPayloadBytes !== undefined ? { maxPayloadBytes: v.maxPayloadBytes } : {};
      const isExpected = (e: unknown) => {
        assert.ok(e instanceof NeuralDiffError, `untyped error ${(e as Error)?.message}`);
        assert.equal(e.constructor.name, v.error, e.message);
        assert.equal(e.code, v.code);
        return true;
      };
      if (v.stage === 'decode') assert.throws(() => decodePayload(bytes, opts), isExpected);
      else decodePayload(bytes, opts);
      for (const hasher of HASHERS) {
        const base = readJson<ModelJson>(v.base);
        const store = storeOf(base);
        await assert.rejects(applyPayload(store, bytes, { ...opts, hasher }), isExpected);
        assert.deepEqual(valuesHex(store), modelHex(base), 'the model is unchanged');
        // the independent applier raises the same class of error
        assert.throws(() => specApply(hasher, specModel(base), bytes, v.maxPayloadBytes), (e: unknown) => e instanceof SpecError && e.fault === FAULT_OF[v.error]);
      }
    });
  }
});

describe('payload vectors: generator', () => {
  for (const hasher of HASHERS) {
    test(`generate.ts reproduces the committed files byte for byte (${hasher.kind} hasher)`, () => {
      const files = generatePayloadVectors(hasher);
      // the folder's .ts files are the generator and its parts, not vectors
      const committed = readdirSync(dir).filter((f) => !f.endsWith('.ts')).sort();
      assert.deepEqual([...files.keys()].sort(), committed, 'no missing or stale files');
      for (const [name, bytes] of files) assert.ok(Buffer.from(bytes).equals(Buffer.from(read(name))), `${name} differs: run node --import tsx test/vectors/payloads/generate.ts`);
      // and a second run in the same process gives the same bytes
      const again = generatePayloadVectors(hasher);
      for (const [name, bytes] of files) assert.deepEqual(again.get(name), bytes, name);
    });
  }
});

describe('docs/FORMAT.md and its pages (docs/format/)', () => {
  const pages = new URL('../docs/format/', import.meta.url);
  const doc = [readFileSync(new URL('../docs/FORMAT.md', import.meta.url), 'utf8'), ...readdirSync(pages).filter((f) => f.endsWith('.md')).sort().map((f) => readFileSync(new URL(f, pages), 'utf8'))].join('\n');
  test('every hex dump line is the bytes of its vector at that offset', () => {
    const blocks = [...doc.matchAll(/```hexdump ([\w.-]+)\n([\s\S]*?)```/g)];
    assert.ok(blocks.length >= 4, `found ${blocks.length} hexdump blocks`);
    let lines = 0;
    for (const [, file, body] of blocks) {
      const bytes = read(file);
      let covered = 0;
      for (const line of body.split('\n')) {
        const m = /^([0-9a-f]{4})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s|$)/.exec(line);
        if (!m) {
          assert.ok(line.trim() === '' || line.startsWith('…'), `unparsed line in ${file}: ${line}`);
          continue;
        }
        const at = parseInt(m[1], 16);
        const want = fromHex(m[2].replace(/ /g, ''));
        assert.deepEqual(bytes.subarray(at, at + want.length), want, `${file} at 0x${m[1]}`);
        covered += want.length;
        lines++;
      }
      assert.ok(covered > 0);
    }
    assert.ok(lines > 40, `only ${lines} dump lines`);
  });
  test('the worked fingerprint example (section 6) is what the hashers compute', () => {
    const base = readJson<ModelJson>('sparse-gaps-f32.base.json');
    const record = Uint8Array.from([...fromHex('01000000' + '62' + '01000000' + '10000000'), ...fromHex(base.tensors.b.values)]);
    for (const hasher of HASHERS) {
      assert.equal(hasher.h64(record, 0n).toString(16).padStart(16, '0'), 'd70bd9e4637cbbe3');
      assert.equal(hasher.h64(fromHex('d70bd9e4637cbbe3' + 'e5ee1ffa850d4491'), 0n).toString(16).padStart(16, '0'), '634653eb32e3cd42');
    }
    assert.equal(base.tensors.b.digest, 'd70bd9e4637cbbe3');
    assert.equal(base.tensors.w.digest, 'e5ee1ffa850d4491');
    assert.equal(base.fingerprint, '634653eb32e3cd42');
    for (const h of ['d70bd9e4637cbbe3', 'e5ee1ffa850d4491', '634653eb32e3cd42', 'd7 0b d9 e4 63 7c bb e3 e5 ee 1f fa 85 0d 44 91']) assert.ok(doc.includes(h), h);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const HEADER: PayloadHeader = { version: 1, method: 'sparse', modelId: 'm', baseFingerprint: '0011223344556677', targetFingerprint: '8899aabbccddeeff', sequence: 1, budgetBytes: 0, createdBy: 'test' };

/** Unsigned LEB128, written independently of varint.ts. */
function leb128(values: number[]): number[] {
  const out: number[] = [];
  for (let v of values) {
    do {
      const byte = v % 128;
      v = Math.floor(v / 128);
      out.push(v ? byte | 0x80 : byte);
    } while (v);
  }
  return out;
}
function gapsOf(positions: number[]): number[] {
  return positions.map((p, k) => (k === 0 ? p : p - positions[k - 1] - 1));
}
function bitmapOf(positions: number[], size: number): number[] {
  const out = new Array<number>(Math.ceil(size / 8)).fill(0);
  for (const p of positions) out[Math.floor(p / 8)] |= 2 ** (p % 8);
  return out;
}

const f32Arb = fc.float({ noNaN: true, noDefaultInfinity: true });
const halfArb = fc.integer({ min: 0, max: 0xffff }).filter((h) => ((h >>> 10) & 31) !== 31).map(halfToFloatRef);
const hex16Arb = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((b) => b.toString(16).padStart(16, '0'));
const shapeArb = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 });

/** Values that a codec carries exactly (with the i8 scale when codec is i8). */
function valuesArb(codec: 'f32' | 'f16' | 'i8', n: number, scale: number): fc.Arbitrary<Float32Array> {
  const one = codec === 'f32' ? f32Arb : codec === 'f16' ? halfArb : fc.integer({ min: -128, max: 127 }).map((k) => Math.fround(k * scale));
  return fc.array(one, { minLength: n, maxLength: n }).map((xs) => Float32Array.from(xs));
}

const patchArb: fc.Arbitrary<TensorPatch> = fc
  .record({
    name: fc.string({ unit: 'binary', maxLength: 12 }),
    shape: shapeArb,
    codec: fc.constantFrom('f32' as const, 'f16' as const, 'i8' as const),
    scale: fc.float({ min: Math.fround(2 ** -149), max: Math.fround(3.4e38 / 128), noNaN: true }),
    baseDigest: hex16Arb,
    targetDigest: hex16Arb,
    kind: fc.constantFrom('sparse' as const, 'hash' as const, 'dense' as const, 'lowrank' as const),
  })
  .chain(({ kind, scale, ...c }) => {
    const size = c.shape.reduce((a, b) => a * b, 1);
    const common = { ...c, ...(c.codec === 'i8' ? { scale } : {}) };
    const cols = c.shape.length ? c.shape[c.shape.length - 1] : 1;
    const rows = cols ? size / cols : 0;
    if (kind === 'lowrank' && Math.min(rows, cols) >= 1) {
      return fc.integer({ min: 1, max: Math.min(rows, cols) }).chain((rank) =>
        fc.tuple(valuesArb(c.codec, rows * rank, scale), valuesArb(c.codec, rank * cols, scale)).map(([u, v]): TensorPatch => ({ ...common, kind: 'lowrank', rank, u, v })),
      );
    }
    if (kind === 'hash') {
      return fc.tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.boolean(), fc.integer({ min: 1, max: 6 })).chain(([seed, signed, nb]) =>
        valuesArb(c.codec, nb, scale).map((buckets): TensorPatch => ({ ...common, kind: 'hash', seed, signed, buckets })),
      );
    }
    if (kind === 'dense' || size === 0) return valuesArb(c.codec, size, scale).map((values): TensorPatch => ({ ...common, kind: 'dense', values }));
    return fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { maxLength: size }).chain((ps) => {
      const positions = Uint32Array.from(ps.sort((a, b) => a - b));
      const gapBytes = leb128(gapsOf([...positions])).length;
      const positionCoding = Math.ceil(size / 8) <= gapBytes ? ('bitmap' as const) : ('gaps' as const);
      return valuesArb(c.codec, positions.length, scale).map((values): TensorPatch => ({ ...common, kind: 'sparse', positions, values, positionCoding }));
    });
  });

// Metadata values are strings or whole numbers (a fraction is refused when writing: test/payload-meta.test.ts).
const metaValueArb = fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.maxSafeInteger());
const headerArb: fc.Arbitrary<PayloadHeader> = fc
  .record(
    {
      version: fc.constant(1),
      method: fc.constantFrom(...DIFF_METHODS),
      modelId: fc.string({ unit: 'binary', maxLength: 100 }),
      baseFingerprint: hex16Arb,
      targetFingerprint: hex16Arb,
      sequence: fc.maxSafeNat(),
      budgetBytes: fc.maxSafeNat(),
      createdBy: fc.string({ unit: 'binary', maxLength: 100 }),
      createdAt: fc.string({ maxLength: 64 }),
      expiresAt: fc.maxSafeNat(),
      meta: fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__'), metaValueArb, { maxKeys: 4 }).map((d) => ({ ...d })),
    },
    { requiredKeys: ['version', 'method', 'modelId', 'baseFingerprint', 'targetFingerprint', 'sequence', 'budgetBytes', 'createdBy'] },
  )
  .map((h) => ({ ...h }));

describe('properties', () => {
  test('decodePayload(encodePayload(x)) is x for random valid payloads, and re-encoding is stable', () => {
    fc.assert(
      fc.property(headerArb, fc.uniqueArray(patchArb, { maxLength: 4, selector: (p) => p.name }), (header, patches) => {
        const payload: Payload = { header, patches };
        const bytes = encodePayload(payload);
        const back = decodePayload(bytes);
        assert.deepStrictEqual(back, payload);
        assert.deepEqual(encodePayload(back), bytes);
      }),
      { numRuns: 300 },
    );
  });

  test('position codings: the encoder picks the smaller (bitmap on ties), and both codings decode', () => {
    const sizeAndPositions = fc.integer({ min: 0, max: 3000 }).chain((size) =>
      fc.tuple(fc.constant(size), size === 0 ? fc.constant([] as number[]) : fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { maxLength: Math.min(size, 500) })),
    );
    fc.assert(
      fc.property(sizeAndPositions, ([size, ps]) => {
        const sorted = ps.sort((a, b) => a - b);
        const positions = Uint32Array.from(sorted);
        const gaps = leb128(gapsOf(sorted));
        const bitmap = bitmapOf(sorted, size);
        const enc = encodePositions(positions, size);
        assert.equal(enc.coding, bitmap.length <= gaps.length ? 'm' : 'g');
        assert.deepEqual([...enc.bytes], enc.coding === 'm' ? bitmap : gaps);
        for (const [ic, i] of [['g', gaps], ['m', bitmap]] as const) {
          const wire: WirePatch = { t: 'x', s: [size], k: 's', b: new Uint8Array(8), a: new Uint8Array(8), c: 'f32', v: new Uint8Array(4 * sorted.length), n: sorted.length, ic, i: Uint8Array.from(i) };
          const p = decodePayload(packPayload(HEADER, [wire])).patches[0];
          assert.ok(p.kind === 'sparse');
          assert.deepEqual([...p.positions], sorted);
          assert.equal(p.positionCoding, ic === 'm' ? 'bitmap' : 'gaps');
        }
      }),
      { numRuns: 300 },
    );
  });

  test('every non-NaN float16 bit pattern converts to float32 exactly and back', () => {
    let finite = 0;
    for (let h = 0; h < 0x10000; h++) {
      const x = fromHalfBits(h);
      const ref = halfToFloatRef(h);
      if (((h >>> 10) & 31) === 31 && h & 0x3ff) {
        assert.ok(Number.isNaN(x) && Number.isNaN(ref), `0x${h.toString(16)} is NaN`);
        continue;
      }
      assert.ok(Object.is(x, ref), `0x${h.toString(16)}: ${x} vs ${ref}`);
      assert.equal(toHalfBits(x), h, `0x${h.toString(16)} round trip`);
      if (Number.isFinite(x)) finite++;
    }
    assert.equal(finite, 63488);
  });

  test('float32 to float16 rounds to nearest, ties to even, at every midpoint', () => {
    const bits = new Uint32Array(1);
    const asF = new Float32Array(bits.buffer);
    const step = (x: number, d: 1 | -1): number => {
      asF[0] = x;
      bits[0] += d;
      return asF[0];
    };
    // consecutive non-negative halves a < b; their midpoint needs 12 significant bits, so it is a float32
    for (let h = 0; h < 0x7c00; h++) {
      const a = halfToFloatRef(h);
      const b = h === 0x7bff ? 65536 : halfToFloatRef(h + 1); // 65536: where the next half would be
      const m = (a + b) / 2;
      assert.equal(Math.fround(m), m);
      const even = h & 1 ? h + 1 : h;
      assert.equal(toHalfBits(m), even, `midpoint of 0x${h.toString(16)}`);
      assert.equal(toHalfBits(-m), even | 0x8000);
      assert.equal(toHalfBits(step(m, -1)), h, `below the midpoint of 0x${h.toString(16)}`);
      assert.equal(toHalfBits(step(m, 1)), h + 1, `above the midpoint of 0x${h.toString(16)}`);
    }
    assert.equal(toHalfBits(65520), 0x7c00); // the midpoint above 65504 rounds to even: Infinity
    assert.equal(toHalfBits(2 ** -25), 0); // half the smallest subnormal: to even, zero
    assert.equal(toHalfBits(-(2 ** -26)), 0x8000);
    assert.equal(toHalfBits(1e10), 0x7c00);
  });

  test('float32 to float16 picks the nearest half (random float32 values)', () => {
    fc.assert(
      fc.property(fc.float({ min: -65519, max: 65519, noNaN: true }), (x) => {
        const h = toHalfBits(x);
        const y = halfToFloatRef(h);
        const mag = h & 0x7fff;
        for (const n of [mag - 1, mag + 1]) {
          if (n < 0 || n > 0x7bff) continue;
          const other = halfToFloatRef(n | (h & 0x8000));
          assert.ok(Math.abs(y - x) <= Math.abs(other - x), `${x}: ${y} is farther than ${other}`);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('varints', () => {
  test('edge values encode to the expected bytes and decode back', () => {
    const cases: [number, number[]][] = [
      [0, [0x00]],
      [1, [0x01]],
      [127, [0x7f]],
      [128, [0x80, 0x01]],
      [16383, [0xff, 0x7f]],
      [16384, [0x80, 0x80, 0x01]],
      [2 ** 28 - 1, [0xff, 0xff, 0xff, 0x7f]],
      [2 ** 28, [0x80, 0x80, 0x80, 0x80, 0x01]],
      [2 ** 32 - 1, [0xff, 0xff, 0xff, 0xff, 0x0f]],
    ];
    for (const [value, bytes] of cases) {
      const w = new ByteWriter(1);
      w.varint(value);
      assert.deepEqual([...w.bytes()], bytes, String(value));
      assert.equal(varintSize(value), bytes.length);
      assert.deepEqual(readVarints(Uint8Array.from(bytes), 1), Uint32Array.of(value));
    }
  });

  test('malformed varints are refused', () => {
    const refused: [string, number[], number][] = [
      ['truncated', [0x80], 1],
      ['empty', [], 1],
      ['2^32 (over 32 bits)', [0x80, 0x80, 0x80, 0x80, 0x10], 1],
      ['2^35 - 1 (over 32 bits)', [0xff, 0xff, 0xff, 0xff, 0x7f], 1],
      ['6 bytes (longer than 5)', [0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 1],
      ['6 bytes of 0xff', [0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 1],
      ['a trailing byte', [0x05, 0x00], 1],
      ['one varint short', [0x05], 2],
    ];
    for (const [what, bytes, count] of refused) assert.equal(readVarints(Uint8Array.from(bytes), count), null, what);
  });

  test('non-minimal varints of at most 5 bytes are accepted (encoders never write them)', () => {
    assert.deepEqual(readVarints(Uint8Array.from([0x80, 0x00]), 1), Uint32Array.of(0));
    assert.deepEqual(readVarints(Uint8Array.from([0xff, 0x80, 0x80, 0x80, 0x00]), 1), Uint32Array.of(127));
  });

  test('random uint32 sequences round trip', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 50 }), (values) => {
        const w = new ByteWriter(1);
        values.forEach((v) => w.varint(v));
        const bytes = w.bytes();
        assert.deepEqual([...bytes], leb128(values));
        assert.equal(bytes.length, values.reduce((s, v) => s + varintSize(v), 0));
        assert.deepEqual(readVarints(bytes, values.length), Uint32Array.from(values));
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// msgpack encodings (the decoder accepts any valid encoding of the same values)

/** msgpack document with every integer written as uint64 (0xcf), as a u64-minded encoder would. */
function uint64Doc(sq: number): Uint8Array {
  const out: number[] = [];
  const u64 = (v: bigint) => {
    out.push(0xcf);
    for (let s = 56n; s >= 0n; s -= 8n) out.push(Number((v >> s) & 0xffn));
  };
  const str = (s: string) => out.push(0xa0 | s.length, ...utf8.encode(s));
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
  test('the reference encoder writes integers above 2^32 - 1 as float64, and they decode', () => {
    const bytes = encodePayload({ header: { ...HEADER, sequence: 2 ** 40 }, patches: [] });
    const at = Buffer.from(bytes).indexOf(Buffer.from([0xa2, 0x73, 0x71]));
    assert.deepEqual([...bytes.subarray(at + 3, at + 12)], [0xcb, 0x42, 0x70, 0, 0, 0, 0, 0, 0]);
    assert.equal(decodePayload(bytes).header.sequence, 2 ** 40);
  });
});

// ---------------------------------------------------------------------------------------------
// Byte deltas (FORMAT.md §16), decoded by a second decoder written from the document alone.

interface ByteDeltaIndex {
  valid: { name: string; base: string; delta: string; target: string; outputLength: number; coding: number; literalCoding: number; copies: number; inserts: number }[];
  invalid: { name: string; base: string; delta: string; maxOutputBytes: number; error: string; code: string }[];
}


describe('byte delta vectors (FORMAT.md §16)', async () => {
  const { applyByteDelta } = await import('../src/core/byte-delta.ts');
  const bd = readJson<ByteDeltaIndex>('byte-delta.json');
  test('the index lists valid and hostile cases', () => {
    assert.ok(bd.valid.length >= 4);
    for (const n of ['copy-out-of-range', 'past-declared-output', 'over-cap', 'truncated-varint', 'count-bomb']) assert.ok(bd.invalid.some((v) => v.name === `invalid-delta-${n}`), n);
    assert.ok(bd.valid.some((v) => v.literalCoding === 1) && bd.valid.some((v) => v.literalCoding === 0 && v.copies > 0));
    assert.ok(bd.valid.some((v) => v.coding === 4 && v.copies > 0 && v.inserts > 0), 'a modelled delta');
    assert.ok(bd.valid.some((v) => v.coding === 5 && v.inserts > 0), 'a modelled delta with its literal context');
    for (const n of ['repeat-ahead', 'self-ahead', 'copy-out-of-range', 'overrun', 'trailing', 'count-bomb', 'literals-short', 'context', 'context-bits']) assert.ok(bd.invalid.some((v) => v.name === `invalid-delta-modelled-${n}`), n);
    for (const n of ['self-copy-ahead', 'unknown-kind', 'zero-length']) assert.ok(bd.invalid.some((v) => v.name === `invalid-delta-${n}`), n);
  });
  for (const v of bd.valid) {
    test(`${v.name}: both decoders rebuild the target`, () => {
      const base = read(v.base);
      const delta = read(v.delta);
      const target = read(v.target);
      assert.equal(target.length, v.outputLength);
      assert.deepEqual(specByteDelta(base, delta, target.length), target);
      assert.deepEqual(applyByteDelta(base, delta, target.length), target);
      // a cap one byte short of the output refuses it
      if (target.length) assert.throws(() => applyByteDelta(base, delta, target.length - 1), PayloadFormatError);
    });
  }
  for (const v of bd.invalid) {
    test(`${v.name}: refused by both decoders`, () => {
      const base = read(v.base);
      const before = base.slice();
      const delta = read(v.delta);
      assert.throws(() => specByteDelta(base, delta, v.maxOutputBytes), /./);
      assert.throws(
        () => applyByteDelta(base, delta, v.maxOutputBytes),
        (e: unknown) => e instanceof PayloadFormatError && e.code === v.code && e.constructor.name === v.error,
      );
      assert.deepEqual(base, before, 'the base is only read');
    });
  }
});

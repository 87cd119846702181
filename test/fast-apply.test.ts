/**
 * The whole apply at the speed of its kernels (issue #15), and what it must not give up:
 *
 * - every position and value of a payload is checked before anything is written (cheaply: the
 *   gaps' sum and the values' exponent bits, no float decode), so a fault late in a patch leaves
 *   the weights untouched, byte for byte;
 * - the region kernel (WebAssembly: positions and values decoded on the way to the weights, the
 *   base and the target hashed in the same pass) writes the same bits, logs what restores them,
 *   and gives the same digests as the reference kernels and fingerprint.ts;
 * - hashing the patched tensors as the base while patching them changes no outcome: a model that
 *   is not the base, or already the target, ends exactly as before.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { assembleRegionKernel, assembleRegionSimdKernel, regionKernelSource, regionSimdKernelSource, REGION_SIMD_TS_FILE, REGION_TS_FILE } from '../scripts/build-hash-kernel.ts';
import { getHasher } from '../src/core/hasher.ts';
import { CHUNK_VALUES, openPayload, type SparsePatch, type TensorPatch } from '../src/core/format.ts';
import { encodePayload, encodePositions, packPayload, patchValues, valueBytes, wirePatch, type WirePatch } from '../src/core/encode.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { tensorDigest, tensorDigestStream } from '../src/core/fingerprint.ts';
import { applyTensorPatch, ExceptionLog, subtractRange } from '../src/core/patch-math.ts';
import { decodeValues, firstNonFinite, type ValueCodec } from '../src/core/values.ts';
import { readGapsInto, scanGaps, scannedPosition } from '../src/core/varint.ts';
import { KERNEL_REGION, kernelTakes, patchRegions, useRegionSimd } from '../src/core/region-kernel.ts';
import { applyPayload, applyVerifiedPayload, verifyPayload, BaseMismatchError, MemoryWeightStore, NeuralDiffError, NonFiniteValueError, PayloadFormatError, TargetMismatchError, type WeightStore } from '../src/apply/index.ts';
import { rng, snapshot, sameBytes } from './helpers/models.ts';

const hasher = await getHasher();
const C = CHUNK_VALUES;

/** A store that counts the calls that hand out writable values. */
class CountingStore implements WeightStore {
  valuesCalls = 0;
  constructor(readonly inner: MemoryWeightStore) {}
  list() {
    return this.inner.list();
  }
  values(name: string) {
    this.valuesCalls++;
    return this.inner.values(name);
  }
}

/** A model of three tensors: `big` (patched sparsely in three pieces), `wide` (dense), `small`. */
function model(seed = 8): MemoryWeightStore {
  const r = rng(seed);
  const t = (n: number) => Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
  return new MemoryWeightStore({ big: { shape: [25 * C], data: t(25 * C) }, wide: { shape: [2 * C + 5], data: t(2 * C + 5) }, small: { shape: [10], data: t(10) } });
}

function specs(base: MemoryWeightStore, codec: ValueCodec = 'f16'): PatchSpec[] {
  const r = rng(9);
  const positions = Uint32Array.from({ length: base.values('big').length }, (_, i) => i).filter((i) => i % 9 === 4);
  return [
    { kind: 'sparse', name: 'big', positions, values: Float32Array.from(positions, () => (r() - 0.5) * 0.01), codec },
    { kind: 'dense', name: 'wide', values: Float32Array.from({ length: base.values('wide').length }, () => (r() - 0.5) * 0.01), codec },
    { kind: 'hash', name: 'small', seed: 5, signed: true, buckets: Float32Array.of(0.01, -0.02, 0.03), codec: 'f16' },
  ];
}

/** The payload's patches on the wire, with `edit` applied to the big patch. */
function rewired(built: ReturnType<typeof buildPayload>, edit: (w: WirePatch) => void): Uint8Array {
  const wires = built.payload.patches.map((p) => wirePatch(p, valueBytes(patchValues(p), p.codec, p.scale)));
  edit(wires[0]);
  return packPayload(built.payload.header, wires);
}

describe('a fault late in a patch', () => {
  test('an out-of-range position in the last piece of a three-piece patch: refused before any tensor is handed out for writing, weights byte for byte', async () => {
    const base = model();
    const built = buildPayload(hasher, base, specs(base), { method: 'sparse' });
    const big = built.payload.patches[0] as SparsePatch;
    assert.ok(big.positions.length > 2 * C, `${big.positions.length} entries: three pieces`);
    // The last entry's gap (one byte) becomes 2^32 - 1: that position is far past the tensor.
    const bytes = rewired(built, (w) => {
      const i = w.i as Uint8Array;
      assert.ok(i[i.length - 1] < 0x80 && i[i.length - 2] < 0x80, 'the last gap is one byte');
      w.i = Uint8Array.from([...i.subarray(0, i.length - 1), 0xff, 0xff, 0xff, 0xff, 0x0f]);
    });
    const device = new CountingStore(base.clone());
    const before = snapshot(device.inner);
    await assert.rejects(applyPayload(device, bytes), (e: unknown) =>
      e instanceof PayloadFormatError && new RegExp(`position \\d+ \\(entry ${big.positions.length - 1}\\) is out of range`).test((e as Error).message));
    assert.equal(device.valuesCalls, 0, 'refused while checking the payload, before the model was touched');
    assert.ok(sameBytes(before, snapshot(device.inner)), 'byte for byte');
  });

  test('a NaN value in the last piece of a three-piece patch: the same', async () => {
    const base = model();
    const built = buildPayload(hasher, base, specs(base), { method: 'sparse' });
    const n = (built.payload.patches[0] as SparsePatch).positions.length;
    const bytes = rewired(built, (w) => {
      w.v = w.v.slice();
      w.v[2 * (n - 3) + 1] = 0x7e; // a half NaN, two entries before the end
    });
    const device = new CountingStore(base.clone());
    const before = snapshot(device.inner);
    await assert.rejects(applyPayload(device, bytes), (e: unknown) => e instanceof NonFiniteValueError && new RegExp(`value ${n - 3} is NaN or infinite`).test((e as Error).message));
    assert.equal(device.valuesCalls, 0);
    assert.ok(sameBytes(before, snapshot(device.inner)));
  });

  test('payload bytes changed after verifyPayload (a fault the check could not see) are caught while patching, and every write is undone', async () => {
    for (const codec of ['f16', 'f32', 'i8'] as const) {
      const base = model();
      const built = buildPayload(hasher, base, specs(base, codec), { method: 'sparse' });
      const n = (built.payload.patches[0] as SparsePatch).positions.length;
      const bytes = built.bytes.slice();
      const verified = await verifyPayload(bytes);
      // Now break the last gap of the big patch in the buffer the verified payload reads.
      const gaps = verified.payload.patches[0].wire?.positions as Uint8Array;
      assert.ok(gaps && gaps.buffer === bytes.buffer, 'the wire view reads the caller buffer');
      gaps[gaps.length - 1] = 0x80; // a varint cut short
      const device = base.clone();
      const before = snapshot(device);
      await assert.rejects(applyVerifiedPayload(device, verified), (e: unknown) => e instanceof NeuralDiffError && /varints|changed while it was applied/.test((e as Error).message), codec);
      assert.ok(sameBytes(before, snapshot(device)), `${codec}: restored byte for byte after ${n} entries were written`);
    }
  });
});

describe('the checks before the first write', () => {
  test('scanGaps agrees with the decoder on every count, alignment, varint length and range', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 0, max: 127 }) }, { weight: 1, arbitrary: fc.integer({ min: 128, max: 2 ** 32 - 1 }) }), { maxLength: 1500 }),
        fc.nat({ max: 7 }),
        fc.nat({ max: 5 }),
        fc.integer({ min: 1, max: 2 ** 32 - 1 }),
        (gaps, offset, chop, size) => {
          const wire: number[] = [];
          for (let x of gaps) {
            while (x >= 0x80) {
              wire.push((x & 0x7f) | 0x80);
              x = Math.floor(x / 128);
            }
            wire.push(x);
          }
          const buf = new Uint8Array(offset + wire.length);
          buf.set(wire, offset);
          const bytes = buf.subarray(offset, offset + Math.max(0, wire.length - chop));
          const out = new Uint32Array(gaps.length);
          const want = readGapsInto(bytes, 0, out, -1, size);
          assert.equal(scanGaps(bytes, 0, gaps.length, -1, size), want);
          if (want >= 0 && gaps.length) assert.equal(scannedPosition, out[gaps.length - 1]);
        },
      ),
      { numRuns: 1500 },
    );
    // Long runs of one-byte gaps (summed four at a time, folded every 128 words), at every
    // alignment, then multi-byte ones.
    for (let offset = 0; offset < 4; offset++) {
      const wire = Uint8Array.from({ length: 5000 }, (_, i) => (i * 37) % 128);
      const buf = new Uint8Array(offset + wire.length + 4);
      buf.set(wire, offset);
      buf.set([0xff, 0x01, 0x80, 0x01], offset + wire.length); // 255 and 128
      const bytes = buf.subarray(offset);
      const out = new Uint32Array(5002);
      const want = readGapsInto(bytes, 0, out, -1, 2 ** 32 - 1);
      assert.equal(scanGaps(bytes, 0, 5002, -1, 2 ** 32 - 1), want);
      assert.equal(scannedPosition, out[5001]);
      assert.equal(scanGaps(bytes, 0, 5002, -1, out[5001]), -1, 'the last position reaches the size');
    }
  });

  test('firstNonFinite finds the first NaN or infinity in the wire bytes, for every codec and alignment', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.nat({ max: 7 }), fc.constantFrom<ValueCodec>('f16', 'f32', 'i8'), fc.constantFrom(1e-3, 3e36), (raw, offset, codec, scale) => {
        const bpv = codec === 'f16' ? 2 : codec === 'f32' ? 4 : 1;
        const buf = new Uint8Array(offset + raw.length - (raw.length % bpv));
        buf.set(raw.subarray(0, buf.length - offset), offset);
        const bytes = buf.subarray(offset);
        const decoded = decodeValues(bytes, codec, Math.fround(scale));
        const want = decoded instanceof Float32Array ? -1 : decoded.nonFiniteAt;
        assert.equal(firstNonFinite(bytes, codec, Math.fround(scale)), want);
      }),
      { numRuns: 3000 },
    );
  });
});

/** Float32 bit patterns that stress rounding: both zeros, NaNs, subnormals, huge values. */
const f32Bits = fc.oneof(
  { weight: 6, arbitrary: fc.float({ min: -0.5, max: 0.5, noNaN: true }).map((x) => new Uint32Array(Float32Array.of(x).buffer)[0]) },
  { weight: 1, arbitrary: fc.constantFrom(0, 0x80000000, 0x7fc00000, 0x7fa00001, 0xffc12345, 1, 0x80000001, 0x00800000, 0x7f7fffff, 0xff7fffff) },
);

describe('the region kernel', () => {
  test('its committed bytes are region-kernel.wat assembled (npm run build:hash-kernel), under 4 KB, without imports', async () => {
    const bytes = await assembleRegionKernel();
    assert.equal(readFileSync(REGION_TS_FILE, 'utf8'), regionKernelSource(bytes), 'src/core/region-kernel-wasm.ts is stale: run npm run build:hash-kernel');
    assert.ok(bytes.length < 4096, `${bytes.length} bytes: browsers compile modules under 4 KB synchronously`);
    const mod = new WebAssembly.Module(bytes);
    assert.deepEqual(WebAssembly.Module.imports(mod), []);
    assert.deepEqual(WebAssembly.Module.exports(mod).map((e) => e.name).sort(), ['a', 'd', 'f', 'i', 'm', 'x']);
  });

  test('its SIMD path for dense patches: region-kernel-simd.wat assembled, on the region kernel\'s memory, and it runs here', async () => {
    const bytes = await assembleRegionSimdKernel();
    assert.equal(readFileSync(REGION_SIMD_TS_FILE, 'utf8'), regionSimdKernelSource(bytes), 'src/core/region-kernel-simd-wasm.ts is stale: run npm run build:hash-kernel');
    assert.ok(bytes.length < 4096, `${bytes.length} bytes`);
    const mod = new WebAssembly.Module(bytes);
    assert.deepEqual(WebAssembly.Module.imports(mod), [{ module: 'r', name: 'm', kind: 'memory' }]);
    assert.deepEqual(WebAssembly.Module.exports(mod).map((e) => e.name), ['D']);
    assert.equal(useRegionSimd(true), true, 'Node has WebAssembly SIMD: the dense path must be taken here, or the tests below compare the plain kernel with itself');
  });

  for (const simd of [true, false]) {
    test(`dense patches ${simd ? 'with' : 'without'} the SIMD path: a NaN value or an overflow at any entry of a group of four stops at that entry, the earlier ones applied and logged, the same as the reference`, () => {
      try {
        useRegionSimd(simd);
        for (const codec of ['f16', 'f32', 'i8'] as const) {
          for (const [fault, at] of [['nan', 0], ['nan', 5], ['nan', 6], ['nan', 7], ['nan', 8190], ['nan', 8191], ['nan', 8195], ['overflow', 1], ['overflow', 4], ['overflow', 8194], ['none', 0]] as const) {
            if (fault === 'nan' && codec === 'i8') continue; // an int8 value cannot be NaN
            const n = KERNEL_REGION + 7;
            const r = rng(at + 1);
            const w = Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
            // A weight already infinite stays so: the kernel cannot tell it from one the patch made so.
            if (fault === 'overflow') w[at] = Infinity;
            const raw = Float32Array.from({ length: n }, () => (r() - 0.5) * 0.02);
            const scale = codec === 'i8' ? Math.fround(0.02 / 127) : undefined;
            const wire = valueBytes(raw, codec, scale).slice();
            const values = decodeValues(wire, codec, scale) as Float32Array;
            if (fault === 'nan') {
              if (codec === 'f16') new DataView(wire.buffer, wire.byteOffset).setUint16(2 * at, 0x7e00, true);
              else new DataView(wire.buffer, wire.byteOffset).setUint32(4 * at, 0x7fc00000, true);
            }
            const got = w.slice();
            const log = new ExceptionLog();
            const name = 'layer/kernel';
            const base = tensorDigestStream(hasher, name, [n]);
            const target = tensorDigestStream(hasher, name, [n]);
            assert.ok(kernelTakes(base.stream, codec) && kernelTakes(target.stream, codec));
            const res = patchRegions(got, { count: n, values: wire, codec, scale }, log, base.stream, target.stream);
            // The reference, entry by entry: w + d until the first bad value (not applied) or
            // the first weight made non-finite (applied).
            const want = w.slice();
            let applied = 0;
            let expected: string | undefined;
            for (let i = 0; i < n; i++) {
              if (fault === 'nan' && i === at) {
                expected = 'changed';
                break;
              }
              want[i] = Math.fround(want[i] + values[i]);
              applied++;
              if (!Number.isFinite(want[i])) {
                expected = `overflow ${i}`;
                break;
              }
            }
            const what = `${codec} ${fault} at ${at}`;
            assert.equal(res.applied, applied, what);
            assert.equal(res.fault && (res.fault.kind === 'overflow' ? `overflow ${res.fault.position}` : res.fault.kind), expected, what);
            // What ran before the fault is written, the rest is as it was.
            assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), what);
            const undo = Float32Array.from(got);
            subtractRange(undo, { kind: 'dense', name, shape: [n], values, codec, baseDigest: '', targetDigest: '' }, 0, 0, res.applied);
            log.restore(undo);
            assert.deepEqual(new Uint32Array(undo.buffer), new Uint32Array(w.buffer), `${what}: restored bit for bit`);
          }
        }
      } finally {
        useRegionSimd(true);
      }
    });
  }

  test('writes the bits of the reference kernels, logs what restores them, and hashes base and target as tensorDigest does', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 * KERNEL_REGION + 50 }),
        fc.array(f32Bits, { minLength: 1, maxLength: 64 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.constantFrom<ValueCodec>('f16', 'f32', 'i8'),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (n, pattern, density, codec, dense, seed) => {
          const r = rng(seed);
          const w = new Float32Array(new Uint32Array(Array.from({ length: n }, (_, i) => pattern[(i * 7 + seed) % pattern.length])).buffer);
          // Positions: some dense runs, some long jumps (multi-byte gaps, regions skipped).
          const positions = dense ? Uint32Array.from({ length: n }, (_, i) => i) : Uint32Array.from({ length: n }, (_, i) => i).filter(() => r() < density * density);
          const raw = Float32Array.from(positions, () => (r() < 0.05 ? (r() - 0.5) * 1e4 : (r() - 0.5) * 0.02));
          const scale = codec === 'i8' ? Math.fround(0.02 / 127) : undefined;
          const wireValues = valueBytes(raw, codec, scale);
          const values = decodeValues(wireValues, codec, scale) as Float32Array;
          const name = 'layer/kernel';
          const shape = [n];
          const patch: TensorPatch = dense
            ? { kind: 'dense', name, shape, values, codec, baseDigest: '', targetDigest: '' }
            : { kind: 'sparse', name, shape, positions, values, positionCoding: 'gaps', codec, baseDigest: '', targetDigest: '' };
          const want = w.slice();
          applyTensorPatch(want, patch, false);

          const got = w.slice();
          const log = new ExceptionLog();
          const base = tensorDigestStream(hasher, name, shape);
          const target = tensorDigestStream(hasher, name, shape);
          assert.ok(kernelTakes(base.stream, codec) && kernelTakes(target.stream, codec));
          const gaps = dense ? undefined : encodePositions(positions, n).coding === 'g' ? encodePositions(positions, n).bytes : gapBytes(positions);
          // Dense patches take the SIMD path on one run in two.
          useRegionSimd(seed % 2 === 0);
          const res = patchRegions(got, { count: positions.length, gaps, values: wireValues, codec, scale }, log, base.stream, target.stream);
          useRegionSimd(true);
          if (res.fault) {
            // Only an overflow can stop it here, at a weight the reference made non-finite too.
            assert.equal(res.fault.kind, 'overflow');
            assert.ok(!Number.isFinite(want[(res.fault as { position: number }).position]));
          } else {
            assert.equal(res.applied, positions.length);
            assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), 'same bits as the reference kernel');
            assert.equal(base.digest(), tensorDigest(hasher, name, shape, w), 'base digest');
            assert.equal(target.digest(), tensorDigest(hasher, name, shape, want), 'target digest');
          }
          // Undo: subtract what was applied, put the logged bits back.
          subtractRange(got, patch, 0, 0, res.applied);
          log.restore(got);
          assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(w.buffer), 'restored bit for bit');
        },
      ),
      { numRuns: 250 },
    );
  });

  test('applyPayload through the kernel and through the reference path give the same model, for every codec', async () => {
    const pure = await getHasher({ prefer: 'pure' });
    for (const codec of ['f16', 'f32', 'i8'] as const) {
      const base = model(3);
      const built = buildPayload(hasher, base, specs(base, codec), { method: 'sparse' });
      const a = base.clone();
      const b = base.clone();
      assert.equal((await applyPayload(a, built.bytes)).status, 'applied');
      assert.equal((await applyPayload(b, built.bytes, { hasher: pure })).status, 'applied');
      assert.ok(sameBytes(snapshot(a), snapshot(b)), codec);
      for (const [name, values] of built.targetValues) assert.deepEqual(a.values(name), values, `${codec} ${name}`);
      // A header that promises another target: every patch written, then undone, either way.
      const lying = encodePayload({ ...built.payload, header: { ...built.payload.header, targetFingerprint: '0123456789abcdef' } });
      for (const h of [hasher, pure]) {
        const device = base.clone();
        await assert.rejects(applyPayload(device, lying, { hasher: h }), TargetMismatchError);
        assert.ok(sameBytes(snapshot(base), snapshot(device)), `${codec}, ${h.kind}: restored byte for byte`);
      }
    }
  });
});

/** Gap varints of `positions` (whatever the encoder would pick). */
function gapBytes(positions: Uint32Array): Uint8Array {
  const out: number[] = [];
  let prev = -1;
  for (const p of positions) {
    let g = p - prev - 1;
    prev = p;
    while (g >= 0x80) {
      out.push((g & 0x7f) | 0x80);
      g = Math.floor(g / 128);
    }
    out.push(g);
  }
  return Uint8Array.from(out);
}

describe('the base hashed while patching changes no outcome', () => {
  test('one patched tensor not the base: BaseMismatchError naming it, the model byte for byte as before', async () => {
    const base = model();
    const built = buildPayload(hasher, base, specs(base), { method: 'sparse' });
    for (const culprit of ['big', 'wide', 'small']) {
      const device = base.clone();
      device.values(culprit)[3] += 0.25;
      const before = snapshot(device);
      await assert.rejects(applyPayload(device, built.bytes), (e: unknown) => e instanceof BaseMismatchError && (e.details as { differing: string[] }).differing.join() === culprit);
      assert.ok(sameBytes(before, snapshot(device)), culprit);
    }
  });

  test('a model already at the target: already-applied, byte for byte as before', async () => {
    const base = model();
    const built = buildPayload(hasher, base, specs(base), { method: 'sparse' });
    const device = base.clone();
    await applyPayload(device, built.bytes);
    const before = snapshot(device);
    const res = await applyPayload(device, built.bytes);
    assert.equal(res.status, 'already-applied');
    assert.equal(res.writtenValues, 0);
    assert.ok(sameBytes(before, snapshot(device)));
  });

  test('a payload that overflows float32 in its last tensor: refused, every earlier tensor restored', async () => {
    const base = model();
    base.values('small')[2] = 3e38;
    const s = specs(base);
    s[2] = { kind: 'dense', name: 'small', values: Float32Array.from({ length: 10 }, (_, i) => (i === 2 ? 3e38 : 0.001)), codec: 'f32' };
    const wires = buildPayload(hasher, base, s.slice(0, 2), { method: 'sparse' });
    // Built by hand: the encoder refuses a non-finite target.
    const small: WirePatch = { t: 'small', s: [10], k: 'd', b: new Uint8Array(8), a: new Uint8Array(8), c: 'f32', v: valueBytes((s[2] as { values: Float32Array }).values, 'f32') };
    const digest = (hex: string) => Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
    small.b = digest(tensorDigest(hasher, 'small', [10], base.values('small')));
    const header = { ...wires.payload.header, baseFingerprint: '0'.repeat(16) };
    const patches = [...wires.payload.patches.map((p) => wirePatch(p, valueBytes(patchValues(p), p.codec, p.scale))), small];
    const { fingerprintStore } = await import('../src/core/fingerprint.ts');
    header.baseFingerprint = fingerprintStore(hasher, base).fingerprint;
    const device = base.clone();
    const before = snapshot(device);
    await assert.rejects(applyPayload(device, packPayload(header, patches)), NonFiniteValueError);
    assert.ok(sameBytes(before, snapshot(device)));
  });
});

test('openPayload leaves every patch as a source with its wire bytes (sparse gap-coded and dense), none decoded', () => {
  const base = model();
  const built = buildPayload(hasher, base, specs(base), { method: 'sparse' });
  const opened = new Map(openPayload(built.bytes).patches.map((p) => [p.name, p]));
  assert.equal(opened.get('big')?.wire?.coding, 'gaps');
  assert.ok(opened.get('big')?.wire?.positions instanceof Uint8Array);
  assert.equal(opened.get('wide')?.wire?.coding, undefined);
  assert.equal(opened.get('wide')?.wire?.values.length, 2 * base.values('wide').length);
  assert.equal(opened.get('small')?.wire, undefined, 'a hashed patch is decoded whole');
});

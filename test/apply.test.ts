import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { baseAndTarget, snapshot, sameBytes, rng } from './helpers/models.ts';
import { getHasher } from '../src/core/hasher.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { applyPayload, MemoryWeightStore, NeuralDiffError, BaseMismatchError, PayloadFormatError, ModelMismatchError, NonFiniteValueError, UnsupportedVersionError, PayloadTooLargeError, TargetMismatchError } from '../src/apply/index.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePayload } from '../src/core/encode.ts';
import { packPayload, type WirePatch } from '../src/core/encode.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';

const hasher = await getHasher();

function equalBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Applies and expects a typed error with the model untouched byte for byte. */
async function expectRefused(store: MemoryWeightStore, bytes: Uint8Array, type: new (...a: never[]) => NeuralDiffError, pattern?: RegExp): Promise<NeuralDiffError> {
  const before = snapshot(store);
  const err = await applyPayload(store, bytes).then(
    () => assert.fail('expected the payload to be refused'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof type, `expected ${type.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  if (pattern) assert.match((err as Error).message, pattern);
  assert.ok(sameBytes(before, snapshot(store)), 'model must be untouched');
  return err as NeuralDiffError;
}

describe('round trip', () => {
  for (const budget of [600, 2000, 8000, 40000]) {
    test(`top-k diff at ${budget} bytes applies to exactly base + encoded delta`, async () => {
      const { base, target } = baseAndTarget(7);
      const built = topkDiff(hasher, base, target, { budgetBytes: budget });
      assert.ok(built.bytes.length <= budget, `payload ${built.bytes.length} > budget ${budget}`);
      const device = base.clone();
      const res = await applyPayload(device, built.bytes);
      assert.equal(res.status, 'applied');
      for (const t of device.list()) {
        const expected = built.targetValues.get(t.name) ?? base.values(t.name);
        assert.ok(equalBits(device.values(t.name), expected), `tensor ${t.name} differs`);
      }
      // and the device's fingerprint is the promised target
      assert.equal(fingerprintStore(hasher, device).fingerprint, built.payload.header.targetFingerprint);
      // a second apply is recognised as done and writes nothing
      const again = await applyPayload(device, built.bytes);
      assert.equal(again.status, 'already-applied');
    });
  }

  test('a big budget reproduces the target exactly with f32', async () => {
    const { base, target } = baseAndTarget(3);
    const built = topkDiff(hasher, base, target, { budgetBytes: 1_000_000, codec: 'f32' });
    assert.equal(built.kept, built.changed);
    const device = base.clone();
    await applyPayload(device, built.bytes);
    // w0 + (w1 - w0) in float32 is not always w1, but it is what the encoder promised
    for (const t of device.list()) assert.ok(equalBits(device.values(t.name), built.targetValues.get(t.name) ?? base.values(t.name)));
    assert.ok(built.squaredError < 1e-12);
  });

  test('hash and dense patches round-trip with every codec', async () => {
    const { base } = baseAndTarget(5);
    for (const codec of ['f32', 'f16', 'i8'] as const) {
      const r = rng(11);
      const specs: PatchSpec[] = [
        { kind: 'hash', name: 'dense/kernel', seed: 1234, signed: true, buckets: Float32Array.from({ length: 17 }, () => (r() - 0.5) * 0.01), codec },
        { kind: 'hash', name: 'conv1/kernel', seed: 99, signed: false, buckets: Float32Array.from({ length: 5 }, () => (r() - 0.5) * 0.01), codec },
        { kind: 'dense', name: 'out/bias', values: Float32Array.from({ length: 10 }, () => (r() - 0.5) * 0.01), codec },
      ];
      const built = buildPayload(hasher, base, specs, { method: 'hash' });
      const device = base.clone();
      await applyPayload(device, built.bytes);
      for (const [n, v] of built.targetValues) assert.ok(equalBits(device.values(n), v), `${codec} ${n}`);
      // re-encoding the decoded payload gives the same bytes
      assert.deepEqual(encodePayload(decodePayload(built.bytes)), built.bytes);
    }
  });

  test('low-rank patches apply U·V in the pinned float32 order', async () => {
    const { base } = baseAndTarget(5);
    const r = rng(3);
    const rows = 128, cols = 32, rank = 3;
    const u = Float32Array.from({ length: rows * rank }, () => (r() - 0.5) * 0.1);
    const v = Float32Array.from({ length: rank * cols }, () => (r() - 0.5) * 0.1);
    const built = buildPayload(hasher, base, [{ kind: 'lowrank', name: 'dense/kernel', rank, u, v, codec: 'f32' }], { method: 'lowrank' });
    const device = base.clone();
    await applyPayload(device, built.bytes);
    const w = device.values('dense/kernel');
    const w0 = base.values('dense/kernel');
    let maxErr = 0;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
      let exact = 0;
      for (let k = 0; k < rank; k++) exact += u[i * rank + k] * v[k * cols + j];
      maxErr = Math.max(maxErr, Math.abs(w[i * cols + j] - (w0[i * cols + j] + exact)));
    }
    assert.ok(maxErr < 1e-6, `max error ${maxErr}`);
    assert.ok(equalBits(w, built.targetValues.get('dense/kernel') as Float32Array));
    const decoded = decodePayload(built.bytes).patches[0];
    assert.equal(decoded.kind, 'lowrank');
    // rank above min(rows, cols) is refused
    const again = decodePayload(built.bytes);
    assert.throws(() => decodePayload(encodePayload({ ...again, patches: [{ ...(again.patches[0] as never as object), rank: 40, u: new Float32Array(rows * 40), v: new Float32Array(40 * cols) } as never] })), PayloadFormatError);
  });

  test('the encoder picks a bitmap for dense positions and gaps for sparse ones', () => {
    const { base } = baseAndTarget(5);
    const dense = Uint32Array.from({ length: 3000 }, (_, i) => i + 500);
    const sparse = Uint32Array.from([3, 700, 4000]);
    const built = buildPayload(hasher, base, [
      { kind: 'sparse', name: 'dense/kernel', positions: dense, values: new Float32Array(dense.length).fill(0.5), codec: 'f16' },
      { kind: 'sparse', name: 'out/kernel', positions: Uint32Array.from([1, 2, 300]), values: new Float32Array(3).fill(0.25), codec: 'f16' },
      { kind: 'sparse', name: 'conv1/kernel', positions: Uint32Array.from([0]), values: new Float32Array(1).fill(0.25), codec: 'f16' },
    ].concat(sparse.length ? [] : []) as PatchSpec[], { method: 'topk' });
    const byName = new Map(decodePayload(built.bytes).patches.map((p) => [p.name, p]));
    assert.equal((byName.get('dense/kernel') as { positionCoding: string }).positionCoding, 'bitmap');
    assert.equal((byName.get('out/kernel') as { positionCoding: string }).positionCoding, 'gaps');
  });
});

describe('determinism', () => {
  test('the same inputs give the same payload bytes', () => {
    const a = baseAndTarget(9);
    const b = baseAndTarget(9);
    const x = topkDiff(hasher, a.base, a.target, { budgetBytes: 3000 });
    const y = topkDiff(hasher, b.base, b.target, { budgetBytes: 3000 });
    assert.deepEqual(x.bytes, y.bytes);
  });
  test('the pure and the wasm hasher give the same payload', async () => {
    const pure = await getHasher({ prefer: 'pure' });
    assert.equal(pure.kind, 'pure');
    const { base, target } = baseAndTarget(9);
    assert.deepEqual(topkDiff(pure, base, target, { budgetBytes: 3000 }).bytes, topkDiff(hasher, base, target, { budgetBytes: 3000 }).bytes);
  });
});

describe('buildPayload refuses malformed specs (a JavaScript pipeline has no type checker)', () => {
  const { base } = baseAndTarget(3);
  const name = base.list()[0].name;
  const size = base.values(name).length;
  const cases: [string, unknown, RegExp][] = [
    ['no codec', { kind: 'sparse', name, positions: Uint32Array.of(1, 2), values: Float32Array.of(0.1, 0.2) }, /expected codec f32, f16, i8 \(or x, xr, xs for sparse and dense patches, l for every kind but hashed\), found undefined/],
    ['an unknown codec', { kind: 'dense', name, values: new Float32Array(size), codec: 'bf16' }, /found "bf16"/],
    ['an unknown kind', { kind: 'delta', name, values: new Float32Array(size), codec: 'f16' }, /expected kind sparse, hash, dense, lowrank, composite, found "delta"/],
    ['an unknown tensor', { kind: 'dense', name: 'nope', values: new Float32Array(1), codec: 'f16' }, /no such tensor/],
    ['fewer values than positions', { kind: 'sparse', name, positions: Uint32Array.of(1, 2, 3), values: Float32Array.of(0.1), codec: 'f16' }, /3 positions and 1 values/],
    ['positions out of order', { kind: 'sparse', name, positions: Uint32Array.of(5, 2), values: Float32Array.of(0.1, 0.2), codec: 'f16' }, /position 1 is 2 after 5/],
    ['a position past the end', { kind: 'sparse', name, positions: Uint32Array.of(size), values: Float32Array.of(0.1), codec: 'f16' }, new RegExp(`below ${size}; position 0 is ${size}`)],
    ['a dense patch of the wrong size', { kind: 'dense', name, values: new Float32Array(size + 1), codec: 'f16' }, new RegExp(`expected ${size} dense values`)],
    ['no buckets', { kind: 'hash', name, seed: 1, signed: true, buckets: new Float32Array(0), codec: 'f16' }, /at least one bucket/],
  ];
  for (const [what, spec, message] of cases) {
    test(what, () => {
      assert.throws(() => buildPayload(hasher, base, [spec as PatchSpec], { method: 'sparse' }), (e: unknown) => e instanceof NeuralDiffError && e.code === 'ND_USAGE' && message.test(e.message));
    });
  }
});

describe('bad input leaves the model untouched', () => {
  const { base, target } = baseAndTarget(21);
  const built = topkDiff(hasher, base, target, { budgetBytes: 4000, codec: 'f16' });
  const header = built.payload.header;
  const wires = (): WirePatch[] => {
    const doc = decodePayload(built.bytes);
    return doc.patches.map((p) => {
      const again = encodePayload({ header, patches: [p] });
      return (decodeRaw(again) as { p: WirePatch[] }).p[0];
    });
  };

  test('payload for another base', async () => {
    const other = baseAndTarget(22).base;
    const e = await expectRefused(other, built.bytes, BaseMismatchError, /targets base .* this model is .*fetch the full model/);
    assert.equal(e.code, 'ND_BASE_MISMATCH');
  });

  test('truncated payload, at every length', async () => {
    const device = base.clone();
    for (let len = 0; len < built.bytes.length; len += Math.max(1, Math.floor(built.bytes.length / 200))) {
      await expectRefused(device, built.bytes.subarray(0, len), PayloadFormatError);
    }
  });

  test('flipped bytes: every flip is refused with a typed error, or (in fields no digest covers) applies exactly', async () => {
    let refused = 0;
    let applied = 0;
    const step = Math.max(1, Math.floor(built.bytes.length / 400));
    for (let i = 0; i < built.bytes.length; i += step) {
      const bad = built.bytes.slice();
      bad[i] ^= 0x5a;
      const device = base.clone();
      const before = snapshot(device);
      try {
        await applyPayload(device, bad);
        applied++;
        for (const [n, v] of built.targetValues) assert.ok(equalBits(device.values(n), v));
      } catch (e) {
        assert.ok(e instanceof NeuralDiffError, `byte ${i}: untyped ${(e as Error).message}`);
        assert.ok(sameBytes(before, snapshot(device)), `byte ${i}: model modified`);
        refused++;
      }
    }
    assert.ok(refused > applied * 5, `refused ${refused}, applied ${applied}`);
  });

  test('position out of range', async () => {
    const w = wires();
    const sparse = w.find((p) => p.t === 'dense/kernel') as WirePatch;
    // gaps coding: one position past the end of a 4096-value tensor
    const one: WirePatch = { ...sparse, ic: 'g', n: 1, i: new Uint8Array([0xff, 0xff, 0x03]), v: new Uint8Array(2) };
    await expectRefused(base.clone(), packPayload(header, [one]), PayloadFormatError, /position 65535 .* out of range/);
    // bitmap coding: a bit set past the end of a 10-value tensor
    const bias = { ...(w.find((p) => p.t === 'conv1/bias') as WirePatch), t: 'out/bias', s: [10], ic: 'm' as const, n: 1, i: new Uint8Array([0, 0x08]), v: new Uint8Array(2) };
    await expectRefused(base.clone(), packPayload(header, [bias]), PayloadFormatError, /past the tensor's end/);
    // count larger than the tensor
    await expectRefused(base.clone(), packPayload(header, [{ ...bias, n: 11 }]), PayloadFormatError, /count "n"/);
  });

  test('shape mismatch', async () => {
    const w = wires();
    const kernel = w.find((p) => p.t === 'dense/kernel') as WirePatch;
    kernel.s = [32, 128];
    await expectRefused(base.clone(), packPayload(header, w), ModelMismatchError, /has shape .* expects/);
  });

  test('tensor the model does not have', async () => {
    const w = wires();
    w[0].t = 'decoder/kernel';
    await expectRefused(base.clone(), packPayload(header, w), ModelMismatchError, /does not have/);
  });

  test('NaN and infinite values', async () => {
    for (const bits of [0x7e00, 0x7c00, 0xfc00]) {
      const w = wires();
      const p = w.find((x) => x.c === 'f16') as WirePatch;
      p.v = p.v.slice();
      p.v[0] = bits & 0xff;
      p.v[1] = bits >>> 8;
      await expectRefused(base.clone(), packPayload(header, w), NonFiniteValueError, /NaN or infinite/);
    }
  });

  test('unknown format version', async () => {
    await expectRefused(base.clone(), packPayload({ ...header, version: 7 }, wires()), UnsupportedVersionError, /version 7 is not supported/);
  });

  test('values that do not match the target digest are undone', async () => {
    const w = wires();
    const p = w.find((x) => x.c === 'f16') as WirePatch;
    p.v = p.v.slice();
    p.v[0] ^= 0x01; // still finite, just a different value
    await expectRefused(base.clone(), packPayload(header, w), TargetMismatchError, /undone and the model is unchanged/);
  });

  test('oversized input is refused before parsing', async () => {
    const device = base.clone();
    const before = snapshot(device);
    await assert.rejects(applyPayload(device, built.bytes, { maxPayloadBytes: 100 }), PayloadTooLargeError);
    assert.ok(sameBytes(before, snapshot(device)));
  });

  test('not msgpack at all', async () => {
    await expectRefused(base.clone(), new TextEncoder().encode('{"hello": "json"}'), PayloadFormatError, /expected a msgpack map/);
    await expectRefused(base.clone(), new Uint8Array([0x81, 0xa1, 0x78, 0x01]), PayloadFormatError, /format version/);
  });

  test('a failing commit restores the weights', async () => {
    const device = base.clone();
    const before = snapshot(device);
    (device as unknown as { commit: () => void }).commit = () => {
      throw new Error('disk full');
    };
    await assert.rejects(applyPayload(device, built.bytes), /disk full.*restored/);
    assert.ok(sameBytes(before, snapshot(device)));
  });
});

import { Unpackr } from 'msgpackr';
function decodeRaw(b: Uint8Array): unknown {
  return new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(b);
}

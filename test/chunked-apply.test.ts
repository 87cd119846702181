/**
 * Patches larger than a piece (CHUNK_VALUES values) are checked and applied a piece at a time:
 * the pieces decode to exactly the whole patch, a fault in a later piece is refused before
 * anything is written (with the index in the whole patch), and an undo restores every piece.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { getHasher } from '../src/core/hasher.ts';
import { CHUNK_VALUES, decodePayload, openPayload, type PatchChunk, type PayloadHeader, type TensorPatch } from '../src/core/format.ts';
import { encodePayload, packPayload, type WirePatch } from '../src/core/encode.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { applyPayload, HealthCheckError, MemoryWeightStore, NonFiniteValueError, PayloadFormatError, TargetMismatchError } from '../src/apply/index.ts';
import { rng, snapshot, sameBytes } from './helpers/models.ts';

const hasher = await getHasher();
const C = CHUNK_VALUES;
const BIG = 20 * C + 7; // a sparse tensor whose patches span three pieces
const WIDE = 2 * C + 1; // a dense tensor of three pieces, the last of one value

function model(): MemoryWeightStore {
  const r = rng(8);
  const t = (n: number) => Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
  return new MemoryWeightStore({ big: { shape: [BIG], data: t(BIG) }, wide: { shape: [3, WIDE / 3 | 0], data: t(3 * (WIDE / 3 | 0)) }, small: { shape: [10], data: t(10) } });
}

function specs(base: MemoryWeightStore, coding: 'gaps' | 'bitmap'): PatchSpec[] {
  const r = rng(9);
  // gaps: every 10th position (one-byte gaps beat a bitmap); bitmap: 1 of every 8 (a bitmap of
  // the whole tensor is smaller)
  const keep = (i: number) => (coding === 'gaps' ? i % 10 === 1 : i % 8 === 3);
  const positions = Uint32Array.from({ length: BIG }, (_, i) => i).filter(keep);
  const wide = base.values('wide').length;
  return [
    { kind: 'sparse', name: 'big', positions, values: Float32Array.from(positions, () => (r() - 0.5) * 0.01), codec: 'f16' },
    { kind: 'dense', name: 'wide', values: Float32Array.from({ length: wide }, () => (r() - 0.5) * 0.01), codec: 'f32' },
    { kind: 'hash', name: 'small', seed: 5, signed: true, buckets: Float32Array.of(0.01, -0.02, 0.03), codec: 'f16' },
  ];
}

function equalPatch(a: TensorPatch, b: TensorPatch): void {
  assert.equal(a.kind, b.kind);
  if (a.kind === 'sparse' && b.kind === 'sparse') {
    assert.deepEqual(a.positions, b.positions);
    assert.deepEqual(a.values, b.values);
  } else if (a.kind === 'dense' && b.kind === 'dense') {
    assert.deepEqual(a.values, b.values);
  }
}

describe('patches larger than a piece', () => {
  for (const coding of ['gaps', 'bitmap'] as const) {
    test(`sparse (${coding}) and dense patches decode, piece by piece, to exactly the whole patch`, () => {
      const base = model();
      const built = buildPayload(hasher, base, specs(base, coding), { method: 'sparse' });
      const decoded = decodePayload(built.bytes);
      const big = decoded.patches.find((p) => p.name === 'big') as TensorPatch & { kind: 'sparse' };
      assert.equal(big.positionCoding, coding);
      assert.ok(big.positions.length > 2 * C, `${big.positions.length} entries`);
      for (const p of built.payload.patches) equalPatch(decoded.patches.find((d) => d.name === p.name) as TensorPatch, p);

      // A piece's arrays are reused for the next piece: copy each while it is current.
      const copies = (src: { chunks(): Iterable<PatchChunk> }) => Array.from(src.chunks(), ({ patch, offset }) => ({ offset, positions: (patch as { positions?: Uint32Array }).positions?.slice(), values: (patch as { values: Float32Array }).values.slice() }));
      const opened = openPayload(built.bytes);
      const src = opened.patches.find((p) => p.name === 'big')!;
      const pieces = copies(src);
      assert.equal(pieces.length, Math.ceil(big.positions.length / C));
      assert.ok(pieces.every((c) => c.offset === 0 && c.positions!.length <= C));
      assert.deepEqual(Uint32Array.from(pieces.flatMap((c) => [...c.positions!])), big.positions);
      assert.deepEqual(Float32Array.from(pieces.flatMap((c) => [...c.values])), big.values);
      assert.equal(src.written, big.positions.length);

      const dense = copies(opened.patches.find((p) => p.name === 'wide')!);
      const wide = base.values('wide').length;
      assert.deepEqual(dense.map((c) => c.offset), [0, C, 2 * C].filter((o) => o < wide));
      assert.deepEqual(Float32Array.from(dense.flatMap((c) => [...c.values])), (decoded.patches.find((p) => p.name === 'wide') as { values: Float32Array }).values);
      assert.equal([...opened.patches.find((p) => p.name === 'small')!.chunks()].length, 1);
    });

    test(`applying (${coding}) gives the target exactly; an undo restores every piece byte for byte`, async () => {
      const base = model();
      const built = buildPayload(hasher, base, specs(base, coding), { method: 'sparse' });
      const device = base.clone();
      const res = await applyPayload(device, built.bytes);
      assert.equal(res.status, 'applied');
      assert.equal(res.writtenValues, built.payload.patches.reduce((n, p) => n + (p.kind === 'sparse' ? p.positions.length : device.values(p.name).length), 0));
      assert.equal(fingerprintStore(hasher, device).fingerprint, built.payload.header.targetFingerprint);
      for (const [name, values] of built.targetValues) assert.deepEqual(device.values(name), values);

      // The header promises another target: every piece is patched, then all are undone.
      const lying = encodePayload({ ...built.payload, header: { ...built.payload.header, targetFingerprint: '0123456789abcdef' } });
      const victim = base.clone();
      const before = snapshot(victim);
      await assert.rejects(applyPayload(victim, lying), TargetMismatchError);
      assert.ok(sameBytes(before, snapshot(victim)), 'restored byte for byte');

      // A failing health check after the patch: the same.
      await assert.rejects(applyPayload(victim, built.bytes, { healthCheck: () => false }), HealthCheckError);
      assert.ok(sameBytes(before, snapshot(victim)), 'rolled back byte for byte');
    });
  }
});

describe('a fault in a later piece is refused before anything is written, at its index in the whole patch', () => {
  const header: PayloadHeader = { version: 1, method: 'sparse', modelId: 'm', baseFingerprint: '0000000000000000', targetFingerprint: '1111111111111111', sequence: 1, budgetBytes: 0, createdBy: 'test' };
  const digest = new Uint8Array(8);
  const N = C + 100; // entries: the second piece holds the last 100
  const SIZE = 4 * C;
  const f16 = (n: number, nanAt = -1) => {
    const b = new Uint8Array(2 * n);
    for (let i = 0; i < n; i++) b[2 * i + 1] = i === nanAt ? 0x7e : 0x1c; // 0x1c00: 2^-8; 0x7e00: NaN
    return b;
  };
  const sparse = (i: Uint8Array, ic: 'g' | 'm', v = f16(N), n = N): WirePatch => ({ t: 'w', s: [SIZE], k: 's', b: digest, a: digest, c: 'f16', n, ic, i, v });
  const refused = (patch: WirePatch, type: typeof PayloadFormatError | typeof NonFiniteValueError, message: RegExp) => {
    const bytes = packPayload(header, [patch]);
    assert.throws(() => openPayload(bytes), (e: unknown) => e instanceof type && message.test((e as Error).message));
    assert.throws(() => decodePayload(bytes), (e: unknown) => e instanceof type && message.test((e as Error).message));
  };
  const gaps = (n: number) => new Uint8Array(n); // all gaps 0: positions 0, 1, 2, ...

  test('well-formed: both pieces decode', () => {
    assert.equal([...openPayload(packPayload(header, [sparse(gaps(N), 'g')])).patches[0].chunks()].length, 2);
  });
  test('a position out of range in the second piece', () => {
    const g = gaps(N + 2);
    g.set([0x80, 0x80, 0x10], C + 5); // gap 2^18 at entry C + 5
    refused(sparse(g, 'g'), PayloadFormatError, new RegExp(`position ${C + 5 + 2 ** 18} \\(entry ${C + 5}\\) is out of range`));
  });
  test('a NaN value in the second piece', () => {
    refused(sparse(gaps(N), 'g', f16(N, C + 42)), NonFiniteValueError, new RegExp(`value ${C + 42} is NaN or infinite`));
  });
  test('gap bytes left over after the last entry', () => {
    refused(sparse(gaps(N + 1), 'g'), PayloadFormatError, new RegExp(`not ${N} well-formed varints filling ${N + 1} bytes`));
  });
  test('a varint cut short at the end of the second piece', () => {
    const g = gaps(N);
    g[N - 1] = 0x80;
    refused(sparse(g, 'g'), PayloadFormatError, /well-formed varints/);
  });
  const bitmap = (marks: number) => {
    const m = new Uint8Array(SIZE / 8);
    for (let p = 0; p < marks; p++) m[(2 * p) >> 3] |= 1 << ((2 * p) & 7); // every other position
    return m;
  };
  test('a bitmap: well-formed, one mark short, one mark over', () => {
    const last = Array.from(openPayload(packPayload(header, [sparse(bitmap(N), 'm')])).patches[0].chunks(), (c) => (c.patch as { positions: Uint32Array }).positions.slice());
    assert.deepEqual([last.length, last[1].length, last[1][99]], [2, 100, 2 * (N - 1)]);
    refused(sparse(bitmap(N - 1), 'm'), PayloadFormatError, new RegExp(`bitmap marks ${N - 1} positions, the count says ${N}`));
    refused(sparse(bitmap(N + 1), 'm'), PayloadFormatError, new RegExp(`bitmap marks more positions than the count ${N}`));
  });
  test('a dense patch with a NaN in its last piece', () => {
    refused({ t: 'w', s: [2 * C + 3], k: 'd', b: digest, a: digest, c: 'f16', v: f16(2 * C + 3, 2 * C + 2) }, NonFiniteValueError, new RegExp(`value ${2 * C + 2} is NaN`));
  });
});

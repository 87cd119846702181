/**
 * Structural payloads (format v7, FORMAT.md §17): built by src/diff/structural.ts, rebuilt by
 * `neural-diff/rebuild` (src/apply/rebuild.ts) in memory and by the crash-safe file update
 * (src/io/durable/weights-file-rebuild.ts) on disk, for ONNX (inline data) and LiteRT files whose
 * tensors were added, removed, renamed, reshaped and whose graph changed. Each ends at the
 * target's bytes; hostile payloads are refused with the model byte for byte untouched; the same
 * inputs give the same payload bytes.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Packr } from 'msgpackr';
import { structuralDiff } from '../src/diff/structural.ts';
import { encodeByteDelta } from '../src/diff/byte-delta.ts';
import { decodeStructuralPayload, rebuildModelBytes, type RebuildFormat } from '../src/apply/rebuild.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { BaseMismatchError, FreshnessError, HealthCheckError, ModelMismatchError, PayloadFormatError, TargetMismatchError, UnsupportedVersionError } from '../src/core/errors.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { rebuildOnnxFile } from '../src/io/onnx/files.ts';
import { rebuildTfliteFile } from '../src/io/tflite/files.ts';
import { MemorySequenceStore } from '../src/apply/freshness.ts';
import { DT, f32le, graph, model, node, tensor, valueInfo } from './helpers/onnx-build.ts';
import { buildTflite, f32Bytes, T } from './helpers/tflite-build.ts';

const hasher = await getHasher();
const ONNX: RebuildFormat = { kind: 'onnx', open: (b) => new OnnxWeightStore(b) };
const TFLITE: RebuildFormat = { kind: 'tflite', open: (b) => new TfliteWeightStore(b) };

function noise(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1).map(Math.fround);
}
const nudged = (xs: number[], every: number): number[] => xs.map((x, i) => (i % every === 0 ? Math.fround(x + 0.01) : x));

const W = noise(256, 1);
const BIAS = noise(64, 2);
const OLD = noise(48, 3);
const FLAT = noise(60, 4);
const HEAD = noise(128, 5);

/** ONNX v1: conv.w, bias, old, flat [60]; one MatMul and an Add. */
function onnxBase(): Uint8Array {
  return model(graph({
    name: 'net',
    initializers: [
      tensor({ name: 'conv.w', dims: [16, 16], dataType: DT.FLOAT, raw: f32le(W) }),
      tensor({ name: 'bias', dims: [64], dataType: DT.FLOAT, raw: f32le(BIAS) }),
      tensor({ name: 'old', dims: [48], dataType: DT.FLOAT, raw: f32le(OLD) }),
      tensor({ name: 'flat', dims: [60], dataType: DT.FLOAT, raw: f32le(FLAT) }),
      tensor({ name: 'shape', dims: [2], dataType: DT.INT64, int64Data: [-1, 16] }),
    ],
    nodes: [node({ opType: 'MatMul', inputs: ['x', 'conv.w'], outputs: ['h'] }), node({ opType: 'Add', inputs: ['h', 'bias'], outputs: ['y'] })],
    inputs: [valueInfo('x', [1, 16])],
    outputs: [valueInfo('y', [1, 16])],
  }));
}

/** ONNX v2: conv.w retrained (every 7th value), bias renamed stem.bias, old removed, flat reshaped [6, 10], head.w added, a Relu node added. */
function onnxTarget(): Uint8Array {
  return model(graph({
    name: 'net',
    initializers: [
      tensor({ name: 'head.w', dims: [8, 16], dataType: DT.FLOAT, raw: f32le(HEAD) }),
      tensor({ name: 'conv.w', dims: [16, 16], dataType: DT.FLOAT, raw: f32le(nudged(W, 7)) }),
      tensor({ name: 'stem.bias', dims: [64], dataType: DT.FLOAT, raw: f32le(BIAS) }),
      tensor({ name: 'flat', dims: [6, 10], dataType: DT.FLOAT, raw: f32le(FLAT) }),
      tensor({ name: 'shape', dims: [2], dataType: DT.INT64, int64Data: [-1, 16] }),
    ],
    nodes: [node({ opType: 'MatMul', inputs: ['x', 'conv.w'], outputs: ['h'] }), node({ opType: 'Add', inputs: ['h', 'stem.bias'], outputs: ['z'] }), node({ opType: 'Relu', inputs: ['z'], outputs: ['y'] })],
    inputs: [valueInfo('x', [1, 16])],
    outputs: [valueInfo('y', [1, 16])],
  }));
}

/** LiteRT v1 and v2, with the same kinds of change. */
function tfliteBase(): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 16], type: T.FLOAT32 },
      { name: 'conv.w', shape: [16, 16], type: T.FLOAT32, buffer: 1 },
      { name: 'bias', shape: [64], type: T.FLOAT32, buffer: 2 },
      { name: 'old', shape: [48], type: T.FLOAT32, buffer: 3 },
      { name: 'flat', shape: [60], type: T.FLOAT32, buffer: 4 },
      { name: 'y', shape: [1, 16], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes(W), f32Bytes(BIAS), f32Bytes(OLD), f32Bytes(FLAT)],
    operators: [{ op: 9, inputs: [0, 1, 2], outputs: [5] }],
    inputs: [0],
    outputs: [5],
  });
}
function tfliteTarget(): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 16], type: T.FLOAT32 },
      { name: 'conv.w', shape: [16, 16], type: T.FLOAT32, buffer: 2 },
      { name: 'stem.bias', shape: [64], type: T.FLOAT32, buffer: 3 },
      { name: 'head.w', shape: [8, 16], type: T.FLOAT32, buffer: 1 },
      { name: 'flat', shape: [6, 10], type: T.FLOAT32, buffer: 4 },
      { name: 'h', shape: [1, 16], type: T.FLOAT32 },
      { name: 'y', shape: [1, 16], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes(HEAD), f32Bytes(nudged(W, 7)), f32Bytes(BIAS), f32Bytes(FLAT)],
    operators: [{ op: 9, inputs: [0, 1, 2], outputs: [5] }, { op: 19, inputs: [5], outputs: [6] }],
    inputs: [0],
    outputs: [6],
  });
}

const fp = (format: RebuildFormat, bytes: Uint8Array) => fingerprintStore(hasher, format.open(bytes)).fingerprint;
const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

for (const [name, format, makeBase, makeTarget] of [['ONNX', ONNX, onnxBase, onnxTarget], ['LiteRT', TFLITE, tfliteBase, tfliteTarget]] as const) {
  describe(`structural payload: ${name}`, () => {
    const base = makeBase();
    const target = makeTarget();
    const built = structuralDiff(hasher, base, target, format, { modelId: 'net', sequence: 2 });

    test('the change is named: added, removed, renamed, reshaped, kept and changed, the frame', () => {
      const c = built.change;
      assert.deepEqual(c.added, ['head.w']);
      assert.deepEqual(c.removed, ['old']);
      assert.deepEqual(c.renamed, [{ from: 'bias', to: 'stem.bias' }]);
      assert.deepEqual(c.reshaped.map((r) => [r.name, [...r.base], [...r.target]]), [['flat', [60], [6, 10]]]);
      assert.equal(c.keptChanged, 1); // conv.w
      assert.equal(c.frameChanged, true);
    });

    test('rebuilt in memory, it ends at the target byte for byte', async () => {
      const before = base.slice();
      const res = await rebuildModelBytes(base, built.bytes, format);
      assert.equal(res.status, 'applied');
      assert.ok(equalBytes(res.bytes, target), 'the target file, byte for byte');
      assert.ok(equalBytes(base, before), 'the base was only read');
      assert.equal(res.values?.changedTensors.join(), 'conv.w');
      // the target given again: already applied, nothing rebuilt
      const again = await rebuildModelBytes(target, built.bytes, format);
      assert.equal(again.status, 'already-applied');
    });

    test('the intermediate copies kept and renamed tensors from the base: the delta is the new bytes, not the file', () => {
      assert.equal(fp(format, built.intermediate), built.header.intermediateFingerprint);
      // head.w (512 bytes) is new; the base's conv.w, bias and flat (1,520 bytes) are copied.
      assert.ok(built.rebuild.copiedBytes >= (256 + 64 + 60) * 4, `copied ${built.rebuild.copiedBytes}`);
      assert.ok(built.rebuildBytes < 512 + 400, `delta ${built.rebuildBytes} bytes`);
      assert.ok(built.bytes.length < target.length, `${built.bytes.length} of a ${target.length}-byte file`);
    });

    test('deterministic: the same files give the same payload bytes', () => {
      assert.ok(equalBytes(structuralDiff(hasher, base, target, format, { modelId: 'net', sequence: 2 }).bytes, built.bytes));
    });

    test('the base applier refuses it as a later version; a value payload is no structural payload', async () => {
      await assert.rejects(applyPayload(format.open(base.slice()), built.bytes), UnsupportedVersionError);
      const doc = readMsgpack(built.bytes) as Record<string, Uint8Array>;
      await assert.rejects(decodeStructuralPayload(doc.pv), UnsupportedVersionError);
    });

    test('hostile and mismatched payloads are refused, the model byte for byte untouched', async () => {
      const packr = new Packr({ useRecords: false, variableMapSize: true });
      const doc = () => ({ ...(readMsgpack(built.bytes) as Record<string, unknown>) });
      const pack = (o: Record<string, unknown>) => new Uint8Array(packr.pack(o));
      const rb = doc().rb as Uint8Array;
      const cases: [string, Uint8Array, new (...a: never[]) => Error][] = [
        ['a byte delta copying past the base', pack({ ...doc(), rb: Uint8Array.from([...rb.subarray(0, 2), 0x01, 0x00, 0x00, 0x11, 0xf0, 0x01]) }), PayloadFormatError],
        ['a byte delta cut short', pack({ ...doc(), rb: rb.subarray(0, rb.length - 1) }), PayloadFormatError],
        ['a byte delta declaring 3 GB', pack({ ...doc(), rb: Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x0b, ...rb.subarray(5)]) }), PayloadFormatError],
        ['an intermediate fingerprint that is not the rebuilt file\'s', pack({ ...doc(), if: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) }), PayloadFormatError],
        ['a base fingerprint that is not the model\'s', pack({ ...doc(), bf: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) }), BaseMismatchError],
        ['a value payload for another target', pack({ ...doc(), tf: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) }), PayloadFormatError],
        ['another file kind', pack({ ...doc(), fk: format.kind === 'onnx' ? 'tflite' : 'onnx' }), ModelMismatchError],
        ['an unknown file kind', pack({ ...doc(), fk: 'safetensors' }), PayloadFormatError],
        ['no byte delta', pack({ ...doc(), rb: undefined }), PayloadFormatError],
      ];
      // A well-formed delta to another file (the target itself): the rebuilt file is not the intermediate.
      cases.push(['a byte delta rebuilding another file', pack({ ...doc(), rb: encodeByteDelta(base, target).bytes }), TargetMismatchError]);
      // A delta whose range-coded literals were altered: the stream does not end where it must.
      if (built.rebuild.literalCoding === 'range-coded') {
        const altered = rb.slice();
        altered[altered.length - 3] ^= 0x40;
        cases.push(['a byte delta with an altered literal', pack({ ...doc(), rb: altered }), PayloadFormatError]);
      }
      for (const [what, bytes, error] of cases) {
        const model = base.slice();
        await assert.rejects(rebuildModelBytes(model, bytes, format), (e: unknown) => e instanceof error || (assert.fail(`${what}: ${String(e)}`) as never), what);
        assert.ok(equalBytes(model, base), `${what}: the model is untouched`);
      }
      // a stale sequence, before the model is read
      const seq = new MemorySequenceStore();
      seq.set('net', 5);
      await assert.rejects(rebuildModelBytes(base, built.bytes, format, { sequenceStore: seq }), FreshnessError);
      // an output cap below the rebuilt file
      await assert.rejects(rebuildModelBytes(base, built.bytes, format, { maxFileBytes: 100 }), PayloadFormatError);
    });

    test('random corruption of the payload: always a typed error or the target itself, never anything else, the base untouched', async () => {
      const { NeuralDiffError } = await import('../src/core/errors.ts');
      let seed = 12345;
      const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
      let refused = 0;
      for (let k = 0; k < 150; k++) {
        const bad = built.bytes.slice();
        for (let j = 1 + rand(3); j > 0; j--) bad[rand(bad.length)] ^= 1 + rand(255);
        const model = base.slice();
        try {
          const r = await rebuildModelBytes(model, bad, format, { maxFileBytes: 4 * target.length });
          assert.ok(equalBytes(r.bytes, target), 'a payload that still rebuilds ends at the target');
        } catch (e) {
          assert.ok(e instanceof NeuralDiffError, String(e));
          refused++;
        }
        assert.ok(equalBytes(model, base));
      }
      assert.ok(refused > 100, `${refused} of 150 refused`);
    });

    test('the crash-safe file update writes the rebuilt file whole, switches, and keeps nothing behind', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'nd-rebuild-'));
      try {
        const file = path.join(dir, `model.${format.kind}`);
        await writeFile(file, base);
        const rebuild = format.kind === 'onnx' ? rebuildOnnxFile : rebuildTfliteFile;
        // a failing health check rolls back to the base, byte for byte
        await assert.rejects(rebuild(file, built.bytes, { healthCheck: () => false }), HealthCheckError);
        assert.ok(equalBytes(new Uint8Array(await readFile(file)), base));
        // a hostile payload touches nothing
        const cut = built.bytes.subarray(0, built.bytes.length - 1);
        await assert.rejects(rebuild(file, cut), PayloadFormatError);
        assert.ok(equalBytes(new Uint8Array(await readFile(file)), base));
        const res = await rebuild(file, built.bytes, { healthCheck: ({ file: f }) => void assert.equal(f, file) });
        assert.equal(res.status, 'applied');
        assert.ok(res.sequenceRecorded);
        assert.ok(equalBytes(new Uint8Array(await readFile(file)), target), 'the file is the target');
        assert.deepEqual((await readdir(dir)).sort(), [`model.${format.kind}`, `model.${format.kind}.ndiff-model.json`, `model.${format.kind}.ndiff-state.json`].sort());
        // the same payload again: already applied; an older sequence: refused
        assert.equal((await rebuild(file, built.bytes)).status, 'already-applied');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
}

describe('ndiff diff on two files whose structure differs', () => {
  const run = async (...argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const { main } = await import('../cli/ndiff.ts');
    const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
  for (const [kind, makeBase, makeTarget, format] of [['onnx', onnxBase, onnxTarget, ONNX], ['tflite', tfliteBase, tfliteTarget, TFLITE]] as const) {
    test(`.${kind}: writes a structural payload, lists what changed in --json, warns of the changed outputs, and --model-out is the target`, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'nd-sdiff-'));
      try {
        const [b, t, out, model] = ['v1', 'v2', 'p.ndiff', 'v2-out'].map((n, i) => path.join(dir, i < 2 || i === 3 ? `${n}.${kind}` : n));
        await writeFile(b, makeBase());
        await writeFile(t, makeTarget());
        const r = await run('diff', '--base', b, '--target', t, '--budget', 'all', '--model-id', 'net', '--out', out, '--model-out', model, '--json');
        assert.equal(r.code, 0, r.err);
        const doc = JSON.parse(r.out) as Record<string, any>;
        assert.equal(doc.structural, true);
        assert.equal(doc.formatVersion, 7);
        assert.deepEqual(doc.added, ['head.w']);
        assert.deepEqual(doc.removed, ['old']);
        assert.deepEqual(doc.renamed, [{ from: 'bias', to: 'stem.bias' }]);
        assert.deepEqual(doc.reshaped, [{ name: 'flat', base: [60], target: [6, 10] }]);
        assert.equal(doc.graphChanged, true);
        const payload = new Uint8Array(await readFile(out));
        assert.equal(doc.bytes, payload.length);
        assert.ok(equalBytes(new Uint8Array(await readFile(model)), makeTarget()), '--model-out is the target file');
        assert.equal((await rebuildModelBytes(makeBase(), payload, format)).status, 'applied');
        // ONNX: the outputs are named alike ("y") on both sides; LiteRT: the output tensor moved from 5 to 6, same name and shape
        assert.equal(doc.interfaceChanged, false);
        // an input renamed: still written, with a warning
        const renamedInput = kind === 'onnx'
          ? makeTarget().slice()
          : undefined;
        if (renamedInput) {
          const at = Buffer.from(renamedInput).lastIndexOf(Buffer.from('\x0a\x01x'));
          renamedInput[at + 2] = 'w'.charCodeAt(0); // graph input "x" -> "w" (the value info's name)
          await writeFile(t, renamedInput);
          const w = await run('diff', '--base', b, '--target', t, '--budget', 'all', '--model-id', 'net', '--out', out, '--json');
          assert.equal(w.code, 0, w.err);
          const wd = JSON.parse(w.out) as Record<string, any>;
          assert.equal(wd.interfaceChanged, true);
          assert.match(wd.warning, /inputs or outputs changed \(input 0 x \[1, 16\] -> w \[1, 16\] \(renamed only\)/);
          assert.match(w.err, /warning: the model's inputs or outputs changed/);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('a crash during a file rebuild', () => {
  test('power lost after the switch, before the confirmation: recovery puts the base file back byte for byte; ndiff apply then rebuilds it', async () => {
    const { cp } = await import('node:fs/promises');
    const { recoverOnnxFile } = await import('../src/io/onnx/files.ts');
    const dir = await mkdtemp(path.join(tmpdir(), 'nd-crash-'));
    try {
      const live = path.join(dir, 'live');
      const frozen = path.join(dir, 'frozen');
      await (await import('node:fs/promises')).mkdir(live);
      const file = path.join(live, 'm.onnx');
      const base = onnxBase();
      const target = onnxTarget();
      await writeFile(file, base);
      const payload = structuralDiff(hasher, base, target, ONNX, { modelId: 'net', sequence: 2 }).bytes;
      // The health check runs after the switch: the folder as it is then is what a power cut leaves.
      await rebuildOnnxFile(file, payload, { healthCheck: async () => void (await cp(live, frozen, { recursive: true })) });
      const left = (await readdir(frozen)).sort();
      assert.ok(left.includes('m.onnx.ndiff-update.json') && left.includes('m.onnx.ndiff-prev'), left.join(', '));
      assert.ok(equalBytes(new Uint8Array(await readFile(path.join(frozen, 'm.onnx'))), target), 'switched: the new file is in place');
      // The rebuild awaited a health check: without one the next command refuses, untouched; with a failing one, rolled back.
      const { PendingUpdateError } = await import('../src/core/errors.ts');
      await assert.rejects(recoverOnnxFile(path.join(frozen, 'm.onnx')), PendingUpdateError);
      assert.ok(equalBytes(new Uint8Array(await readFile(path.join(frozen, 'm.onnx'))), target), 'refused: still the switched-in file');
      const report = await recoverOnnxFile(path.join(frozen, 'm.onnx'), { healthCheck: () => false });
      assert.equal(report.rolledBack, true);
      assert.ok(equalBytes(new Uint8Array(await readFile(path.join(frozen, 'm.onnx'))), base), 'rolled back to the base, byte for byte');
      assert.deepEqual((await readdir(frozen)).filter((f) => /ndiff-(prev|update)|\.tmp-/.test(f)), []);
      // and the CLI applies it again there, through neural-diff/rebuild
      const out: string[] = [];
      const { main } = await import('../cli/ndiff.ts');
      const p = path.join(dir, 'p.ndiff');
      await writeFile(p, payload);
      const code = await main(['apply', '--model', path.join(frozen, 'm.onnx'), '--patch', p, '--json'], { out: (l) => out.push(l), err: () => {}, progress: () => {} });
      assert.equal(code, 0, out.join('\n'));
      const doc = JSON.parse(out.join('\n')) as Record<string, any>;
      assert.equal(doc.structural, true);
      assert.equal(doc.status, 'applied');
      assert.deepEqual(doc.changedTensors, ['conv.w']);
      assert.ok(equalBytes(new Uint8Array(await readFile(path.join(frozen, 'm.onnx'))), target));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

test('isStructuralPayload sees through the signature envelope: true for a signed structural payload, false for a signed value payload and for junk', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const { signPayload } = await import('../src/sign/node-keys.ts');
  const { isStructuralPayload } = await import('../src/apply/rebuild.ts');
  const { exactDiff } = await import('../src/diff/exact.ts');
  const { privateKey } = generateKeyPairSync('ed25519');
  const structural = structuralDiff(hasher, onnxBase(), onnxTarget(), ONNX, { modelId: 'net', sequence: 2 }).bytes;
  const values = exactDiff(hasher, new OnnxWeightStore(onnxBase()), new OnnxWeightStore(model(graph({ name: 'net', initializers: [tensor({ name: 'conv.w', dims: [16, 16], dataType: DT.FLOAT, raw: f32le(nudged(W, 3)) }), tensor({ name: 'bias', dims: [64], dataType: DT.FLOAT, raw: f32le(BIAS) }), tensor({ name: 'old', dims: [48], dataType: DT.FLOAT, raw: f32le(OLD) }), tensor({ name: 'flat', dims: [60], dataType: DT.FLOAT, raw: f32le(FLAT) }), tensor({ name: 'shape', dims: [2], dataType: DT.INT64, int64Data: [-1, 16] })], nodes: [node({ opType: 'MatMul', inputs: ['x', 'conv.w'], outputs: ['h'] }), node({ opType: 'Add', inputs: ['h', 'bias'], outputs: ['y'] })], inputs: [valueInfo('x', [1, 16])], outputs: [valueInfo('y', [1, 16])] }))), { modelId: 'net', sequence: 2 }).bytes;
  assert.equal(isStructuralPayload(structural), true);
  assert.equal(isStructuralPayload(signPayload(structural, privateKey)), true, 'a signed structural payload, as a release serves it');
  assert.equal(isStructuralPayload(values), false);
  assert.equal(isStructuralPayload(signPayload(values, privateKey)), false);
  assert.equal(isStructuralPayload(Uint8Array.from([0x4e, 0x44, 0x53, 0x47, 1])), false, 'a truncated envelope: false, no throw');
});

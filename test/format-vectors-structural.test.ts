/**
 * The structural payload vectors over several files (test/vectors/payloads/structural-files.json,
 * docs/FORMAT.md §17, `fk` = `tfjs` and `fl`), checked two ways: by the reference device code
 * (neural-diff/rebuild's rebuildModelFiles with the TF.js files store), and by a second reading
 * written from §17 and §14 alone (test/helpers/spec-structural.ts): the document read by a strict
 * msgpack reader with every field and the file list checked, the intermediate files rebuilt
 * through the independent byte-delta decoder and fingerprinted, the inner value payload applied
 * by the independent applier of versions 1 to 6, the target files written and fingerprinted.
 * Both must rebuild the target byte for byte, and refuse every hostile vector, and every payload
 * made hostile here field by field, with the same class of error, the base files unchanged.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Packr } from 'msgpackr';
import { rebuildModelFiles, type RebuildOptions } from '../src/apply/rebuild.ts';
import type { ModelFile } from '../src/core/model-files.ts';
import { MemorySequenceStore } from '../src/apply/freshness.ts';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { NeuralDiffError, PayloadFormatError } from '../src/core/errors.ts';
import { TfjsFilesStore } from '../src/io/tfjs/files-store.ts';
import { structuralDiffFiles } from '../src/diff/structural.ts';
import { structuralPair } from './helpers/structural-pairs.ts';
import { specTfjsDeltaBase } from './helpers/spec-tfjs-base.ts';
import { toHalfBits } from '../src/core/float16.ts';
import { FAULT_OF, SpecError, specDecode, type Fault } from './helpers/spec-payload.ts';
import { specFileListProblem, specModelFingerprint, specReadStructural, specReadTfjs, specRebuild, type SpecDevice, type SpecFile } from './helpers/spec-structural.ts';
import type { InvalidStructuralFilesVector, StructuralFilesVector } from './vectors/payloads/structural-files.ts';

const dir = new URL('./vectors/payloads/', import.meta.url);
const read = (name: string) => new Uint8Array(readFileSync(new URL(name, dir)));
const index = JSON.parse(new TextDecoder().decode(read('structural-files.json'))) as { valid: StructuralFilesVector[]; invalid: InvalidStructuralFilesVector[] };
const filesOf = (list: { path: string; hex: string }[]): SpecFile[] => list.map((f) => ({ path: f.path, bytes: new Uint8Array(Buffer.from(f.hex, 'hex')) }));
const TFJS = { kind: 'tfjs' as const, open: (f: readonly { path: string; bytes: Uint8Array }[]) => new TfjsFilesStore(f) };
const hasher = await getHasher();
const same = (a: readonly SpecFile[], b: readonly SpecFile[]) => a.length === b.length && a.every((f, i) => f.path === b[i].path && Buffer.from(f.bytes).equals(Buffer.from(b[i].bytes)));

/** The reason §17 names for each hostile vector, as the second reading words it. */
const SPEC_REASON: Record<string, string> = {
  'invalid-structural-fl-traversal': 'an empty, . or .. segment',
  'invalid-structural-fl-absolute': 'a path starts with /',
  'invalid-structural-fl-backslash': 'a path holds \\',
  'invalid-structural-fl-journal': "a file of the updater's",
  'invalid-structural-fl-kept-model': "a file of the updater's",
  'invalid-structural-fl-duplicate': 'two paths are equal compared without case',
  'invalid-structural-fl-missing': '"fl" is required with tfjs',
  'invalid-structural-fl-lengths': 'not the sum of the "fl" lengths',
  'invalid-structural-fl-on-single-file': 'fl with tflite',
  'invalid-structural-fl-onnx-first': 'onnx: the first path does not end in .onnx',
  'invalid-structural-fl-entry-shape': 'an entry is not [string, integer',
};

/** The verdict of the second reading: its status, or the class of its refusal. */
function specVerdict(device: SpecDevice, payload: Uint8Array): { verdict: string; files?: SpecFile[]; message?: string } {
  try {
    const r = specRebuild(hasher, device, payload);
    return { verdict: r.status, files: r.files };
  } catch (e) {
    if (e instanceof SpecError) return { verdict: e.fault, message: e.message };
    throw e;
  }
}
/** The verdict of the reference device code, in the same words. */
async function referenceVerdict(base: SpecFile[], payload: Uint8Array, options: RebuildOptions = {}): Promise<{ verdict: string; files?: SpecFile[]; message?: string }> {
  try {
    const r = await rebuildModelFiles(base, payload, TFJS, { hasher, ...options });
    return { verdict: r.status, files: r.files };
  } catch (e) {
    if (e instanceof NeuralDiffError && FAULT_OF[e.constructor.name]) return { verdict: FAULT_OF[e.constructor.name], message: e.message };
    throw e;
  }
}

/** The payload the reference builder writes from `base` to `target`; both readings must rebuild the target from it. */
async function rebuildsInBothReadings(base: ModelFile[], target: ModelFile[], seed: number): Promise<Uint8Array> {
  const payload = structuralDiffFiles(hasher, base, target, TFJS, { modelId: 'pairs', sequence: seed }).bytes;
  const spec = specVerdict({ format: 'tfjs', files: base }, payload);
  const ref = await referenceVerdict(base, payload);
  assert.equal(spec.verdict, 'applied', `seed ${seed}: ${spec.message}`);
  assert.equal(ref.verdict, 'applied', `seed ${seed}: ${ref.message}`);
  assert.ok(same(spec.files!, target), `seed ${seed}: the second reading rebuilds the target`);
  assert.ok(same(ref.files!, target), `seed ${seed}: the reference rebuilds the target`);
  return payload;
}

describe('structural payload vectors over several files (FORMAT.md §17)', () => {
  test('the index lists a valid case and the hostile file lists', () => {
    assert.ok(index.valid.length >= 1);
    for (const n of ['fl-traversal', 'fl-absolute', 'fl-backslash', 'fl-journal', 'fl-duplicate', 'fl-missing', 'fl-lengths']) assert.ok(index.invalid.some((v) => v.name === `invalid-structural-${n}`), n);
    // every hostile vector has the reason §17 gives for it
    for (const v of index.invalid) assert.ok(SPEC_REASON[v.name], `${v.name}: no reason from §17 listed`);
  });
  for (const v of index.valid) {
    test(`${v.name}: both readings rebuild the target files`, async () => {
      const payload = read(v.payload);
      const base = filesOf(v.base);
      const target = filesOf(v.target);
      const before = base.map((f) => f.bytes.slice());
      // The second reading, from §17 and §14 alone.
      const doc = specReadStructural(payload);
      assert.equal(doc.fk, 'tfjs');
      assert.deepEqual(doc.fl?.map((e) => e[0]), target.map((f) => f.path));
      assert.deepEqual(doc.fl?.map((e) => e[1]), target.map((f) => f.bytes.length));
      assert.equal(doc.bf, v.baseFingerprint);
      assert.equal(doc.if, v.intermediateFingerprint);
      assert.equal(doc.tf, v.targetFingerprint);
      assert.equal(specModelFingerprint(hasher, specReadTfjs(hasher, base, 'model').tensors), v.baseFingerprint);
      assert.equal(specModelFingerprint(hasher, specReadTfjs(hasher, target, 'target').tensors), v.targetFingerprint);
      const spec = specRebuild(hasher, { format: 'tfjs', files: base }, payload);
      assert.equal(spec.status, 'applied');
      assert.ok(same(spec.files, target), 'the second reading rebuilds the target files byte for byte');
      // the intermediate is the target's structure with the base's values: not the target
      assert.equal(fingerprintStore(hasher, TFJS.open(spec.intermediate!)).fingerprint, v.intermediateFingerprint);
      assert.ok(!same(spec.intermediate!, target));
      assert.equal(specRebuild(hasher, { format: 'tfjs', files: target }, payload).status, 'already-applied');
      // The reference device code.
      const r = await rebuildModelFiles(base, payload, TFJS);
      assert.equal(r.status, 'applied');
      assert.equal(r.header.targetFingerprint, v.targetFingerprint);
      assert.ok(same(r.files!, target), 'the reference rebuilds the target files byte for byte');
      assert.equal((await rebuildModelFiles(target, payload, TFJS)).status, 'already-applied');
      base.forEach((f, i) => assert.deepEqual(f.bytes, before[i], 'the base files are only read'));
    });
  }
  for (const v of index.invalid) {
    test(`${v.name}: refused by both readings for the reason §17 names, the base unchanged`, async () => {
      const payload = read(v.payload);
      const base = filesOf(index.valid.find((x) => x.name === v.base)!.base);
      const before = base.map((f) => f.bytes.slice());
      assert.throws(() => specRebuild(hasher, { format: 'tfjs', files: base }, payload), (e: unknown) => e instanceof SpecError && e.fault === 'format' && e.message.includes(SPEC_REASON[v.name]));
      await assert.rejects(rebuildModelFiles(base, payload, TFJS), (e: Error) => e instanceof PayloadFormatError && e.code === v.code && e.message.includes(v.message));
      base.forEach((f, i) => assert.deepEqual(f.bytes, before[i]));
    });
  }
  test('the file list rules, one at a time, as §17 states them', () => {
    const ok: [string, number][] = [['model.json', 10], ['weights.bin', 4]];
    assert.equal(specFileListProblem('tfjs', ok), undefined);
    assert.equal(specFileListProblem('onnx', [['m.onnx', 10], ['m.onnx.data', 4]]), undefined);
    assert.equal(specFileListProblem('tfjs', [['MODEL.JSON', 10], ['w.bin', 4]]), undefined, 'the suffix is compared without case');
    assert.equal(specFileListProblem('onnx', [['M.ONNX', 10]]), undefined);
    const cases: [unknown, string][] = [
      [[], 'none or more than 4096'],
      [Array.from({ length: 4097 }, (_, i) => [i ? `s${i}.bin` : 'model.json', 1]), 'none or more than 4096'],
      [[['model.json', 2 ** 31]], 'an entry is not'],
      [[['model.json', -1]], 'an entry is not'],
      [[['model.json', 1.5]], 'an entry is not'],
      [[['model.json', 2 ** 31 - 1], ['a.bin', 2 ** 31 - 1], ['b.bin', 2]], 'sum past 2^32 - 1'],
      [[['model.json', 1], ['', 1]], 'empty or longer than 255'],
      [[['model.json', 1], ['x'.repeat(256), 1]], 'empty or longer than 255'],
      [[['model.json', 1], ...Array.from({ length: 258 }, (_, i) => [`${String(i).padStart(3, '0')}${'x'.repeat(252)}`, 1])], 'longer than 65536'],
      [[['model.json', 1], ['C:weights.bin', 1]], 'holds \\, : or a control character'],
      [[['model.json', 1], ['w\x7f.bin', 1]], 'holds \\, : or a control character'],
      [[['model.json', 1], ['a//w.bin', 1]], 'an empty, . or .. segment'],
      [[['model.json', 1], ['./w.bin', 1]], 'an empty, . or .. segment'],
      [[['model.json', 1], ['sub.ndiff-x/w.bin', 1]], "a file of the updater's"],
      [[['model.json', 1], ['Model.JSON.tmp', 1]], "a file of the updater's"],
      [[['model.json', 1], ['w.bin.tmp-3', 1]], "a file of the updater's"],
      [[['model.json', 1], ['W.bin', 1], ['w.BIN', 1]], 'equal compared without case'],
      [[['weights.bin', 1], ['model.json', 1]], 'tfjs: the first path'],
      [[['model.json', 1], ['shard.json', 1]], 'tfjs: another path ends in .json'],
      [[['model.json', 1], ['shard.Json', 1]], 'tfjs: another path ends in .json'],
      [[['model.json', 1], ['.NDIFF-journal.bin', 1]], "a file of the updater's"],
    ];
    for (const [fl, reason] of cases) assert.ok(specFileListProblem('tfjs', fl)?.includes(reason), `${JSON.stringify(fl).slice(0, 80)}: ${specFileListProblem('tfjs', fl)}`);
    assert.ok(specFileListProblem('onnx', [['model.json', 1]])?.includes('onnx: the first path'));
    assert.ok(specFileListProblem('tflite', [['m.tflite', 1]]));
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile payloads made from the valid vector one field at a time: both readings must give the
// same verdict (the class of refusal, or the status), and neither may touch the base files.

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Packr({ useRecords: false, mapsAsObjects: true });
type Doc = Record<string, unknown>;
const valid = index.valid[0];
const validPayload = read(valid.payload);
/** The valid payload with its document (and its inner payload `pv`) edited. */
function edited(edit: (doc: Doc, pv: Doc) => void): Uint8Array {
  const doc = unpackr.unpack(validPayload) as Doc;
  const pv = unpackr.unpack(doc.pv as Uint8Array) as Doc;
  edit(doc, pv);
  if (doc.pv instanceof Uint8Array && !('keep-pv' in doc)) doc.pv = packr.pack(pv);
  delete doc['keep-pv'];
  return new Uint8Array(packr.pack(doc));
}
const flip = (b: Uint8Array, at: number) => {
  const c = Uint8Array.from(b);
  c[at < 0 ? c.length + at : at] ^= 0x01;
  return c;
};
const baseFp = Buffer.from(valid.baseFingerprint, 'hex');
/** The valid vector's intermediate files one after the other, as the second reading rebuilds them. */
const intermediate = Buffer.concat(specRebuild(hasher, { format: 'tfjs', files: filesOf(valid.base) }, validPayload).intermediate!.map((f) => f.bytes));
/**
 * FORMAT.md §16 with raw literals (C = 0), written by hand: one INSERT of all of `output` (the
 * byte at `change`, if given, flipped), for the valid vector's base.
 */
function rawDelta(output: Uint8Array, change?: number): Uint8Array {
  const leb = (x: number): number[] => (x < 0x80 ? [x] : [(x & 0x7f) | 0x80, ...leb(Math.floor(x / 128))]);
  const baseLength = specTfjsDeltaBase(filesOf(valid.base)).length; // the delta's base (§17)
  const literals = Uint8Array.from(output);
  if (change !== undefined) literals[change] ^= change === 0 ? 0x20 : 0x01;
  return Uint8Array.from([...leb(output.length), ...leb(baseLength), 1, 0, ...leb(output.length), ...leb(4 * output.length), ...literals]);
}

interface Mutation { name: string; payload: Uint8Array; expect: Fault | 'applied' | 'already-applied'; device?: Partial<SpecDevice>; options?: RebuildOptions; target?: boolean }
const mutations: Mutation[] = [
  { name: 'nd 6: a value payload is not read by the structural entry', payload: edited((d) => (d.nd = 6)), expect: 'version' },
  { name: 'nd 8', payload: edited((d) => (d.nd = 8)), expect: 'version' },
  { name: 'nd missing', payload: edited((d) => delete d.nd), expect: 'format' },
  { name: '"if" missing', payload: edited((d) => delete d.if), expect: 'format' },
  { name: '"if" of 7 bytes', payload: edited((d, pv) => (d.if = pv.bf = (d.if as Uint8Array).subarray(0, 7))), expect: 'format' },
  { name: '"fk" missing', payload: edited((d) => delete d.fk), expect: 'format' },
  { name: '"fk" not a string', payload: edited((d) => (d.fk = 7)), expect: 'format' },
  { name: '"fk" an unknown format', payload: edited((d) => (d.fk = 'keras')), expect: 'format' },
  { name: '"fk" onnx (one file, no "fl") for a TF.js model', payload: edited((d) => ((d.fk = 'onnx'), delete d.fl)), expect: 'model' },
  { name: '"fk" tflite (no "fl") for a TF.js model', payload: edited((d) => ((d.fk = 'tflite'), delete d.fl)), expect: 'model' },
  { name: '"rb" missing', payload: edited((d) => delete d.rb), expect: 'format' },
  { name: '"rb" a string', payload: edited((d) => (d.rb = 'delta')), expect: 'format' },
  { name: '"pv" missing', payload: edited((d) => delete d.pv), expect: 'format' },
  { name: '"pv" not a payload', payload: edited((d) => ((d.pv = Uint8Array.of(0xc1)), (d['keep-pv'] = true))), expect: 'format' },
  { name: '"pv" of version 8', payload: edited((_d, pv) => (pv.nd = 8)), expect: 'version' },
  { name: '"pv" under another id', payload: edited((_d, pv) => (pv.id = 'other')), expect: 'format' },
  { name: '"pv" of another sequence', payload: edited((_d, pv) => (pv.sq = 4)), expect: 'format' },
  { name: '"pv" of another method (informative: not compared)', payload: edited((_d, pv) => (pv.m = 'dense')), expect: 'applied' },
  { name: '"pv" whose bf is not "if"', payload: edited((_d, pv) => (pv.bf = baseFp)), expect: 'format' },
  { name: '"pv" whose tf is not "tf"', payload: edited((_d, pv) => (pv.tf = baseFp)), expect: 'format' },
  { name: '"pv" with a patch that is not a map', payload: edited((_d, pv) => (pv.p = [1])), expect: 'format' },
  { name: '"m" unknown', payload: edited((d, pv) => (d.m = pv.m = 'guess')), expect: 'format' },
  { name: '"sq" negative', payload: edited((d, pv) => (d.sq = pv.sq = -1)), expect: 'format' },
  { name: 'the base is not "bf"', payload: edited((d) => (d.bf = Buffer.from('0011223344556677', 'hex'))), expect: 'base' },
  { name: '"tf" is the base: already applied, nothing rebuilt', payload: edited((d, pv) => (d.tf = pv.tf = baseFp)), expect: 'already-applied' },
  { name: 'another model id', payload: validPayload, expect: 'model', device: { modelId: 'other' }, options: { expectedModelId: 'other' } },
  { name: 'the model id expected', payload: validPayload, expect: 'applied', device: { modelId: 'tiny-tfjs' }, options: { expectedModelId: 'tiny-tfjs' } },
  { name: 'a sequence below the recorded one', payload: validPayload, expect: 'freshness', device: { recordedSequence: 4 }, options: { sequenceStore: seq(4) } },
  { name: 'the recorded sequence replayed', payload: validPayload, expect: 'freshness', device: { recordedSequence: 3 }, options: { sequenceStore: seq(3) } },
  { name: 'the recorded sequence on the target: already applied', payload: validPayload, expect: 'already-applied', device: { recordedSequence: 3 }, options: { sequenceStore: seq(3) }, target: true },
  { name: 'expired', payload: edited((d) => (d.ex = 1000)), expect: 'freshness', device: { nowSeconds: 2000 }, options: { now: () => 2000 * 1000 } },
  { name: 'expiring one second later', payload: edited((d) => (d.ex = 2001)), expect: 'applied', device: { nowSeconds: 2000 }, options: { now: () => 2000 * 1000 } },
  { name: 'over the size cap', payload: validPayload, expect: 'too-large', device: { maxPayloadBytes: validPayload.length - 1 }, options: { maxPayloadBytes: validPayload.length - 1 } },
  { name: 'the delta truncated', payload: edited((d) => (d.rb = (d.rb as Uint8Array).subarray(0, (d.rb as Uint8Array).length - 1))), expect: 'format' },
  { name: 'the delta for a base one byte longer', payload: edited((d) => (d.rb = flip(d.rb as Uint8Array, 1))), expect: 'format' },
  { name: 'a byte of the modelled delta\'s literal stream changed: it does not end exactly', payload: edited((d) => (d.rb = flip(d.rb as Uint8Array, -1))), expect: 'format' },
  { name: 'a raw delta writing the intermediate: applied', payload: edited((d) => (d.rb = rawDelta(intermediate))), expect: 'applied' },
  { name: 'a raw delta writing the intermediate with a weight byte changed: not "if"', payload: edited((d) => (d.rb = rawDelta(intermediate, intermediate.length - 1))), expect: 'target' },
  { name: 'a raw delta writing a model JSON that does not parse: not a model', payload: edited((d) => (d.rb = rawDelta(intermediate, 0))), expect: 'target' },
  { name: '"fl" naming a shard the model JSON does not name', payload: edited((d) => ((d.fl as [string, number][])[1][0] = 'other.bin')), expect: 'target' },
  { name: '"fl" naming the model JSON in capitals: the device keeps its own name', payload: edited((d) => ((d.fl as [string, number][])[0][0] = 'MODEL.JSON')), expect: 'applied' },
  { name: '"fl" naming a shard .JSON (compared without case)', payload: edited((d) => ((d.fl as [string, number][])[1][0] = 'weights.JSON')), expect: 'format' },
  { name: '"fl" naming a shard in an .NDIFF- folder (compared without case)', payload: edited((d) => ((d.fl as [string, number][])[1][0] = 'x.NDIFF-keep/weights.bin')), expect: 'format' },
  { name: '"fl" with an entry of three', payload: edited((d) => (d.fl as unknown[][])[1].push(0)), expect: 'format' },
  { name: '"fl" not an array', payload: edited((d) => (d.fl = 'model.json')), expect: 'format' },
  { name: '"if" not the intermediate\'s', payload: edited((d, pv) => (d.if = pv.bf = Buffer.from('0011223344556677', 'hex'))), expect: 'target' },
  { name: 'a patched value changed: the target is not "a"', payload: edited((_d, pv) => ((pv.p as Doc[])[0].v = flip((pv.p as Doc[])[0].v as Uint8Array, 1))), expect: 'target' },
  { name: 'a patch of a tensor the intermediate lacks', payload: edited((_d, pv) => ((pv.p as Doc[])[0].t = 'missing')), expect: 'model' },
  { name: 'a patch of tfjs:frame', payload: edited((_d, pv) => Object.assign((pv.p as Doc[])[0], { t: 'tfjs:frame', s: [8] })), expect: 'model' },
  { name: '"p" in the document (ignored, as an unknown key)', payload: edited((d) => (d.p = [])), expect: 'applied' },
  { name: 'an unknown key (ignored)', payload: edited((d) => (d.zz = 1)), expect: 'applied' },
];
function seq(n: number): MemorySequenceStore {
  const s = new MemorySequenceStore();
  s.set('tiny-tfjs', n);
  return s;
}

describe('structural payloads made hostile field by field: both readings agree (FORMAT.md §17)', () => {
  test('the mutations change the payload', () => {
    for (const m of mutations) if (m.expect !== 'applied' && !m.device && !m.options) assert.ok(!Buffer.from(m.payload).equals(Buffer.from(validPayload)), m.name);
  });
  for (const m of mutations) {
    test(m.name, async () => {
      const files = filesOf(m.target ? valid.target : valid.base);
      const before = files.map((f) => f.bytes.slice());
      const spec = specVerdict({ format: 'tfjs', files, ...m.device }, m.payload);
      const ref = await referenceVerdict(files, m.payload, m.options);
      assert.equal(spec.verdict, m.expect, `second reading: ${spec.message ?? spec.verdict}`);
      assert.equal(ref.verdict, m.expect, `reference: ${ref.message ?? ref.verdict}`);
      if (m.expect === 'applied') {
        assert.ok(same(spec.files!, filesOf(valid.target)), 'the second reading rebuilds the target');
        // The model JSON's own name is not part of the model (§17): the reference's in-memory
        // result names it as "fl" does, a device stores it under its own name; the bytes agree.
        assert.ok(same(ref.files!.slice(1), spec.files!.slice(1)) && Buffer.from(ref.files![0].bytes).equals(Buffer.from(spec.files![0].bytes)), 'the reference rebuilds the same files');
      }
      files.forEach((f, i) => assert.deepEqual(f.bytes, before[i], 'the model files are only read'));
    });
  }
});



describe('structural payloads with random bits flipped: both readings agree (FORMAT.md §17)', () => {
  // A seeded generator, so a disagreement names a payload anyone can rebuild.
  let seed = 7;
  const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), Math.floor((seed / 2 ** 31) * n));
  const flipBit = (b: Uint8Array) => {
    const c = Uint8Array.from(b);
    c[random(c.length)] ^= 1 << random(8);
    return c;
  };
  // [where, the payloads, whether flips there must reach past the format checks]
  const where: [string, () => Uint8Array, boolean][] = [
    ['anywhere in the payload', () => flipBit(validPayload), true],
    // a modelled delta's streams must end exactly: nearly every flip is a format error
    ['in the modelled byte delta "rb"', () => edited((d) => (d.rb = flipBit(d.rb as Uint8Array))), false],
    ['in a raw byte delta "rb" writing the intermediate', () => edited((d) => (d.rb = flipBit(rawDelta(intermediate)))), true],
    ['in the value payload "pv"', () => edited((d) => ((d.pv = flipBit(d.pv as Uint8Array)), (d['keep-pv'] = true))), true],
  ];
  for (const [name, make, deep] of where) {
    test(`300 payloads with a bit flipped ${name}`, async () => {
      const base = filesOf(valid.base);
      const seen = new Map<string, number>();
      for (let k = 0; k < 300; k++) {
        const payload = make();
        const spec = specVerdict({ format: 'tfjs', files: base }, payload);
        const ref = await referenceVerdict(base, payload);
        assert.equal(spec.verdict, ref.verdict, `${Buffer.from(payload).toString('hex')}\nsecond reading: ${spec.message ?? spec.verdict}\nreference: ${ref.message ?? ref.verdict}`);
        if (spec.verdict === 'applied') assert.ok(same(spec.files!.slice(1), ref.files!.slice(1)) && same(spec.files!, filesOf(valid.target)));
        seen.set(spec.verdict, (seen.get(spec.verdict) ?? 0) + 1);
      }
      // the flips reach past the msgpack: some payloads still apply, others fail deeper than the format
      if (deep) assert.ok(seen.get('format')! > 0 && [...seen.keys()].some((v) => v !== 'format' && v !== 'applied'), JSON.stringify([...seen]));
    });
  }
});

describe('random TF.js models rebuilt: the second reading of §17 follows the reference builder', () => {
  // Pairs whose tensors are kept, changed, renamed, reshaped, removed or added and whose graph
  // changes, over shards that cut through tensors: payloads the vectors do not show, built by the
  // reference builder and rebuilt by both readings.
  test('25 pairs rebuild to the target byte for byte in both readings', async () => {
    const changes = { renamed: 0, reshaped: 0, removed: 0, added: 0, changed: 0 };
    for (let seed = 1; seed <= 25; seed++) {
      const pair = structuralPair('tfjs', seed);
      const base = pair.baseFiles!;
      const target = pair.targetFiles!;
      const payload = await rebuildsInBothReadings(base, target, seed);
      assert.equal(specVerdict({ format: 'tfjs', files: target }, payload).verdict, 'already-applied');
      for (const k of Object.keys(changes) as (keyof typeof changes)[]) changes[k] += pair.changes[k];
    }
    for (const [k, n] of Object.entries(changes)) assert.ok(n > 0, `no pair has a tensor ${k}`);
  });
});

/**
 * A float32 TF.js model of one group (as structural-pairs.ts writes) with every weight stored
 * quantized as TF.js quantizes: uint8 or uint16 codes (scale and min those of [-8, 8]), or
 * float16; the shards cut in two again.
 */
function quantized(files: readonly SpecFile[], dtype: 'uint8' | 'uint16' | 'float16'): SpecFile[] {
  const json = JSON.parse(new TextDecoder().decode(files[0].bytes)) as { weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: string; quantization?: object }[] }[] };
  const group = json.weightsManifest[0];
  const data = Buffer.concat(files.slice(1).map((f) => f.bytes));
  const floats = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
  const out: number[] = [];
  let at = 0;
  for (const w of group.weights) {
    const values = floats.subarray(at, (at += w.shape.reduce((x, y) => x * y, 1)));
    if (dtype === 'float16') {
      w.quantization = { dtype };
      for (const v of values) out.push(toHalfBits(v) & 255, toHalfBits(v) >> 8);
      continue;
    }
    const top = dtype === 'uint8' ? 255 : 65535;
    // one grid for every tensor of both models, so a kept weight keeps its grid and is patched in place
    const min = -8;
    const scale = 16 / top;
    w.quantization = { dtype, scale, min };
    for (const v of values) {
      const q = Math.min(top, Math.max(0, Math.round((v - min) / scale)));
      if (dtype === 'uint8') out.push(q);
      else out.push(q & 255, q >> 8);
    }
  }
  const bytes = Uint8Array.from(out);
  const cut = Math.ceil(bytes.length / 2);
  group.paths = ['q-shard1of2.bin', 'q-shard2of2.bin'];
  return [{ path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(json)) }, { path: group.paths[0], bytes: bytes.slice(0, cut) }, { path: group.paths[1], bytes: bytes.slice(cut) }];
}

describe('random TF.js models stored quantized, rebuilt: the second reading of §17 follows the reference builder', () => {
  for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
    test(`10 pairs of ${dtype} weights rebuild to the target byte for byte in both readings`, async () => {
      let patched = 0;
      for (let seed = 1; seed <= 10; seed++) {
        const pair = structuralPair('tfjs', seed);
        const base = quantized(pair.baseFiles!, dtype);
        const target = quantized(pair.targetFiles!, dtype);
        const payload = await rebuildsInBothReadings(base, target, seed);
        patched += specDecode(specReadStructural(payload).pv).patches.filter((p) => p.t !== 'tfjs:frame').length;
      }
      // some kept weights are patched in place, so their stored codes are written back
      assert.ok(patched > 0, 'no payload patches a quantized weight');
    });
  }
});

/**
 * Structural payload vectors for a model of several files (docs/FORMAT.md §17, `fk` = `tfjs` and
 * the file list `fl`): a TF.js model's base and target files (model.json and shards), the
 * payload the reference builder (src/diff/structural.ts) writes between them, and hostile
 * payloads made from it by editing `fl` or `rb`, each with the error a device must raise before
 * it writes anything. Part of the payload vector folder: generate.ts writes them beside the
 * payloads; test/format-vectors-structural.test.ts checks them.
 */
import { Packr } from 'msgpackr';
import type { Hasher } from '../../../src/core/hasher.ts';
import { structuralDiffFiles } from '../../../src/diff/structural.ts';
import { TfjsFilesStore } from '../../../src/io/tfjs/files-store.ts';
import type { ModelFile } from '../../../src/core/model-files.ts';

export interface StructuralFilesVector {
  name: string;
  description: string;
  payload: string;
  /** The model's files, in the payload's order: path and bytes as hex. */
  base: { path: string; hex: string }[];
  target: { path: string; hex: string }[];
  baseFingerprint: string;
  intermediateFingerprint: string;
  targetFingerprint: string;
}

export interface InvalidStructuralFilesVector {
  name: string;
  description: string;
  payload: string;
  /** The vector whose base the payload is applied to. */
  base: string;
  error: 'PayloadFormatError';
  code: 'ND_PAYLOAD_FORMAT';
  /** A fragment of the reference's message. */
  message: string;
}

const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs.map(Math.fround)).buffer);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const text = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

function files(json: unknown, shards: [string, Uint8Array][]): ModelFile[] {
  return [{ path: 'model.json', bytes: text(json) }, ...shards.map(([path, bytes]) => ({ path, bytes }))];
}

/** Version 1: two weights over two shards. Version 2: `w` patched, `b` renamed `bias`, `extra` added, a node added, one shard. */
function pair(): [ModelFile[], ModelFile[]] {
  const w = [0.5, -1.25, 2, 0.125, 3, -0.75, 1.5, 0.25];
  const b = [1, 2, 3, 4];
  const base = files(
    { format: 'graph-model', modelTopology: { node: [{ name: 'x', op: 'Placeholder' }, { name: 'mm', op: 'MatMul' }] }, weightsManifest: [{ paths: ['g1-shard1of2.bin', 'g1-shard2of2.bin'], weights: [{ name: 'w', shape: [2, 4], dtype: 'float32' }, { name: 'b', shape: [4], dtype: 'float32' }] }] },
    [['g1-shard1of2.bin', f32(w)], ['g1-shard2of2.bin', f32(b)]],
  );
  const w2 = w.slice();
  w2[3] = -0.125;
  const target = files(
    { format: 'graph-model', modelTopology: { node: [{ name: 'x', op: 'Placeholder' }, { name: 'mm', op: 'MatMul' }, { name: 'relu', op: 'Relu' }] }, weightsManifest: [{ paths: ['weights.bin'], weights: [{ name: 'w', shape: [2, 4], dtype: 'float32' }, { name: 'bias', shape: [4], dtype: 'float32' }, { name: 'extra', shape: [2], dtype: 'float32' }] }] },
    [['weights.bin', new Uint8Array([...f32(w2), ...f32(b), ...f32([7, -7])])]],
  );
  return [base, target];
}

export function generateStructuralFilesVectors(hasher: Hasher): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const [base, target] = pair();
  const built = structuralDiffFiles(hasher, base, target, { kind: 'tfjs', open: (f) => new TfjsFilesStore(f) }, { modelId: 'tiny-tfjs', sequence: 3 });
  out.set('structural-tfjs.ndiff', built.bytes);
  const valid: StructuralFilesVector[] = [{
    name: 'structural-tfjs',
    description: `A TF.js graph model rebuilt (fk "tfjs"): the byte delta "rb" runs over model.json then g1-shard1of2.bin then g1-shard2of2.bin (${base.map((f) => f.bytes.length).join(' + ')} bytes) and writes the files "fl" lists, model.json then weights.bin (${target.map((f) => f.bytes.length).join(' + ')} bytes); w is patched by "pv" (one value), b renamed bias (its bytes copied), extra added, a Relu node added.`,
    payload: 'structural-tfjs.ndiff',
    base: base.map((f) => ({ path: f.path, hex: hex(f.bytes) })),
    target: target.map((f) => ({ path: f.path, hex: hex(f.bytes) })),
    baseFingerprint: built.header.baseFingerprint,
    intermediateFingerprint: built.header.intermediateFingerprint,
    targetFingerprint: built.header.targetFingerprint,
  }];
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  const doc = () => new Map(Object.entries(new Packr({ useRecords: false, mapsAsObjects: true }).unpack(built.bytes) as Record<string, unknown>));
  const fl = (built.header.files ?? []).map((f) => [f.path, f.length] as [string, number]);
  const invalid: InvalidStructuralFilesVector[] = [];
  const add = (name: string, description: string, list: unknown, message: string, extra: Record<string, unknown> = {}) => {
    const d = doc();
    if (list === undefined) d.delete('fl');
    else d.set('fl', list);
    for (const [k, v] of Object.entries(extra)) d.set(k, v);
    const file = `invalid-structural-${name}.ndiff`;
    out.set(file, new Uint8Array(packr.pack(Object.fromEntries(d))));
    invalid.push({ name: `invalid-structural-${name}`, description, payload: file, base: 'structural-tfjs', error: 'PayloadFormatError', code: 'ND_PAYLOAD_FORMAT', message });
  };
  const renamed = (p: string) => [fl[0], [p, fl[1][1]]];
  add('fl-traversal', 'The shard listed as "../weights.bin": a ".." segment leaves the model\'s folder.', renamed('../weights.bin'), '".." segment');
  add('fl-absolute', 'The shard listed as "/weights.bin": an absolute path.', renamed('/weights.bin'), 'absolute');
  add('fl-backslash', 'The shard listed as "sub\\\\weights.bin": only "/" separates folders.', renamed('sub\\weights.bin'), 'backslash');
  add('fl-journal', 'The shard listed as ".ndiff-journal.json": a file of the updater.', renamed('.ndiff-journal.json'), "updater's files");
  add('fl-kept-model', 'The shard listed as "model.json.prev": the kept previous model.', renamed('model.json.prev'), "updater's files");
  add('fl-duplicate', 'model.json listed twice (compared without case: "MODEL.JSON").', [fl[0], ['MODEL.JSON', fl[1][1]]], 'twice');
  add('fl-missing', '"fk" is "tfjs" and there is no "fl".', undefined, '"fl"');
  add('fl-lengths', 'The lengths in "fl" sum to one byte more than the byte delta writes.', [fl[0], [fl[1][0], fl[1][1] + 1]], '"fl" lists');
  add('fl-on-single-file', '"fl" in a payload whose "fk" is "tflite" (always a single file).', fl, 'single file', { fk: 'tflite' });
  add('fl-onnx-first', '"fk" "onnx" with "fl" (an ONNX model with external data) whose first file is not the .onnx file.', fl, '.onnx file', { fk: 'onnx' });
  add('fl-entry-shape', 'An "fl" entry that is not [path, length].', [fl[0], [fl[1][0]]], 'entry 1');
  out.set('structural-files.json', new TextEncoder().encode(JSON.stringify({
    description: 'Structural payloads over several files (docs/FORMAT.md §17, "fk" "tfjs" with the file list "fl"). For the valid case, the byte delta applied to the base files one after the other, cut by "fl", gives the intermediate files (fingerprint "if"); the value payload "pv" takes them to the target files byte for byte. Every invalid case is refused (PayloadFormatError) before anything is written. Regenerate with: node --import tsx test/vectors/payloads/generate.ts',
    valid,
    invalid,
  }, null, 1) + '\n'));
  return out;
}

/**
 * Random pairs of models (ONNX with inline data or external data files, LiteRT, TF.js graph models) whose structure differs, for
 * the structural fuzzer (test/fuzz/structural.ts) and the crash injection of a structural apply
 * (test/crash/rebuild.ts). From one seed: a base of 2-6 float tensors, and a target in which each
 * base tensor is kept (its values changed or not), renamed, reshaped or removed, new tensors are
 * added, and the graph gains or loses a node. The same seed gives the same files.
 */
import { DT, f32le, graph, model, node, tensor, valueInfo } from './onnx-build.ts';
import { buildTflite, f32Bytes, T } from './tflite-build.ts';

export type PairFormat = 'onnx' | 'tflite' | 'tfjs';

/** A model's file: its path in the model's folder and its bytes. */
export interface PairFile {
  path: string;
  bytes: Uint8Array;
}

/** One model's tensors, before it is written in a format. */
interface Layout {
  tensors: { name: string; shape: number[]; values: number[] }[];
  /** Extra nodes after the first (ONNX op types; LiteRT maps them to builtin codes). */
  extraOps: string[];
}

/** What the target did to the base (for a test's messages and coverage checks). */
export interface PairChanges {
  kept: number;
  changed: number;
  renamed: number;
  reshaped: number;
  removed: number;
  added: number;
  graphChanged: boolean;
}

export interface StructuralPair {
  format: PairFormat;
  /** The model file (for TF.js: the files one after the other; `baseFiles` and `targetFiles` are the files). */
  base: Uint8Array;
  target: Uint8Array;
  baseFiles?: PairFile[];
  targetFiles?: PairFile[];
  changes: PairChanges;
}

/** A small deterministic generator (mulberry32). */
export function seeded(seed: number): { int(n: number): number; float(): number } {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return { int: (n) => Math.floor(next() * n), float: () => Math.fround(next() * 2 - 1) };
}

const OPS = ['Relu', 'Sigmoid', 'Tanh'];
const TFLITE_OPS: Record<string, number> = { Relu: 19, Sigmoid: 14, Tanh: 28 };

function layouts(seed: number): { base: Layout; target: Layout; changes: PairChanges } {
  const r = seeded(seed);
  const shapeOf = (): number[] => (r.int(2) ? [1 + r.int(8), 1 + r.int(8)] : [1 + r.int(40)]);
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const values = (n: number) => Array.from({ length: n }, () => r.float());
  const base: Layout = { tensors: [], extraOps: r.int(2) ? [OPS[r.int(3)]] : [] };
  const count = 2 + r.int(5);
  for (let i = 0; i < count; i++) {
    const shape = shapeOf();
    base.tensors.push({ name: `layer${i}.w`, shape, values: values(size(shape)) });
  }
  const changes: PairChanges = { kept: 0, changed: 0, renamed: 0, reshaped: 0, removed: 0, added: 0, graphChanged: false };
  const target: Layout = { tensors: [], extraOps: [...base.extraOps] };
  for (const t of base.tensors) {
    const what = r.int(6);
    if (what === 0) {
      changes.removed++;
    } else if (what === 1) {
      changes.renamed++;
      target.tensors.push({ ...t, name: `renamed.${t.name}` });
    } else if (what === 2 && size(t.shape) > 1) {
      changes.reshaped++;
      const n = size(t.shape);
      target.tensors.push({ ...t, shape: [n, 1] });
    } else {
      changes.kept++;
      const changed = r.int(2) === 1;
      if (changed) changes.changed++;
      target.tensors.push({ ...t, values: changed ? t.values.map((v, i) => (i % 3 === 0 ? Math.fround(v + 0.01 * r.float()) : v)) : t.values });
    }
  }
  for (let i = r.int(3); i > 0; i--) {
    changes.added++;
    const shape = shapeOf();
    target.tensors.splice(r.int(target.tensors.length + 1), 0, { name: `new${i}.w`, shape, values: values(size(shape)) });
  }
  if (r.int(2) || changes.added + changes.removed + changes.renamed + changes.reshaped === 0) {
    changes.graphChanged = true;
    if (target.extraOps.length && r.int(2)) target.extraOps.pop();
    else target.extraOps.push(OPS[r.int(3)]);
  }
  return { base, target, changes };
}

/** Where a tensor's values go in an ONNX model: inline, or in an external data file at an offset. */
type Placement = (t: Layout['tensors'][number], i: number) => { location: string; offset: number } | undefined;

function onnxFile(l: Layout, place: Placement = () => undefined): Uint8Array {
  const nodes = [node({ opType: 'Identity', inputs: ['x'], outputs: ['h0'] })];
  l.extraOps.forEach((op, i) => nodes.push(node({ opType: op, inputs: [`h${i}`], outputs: [`h${i + 1}`] })));
  nodes.push(node({ opType: 'Identity', inputs: [`h${l.extraOps.length}`], outputs: ['y'] }));
  return model(graph({
    name: 'pair',
    initializers: l.tensors.map((t, i) => {
      const at = place(t, i);
      return at
        ? tensor({ name: t.name, dims: t.shape, dataType: DT.FLOAT, external: { location: at.location, offset: String(at.offset), length: String(4 * t.values.length) } })
        : tensor({ name: t.name, dims: t.shape, dataType: DT.FLOAT, raw: f32le(t.values) });
    }),
    nodes,
    inputs: [valueInfo('x', [1, 4])],
    outputs: [valueInfo('y', [1, 4])],
  }));
}

function tfliteFile(l: Layout): Uint8Array {
  const io = [{ name: 'x', shape: [1, 4], type: T.FLOAT32 }, ...l.extraOps.map((_, i) => ({ name: `h${i + 1}`, shape: [1, 4], type: T.FLOAT32 }))];
  const weights = l.tensors.map((t, i) => ({ name: t.name, shape: t.shape, type: T.FLOAT32, buffer: i + 1 }));
  const operators = l.extraOps.map((op, i) => ({ op: TFLITE_OPS[op], inputs: [i], outputs: [i + 1] }));
  return buildTflite({
    tensors: [...io, ...weights],
    buffers: l.tensors.map((t) => f32Bytes(t.values)),
    operators,
    inputs: [0],
    outputs: [io.length - 1],
  });
}

/** A TF.js graph model's files: model.json (the nodes, the manifest), then its weights in 2 shards (1 if small). */
function tfjsFiles(l: Layout): PairFile[] {
  const values = l.tensors.flatMap((t) => t.values);
  const data = new Uint8Array(new Float32Array(values).buffer);
  const shards = data.length > 64 ? 2 : 1;
  const cut = Math.ceil(data.length / 4 / shards) * 4;
  const paths = Array.from({ length: shards }, (_, i) => `group1-shard${i + 1}of${shards}.bin`);
  const nodes = [{ name: 'x', op: 'Placeholder' }, ...l.extraOps.map((op, i) => ({ name: `h${i + 1}`, op, input: [i ? `h${i}` : 'x'] }))];
  const modelJson = { format: 'graph-model', generatedBy: 'structural pairs', modelTopology: { node: nodes }, weightsManifest: [{ paths, weights: l.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: 'float32' })) }] };
  return [{ path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(modelJson)) }, ...paths.map((p, i) => ({ path: p, bytes: data.slice(i * cut, Math.min(data.length, (i + 1) * cut)) }))];
}

const joined = (files: PairFile[]): Uint8Array => {
  const out = new Uint8Array(files.reduce((n, f) => n + f.bytes.length, 0));
  let at = 0;
  for (const f of files) {
    out.set(f.bytes, at);
    at += f.bytes.length;
  }
  return out;
};

/** The pair of `format` for `seed`. */
export function structuralPair(format: PairFormat, seed: number): StructuralPair {
  const { base, target, changes } = layouts(seed);
  if (format === 'tfjs') {
    const [baseFiles, targetFiles] = [tfjsFiles(base), tfjsFiles(target)];
    return { format, base: joined(baseFiles), target: joined(targetFiles), baseFiles, targetFiles, changes };
  }
  const write = format === 'onnx' ? onnxFile : tfliteFile;
  return { format, base: write(base), target: write(target), changes };
}

/**
 * A pair of `format` for `seed` with the same structure, a third of each tensor's values moved
 * (an ordinary release: published as a value payload, not a structural one).
 */
export function valuePair(format: PairFormat, seed: number): StructuralPair {
  const { base } = layouts(seed);
  const target: Layout = { ...base, tensors: base.tensors.map((t) => ({ ...t, values: t.values.map((v, i) => (i % 3 === 0 ? Math.fround(v + 0.25) : v)) })) };
  const changes: PairChanges = { kept: base.tensors.length, changed: base.tensors.length, renamed: 0, reshaped: 0, removed: 0, added: 0, graphChanged: false };
  if (format === 'tfjs') {
    const [baseFiles, targetFiles] = [tfjsFiles(base), tfjsFiles(target)];
    return { format, base: joined(baseFiles), target: joined(targetFiles), baseFiles, targetFiles, changes };
  }
  const write = format === 'onnx' ? onnxFile : tfliteFile;
  return { format, base: write(base), target: write(target), changes };
}

/** How the target of an ONNX pair with external data changes the model's set of data files. */
export type DataFilesChange = 'added' | 'dropped' | 'renamed';

/** The data files of each side: the base's, then the target's (a new one in a folder the base lacks, for `added`). */
const DATA_FILES: Record<DataFilesChange, [string[], string[]]> = {
  added: [['weights.bin'], ['weights.bin', 'extra/more.bin']],
  dropped: [['weights.bin', 'more.bin'], ['weights.bin']],
  renamed: [['weights.bin'], ['weights-v2.bin']],
};

/**
 * An ONNX model with external data files as `model.onnx` and its data files (the model's folder
 * as files), its tensors spread over `locations` in turn, each 4-byte aligned at its offset.
 */
function onnxWithData(l: Layout, locations: readonly string[]): PairFile[] {
  const parts = new Map(locations.map((loc) => [loc, [] as number[]]));
  const offsets = l.tensors.map((t, i) => {
    const values = parts.get(locations[i % locations.length]) as number[];
    const offset = 4 * values.length;
    values.push(...t.values);
    return offset;
  });
  const modelBytes = onnxFile(l, (_, i) => ({ location: locations[i % locations.length], offset: offsets[i] }));
  return [{ path: 'model.onnx', bytes: modelBytes }, ...locations.map((loc) => ({ path: loc, bytes: Uint8Array.from(f32le(parts.get(loc) as number[])) }))];
}

/**
 * The pair for `seed` as ONNX models keeping their weights in external data files, whose target
 * adds a data file (in a new folder), drops one, or renames the one it has (`change`); the
 * tensors change as in {@link structuralPair}. Each side has at least two tensors, so every data
 * file holds one. `base`/`target` are the files one after the other (`model.onnx` first).
 */
export function onnxDataFilesPair(seed: number, change: DataFilesChange): StructuralPair {
  const { base, target, changes } = layouts(seed);
  // At least as many tensors as data files: each file holds some.
  for (let i = 0; target.tensors.length < 2; i++) {
    changes.added++;
    target.tensors.push({ name: `anchor${i}.w`, shape: [4], values: [0.5, -0.25, 0.125, i] });
  }
  const [fromFiles, toFiles] = DATA_FILES[change];
  const [baseFiles, targetFiles] = [onnxWithData(base, fromFiles), onnxWithData(target, toFiles)];
  return { format: 'onnx', base: joined(baseFiles), target: joined(targetFiles), baseFiles, targetFiles, changes };
}

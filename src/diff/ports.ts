/**
 * A model file's inputs and outputs as the app feeding it sees them, and what changed between two
 * versions of them: `ndiff diff` warns on such a change, and training toward a teacher refuses it
 * (a payload cannot change what the app feeds the model). Also the rebuild formats of single-file
 * models (ONNX with inline data, LiteRT), which structural payloads of either kind use.
 */
import type { RebuildFormat } from '../apply/rebuild.ts';
import type { ModelFile } from '../core/model-files.ts';
import { OnnxWeightStore } from '../io/onnx/store.ts';
import { readTfliteGraph } from '../io/tflite/graph.ts';
import { TfliteWeightStore } from '../io/tflite/store.ts';
import { decodeOnnxModel } from '../engine/onnx/model.ts';

/** A model input or output as the app feeding it sees it. */
export interface Port {
  name: string;
  shape: (number | string)[];
  type: number;
}

/** The inputs and outputs of a model file (an ONNX graph's inputs that are initializers are left out). */
export function portsOf(kind: 'onnx' | 'tflite', bytes: Uint8Array, source: string, files?: readonly ModelFile[]): { inputs: Port[]; outputs: Port[] } {
  if (kind === 'onnx') {
    const g = decodeOnnxModel(bytes, { source, ...(files ? { external: new Map(files.slice(1).map((f) => [f.path, f.bytes])) } : {}) }).graph;
    const init = new Set(g.initializers.map((t) => t.name));
    const port = (v: { name: string; dataType: number; shape?: (number | string)[] }): Port => ({ name: v.name, shape: v.shape ?? [], type: v.dataType });
    return { inputs: g.inputs.filter((v) => !init.has(v.name)).map(port), outputs: g.outputs.map(port) };
  }
  const g = readTfliteGraph(bytes, source);
  const port = (i: number): Port => ({ name: g.tensors[i].name, shape: g.tensors[i].shape, type: g.tensors[i].type });
  return { inputs: g.inputs.map(port), outputs: g.outputs.map(port) };
}

export const portText = (p: Port) => `${p.name} [${p.shape.join(', ')}]`;
export function portsDiffer(a: Port[], b: Port[]): boolean {
  return a.length !== b.length || a.some((p, i) => portText(p) !== portText(b[i]) || p.type !== b[i].type);
}

/**
 * The first input or output that differs between two models (by position: its name, shape or
 * element type; `byName` false compares shapes and types only, as LiteRT apps address tensors by
 * position), in words: `output 0 mask [1, 4, 4, 1] -> mask [1, 4, 4, 2]`; undefined when the app
 * would feed and read both alike.
 */
export function portChange(before: { inputs: Port[]; outputs: Port[] }, after: { inputs: Port[]; outputs: Port[] }, byName = true): { kind: 'input' | 'output'; index: number; text: string } | undefined {
  const same = (p: Port, q: Port) => (byName ? portText(p) === portText(q) : p.shape.join() === q.shape.join()) && p.type === q.type;
  for (const kind of ['inputs', 'outputs'] as const) {
    const [a, b] = [before[kind], after[kind]];
    const one = kind === 'inputs' ? 'input' : 'output';
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const [p, q] = [a[i], b[i]];
      if (p && q && same(p, q)) continue;
      const side = (x: Port | undefined) => (x ? `${portText(x)}${p && q && p.type !== q.type ? ` (element type ${x.type})` : ''}` : 'none');
      return { kind: one, index: i, text: `${one} ${i} ${side(p)} -> ${side(q)}` };
    }
  }
  return undefined;
}

export const ONNX_REBUILD: RebuildFormat = { kind: 'onnx', open: (b) => new OnnxWeightStore(b) };
export const TFLITE_REBUILD: RebuildFormat = { kind: 'tflite', open: (b) => new TfliteWeightStore(b) };

/**
 * A model's inputs and outputs as the app feeding it sees them, and the warning given when they
 * change between two versions (`diff`, `release.add` and `update` give it). Also the rebuild
 * formats of single-file models.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { RebuildFormat } from '../apply/rebuild.ts';
import type { ModelFile } from '../core/model-files.ts';
import { OnnxWeightStore } from '../io/onnx/store.ts';
import { TfliteWeightStore } from '../io/tflite/store.ts';
import { readTfliteGraph } from '../io/tflite/graph.ts';
import { locateTfjsModel } from '../io/tfjs/model-file.ts';
import { decodeOnnxModel } from '../train/onnx/model.ts';

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

/**
 * The warning `ndiff diff`, `ndiff release add` and `ndiff update` give when a model's inputs or
 * outputs change between two versions (`consequence`: what it means where it is said); undefined
 * when they do not.
 */
export function interfaceWarning(before: { inputs: Port[]; outputs: Port[] }, after: { inputs: Port[]; outputs: Port[] }, consequence: string): string | undefined {
  if (!portsDiffer(before.inputs, after.inputs) && !portsDiffer(before.outputs, after.outputs)) return undefined;
  return `the model's inputs or outputs changed (inputs ${before.inputs.map(portText).join(', ')} -> ${after.inputs.map(portText).join(', ')}; outputs ${before.outputs.map(portText).join(', ')} -> ${after.outputs.map(portText).join(', ')}): ${consequence}`;
}

/**
 * The inputs and outputs of the model at `modelPath` (an .onnx or .tflite file, a TF.js folder
 * or model JSON file: a graph model's signature; a layers model lists none), or undefined when
 * there is no model there or it cannot be read.
 */
export async function modelPortsAt(modelPath: string): Promise<{ inputs: Port[]; outputs: Port[] } | undefined> {
  try {
    if (/\.(onnx|tflite)$/i.test(modelPath)) {
      const kind = /\.onnx$/i.test(modelPath) ? 'onnx' : 'tflite';
      return portsOf(kind, new Uint8Array(await readFile(modelPath)), modelPath);
    }
    const at = await locateTfjsModel(modelPath);
    return tfjsPorts([{ path: 'model.json', bytes: new Uint8Array(await readFile(path.join(at.dir, at.modelJsonFile))) }]);
  } catch {
    return undefined;
  }
}

export const ONNX_REBUILD: RebuildFormat = { kind: 'onnx', open: (b) => new OnnxWeightStore(b) };
export const TFLITE_REBUILD: RebuildFormat = { kind: 'tflite', open: (b) => new TfliteWeightStore(b) };

/** A TF.js model's inputs and outputs as its model.json's signature names them (a layers model's: none listed). */
export function tfjsPorts(files: readonly ModelFile[]): { inputs: Port[]; outputs: Port[] } {
  const json = JSON.parse(new TextDecoder().decode(files[0].bytes)) as { signature?: Record<string, Record<string, { name?: string; dtype?: string; tensorShape?: { dim?: { size?: string | number }[] } }>> };
  const ports = (m: Record<string, { name?: string; dtype?: string; tensorShape?: { dim?: { size?: string | number }[] } }> | undefined): Port[] =>
    Object.entries(m ?? {}).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => ({ name: v.name ?? k, shape: (v.tensorShape?.dim ?? []).map((d) => Number(d.size ?? -1)), type: v.dtype === undefined ? 0 : v.dtype.length }));
  return { inputs: ports(json.signature?.inputs), outputs: ports(json.signature?.outputs) };
}


/**
 * A model's inputs and outputs read from where it lies, and the warning given when they change
 * between two versions (`diff`, `release.add` and `update` give it). The pure part (ports of a
 * model file's bytes, what changed, the rebuild formats of single-file models) is
 * src/diff/ports.ts, re-exported here.
 */
import { readRegularFile } from '../io/durable/durable.ts';
import * as path from 'node:path';
import type { ModelFile } from '../core/model-files.ts';
import { locateTfjsModel } from '../io/tfjs/model-file.ts';
import { portsDiffer, portsOf, portText, type Port } from '../diff/ports.ts';

export { ONNX_REBUILD, portChange, portsDiffer, portsOf, portText, TFLITE_REBUILD, type Port } from '../diff/ports.ts';

/**
 * The warning `ndiff diff`, `ndiff release add` and `ndiff update` give when a model's inputs or
 * outputs change between two versions (`consequence`: what it means where it is said); undefined
 * when they do not. It names only the inputs and outputs that changed, by position, and says when
 * one only changed its name (an app that addresses tensors by position, as LiteRT apps do, reads
 * it alike).
 */
export function interfaceWarning(before: { inputs: Port[]; outputs: Port[] }, after: { inputs: Port[]; outputs: Port[] }, consequence: string): string | undefined {
  if (!portsDiffer(before.inputs, after.inputs) && !portsDiffer(before.outputs, after.outputs)) return undefined;
  const changes: string[] = [];
  for (const kind of ['inputs', 'outputs'] as const) {
    const [a, b] = [before[kind], after[kind]];
    const one = kind === 'inputs' ? 'input' : 'output';
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const [p, q] = [a[i], b[i]];
      if (p && q && portText(p) === portText(q) && p.type === q.type) continue;
      const typed = !!p && !!q && p.type !== q.type;
      const side = (x: Port | undefined) => (x ? `${portText(x)}${typed ? ` (element type ${x.type})` : ''}` : 'none');
      const renamedOnly = !!p && !!q && !typed && p.shape.join() === q.shape.join();
      changes.push(`${one} ${i} ${side(p)} -> ${side(q)}${renamedOnly ? ' (renamed only)' : ''}`);
    }
  }
  return `the model's inputs or outputs changed (${changes.join('; ')}): ${consequence}`;
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
      // Regular files only, opened without waiting: a FIFO or a device is no model (and would hang a plain read).
      const bytes = await readRegularFile(modelPath);
      return bytes ? portsOf(kind, bytes, modelPath) : undefined;
    }
    const at = await locateTfjsModel(modelPath);
    const json = await readRegularFile(path.join(at.dir, at.modelJsonFile));
    return json ? tfjsPorts([{ path: 'model.json', bytes: json }]) : undefined;
  } catch {
    return undefined;
  }
}

/** A TF.js model's inputs and outputs as its model.json's signature names them (a layers model's: none listed). */
export function tfjsPorts(files: readonly ModelFile[]): { inputs: Port[]; outputs: Port[] } {
  const json = JSON.parse(new TextDecoder().decode(files[0].bytes)) as { signature?: Record<string, Record<string, { name?: string; dtype?: string; tensorShape?: { dim?: { size?: string | number }[] } }>> };
  const ports = (m: Record<string, { name?: string; dtype?: string; tensorShape?: { dim?: { size?: string | number }[] } }> | undefined): Port[] =>
    Object.entries(m ?? {}).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => ({ name: v.name ?? k, shape: (v.tensorShape?.dim ?? []).map((d) => Number(d.size ?? -1)), type: v.dtype === undefined ? 0 : v.dtype.length }));
  return { inputs: ports(json.signature?.inputs), outputs: ports(json.signature?.outputs) };
}


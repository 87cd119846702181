/**
 * `ndiff diff` for two `.onnx` (inline data) or `.tflite` files whose structure differs: a
 * structural payload (format v7, src/diff/structural.ts) instead of a refusal. The value part is
 * exact with `--budget all`, else built by the chosen method within the budget (the rebuild delta
 * comes on top). A change of the model's inputs or outputs is written but warned about: the app
 * that feeds the model must change with it.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { UsageError } from '../../src/core/errors.ts';
import { getHasher, type Hasher } from '../../src/core/hasher.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { formatBytes, parseBudget } from '../../src/diff/budget.ts';
import { diffOnnxModels } from '../../src/diff/onnx.ts';
import { structuralDiff, structuralDiffFiles, type StructuralDiffOptions, type StructuralDiffResult } from '../../src/diff/structural.ts';
import { cp, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { locateTfjsModel } from '../../src/io/tfjs/model-file.ts';
import { readTfjsModelFiles, rebuildModelDir, TFJS_REBUILD } from '../../src/io/tfjs/folder-rebuild.ts';
import type { ModelFile } from '../../src/core/model-files.ts';
import type { ExactCodec } from '../../src/diff/exact.ts';
import { rebuildModelBytes, rebuildModelFiles } from '../../src/apply/rebuild.ts';
import { ONNX_FILES_REBUILD, onnxFileOrder } from '../../src/io/onnx/files-store.ts';
import { onnxExternalLocations } from '../../src/io/onnx/store.ts';
import { ONNX_REBUILD, portsDiffer, portsOf, portText, TFLITE_REBUILD, type Port } from '../../src/diff/ports.ts';
import type { CliIO } from '../common.ts';
import { parseExpiry } from '../models.ts';
import type { DiffArgs } from './diff.ts';

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
      return portsOf(kind, new Uint8Array(await readFile(modelPath)), modelPath);
    }
    const at = await locateTfjsModel(modelPath);
    return tfjsPorts([{ path: 'model.json', bytes: new Uint8Array(await readFile(path.join(at.dir, at.modelJsonFile))) }]);
  } catch {
    return undefined;
  }
}


/**
 * Write the structural payload for `a.base` -> `a.target` (both `kind` files), with the result
 * document and lines `ndiff diff` prints. `reason` is why no value payload reaches the target.
 */
export async function runStructuralDiff(a: DiffArgs, io: CliIO, kind: 'onnx' | 'tflite', modelId: string, reason: string): Promise<number> {
  if (a.eval || a.calibrate) throw new UsageError(`the two ${kind} files differ in structure (${reason.split(':')[0]}), so ndiff diff writes a structural payload (format v7); --eval and --calibrate do not measure those yet: leave them out`);
  const everyChange = a.budget.trim().toLowerCase() === 'all';
  if (!everyChange && a.method !== 'topk' && a.method !== 'lowbit') throw new UsageError(`--method ${a.method} measures candidates on inputs; a structural payload takes --method topk or lowbit, or --budget all`);
  const [baseBytes, targetBytes] = (await Promise.all([readFile(a.base), readFile(a.target)])).map((b) => new Uint8Array(b));
  // An ONNX model with external data files: the .onnx and its data files, rebuilt together.
  const external = kind === 'onnx' && (onnxExternalLocations(baseBytes, a.base).length > 0 || onnxExternalLocations(targetBytes, a.target).length > 0);
  const filesOf = async (file: string, bytes: Uint8Array): Promise<ModelFile[]> => [
    { path: path.basename(file), bytes },
    ...(await Promise.all(onnxFileOrder(bytes, file).map(async (loc) => ({ path: loc, bytes: new Uint8Array(await readFile(path.resolve(path.dirname(file), loc))) })))),
  ];
  const [baseFiles, targetFiles] = external ? await Promise.all([filesOf(a.base, baseBytes), filesOf(a.target, targetBytes)]) : [undefined, undefined];
  const format = kind === 'onnx' ? ONNX_REBUILD : TFLITE_REBUILD;
  const hasher = await getHasher();
  const t0 = performance.now();
  const options = structuralOptions(a, hasher, modelId, everyChange);
  const res = baseFiles && targetFiles ? structuralDiffFiles(hasher, baseFiles, targetFiles, ONNX_FILES_REBUILD, options) : structuralDiff(hasher, baseBytes, targetBytes, format, options);
  const ms = performance.now() - t0;
  const targetFileFingerprint = fingerprintStore(hasher, targetFiles ? ONNX_FILES_REBUILD.open(targetFiles) : format.open(targetBytes)).fingerprint;
  const [before, after] = [portsOf(kind, baseBytes, a.base, baseFiles), portsOf(kind, targetBytes, a.target, targetFiles)];
  await writeFile(a.out, res.bytes);
  let modelOutFingerprint: string | undefined;
  if (a.modelOut && baseFiles) {
    // The .onnx as --model-out, its data files beside it under the names it references.
    const rebuilt = await rebuildModelFiles(baseFiles, res.bytes, ONNX_FILES_REBUILD, { hasher });
    const files = rebuilt.files as ModelFile[];
    await writeFile(a.modelOut, files[0].bytes);
    for (const f of files.slice(1)) {
      const out = path.resolve(path.dirname(a.modelOut), f.path);
      await mkdir(path.dirname(out), { recursive: true });
      await writeFile(out, f.bytes);
    }
    modelOutFingerprint = rebuilt.header.targetFingerprint;
  } else if (a.modelOut) {
    const rebuilt = await rebuildModelBytes(baseBytes, res.bytes, format, { hasher });
    await writeFile(a.modelOut, rebuilt.bytes);
    modelOutFingerprint = rebuilt.header.targetFingerprint;
  }
  const size = (fs: readonly ModelFile[] | undefined, one: Uint8Array) => (fs ? fs.reduce((n, f) => n + f.bytes.length, 0) : one.length);
  return report(a, io, res, modelId, size(baseFiles, baseBytes), size(targetFiles, targetBytes), ms, before, after, modelOutFingerprint, everyChange, baseFiles ? 'files' : 'file', targetFileFingerprint);
}

/**
 * The builder's options from the command line: the header, the exact codecs, and within a budget
 * the value payload by `--method topk` or `lowbit` (the budget a share of the target's weights as
 * stored; the rebuild comes on top).
 */
function structuralOptions(a: DiffArgs, hasher: Hasher, modelId: string, everyChange: boolean): StructuralDiffOptions {
  const header = { modelId, sequence: a.sequence, ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}) };
  const exactCodecs = a.exactCodec === 'x' ? { codecs: ['x'] as ExactCodec[] } : a.exactCodec === 'xr' ? { codecs: ['x', 'xr'] as ExactCodec[] } : {};
  if (everyChange) return { ...header, store: a.store, ...exactCodecs };
  return {
    ...header,
    store: a.store,
    ...exactCodecs,
    valuePayload: (inter, target) => {
      const total = inter.list().filter((t) => t.patchable !== false).reduce((n, t) => n + 4 * t.shape.reduce((x, d) => x * d, 1), 0);
      return diffOnnxModels(hasher, inter, target, { ...header, store: a.store, budgetBytes: parseBudget(a.budget, total), codec: a.codec, method: a.method === 'lowbit' ? 'lowbit' : 'topk', ...(a.lowbitCodesOnly ? { lowbit: { lowRank: false, outliers: false, newValues: false } } : {}) }).bytes;
    },
  };
}

/** The result document and the lines `ndiff diff` prints for a structural payload. */
async function report(a: DiffArgs, io: CliIO, res: StructuralDiffResult, modelId: string, baseLength: number, targetLength: number, ms: number, before: { inputs: Port[]; outputs: Port[] }, after: { inputs: Port[]; outputs: Port[] }, modelOutFingerprint: string | undefined, everyChange: boolean, what: 'file' | 'files', targetFileFingerprint: string): Promise<number> {
  const [baseBytes, targetBytes] = [{ length: baseLength }, { length: targetLength }];
  // Within a budget the value patches may stop short of the --target model: the payload names
  // (and devices check) the model it truly reaches, which --model-out writes.
  const exact = res.header.targetFingerprint === targetFileFingerprint;
  // An interface change is written, with a warning: the app that feeds the model must change with it.
  const warning = interfaceWarning(before, after, 'the payload is written, but the app that feeds the model must change with it');
  const interfaceChanged = warning !== undefined;
  const c = res.change;
  const doc = {
    out: a.out, bytes: res.bytes.length, structural: true, formatVersion: 7, rebuildBytes: res.rebuildBytes, valueBytes: res.valueBytes,
    baseFileBytes: baseBytes.length, targetFileBytes: targetBytes.length, ...(res.header.files ? { targetFiles: res.header.files } : {}), smallerThanModel: res.bytes.length < targetBytes.length, payloadToModelRatio: res.bytes.length / targetBytes.length, seconds: ms / 1000,
    baseFingerprint: res.header.baseFingerprint, intermediateFingerprint: res.header.intermediateFingerprint, targetFingerprint: res.header.targetFingerprint,
    exact, targetFileFingerprint,
    added: c.added, removed: c.removed, renamed: c.renamed, reshaped: c.reshaped.map((r) => ({ name: r.name, base: [...r.base], target: [...r.target] })), retyped: c.retyped,
    kept: c.kept, keptChanged: c.keptChanged, graphChanged: c.frameChanged, interfaceChanged,
    inputs: { base: before.inputs, target: after.inputs }, outputs: { base: before.outputs, target: after.outputs },
    rebuild: res.rebuild,
    ...(a.modelOut ? { modelOut: a.modelOut, modelOutFingerprint } : {}),
    ...(warning ? { warning } : {}),
  };
  io.result?.(doc);
  if (a.metricsOut) await writeFile(a.metricsOut, JSON.stringify({ kind: 'ndiff-diff-metrics', method: everyChange ? 'exact' : res.header.method, modelId, sequence: a.sequence, target: a.target, budgetRequested: a.budget, ...doc, accuracyBefore: null, accuracyAfter: null, trainSeconds: ms / 1000 }, null, 2) + '\n');
  const list = (xs: string[]) => (xs.length ? xs.slice(0, 4).join(', ') + (xs.length > 4 ? `, ... (${xs.length - 4} more)` : '') : 'none');
  io.out(`wrote ${a.out}: ${res.bytes.length} bytes, a structural payload (format v7: the target ${what === 'file' ? 'file' : `model's ${res.header.files?.length ?? 0} files`} rebuilt from the base's bytes, ${formatBytes(res.rebuildBytes)} of rebuild, then ${formatBytes(res.valueBytes)} of value patches; ${((100 * res.bytes.length) / targetBytes.length).toFixed(2)}% of the ${formatBytes(targetBytes.length)} target ${what}), in ${(ms / 1000).toFixed(2)} s`);
  io.out(`tensors added: ${list(c.added)}; removed: ${list(c.removed)}; renamed: ${list(c.renamed.map((r) => `${r.from} -> ${r.to}`))}; reshaped: ${list(c.reshaped.map((r) => `${r.name} [${r.base.join(', ')}] -> [${r.target.join(', ')}]`))}${c.retyped.length ? `; retyped: ${list(c.retyped)}` : ''}; ${c.kept} kept (${c.keptChanged} changed); graph ${c.frameChanged ? 'changed' : 'unchanged'}`);
  io.out(`base ${res.header.baseFingerprint} -> intermediate ${res.header.intermediateFingerprint} -> target ${res.header.targetFingerprint}${exact ? '' : ` (within the budget: not ${a.target} itself, ${targetFileFingerprint}; --budget all reaches it exactly)`}; devices need neural-diff/rebuild (neural-diff/apply refuses format v7)`);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${modelOutFingerprint}): diff the next version against it`);
  if (warning) io.err(`warning: ${warning}`);
  return 0;
}

/** A TF.js model's inputs and outputs as its model.json's signature names them (a layers model's: none listed). */
function tfjsPorts(files: readonly ModelFile[]): { inputs: Port[]; outputs: Port[] } {
  const json = JSON.parse(new TextDecoder().decode(files[0].bytes)) as { signature?: Record<string, Record<string, { name?: string; dtype?: string; tensorShape?: { dim?: { size?: string | number }[] } }>> };
  const ports = (m: Record<string, { name?: string; dtype?: string; tensorShape?: { dim?: { size?: string | number }[] } }> | undefined): Port[] =>
    Object.entries(m ?? {}).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => ({ name: v.name ?? k, shape: (v.tensorShape?.dim ?? []).map((d) => Number(d.size ?? -1)), type: v.dtype === undefined ? 0 : v.dtype.length }));
  return { inputs: ports(json.signature?.inputs), outputs: ports(json.signature?.outputs) };
}

/**
 * `ndiff diff` for two TF.js models (folders or model JSON files) whose structure differs: a
 * structural payload over the model JSON and its shards (`fk` = `tfjs`, the target's files
 * listed in `fl`). `--model-out` gets what a device holds after applying it (the base's files
 * rebuilt by rebuildModelDir: the shards under content-addressed names), so the next diff made
 * against it starts from a device's bytes.
 */
export async function runStructuralFolderDiff(a: DiffArgs, io: CliIO, modelId: string, reason: string): Promise<number> {
  if (a.eval || a.calibrate) throw new UsageError(`the two TF.js models differ in structure (${reason.split(':')[0]}), so ndiff diff writes a structural payload (format v7); --eval and --calibrate do not measure those yet: leave them out`);
  const everyChange = a.budget.trim().toLowerCase() === 'all';
  if (!everyChange && a.method !== 'topk' && a.method !== 'lowbit') throw new UsageError(`--method ${a.method} measures candidates on inputs; a structural payload takes --method topk or lowbit, or --budget all`);
  const [bw, tw] = await Promise.all([locateTfjsModel(a.base), locateTfjsModel(a.target)]);
  const [baseFiles, targetFiles] = await Promise.all([readTfjsModelFiles(bw.dir, bw.modelJsonFile), readTfjsModelFiles(tw.dir, tw.modelJsonFile)]);
  // A model JSON file of any name is listed as model.json: a device's model file keeps its own name.
  const targetListed = [{ path: 'model.json', bytes: targetFiles[0].bytes }, ...targetFiles.slice(1)];
  const hasher = await getHasher();
  const t0 = performance.now();
  const res = structuralDiffFiles(hasher, baseFiles, targetListed, TFJS_REBUILD, structuralOptions(a, hasher, modelId, everyChange));
  const ms = performance.now() - t0;
  const [before, after] = [tfjsPorts(baseFiles), tfjsPorts(targetFiles)];
  await writeFile(a.out, res.bytes);
  let modelOutFingerprint: string | undefined;
  if (a.modelOut) {
    // The base's files as a folder of its own, then rebuilt as a device rebuilds them.
    await mkdir(a.modelOut, { recursive: true });
    await writeFile(path.join(a.modelOut, 'model.json'), baseFiles[0].bytes);
    for (const f of baseFiles.slice(1)) {
      await mkdir(path.dirname(path.join(a.modelOut, f.path)), { recursive: true });
      await cp(path.resolve(bw.dir, f.path), path.join(a.modelOut, f.path));
    }
    const rebuilt = await rebuildModelDir(a.modelOut, res.bytes, { hasher, state: null });
    modelOutFingerprint = rebuilt.header.targetFingerprint;
  }
  const size = (fs: readonly ModelFile[]) => fs.reduce((n, f) => n + f.bytes.length, 0);
  return report(a, io, res, modelId, size(baseFiles), size(targetFiles), ms, before, after, modelOutFingerprint, everyChange, 'files', fingerprintStore(hasher, TFJS_REBUILD.open(targetFiles)).fingerprint);
}

/**
 * The structural payload fuzzer (format v7, `neural-diff/rebuild`): hostile structural payloads
 * for ONNX files (inline data), LiteRT files and TF.js graph models (several files, `fl`), built
 * from random pairs whose tensors
 * were added, removed, renamed and reshaped and whose graph changed
 * (test/helpers/structural-pairs.ts). The oracle, for every input:
 *
 * - it resolves, or rejects with a NeuralDiffError (anything else is a crash);
 * - on rejection the base is byte for byte what it was (in memory; on disk the model file and
 *   nothing new beside it but the applier's own state files);
 * - on success the result reads as a model whose fingerprint is the target the payload names,
 *   and an unmutated payload gives the target's bytes exactly;
 * - each case finishes within `slowMs`.
 *
 * Kinds of input: byte mutations of the whole payload; the document decoded and one field
 * replaced (`nd`, `fk`, `if`, `tf`, `bf`, the byte delta `rb`, the value payload `pv`) by a
 * mutated copy (bit flips, interesting varints in the byte delta's header and instructions, cuts,
 * growth), a value of the wrong type, or the field of another pair's payload (a valid byte delta
 * or value payload for another file); valid payloads applied to another pair's base.
 */
import { Packr, Unpackr } from 'msgpackr';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { NeuralDiffError } from '../../src/core/errors.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../../src/core/hasher.ts';
import { rebuildModelBytes, rebuildModelFiles, type RebuildFormat } from '../../src/apply/rebuild.ts';
import { structuralDiff, structuralDiffFiles } from '../../src/diff/structural.ts';
import { rebuildModelDir, TFJS_REBUILD } from '../../src/io/tfjs/folder-rebuild.ts';
import { openTfjsModelDir } from '../../src/io/tfjs/index.ts';
import { rebuildOnnxFile } from '../../src/io/onnx/files.ts';
import { OnnxWeightStore } from '../../src/io/onnx/store.ts';
import { rebuildTfliteFile } from '../../src/io/tflite/files.ts';
import { TfliteWeightStore } from '../../src/io/tflite/store.ts';
import { seeded, structuralPair, type PairFile, type PairFormat } from '../helpers/structural-pairs.ts';

const FORMATS: Record<'onnx' | 'tflite', RebuildFormat> = {
  onnx: { kind: 'onnx', open: (b) => new OnnxWeightStore(b) },
  tflite: { kind: 'tflite', open: (b) => new TfliteWeightStore(b) },
};
const FILE_REBUILD = { onnx: rebuildOnnxFile, tflite: rebuildTfliteFile };

/** One valid payload of the corpus: a pair and its structural payload. */
interface Entry {
  format: PairFormat;
  base: Uint8Array;
  target: Uint8Array;
  /** TF.js: the model's files. */
  baseFiles?: PairFile[];
  payload: Uint8Array;
  targetFingerprint: string;
}

export interface StructuralFuzzSummary {
  cases: number;
  /** Outcome counts: `applied`, `refused <ErrorClass>`, and the bad ones (`crash`, `modified`, `wrong-target`, `slow`). */
  outcomes: Record<string, number>;
  bad: number;
  /** The first bad cases, described. */
  firstBad: string[];
  maxMs: number;
  /** Outcomes per kind of input (what was mutated or swapped), to see which checks the inputs reach. */
  byInput: Record<string, Record<string, number>>;
}

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x3f, 0x40, 0xc0, 0x81];
const unpackr = new Unpackr({ mapsAsObjects: true, useRecords: false, int64AsType: 'number' });
const packr = new Packr({ useRecords: false, variableMapSize: true });

/** The corpus: `pairs` random pairs of each format and their payloads. */
export async function buildStructuralCorpus(pairs = 6, seed = 1): Promise<{ hasher: Hasher; entries: Entry[] }> {
  const hasher = await getHasher();
  const entries: Entry[] = [];
  for (const format of ['onnx', 'tflite', 'tfjs'] as const) {
    for (let i = 0; i < pairs; i++) {
      const p = structuralPair(format, seed + i);
      const built = format === 'tfjs'
        ? structuralDiffFiles(hasher, p.baseFiles as PairFile[], p.targetFiles as PairFile[], TFJS_REBUILD, { modelId: 'fuzz', sequence: 1 })
        : structuralDiff(hasher, p.base, p.target, FORMATS[format], { modelId: 'fuzz', sequence: 1 });
      entries.push({ format, base: p.base, target: p.target, ...(p.baseFiles ? { baseFiles: p.baseFiles } : {}), payload: built.bytes, targetFingerprint: built.header.targetFingerprint });
    }
  }
  return { hasher, entries };
}

type Rand = ReturnType<typeof seeded>;

function mutateBytes(r: Rand, bytes: Uint8Array): Uint8Array {
  let out = bytes.slice();
  for (let k = 1 + r.int(4); k > 0 && out.length > 0; k--) {
    const at = r.int(out.length);
    switch (r.int(6)) {
      case 0: out[at] ^= 1 << r.int(8); break;
      case 1: out[at] = INTERESTING[r.int(INTERESTING.length)]; break;
      case 2: out = out.subarray(0, at).slice(); break;
      case 3: { // a run of interesting varint bytes (lengths, offsets) where the header and first instructions lie
        const head = Math.min(out.length - 1, r.int(24));
        for (let j = 0; j < 1 + r.int(5) && head + j < out.length; j++) out[head + j] = INTERESTING[r.int(INTERESTING.length)];
        break;
      }
      case 4: { // growth: random bytes inserted
        const extra = Uint8Array.from({ length: 1 + r.int(64) }, () => r.int(256));
        const grown = new Uint8Array(out.length + extra.length);
        grown.set(out.subarray(0, at));
        grown.set(extra, at);
        grown.set(out.subarray(at), at + extra.length);
        out = grown;
        break;
      }
      default: out[at] = r.int(256);
    }
  }
  return out;
}

/** A hostile input from entry `e`, and what it is (for a bad case's report). */
function hostile(r: Rand, e: Entry, entries: readonly Entry[]): { bytes: Uint8Array; what: string } {
  const kind = r.int(10);
  if (kind <= 2) return { bytes: mutateBytes(r, e.payload), what: 'payload bytes mutated' };
  const doc = unpackr.unpack(e.payload) as Record<string, unknown>;
  const other = entries[r.int(entries.length)];
  const otherDoc = unpackr.unpack(other.payload) as Record<string, unknown>;
  let what: string;
  if (kind <= 5) {
    const key = r.int(3) ? 'rb' : 'pv';
    doc[key] = mutateBytes(r, doc[key] as Uint8Array);
    what = `${key} mutated`;
  } else if (kind === 6) {
    const key = ['rb', 'pv', 'if', 'tf', 'bf'][r.int(5)];
    if (otherDoc[key] === undefined) delete doc[key];
    else doc[key] = otherDoc[key];
    what = `${key} taken from another pair's payload`;
  } else if (kind === 7) {
    const key = ['nd', 'fk', 'if', 'tf', 'bf', 'rb', 'pv', 'sq', 'm', 'fl'][r.int(10)];
    const values: unknown[] = [6, 8, -1, 2 ** 32, 'onnx', 'tflite', 'tfjs', '', new Uint8Array(8), new Uint8Array(0), null, true, 1.5, [], {}, [['model.json', 10]], [['../x', 1]], [['model.json', 2 ** 40]], [['a', 1], ['A', 1]]];
    if (r.int(4) === 0) delete doc[key];
    else doc[key] = values[r.int(values.length)];
    what = `${key} replaced or removed`;
  } else {
    // A valid payload for another pair, on this pair's base (or the same pair's again).
    return { bytes: other.payload, what: `another pair's payload (${other.format})` };
  }
  return { bytes: new Uint8Array(packr.pack(doc)), what };
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

/**
 * Run `cases` hostile structural payloads; every `diskEvery`-th case also through the crash-safe
 * file update on a temporary file (0: never).
 */
export async function fuzzStructural(options: { cases: number; seed: number; diskEvery?: number; slowMs?: number; pairs?: number }): Promise<StructuralFuzzSummary> {
  const { hasher, entries } = await buildStructuralCorpus(options.pairs ?? 6, options.seed);
  const r = seeded(options.seed);
  const summary: StructuralFuzzSummary = { cases: 0, outcomes: {}, bad: 0, firstBad: [], maxMs: 0, byInput: {} };
  let input: { bytes: Uint8Array; what: string } = { bytes: new Uint8Array(0), what: '' };
  const count = (outcome: string, description?: string) => {
    summary.outcomes[outcome] = (summary.outcomes[outcome] ?? 0) + 1;
    const per = (summary.byInput[input.what] ??= {});
    per[outcome] = (per[outcome] ?? 0) + 1;
    if (description !== undefined) {
      summary.bad++;
      if (summary.firstBad.length < 5) summary.firstBad.push(`${outcome}: ${description}`);
    }
  };
  const dir = options.diskEvery ? await mkdtemp(path.join(tmpdir(), 'nd-fuzz-structural-')) : '';
  try {
    for (let n = 0; n < options.cases; n++) {
      const e = entries[r.int(entries.length)];
      input = n % 50 === 0 ? { bytes: e.payload, what: 'the valid payload' } : hostile(r, e, entries);
      const about = `case ${n} (seed ${options.seed}): ${input.what}, ${e.format}`;
      const t0 = performance.now();
      const model = e.base.slice();
      const files = e.baseFiles?.map((f) => ({ path: f.path, bytes: f.bytes.slice() }));
      try {
        const res = files ? await rebuildModelFiles(files, input.bytes, TFJS_REBUILD, { hasher }) : await rebuildModelBytes(model, input.bytes, FORMATS[e.format as 'onnx' | 'tflite'], { hasher });
        const fp = fingerprintStore(hasher, res.files ? TFJS_REBUILD.open(res.files) : FORMATS[e.format as 'onnx' | 'tflite'].open(res.bytes)).fingerprint;
        if (fp !== res.header.targetFingerprint) count('wrong-target', `${about}: the result's fingerprint ${fp} is not the payload's target ${res.header.targetFingerprint}`);
        else if (input.bytes === e.payload && !same(res.bytes, e.target)) count('wrong-target', `${about}: the valid payload did not give the target's bytes`);
        else count('applied');
      } catch (err) {
        if (!(err instanceof NeuralDiffError)) count('crash', `${about}: ${(err as Error)?.stack ?? String(err)}`);
        else count(`refused ${err.constructor.name}`);
      }
      if (!same(model, e.base) || (files && e.baseFiles && files.some((f, i) => !same(f.bytes, (e.baseFiles as PairFile[])[i].bytes)))) count('modified', `${about}: the base bytes changed`);
      if (options.diskEvery && n % options.diskEvery === 0) await diskCase(dir, n, e, input.bytes, about, count);
      const ms = performance.now() - t0;
      summary.maxMs = Math.max(summary.maxMs, ms);
      if (ms > (options.slowMs ?? 5000)) count('slow', `${about}: ${ms.toFixed(0)} ms`);
      summary.cases++;
    }
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
  return summary;
}

/** The same input through the crash-safe file update (a TF.js folder's for TF.js): refused, the folder as it was; applied, the model at the payload's target. */
async function diskCase(root: string, n: number, e: Entry, bytes: Uint8Array, about: string, count: (o: string, d?: string) => void): Promise<void> {
  const dir = path.join(root, String(n));
  await mkdir(dir);
  const file = path.join(dir, e.format === 'tfjs' ? 'model.json' : `model.${e.format}`);
  if (e.baseFiles) for (const f of e.baseFiles) await writeFile(path.join(dir, f.path), f.bytes);
  else await writeFile(file, e.base);
  const before = await snapshot(dir);
  try {
    const hasher = await getHasher();
    if (e.format === 'tfjs') {
      const res = await rebuildModelDir(dir, bytes, { state: null });
      const fp = fingerprintStore(hasher, await openTfjsModelDir(dir)).fingerprint;
      if (fp !== res.header.targetFingerprint) count('wrong-target', `${about}, on disk: the folder's fingerprint ${fp} is not the payload's target ${res.header.targetFingerprint}`);
    } else {
      const res = await FILE_REBUILD[e.format](file, bytes, { state: null });
      const fp = fingerprintStore(hasher, FORMATS[e.format].open(new Uint8Array(await readFile(file)))).fingerprint;
      if (fp !== res.header.targetFingerprint) count('wrong-target', `${about}, on disk: the file's fingerprint ${fp} is not the payload's target ${res.header.targetFingerprint}`);
    }
  } catch (err) {
    if (!(err instanceof NeuralDiffError)) count('crash', `${about}, on disk: ${(err as Error)?.stack ?? String(err)}`);
    else {
      // Refused: every file as it was, and nothing beside them but the applier's model-id record.
      const after = await snapshot(dir);
      const changed = [...new Set([...before.keys(), ...after.keys()])].filter((f) => before.get(f) !== after.get(f) && !/\.ndiff-model\.json$|^\.ndiff-folder\.json$/.test(f));
      if (changed.length) count('modified', `${about}, on disk: ${changed.join(', ')} changed or left on a refusal`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every file of `dir` by name, as base64. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of (await readdir(dir)).sort()) out.set(f, (await readFile(path.join(dir, f))).toString('base64'));
  return out;
}

/**
 * Hostile ONNX model files on disk (part of `npm run fuzz`, or alone:
 * `node --import tsx test/fuzz/onnx-files.ts [--cases 300] [--seed N] [--big]`).
 *
 * Every case is a folder with a `.onnx` file and its external data, attacked one way: the
 * structured attacks of docs/SECURITY.md (locations aliasing one file, naming the model or the
 * applier's files, symlinked folders and files, FIFOs as the model or its data, duplicate names
 * over a quantization scale, offsets past 4 GiB and past the end), then random byte mutations
 * of a valid model. Each is fingerprinted and applied with a payload for the clean model. A
 * case passes when it ends in success or in a typed refusal (a NeuralDiffError) within the time
 * limit, and, on refusal, every file of the folder (and of the folder a link points to) is byte
 * for byte as it was. `--big` adds a tensor at an offset past 4 GiB in a sparse file, applied.
 */
import { execFileSync } from 'node:child_process';
import { link, mkdtemp, open, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { snapshot, within } from './files.ts';
import { NeuralDiffError } from '../../src/core/errors.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { buildPayload } from '../../src/diff/build.ts';
import { OnnxWeightStore } from '../../src/io/onnx/store.ts';
import { applyToOnnxFile, openOnnxFile } from '../../src/io/onnx/files.ts';
import { DT, f32le, graph, model, node, tensor } from '../helpers/onnx-build.ts';

/** The outcome counts of a run, and the first case that went wrong. */
export interface OnnxFuzzSummary {
  cases: number;
  outcomes: Record<string, number>;
  bad: number;
  firstBad?: string;
}

interface Case {
  name: string;
  /** Build the folder's files (the model is `m.onnx`); returns the folders to compare. */
  build(dir: string, outside: string): Promise<void>;
}

const ext = (name: string, location: string, offset: number, n: number) => tensor({ name, dims: [n], dataType: DT.FLOAT, external: { location, offset: String(offset), length: String(4 * n) } });
const withData = (...t: number[][]) => model(graph({ nodes: [node({ opType: 'Add', inputs: ['a', 'b'], outputs: ['y'] })], initializers: t }));

/** The clean model: two tensors in w.bin, one inline. */
function clean(): Uint8Array {
  return withData(ext('a', 'w.bin', 0, 2), ext('b', 'w.bin', 8, 2), tensor({ name: 'c', dims: [1], dataType: DT.FLOAT, raw: f32le([5]) }));
}

const STRUCTURED: Case[] = [
  { name: 'alias ./w.bin', build: async (d) => writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin', 0, 2), ext('b', './w.bin', 8, 2))) },
  { name: 'alias by hard link', build: async (d) => (await link(path.join(d, 'w.bin'), path.join(d, 'h.bin')), writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin', 0, 2), ext('b', 'h.bin', 8, 2)))) },
  { name: 'location is the model', build: async (d) => writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin', 0, 2), ext('b', 'm.onnx', 0, 2))) },
  { name: 'location is the state file', build: async (d) => (await writeFile(path.join(d, '.ndiff-state.json'), '{"format":"neural-diff-state","version":1,"models":{}}'), writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin', 0, 2), ext('b', '.ndiff-state.json', 0, 2)))) },
  { name: 'location is a kept previous version', build: async (d) => (await writeFile(path.join(d, 'w.bin.ndiff-prev'), new Uint8Array(16)), writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin.ndiff-prev', 0, 2), ext('b', 'w.bin', 8, 2)))) },
  { name: 'location through a symlinked folder', build: async (d, o) => (await symlink(o, path.join(d, 'sub')), writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'sub/w.bin', 0, 2), ext('b', 'w.bin', 8, 2)))) },
  { name: 'location is a symlink', build: async (d, o) => (await symlink(path.join(o, 'w.bin'), path.join(d, 'l.bin')), writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'l.bin', 0, 2), ext('b', 'w.bin', 8, 2)))) },
  { name: 'external data is a FIFO', build: async (d) => (execFileSync('mkfifo', [path.join(d, 'p.bin')]), writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'p.bin', 0, 2), ext('b', 'w.bin', 8, 2)))) },
  { name: 'the model is a FIFO', build: async (d) => void execFileSync('mkfifo', [path.join(d, 'm.onnx')]) },
  { name: 'duplicate scale names', build: async (d) => writeFile(path.join(d, 'm.onnx'), model(graph({ nodes: [node({ opType: 'DequantizeLinear', inputs: ['q', 's'], outputs: ['y'] })], initializers: [tensor({ name: 'q', dims: [2], dataType: DT.INT8, raw: [1, 2] }), ext('a', 'w.bin', 0, 2), tensor({ name: 's', dims: [], dataType: DT.FLOAT, raw: f32le([2]) }), tensor({ name: 's', dims: [], dataType: DT.FLOAT, raw: f32le([4]) })] }))) },
  { name: 'offset past 4 GiB, past the end', build: async (d) => writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin', 2 ** 32 + 8, 2), ext('b', 'w.bin', 8, 2))) },
  { name: 'offset past 2^53', build: async (d) => writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin', 0, 2), tensor({ name: 'b', dims: [2], dataType: DT.FLOAT, external: { location: 'w.bin', offset: '9999999999999999', length: '8' } }))) },
];

const BIG: Case = {
  name: 'tensor at an offset past 4 GiB of a sparse file',
  build: async (d) => {
    const far = 2 ** 32 + 64;
    await truncate(path.join(d, 'w.bin'), far + 8);
    const fh = await open(path.join(d, 'w.bin'), 'r+');
    await fh.write(Uint8Array.from(f32le([1, 2])), 0, 8, far);
    await fh.close();
    await writeFile(path.join(d, 'm.onnx'), withData(ext('a', 'w.bin', 0, 2), ext('b', 'w.bin', far, 2)));
  },
};

/** A small deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutation(seed: number): Case {
  const r = rng(seed);
  return {
    name: `mutation seed ${seed}`,
    build: async (d) => {
      const b = Array.from(clean());
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n; i++) {
        const at = Math.floor(r() * b.length);
        const kind = r();
        if (kind < 0.6) b[at] = Math.floor(r() * 256);
        else if (kind < 0.8) b.splice(at, 1 + Math.floor(r() * 4));
        else b.splice(at, 0, ...Array.from({ length: 1 + Math.floor(r() * 4) }, () => Math.floor(r() * 256)));
      }
      await writeFile(path.join(d, 'm.onnx'), Uint8Array.from(b));
    },
  };
}

/** Run `cases` cases (the structured attacks first, then mutations from `seed`). */
export async function fuzzOnnxFiles(options: { cases: number; seed: number; big?: boolean; onCase?: (n: number, name: string) => void }): Promise<OnnxFuzzSummary> {
  const hasher = await getHasher();
  const summary: OnnxFuzzSummary = { cases: 0, outcomes: {}, bad: 0 };
  const base = new OnnxWeightStore(clean(), { external: { 'w.bin': Uint8Array.from(f32le([1, 2, 3, 4])) } });
  const payload = buildPayload(hasher, base, [{ kind: 'dense', name: 'a', values: Float32Array.of(0.5, 0.5), codec: 'f32' }], { method: 'topk', modelId: 'fuzz' }).bytes;
  const list = [...STRUCTURED, ...(options.big ? [BIG] : [])];
  for (let i = 0; list.length < options.cases; i++) list.push(mutation(options.seed + i));
  const count = (k: string) => (summary.outcomes[k] = (summary.outcomes[k] ?? 0) + 1);
  for (const [n, c] of list.slice(0, Math.max(options.cases, options.big ? STRUCTURED.length + 1 : 0)).entries()) {
    const dir = await mkdtemp(path.join(tmpdir(), 'nd-fuzz-onnx-'));
    const outside = await mkdtemp(path.join(tmpdir(), 'nd-fuzz-onnx-out-'));
    try {
      await writeFile(path.join(dir, 'w.bin'), Uint8Array.from(f32le([1, 2, 3, 4])));
      await writeFile(path.join(outside, 'w.bin'), Uint8Array.from(f32le([1, 2, 3, 4])));
      await c.build(dir, outside);
      const file = path.join(dir, 'm.onnx');
      const before = (await snapshot(dir)) + (await snapshot(outside));
      let outcome: string;
      try {
        const disk = await within(openOnnxFile(file), 30_000);
        try {
          fingerprintStore(hasher, disk);
        } finally {
          await disk.close();
        }
        const r = await within(applyToOnnxFile(file, payload, { state: null }), c === BIG ? 600_000 : 30_000);
        outcome = `ok ${r.status}`;
      } catch (e) {
        if ((e as { hang?: boolean }).hang) outcome = 'hang';
        else if (e instanceof NeuralDiffError) {
          outcome = `refused ${e.code}`;
          if ((await snapshot(dir)) + (await snapshot(outside)) !== before) outcome = 'modified on refusal';
        } else outcome = `crash ${(e as Error).name}: ${(e as Error).message.slice(0, 120)}`;
      }
      count(outcome);
      summary.cases++;
      if (outcome === 'hang' || outcome === 'modified on refusal' || outcome.startsWith('crash')) {
        summary.bad++;
        summary.firstBad ??= `${c.name}: ${outcome}`;
      }
      // The structured attacks must all be refused.
      if (n < STRUCTURED.length && !outcome.startsWith('refused') && c.name !== 'duplicate scale names') {
        summary.bad++;
        summary.firstBad ??= `${c.name}: expected a refusal, got ${outcome}`;
      }
      options.onCase?.(n, c.name);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await rm(outside, { recursive: true, force: true });
    }
  }
  return summary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.lastIndexOf(`--${name}`);
    return i < 0 ? fallback : Number(process.argv[i + 1]);
  };
  const s = await fuzzOnnxFiles({ cases: arg('cases', 300), seed: arg('seed', Date.now() % 2 ** 31), big: process.argv.includes('--big') });
  console.log(JSON.stringify(s, null, 2));
  process.exitCode = s.bad === 0 ? 0 : 1;
}

/**
 * Hostile LiteRT (`.tflite`) files on disk (part of `npm run fuzz`, or alone:
 * `node --import tsx test/fuzz/tflite-files.ts [--cases 300] [--seed N]`).
 *
 * Every case is a folder with one `.tflite` file attacked one way: structured attacks (a FIFO or
 * a symbolic link to a device as the model, a file past 2 GiB, a root or vector offset past the
 * end, a buffer aliasing another or the model's own tables), then random mutations of a valid
 * model: bytes overwritten, cut out or inserted, and uint32 words set to offsets that point
 * anywhere. Each is fingerprinted and applied with a payload for the clean model. A case passes
 * when it ends in success or in a typed refusal (a NeuralDiffError) within the time limit, and,
 * on refusal, every file of the folder is byte for byte as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { snapshot, within } from './files.ts';
import { NeuralDiffError } from '../../src/core/errors.ts';
import { seededRandom } from '../../src/core/random.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { buildPayload } from '../../src/diff/build.ts';
import { TfliteWeightStore } from '../../src/io/tflite/store.ts';
import { applyToTfliteFile, openTfliteFile } from '../../src/io/tflite/files.ts';
import { bufferOffsetField, buildTflite, f32Bytes, T } from '../helpers/tflite-build.ts';

export interface TfliteFuzzSummary {
  cases: number;
  outcomes: Record<string, number>;
  bad: number;
  firstBad?: string;
}

interface Case {
  name: string;
  /** Write the folder's model `m.tflite` (or what stands in its place). */
  build(dir: string): Promise<void>;
  /** A structured attack: must be refused. */
  refuse?: boolean;
}

function clean(offsets = false): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 3], type: T.FLOAT32 },
      { name: 'a', shape: [2, 3], type: T.FLOAT32, buffer: 1 },
      { name: 'b', shape: [2], type: T.FLOAT16, buffer: 2 },
      { name: 'q', shape: [2, 2], type: T.INT8, buffer: 3, quant: { scale: [0.5, 0.25], zeroPoint: [0, 1], dimension: 0 } },
      { name: 'y', shape: [1, 2], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes([1, 2, 3, 4, 5, 6]), new Uint8Array([0, 0x3c, 0, 0x40]), new Uint8Array([1, 2, 3, 4])],
    operators: [{ op: 9, inputs: [0, 1, 2], outputs: [4] }],
    inputs: [0],
    outputs: [4],
    ...(offsets ? { offsetBuffers: [1] } : {}),
  });
}


const write = (bytes: Uint8Array) => async (d: string) => writeFile(path.join(d, 'm.tflite'), bytes);

function poke(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const b = bytes.slice();
  new DataView(b.buffer).setUint32(at, value >>> 0, true);
  return b;
}

const STRUCTURED: Case[] = [
  { name: 'a FIFO as the model', refuse: true, build: async (d) => void execFileSync('mkfifo', [path.join(d, 'm.tflite')]) },
  { name: 'a link to /dev/zero as the model', refuse: true, build: async (d) => symlink('/dev/zero', path.join(d, 'm.tflite')) },
  {
    name: 'a file past 2 GiB',
    refuse: true,
    build: async (d) => {
      await write(clean())(d);
      await truncate(path.join(d, 'm.tflite'), 2 ** 31 + 64);
    },
  },
  { name: 'the root offset past the end', refuse: true, build: write(poke(clean(), 0, 0xfffffff0)) },
  { name: 'an empty file', refuse: true, build: write(new Uint8Array(0)) },
  { name: 'a file of another format', refuse: true, build: write(new TextEncoder().encode('{"format":"graph-model"}\n'.repeat(4))) },
  {
    name: 'an offset buffer over the model\'s own tables',
    refuse: true,
    build: async (d) => {
      const b = clean(true);
      new DataView(b.buffer).setBigUint64(bufferOffsetField(b, 1), 16n, true);
      await write(b)(d);
    },
  },
];

function mutation(seed: number): Case {
  const r = seededRandom(seed);
  return {
    name: `mutation seed ${seed}`,
    build: async (d) => {
      const base = clean(r() < 0.3);
      const b = Array.from(base);
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n; i++) {
        const at = Math.floor(r() * b.length);
        const kind = r();
        if (kind < 0.4) b[at] = Math.floor(r() * 256);
        else if (kind < 0.7 && at + 4 <= b.length) {
          // A word set to an offset: near (inside the file), far, or negative as an soffset.
          const v = r() < 0.5 ? Math.floor(r() * b.length) : r() < 0.5 ? 0xffffffff - Math.floor(r() * 64) : Math.floor(r() * 0x10000);
          b.splice(at, 4, v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
        } else if (kind < 0.85) b.splice(at, 1 + Math.floor(r() * 4));
        else b.splice(at, 0, ...Array.from({ length: 1 + Math.floor(r() * 4) }, () => Math.floor(r() * 256)));
      }
      await write(Uint8Array.from(b))(d);
    },
  };
}

/** Run `cases` cases (the structured attacks first, then mutations from `seed`). */
export async function fuzzTfliteFiles(options: { cases: number; seed: number }): Promise<TfliteFuzzSummary> {
  const hasher = await getHasher();
  const summary: TfliteFuzzSummary = { cases: 0, outcomes: {}, bad: 0 };
  const payloads = [false, true].map((offsets) =>
    buildPayload(hasher, new TfliteWeightStore(clean(offsets)), [{ kind: 'dense', name: 'a', values: Float32Array.of(0.5, 0.5, 0, 0, 0, 1), codec: 'f32' }], { method: 'topk', modelId: 'fuzz' }).bytes);
  const list = [...STRUCTURED];
  for (let i = 0; list.length < options.cases; i++) list.push(mutation(options.seed + i));
  const count = (k: string) => (summary.outcomes[k] = (summary.outcomes[k] ?? 0) + 1);
  for (const c of list.slice(0, Math.max(options.cases, STRUCTURED.length))) {
    const dir = await mkdtemp(path.join(tmpdir(), 'nd-fuzz-tflite-'));
    try {
      await c.build(dir);
      const file = path.join(dir, 'm.tflite');
      const before = await snapshot(dir);
      let outcome: string;
      try {
        const disk = await within(openTfliteFile(file), 30_000);
        try {
          fingerprintStore(hasher, disk);
        } finally {
          await disk.close();
        }
        const statuses: string[] = [];
        for (const p of payloads) {
          try {
            statuses.push((await within(applyToTfliteFile(file, p, { state: null }), 30_000)).status);
          } catch (e) {
            if (!(e instanceof NeuralDiffError) || e.code !== 'ND_BASE_MISMATCH') throw e;
          }
        }
        outcome = statuses.length ? `ok ${statuses.join(', ')}` : 'refused ND_BASE_MISMATCH';
      } catch (e) {
        if ((e as { hang?: boolean }).hang) outcome = 'hang';
        else if (e instanceof NeuralDiffError) {
          outcome = `refused ${e.code}`;
          if ((await snapshot(dir)) !== before) outcome = 'modified on refusal';
        } else outcome = `crash ${(e as Error).name}: ${(e as Error).message.slice(0, 120)}`;
      }
      count(outcome);
      summary.cases++;
      const bad = outcome === 'hang' || outcome === 'modified on refusal' || outcome.startsWith('crash') || (c.refuse && !outcome.startsWith('refused'));
      if (bad) {
        summary.bad++;
        summary.firstBad ??= `${c.name}: ${outcome}`;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return summary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.lastIndexOf(`--${name}`);
    return i < 0 ? fallback : Number(process.argv[i + 1]);
  };
  const s = await fuzzTfliteFiles({ cases: arg('cases', 300), seed: arg('seed', Date.now() % 2 ** 31) });
  console.log(JSON.stringify(s, null, 2));
  process.exitCode = s.bad ? 1 : 0;
}

/**
 * The keyword data as the benchmark trains on it: a split's rows from the data folder (data.ts),
 * the replayed rows of earlier splits, the validation split by voice, rows as one dataset; and a
 * model's weights as the benchmark keeps them on disk (base.json, --save-states). Shared by
 * bench.ts and budget-auto.ts, so both train on the same rows.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { loadNpy } from '../../src/io/npy/files.ts';
import { seededRandom, type LabelledData } from '../../src/train/data.ts';
import type { KwsManifest } from './data.ts';

/** Rows of features and labels, as a split holds them (x: [n, ...feature shape], row-major). */
export type SplitRows = { x: Float32Array; shape: number[]; y: Int32Array };

export function loadSplit(dataDir: string, manifest: KwsManifest, name: string): SplitRows & { source: Int32Array } {
  const s = manifest.splits[name];
  if (!s) throw new Error(`data has no split ${name}`);
  const x = loadNpy(join(dataDir, s.files.x));
  const y = loadNpy(join(dataDir, s.files.y));
  const source = loadNpy(join(dataDir, s.files.source));
  return { x: x.data as Float32Array, shape: x.shape, y: y.data as Int32Array, source: source.data as Int32Array };
}

/** The rows of `part` whose index passes `keep`. */
export function pick(part: SplitRows, keep: (i: number) => boolean): SplitRows {
  const per = part.shape.slice(1).reduce((a, b) => a * b, 1);
  const idx = Array.from(part.y, (_, i) => i).filter(keep);
  const x = new Float32Array(idx.length * per);
  idx.forEach((i, k) => x.set(part.x.subarray(i * per, (i + 1) * per), k * per));
  return { x, shape: [idx.length, ...part.shape.slice(1)], y: Int32Array.from(idx, (i) => part.y[i]) };
}

/**
 * `--val voices`: validation that speaks with voices training never hears, as the evaluation
 * does. The update's new rows are grouped by who spoke them (espeak-ng voice variant, or accent
 * with `--val accents`; flite voice; real speaker); seeded whole groups are held out until they
 * hold 15% of those rows, leaving at least two groups to train on; a seeded 10% of the replay rows
 * joins them. With fewer than three groups (update 4: two real training speakers) it returns
 * undefined and the default split is used.
 */
export function voiceSplit(manifest: KwsManifest, fresh: ReturnType<typeof loadSplit>, replay: SplitRows[], seed: number, valMode: 'voices' | 'accents') {
  const voiceOf = (id: number) => {
    const s = manifest.sources[id];
    return s.kind === 'espeak-ng' ? (valMode === 'accents' ? `espeak:${s.accent}` : `espeak:${s.variant}`) : s.kind === 'flite' ? `flite:${s.voice}` : s.kind === 'real' ? `real:${s.speaker}` : 'other';
  };
  const groups = new Map<string, number>();
  for (const id of fresh.source) {
    const v = voiceOf(id);
    if (v !== 'other') groups.set(v, (groups.get(v) ?? 0) + 1);
  }
  if (groups.size < 3) return undefined;
  const random = seededRandom(seed);
  const order = [...groups.keys()].sort().map((g) => ({ g, r: random() })).sort((a, b) => a.r - b.r).map((o) => o.g);
  const held = new Set<string>();
  let rows = 0;
  for (const g of order) {
    if (rows >= 0.15 * fresh.y.length || groups.size - held.size <= 2) break;
    held.add(g);
    rows += groups.get(g) as number;
  }
  const isHeld = (i: number) => held.has(voiceOf(fresh.source[i]));
  const replayVal = replay.map((part) => Array.from(part.y, () => random() < 0.1));
  return {
    held: [...held],
    train: [pick(fresh, (i) => !isHeld(i)), ...replay.map((part, k) => pick(part, (i) => !replayVal[k][i]))],
    validation: [pick(fresh, isHeld), ...replay.map((part, k) => pick(part, (i) => replayVal[k][i]))],
  };
}

/** Rows of `parts` as one block of rows, in order. */
export function concatRows(parts: SplitRows[]): SplitRows {
  const n = parts.reduce((a, p) => a + p.y.length, 0);
  const per = parts[0].shape.slice(1).reduce((a, b) => a * b, 1);
  const x = new Float32Array(n * per);
  const y = new Int32Array(n);
  let k = 0;
  for (const p of parts) {
    x.set(p.x.subarray(0, p.y.length * per), k * per);
    y.set(p.y, k);
    k += p.y.length;
  }
  return { x, shape: [n, ...parts[0].shape.slice(1)], y };
}

/** Rows of `parts` as one dataset; with `replayAfterFirst`, the rows of every part after the first are marked replayed (old data: what distillation keeps). */
export function toLabelled(parts: SplitRows[], replayAfterFirst = false): LabelledData {
  const { x, shape, y } = concatRows(parts);
  const replay = replayAfterFirst ? new Uint8Array(y.length).fill(1, parts[0].y.length) : undefined;
  return { x: tf.tensor(x, shape, 'float32'), y, ...(replay ? { replay } : {}) };
}

/** A seeded sample of `count` rows from earlier training splits (replay against forgetting). */
export function replaySample(dataDir: string, manifest: KwsManifest, names: string[], count: number, seed: number) {
  if (!names.length || count <= 0) return [];
  const parts = names.map((n) => loadSplit(dataDir, manifest, n));
  const per = parts[0].shape.slice(1).reduce((a, b) => a * b, 1);
  const random = seededRandom(seed);
  const total = parts.reduce((a, p) => a + p.y.length, 0);
  const take = Math.min(count, total);
  const chosen = new Set<number>();
  while (chosen.size < take) chosen.add(Math.floor(random() * total));
  const idx = [...chosen].sort((a, b) => a - b);
  const x = new Float32Array(take * per);
  const y = new Int32Array(take);
  let offset = 0;
  let pi = 0;
  idx.forEach((g, k) => {
    while (g >= offset + parts[pi].y.length) offset += parts[pi++].y.length;
    const local = g - offset;
    x.set(parts[pi].x.subarray(local * per, (local + 1) * per), k * per);
    y[k] = parts[pi].y[local];
  });
  return [{ x, shape: [take, ...parts[0].shape.slice(1)], y }];
}

/** A model's weights as this benchmark keeps them on disk (base.json, states): name -> shape and base64 float32. */
export function readWeights(file: string): MemoryWeightStore {
  const t = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { shape: number[]; b64: string }>;
  return new MemoryWeightStore(Object.entries(t).map(([n, v]) => {
    const buf = Buffer.from(v.b64, 'base64');
    return [n, { shape: v.shape, data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)) }] as [string, { shape: number[]; data: Float32Array }];
  }));
}

export function writeWeights(file: string, store: MemoryWeightStore): void {
  const out: Record<string, { shape: number[]; b64: string }> = {};
  for (const t of store.list()) {
    const v = store.values(t.name);
    out[t.name] = { shape: [...t.shape], b64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  }
  writeFileSync(file, JSON.stringify(out));
}

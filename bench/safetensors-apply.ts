/**
 * What crash safety costs a `.safetensors` apply, side by side in one process: the same payload
 * (every weight of the last tenth of the tensors changed, exact) applied to copies of one file by
 *
 * - `applyToSafetensorsFile` (`ndiff apply`: journal, kept previous version, read-back of the new
 *   file against the target, switch, confirmation, replay state and model id beside the file);
 * - `applyPayload(await openSafetensorsFile(path), payload)`: the in-memory patch written back by an
 *   atomic rewrite (temp file, fsync, rename, folder fsync), no journal, no replay state;
 * - the floor: the file's bytes written by that atomic rewrite alone (what any durable rewrite
 *   of the file costs).
 *
 * The three run in turn within each round (the order rotating), the copies made before each
 * round and not timed; medians of the wall times and their ratios are printed.
 *
 *   node --conditions=neural-diff-source --import tsx bench/safetensors-apply.ts [--mib 32] [--rounds 7]
 */
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { applyPayload } from '../src/apply/index.ts';
import { diff } from '../src/front/diff.ts';
import { writeFileAtomically } from '../src/io/durable/durable.ts';
import { applyToSafetensorsFile, openSafetensorsFile, writeSafetensorsFile } from '../src/io/safetensors/files.ts';
import { seededRandom } from '../src/core/random.ts';

const argv = process.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const mib = flag('--mib', 32);
const rounds = flag('--rounds', 7);

const dir = await mkdtemp(path.join(os.tmpdir(), 'nd-bench-safetensors-'));
try {
  const tensorsCount = 8;
  const perTensor = Math.floor((mib * 2 ** 20) / 4 / tensorsCount);
  const r = seededRandom(5);
  const base: Record<string, { shape: number[]; data: Float32Array }> = {};
  const target: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (let t = 0; t < tensorsCount; t++) {
    const data = Float32Array.from({ length: perTensor }, () => r() * 2 - 1);
    base[`layer${t}.weight`] = { shape: [perTensor], data };
    const changed = data.slice();
    // Every weight of the last tenth of the tensors (the last tensor and a part of the one before).
    const from = Math.floor(perTensor * tensorsCount * 0.9);
    for (let i = 0; i < perTensor; i++) if (t * perTensor + i >= from) changed[i] += 0.01;
    target[`layer${t}.weight`] = { shape: [perTensor], data: changed };
  }
  const v1 = path.join(dir, 'v1.safetensors');
  const v2 = path.join(dir, 'v2.safetensors');
  await writeSafetensorsFile(v1, base);
  await writeSafetensorsFile(v2, target);
  const payloadFile = path.join(dir, 'v1-v2.ndiff');
  await diff({ base: v1, target: v2, budget: 'all', modelId: 'bench', out: payloadFile });
  const payload = new Uint8Array(await readFile(payloadFile));
  const baseBytes = new Uint8Array(await readFile(v1));

  const kinds = ['crash-safe', 'in-memory', 'floor'] as const;
  const times: Record<(typeof kinds)[number], number[]> = { 'crash-safe': [], 'in-memory': [], floor: [] };
  for (let round = 0; round < rounds; round++) {
    const files = { 'crash-safe': path.join(dir, `a${round}`, 'm.safetensors'), 'in-memory': path.join(dir, `b${round}`, 'm.safetensors'), floor: path.join(dir, `c${round}`, 'm.safetensors') };
    for (const f of Object.values(files)) {
      await mkdir(path.dirname(f), { recursive: true });
      await copyFile(v1, f);
    }
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(k + round) % kinds.length];
      const t0 = performance.now();
      if (kind === 'crash-safe') await applyToSafetensorsFile(files[kind], payload);
      else if (kind === 'in-memory') await applyPayload(await openSafetensorsFile(files[kind]), payload);
      else await writeFileAtomically(files[kind], baseBytes);
      times[kind].push(performance.now() - t0);
    }
    for (const f of Object.values(files)) await rm(path.dirname(f), { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const m = Object.fromEntries(kinds.map((k) => [k, median(times[k])])) as Record<(typeof kinds)[number], number>;
  console.log(`${mib} MiB safetensors file (${tensorsCount} F32 tensors), payload ${payload.length} bytes (every weight of the last 10% changed), ${rounds} rounds, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const k of kinds) console.log(`${k.padEnd(11)} median ${m[k].toFixed(1)} ms  (all: ${times[k].map((x) => x.toFixed(0)).join(' ')})`);
  console.log(`crash-safe / in-memory: ${(m['crash-safe'] / m['in-memory']).toFixed(2)}x; crash-safe / floor: ${(m['crash-safe'] / m.floor).toFixed(2)}x; in-memory / floor: ${(m['in-memory'] / m.floor).toFixed(2)}x`);
} finally {
  await rm(dir, { recursive: true, force: true });
}

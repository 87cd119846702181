/**
 * The on-disk apply of two checkouts side by side in one process: their `applyToModelDir`, on
 * the same two diffs as `bench:apply`'s disk rows (10% of every tensor's weights; every weight
 * of the last 10% of the tensors, dense f16; 8M weights in 8 shards of 4 MiB, digests and model
 * id recorded), interleaved apply by apply, so the machine's noise falls on both alike. Prints
 * min and median wall and CPU time.
 *
 * Both are imported the same way, from checkouts other than this one: the checkout whose
 * modules this script's own set-up code uses (writing the folders, hashing) applied 4-11 ms
 * faster per apply than another copy of the very same code (measured; the cause was not
 * pinned down), so comparing this tree against another would favour this tree.
 *
 *   git worktree add /tmp/before <commit> && ln -s "$PWD/node_modules" /tmp/before/node_modules
 *   git worktree add /tmp/after <commit> && ln -s "$PWD/node_modules" /tmp/after/node_modules
 *   node --conditions=neural-diff-source --import tsx bench/disk-side-by-side.ts --old /tmp/before --new /tmp/after [--reps 12]
 */
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getHasher } from '../src/core/hasher.ts';
import { seededRandom } from '../src/core/random.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { decodePayload } from '../src/core/format.ts';
import { writeModelDir } from '../src/io/tfjs/index.ts';
import { recordModelDirDigests } from '../src/io/tfjs/recorded-digests.ts';
import type * as ModelDirUpdate from '../src/io/tfjs/folder-update.ts';

const { values: args } = parseArgs({ options: { old: { type: 'string' }, new: { type: 'string' }, reps: { type: 'string', default: '12' } } });
const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
if (!args.old || !args.new || [args.old, args.new].some((t) => path.resolve(t) === here)) {
  console.error('usage: bench/disk-side-by-side.ts --old <checkout> --new <checkout> [--reps N]: two checkouts of neural-diff other than this one (see the header)');
  process.exit(2);
}
const OLD = (await import(path.resolve(args.old, 'src/io/tfjs/folder-update.ts'))) as typeof ModelDirUpdate;
const NEW = (await import(path.resolve(args.new, 'src/io/tfjs/folder-update.ts'))) as typeof ModelDirUpdate;
const reps = Number(args.reps);

const WEIGHTS = 8 << 20;
const TENSOR = 1 << 18;
const r = seededRandom(1);
const base = new MemoryWeightStore(Array.from({ length: WEIGHTS / TENSOR }, (_, i) => [`layer_${String(i).padStart(2, '0')}/kernel`, { shape: [TENSOR / 1024, 1024], data: Float32Array.from({ length: TENSOR }, () => (r() - 0.5) * 0.2) }] as [string, { shape: number[]; data: Float32Array }]));
const names = base.list().map((t) => t.name);
const cases: Record<string, PatchSpec[]> = { spread: [], 'last layers': [] };
for (const name of names) {
  const positions: number[] = [];
  for (let i = 0; i < TENSOR; i++) if (r() < 0.1) positions.push(i);
  cases.spread.push({ kind: 'sparse', name, positions: Uint32Array.from(positions), values: Float32Array.from(positions, () => (r() - 0.5) * 0.02), codec: 'f16' } as unknown as PatchSpec);
}
for (const name of names.slice(Math.floor(names.length * 0.9))) {
  cases['last layers'].push({ kind: 'dense', name, values: Float32Array.from({ length: TENSOR }, () => (r() - 0.5) * 0.02), codec: 'f16' } as PatchSpec);
}
const hasher = await getHasher();
const graph = { format: 'graph-model', generatedBy: 'bench', modelTopology: {} };
const tensors = new Map(base.list().map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }]));
const root = await mkdtemp(path.join(os.tmpdir(), 'ndiff-side-by-side-'));
const stat = (a: number[]) => {
  const b = a.slice(1).sort((x, y) => x - y); // the first apply of each warms up
  return `min ${b[0].toFixed(1)} ms, median ${b[b.length >> 1].toFixed(1)} ms`;
};
try {
  for (const [key, specs] of Object.entries(cases)) {
    const built = buildPayload(hasher, base, specs, { method: 'sparse' });
    const modelId = decodePayload(built.bytes).header.modelId;
    const wall: Record<string, number[]> = { old: [], new: [] };
    const cpu: Record<string, number[]> = { old: [], new: [] };
    for (let i = 0; i < reps; i++) {
      for (const [label, mod] of (i % 2 ? [['new', NEW], ['old', OLD]] : [['old', OLD], ['new', NEW]]) as [string, typeof NEW][]) {
        const dir = path.join(root, `${label}-${i}`);
        await writeModelDir(dir, graph, tensors);
        await recordModelDirDigests(dir, { hasher });
        await mod.recordFolderModelId(dir, modelId);
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const res = await mod.applyToModelDir(dir, built.bytes, { state: null, hasher, baseCheck: 'recorded' });
        wall[label].push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu[label].push((c.user + c.system) / 1000);
        if (res.status !== 'applied') throw new Error(`${label}: ${res.status}`);
        await rm(dir, { recursive: true });
      }
    }
    console.log(`${key}: old ${stat(wall.old)} (CPU ${stat(cpu.old)}) | new ${stat(wall.new)} (CPU ${stat(cpu.new)})`);
  }
} finally {
  await rm(root, { recursive: true, force: true });
}

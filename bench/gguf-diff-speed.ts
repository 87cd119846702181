/**
 * How fast `ndiff diff` makes the exact payload of two large GGUF models (issue 79's target: a
 * 2 GB pair in minutes, at least 50 MB/s of the model), on generated Q8_0 pairs
 * (`bench/gguf-generated.ts`: sparse files, `--share` of the blocks changed in runs of 64), two
 * kinds of change: every changed block rewritten (a block re-quantized: most of its bytes differ)
 * and a few bytes of each changed block changed (`--few`, default 4, plus its scale).
 *
 * Each contender runs `diffGgufModels` as `ndiff diff --budget all` does (each chunk the smaller
 * of the byte delta and the range-coded XOR) in a child process of its own, the files opened
 * from disk; the figure is the child's wall time from opening the files to the payload in memory,
 * and the model's size over it (MB/s of the model; both files are read whole). With `--against
 * DIR` (another checkout with its node_modules) that checkout's encoder runs too, alternated with
 * this one's in the same run, and the two payloads' sizes and SHA-256 are printed side by side.
 * Then, untimed, this checkout's payload is applied in place to a copy of v1 and the result
 * compared with v2 byte for byte (the bench exits 1 otherwise).
 *
 * With `--threads 1,2,...` this checkout also runs with that many worker threads coding the chunks
 * (`ndiff diff --threads`), and every count must write the same payload (the bench exits 1
 * otherwise).
 *
 * With `--lossy SHARE` the diff is the on-grid (lossy) one, as `ndiff diff --budget B` makes it of
 * a GGUF pair (`ongridGgufDiff`), under a budget of SHARE of the model's size; the payload applied
 * in place must then reach the target it names (the mixed version), not v2.
 *
 *   npm run bench:gguf-diff-speed -- [--mib 2048] [--share 0.1] [--few 4] [--runs 1] [--threads 1,2] [--lossy 0.05] [--against DIR] [--quick]
 *
 * `--quick` (a 64 MiB pair, one run, threads 1,2) is what `test/gguf-diff-speed-bench.test.ts` runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { applyToGgufFile } from '../src/io/gguf/in-place.ts';
import { writeGeneratedQ8Pair, type GeneratedPair } from './gguf-generated.ts';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};

/** What a child prints: its time, the payload's size and digest, and its chunk count. */
interface DiffFigures {
  seconds: number;
  payloadBytes: number;
  sha256: string;
  chunks: number;
}

if (process.argv[2] === '--child') {
  // node bench/gguf-diff-speed.ts --child CHECKOUT V1 V2 PAYLOAD_OUT THREADS LOSSY_BUDGET_BYTES (0: exact)
  const [, , , checkout, v1, v2, payloadOut, threadsArg, lossyArg] = process.argv;
  const threads = Number(threadsArg);
  const lossyBudget = Number(lossyArg ?? 0);
  const src = (p: string) => import(path.join(checkout, 'src', p));
  const [{ getHasher }, { diffGgufModels }, { openGgufModel }] = await Promise.all([src('core/hasher.ts'), src('io/gguf/diff.ts'), src('io/gguf/files.ts')]);
  // Worker threads as `ndiff diff --threads N` starts them (their start is timed too).
  const coders = threads > 1 ? new (await src('io/gguf/chunk-coders.ts')).GgufChunkCoders(threads) : undefined;
  const hasher = await getHasher();
  const start = process.hrtime.bigint();
  const a = openGgufModel(v1);
  const b = openGgufModel(v2);
  const options = { modelId: 'bench', sequence: 1, createdBy: 'bench', ...(coders ? { coders } : {}) };
  const made = lossyBudget > 0
    ? (await src('gguf-diff/encoder.ts')).ongridGgufDiff(hasher, a.model, b.model, lossyBudget, options)
    : diffGgufModels(hasher, a.model, b.model, options);
  a.close();
  b.close();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  coders?.close();
  writeFileSync(payloadOut, made.payload);
  const figures: DiffFigures = { seconds, payloadBytes: made.payload.length, sha256: createHash('sha256').update(made.payload).digest('hex'), chunks: made.chunks };
  process.stdout.write(`${JSON.stringify(figures)}\n`);
  process.exit(0);
}

const quick = process.argv.includes('--quick');
const mib = Number(arg('--mib', quick ? '64' : '2048'));
const share = Number(arg('--share', '0.1'));
const few = Number(arg('--few', '4'));
const runs = Math.max(1, Number(arg('--runs', '1')));
const threadCounts = arg('--threads', quick ? '1,2' : '1').split(',').map(Number);
const against = process.argv.includes('--against') ? path.resolve(arg('--against', '')) : undefined;
const lossy = Number(arg('--lossy', '0'));
const here = path.join(import.meta.dirname, '..');
if (!Number.isFinite(mib) || mib <= 0 || !(share > 0 && share <= 1) || !(lossy >= 0 && lossy < 1) || !(few >= 1 && few <= 33) || threadCounts[0] !== 1 || !threadCounts.every((t) => Number.isInteger(t) && t >= 1)) {
  console.error('gguf-diff-speed: --mib must be a positive number, --share in (0, 1], --lossy in [0, 1), --few from 1 to 33, --threads a list of thread counts starting with 1 (1,2)');
  process.exit(2);
}

/** One diff of `pair` by `checkout`'s encoder, in a child. */
function one(checkout: string, pair: GeneratedPair, payloadOut: string, threads = 1): DiffFigures {
  const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', import.meta.filename, '--child', checkout, pair.v1, pair.v2, payloadOut, String(threads), String(Math.floor(lossy * pair.size))], { encoding: 'utf8', maxBuffer: 1 << 24, cwd: checkout });
  if (r.status !== 0) throw new Error(`the diff of ${checkout} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as DiffFigures;
}

const work = mkdtempSync(path.join(tmpdir(), 'ndiff-bench-gguf-diff-'));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  if (lossy > 0) console.log(`On-grid (lossy) payloads within ${(lossy * 100).toFixed(1)}% of the model's size:\n`);
  console.log('| pair | encoder | median time | MB/s of the model | payload bytes | payload SHA-256 |');
  console.log('|---|---|---:|---:|---:|---|');
  const rows: { kind: string; encoder: string; seconds: number; payloadBytes: number }[] = [];
  for (const [kind, bytesPerBlock] of [['rewritten', undefined], [`${few} bytes`, few]] as const) {
    const dir = path.join(work, kind.replace(/ /g, '-'));
    mkdirSync(dir);
    const pair = writeGeneratedQ8Pair(dir, { mib, share, ...(bytesPerBlock === undefined ? {} : { bytesPerBlock }) });
    console.error(`pair: ${pair.description}`);
    const mine: DiffFigures[][] = threadCounts.map(() => []);
    const theirs: DiffFigures[] = [];
    for (let i = 0; i < runs; i++) {
      // Alternated: the other checkout first every other run, the thread counts in turn.
      if (against && i % 2 === 0) theirs.push(one(against, pair, path.join(dir, 'theirs.ndiff')));
      threadCounts.forEach((t, k) => mine[k].push(one(here, pair, path.join(dir, t === 1 ? 'p.ndiff' : `p-${t}.ndiff`), t)));
      if (against && i % 2 === 1) theirs.push(one(against, pair, path.join(dir, 'theirs.ndiff')));
    }
    // Every thread count writes the same bytes.
    for (const [k, t] of threadCounts.entries()) {
      if (mine[k][0].sha256 !== mine[0][0].sha256) throw new Error(`${pair.description}: the payload at ${t} threads differs from the one at ${threadCounts[0]}`);
    }
    // Not timed: this checkout's payload applied in place to a copy of v1 (as `ndiff apply` does;
    // it checks the target's digest), then, exact, compared with v2 byte for byte.
    const device = path.join(dir, 'device.gguf');
    execFileSync('cp', ['--sparse=always', pair.v1, device]);
    const applied = await applyToGgufFile(device, path.join(dir, 'p.ndiff'), { state: null });
    if (lossy > 0) console.error(`applied in place: ${pair.description}: reaches the on-grid target ${applied.targetFingerprint} (${(mine[0][0].payloadBytes / pair.size * 100).toFixed(1)}% of the model)`);
    else {
      execFileSync('cmp', ['-s', device, pair.v2]);
      console.error(`applied in place: ${pair.description}: reaches v2 byte for byte`);
    }
    rmSync(device);
    const contenders: [string, DiffFigures[]][] = [...threadCounts.map((t, k): [string, DiffFigures[]] => [t === 1 ? 'this checkout' : `this checkout, ${t} threads`, mine[k]]), ...(against ? [[against, theirs] as [string, DiffFigures[]]] : [])];
    for (const [encoder, figures] of contenders) {
      const s = median(figures.map((f) => f.seconds));
      const f = figures[0];
      rows.push({ kind, encoder, seconds: s, payloadBytes: f.payloadBytes });
      console.log(`| ${pair.description} | ${encoder} | ${s.toFixed(2)} s | ${(pair.size / 1e6 / s).toFixed(1)} | ${f.payloadBytes} | ${f.sha256.slice(0, 16)} |`);
    }
  }
  for (const kind of new Set(rows.map((r) => r.kind))) {
    const [one1, ...others] = rows.filter((r) => r.kind === kind);
    for (const o of others) {
      if (o.encoder === against) console.log(`${kind}: this checkout in ${(one1.seconds / o.seconds).toFixed(3)}x the time of ${against}, its payload ${(one1.payloadBytes / o.payloadBytes).toFixed(4)}x the bytes`);
      else console.log(`${kind}: ${o.encoder} in ${(o.seconds / one1.seconds).toFixed(3)}x the time of one thread, the same payload`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

/**
 * The disk apply of two checkouts side by side, for finding what made one slower: the same
 * spread payload (10% of the weights of every tensor, f16, as bench/apply.ts's "spread" row)
 * applied by `applyToModelDir` of each checkout to the same on-disk model (8M weights, 8 shards
 * of 4 MiB, digests and model id recorded as after a first apply), in child processes that
 * alternate A, B, A, B... so both see the same machine load.
 *
 *   node --conditions=neural-diff-source --import tsx bench/apply-disk-between.ts <checkout A> <checkout B> [--rounds 6] [--applies 8] [--fresh] [--strace]
 *
 * Each child writes `--applies` copies of the base folder (not measured: all before the first
 * apply, or with `--fresh` each just before its apply, as bench/apply.ts does), applies the
 * payload to each and reports the CPU time of the process (user + system, libuv's threads
 * included) and the wall time of every apply, the garbage collections, and the calls and time
 * of every file operation the applier makes through its FileOps (fsyncs of folders, renames,
 * links, unlinks, new files written with fsync). With `--strace` (strace installed) each
 * checkout also runs two applies under `strace -ff` (every thread), and their system calls on
 * the model folders (from a mark the child leaves where the applies begin, the clean-up after
 * them included) are compared call by call and file by file, with the bytes read and written.
 * `ND_PROFILE=file` on a child (`--child <checkout> <n>
 * prepared|fresh apply`) writes a CPU profile of its applies alone.
 *
 * Prints medians per checkout and the B/A ratios. Run inside one checkout; both must have
 * node_modules.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const argv = process.argv.slice(2);
const fresh = argv.includes('--fresh');
const flag = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};

type ChildReport = { cpuMs: number[]; wallMs: number[]; ops: Record<string, { calls: number; ms: number }>; payloadBytes: number; payloadSha: string; gc: { count: number; ms: number; major: number } };

async function child(root: string, applies: number, fresh: boolean, apply: boolean): Promise<void> {
  const imp = (p: string) => import(path.join(root, p));
  const { seededRandom } = await imp('src/core/random.ts');
  const { MemoryWeightStore } = await imp('src/core/weight-store.ts');
  const { buildPayload } = await imp('src/diff/build.ts');
  const { writeModelDir } = await imp('src/io/tfjs/index.ts');
  const { TFJS_FRAME, tfjsFrameValues } = await imp('src/io/tfjs/frame.ts');
  const { applyToModelDir, recordFolderModelId } = await imp('src/io/tfjs/folder-update.ts');
  const { recordModelDirDigests } = await imp('src/io/tfjs/recorded-digests.ts');
  const { nodeFileOps } = await imp('src/io/durable/durable.ts');
  const { decodePayload } = await imp('src/core/format.ts');
  const { getHasher } = await imp('src/core/hasher.ts');
  const { createHash } = await import('node:crypto');
  const hasher = await getHasher();

  // The model and payload of bench/apply.ts's disk "spread" row.
  const r = seededRandom(4);
  const tensors: [string, { shape: number[]; data: Float32Array }][] = [];
  for (let i = 0; i < 32; i++) {
    const data = new Float32Array(1 << 18);
    for (let k = 0; k < data.length; k++) data[k] = (r() - 0.5) * 0.2;
    tensors.push([`layer_${String(i).padStart(2, '0')}/kernel`, { shape: [256, 1024], data }]);
  }
  const rs = seededRandom(5);
  const specs = tensors.map(([name, t]) => {
    const pos: number[] = [];
    for (let i = 0; i < t.data.length; i++) if (rs() < 0.1) pos.push(i);
    return { kind: 'sparse', name, positions: Uint32Array.from(pos), values: Float32Array.from(pos, () => (rs() - 0.5) * 0.02), codec: 'f16' };
  });
  const graph = { format: 'graph-model', generatedBy: 'bench', modelTopology: {} };
  const framed = new MemoryWeightStore([...tensors, [TFJS_FRAME, { shape: [8], data: tfjsFrameValues({ ...graph, weightsManifest: [] }, () => new Uint8Array()), patchable: false }]]);
  const built = buildPayload(hasher, framed, specs, { method: 'sparse' });
  const modelId = decodePayload(built.bytes).header.modelId;
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'nd-between-'));
  // Each apply's folder: written (and its digests and model id recorded, as after a first
  // apply) all before the first apply, or, with `fresh`, just before its own apply as
  // bench/apply.ts does (its writes may then still be on their way to the disk).
  const prepare = async (i: number): Promise<string> => {
    const d = path.join(tmp, `m${i}`);
    await writeModelDir(d, graph, new Map(tensors));
    await recordModelDirDigests(d, { hasher });
    await recordFolderModelId(d, modelId);
    return d;
  };
  const dirs: string[] = [];
  if (!fresh) for (let i = 0; i < applies; i++) dirs.push(await prepare(i));
  // Every file operation the applier makes, counted and timed.
  const ops: Record<string, { calls: number; ms: number }> = {};
  const timed = Object.fromEntries(Object.entries(nodeFileOps).map(([k, fn]) => [k, async (...a: unknown[]) => {
    const t0 = performance.now();
    try {
      return await (fn as (...x: unknown[]) => Promise<unknown>)(...a);
    } finally {
      const o = (ops[k] ??= { calls: 0, ms: 0 });
      o.calls++;
      o.ms += performance.now() - t0;
    }
  }]));
  const cpuMs: number[] = [];
  const wallMs: number[] = [];
  // ND_PROFILE=<file>: a CPU profile of the applies alone (not the setup), for per-function times.
  const profileFile = process.env.ND_PROFILE;
  const { Session } = await import('node:inspector/promises');
  const session = profileFile ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
  }
  // A mark in a system call trace (strace -f) where the applies begin.
  const { existsSync } = await import('node:fs');
  existsSync('/nonexistent/nd-applies-begin');
  // Garbage collections during the applies: count and time.
  const { PerformanceObserver } = await import('node:perf_hooks');
  const gc = { count: 0, ms: 0, major: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.count++;
      gc.ms += e.duration;
      if ((e as { detail?: { kind?: number } }).detail?.kind === 4) gc.major++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  for (let i = 0; i < applies; i++) {
    const d = fresh ? await prepare(i) : dirs[i];
    if (!apply) continue;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const res = await applyToModelDir(d, built.bytes, { state: null, hasher, fileOps: timed });
    wallMs.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpuMs.push((c.user + c.system) / 1000);
    if (res.status !== 'applied') throw new Error(`expected the payload to apply, got ${res.status}`);
  }
  await new Promise((res) => setImmediate(res));
  obs.disconnect();
  if (session && profileFile) {
    const { profile } = await session.post('Profiler.stop');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(profileFile, JSON.stringify(profile));
    session.disconnect();
  }
  for (const o of Object.values(ops)) o.calls /= Math.max(1, applies);
  await rm(tmp, { recursive: true, force: true });
  const report: ChildReport = { cpuMs, wallMs, ops, payloadBytes: built.bytes.length, payloadSha: createHash('sha256').update(built.bytes).digest('hex').slice(0, 16), gc: { count: gc.count / applies, ms: gc.ms / applies, major: gc.major / applies } };
  console.log(JSON.stringify(report));
}

function runChild(root: string, applies: number, strace?: string): ChildReport {
  const node = [process.execPath, '--conditions=neural-diff-source', '--import', 'tsx', self, '--child', root, String(applies), fresh ? 'fresh' : 'prepared', 'apply'];
  const cmd = strace ? ['strace', '-ff', '-ttt', '-y', '-qq', '-o', strace, ...node] : node;
  const out = execFileSync(cmd[0], cmd.slice(1), { encoding: 'utf8', cwd: root, maxBuffer: 1 << 24 });
  return JSON.parse(out.trim().split('\n').pop() as string) as ChildReport;
}

/**
 * The system calls on the applies' model folders in a `strace -ff -ttt -y` trace (one file per
 * thread under `prefix`), from the child's mark on: calls per (call, file) with the folder's and
 * the writer's random parts of names left out, and the bytes read and written.
 */
function folderCalls(prefix: string): { calls: Map<string, number>; read: number; written: number } {
  const files = readdirSync(path.dirname(prefix)).filter((f) => f.startsWith(`${path.basename(prefix)}.`)).map((f) => path.join(path.dirname(prefix), f));
  const texts = files.map((f) => readFileSync(f, 'utf8'));
  let from = Infinity;
  for (const t of texts) {
    const line = t.split('\n').find((l) => l.includes('nd-applies-begin'));
    if (line) from = Math.min(from, Number(line.split(' ')[0]));
  }
  const calls = new Map<string, number>();
  let read = 0;
  let written = 0;
  for (const t of texts) {
    for (const line of t.split('\n')) {
      const m = /^([\d.]+) (\w+)\((.*)\)\s+= (-?\d+)/.exec(line);
      if (!m || Number(m[1]) < from) continue;
      const where = /[<"](\/[^>"]*nd-between-[^>"]*)[>"]/.exec(m[3])?.[1];
      if (!where) continue;
      const name = where.replace(/^.*nd-between-\w+(\/m\d+)?/, '').replace(/[0-9a-f]{16}/g, 'H').replace(/\d+-[0-9a-f]{12}/g, 'ID').replace(/shard\d+of\d+/g, 'shardN');
      const key = `${m[2]} ${name || '(folder)'}`;
      calls.set(key, (calls.get(key) ?? 0) + 1);
      const n = Number(m[4]);
      if (n > 0 && /^p?read/.test(m[2])) read += n;
      if (n > 0 && /^p?write/.test(m[2])) written += n;
    }
  }
  return { calls, read, written };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const [a, b] = argv.filter((x, i) => !x.startsWith('--') && argv[i - 1] !== '--rounds' && argv[i - 1] !== '--applies').map((p) => path.resolve(p));
  if (!a || !b) throw new Error('usage: apply-disk-between.ts <checkout A> <checkout B> [--rounds N] [--applies N] [--fresh] [--strace]');
  const rounds = flag('--rounds', 6);
  const applies = flag('--applies', 8);
  if (!(rounds >= 1 && applies >= 2)) throw new Error(`expected --rounds of at least 1 and --applies of at least 2 (the first apply of each child is a warm-up), found ${rounds} and ${applies}`);
  const all = new Map<string, ChildReport[]>([[a, []], [b, []]]);
  console.log(`A ${a}\nB ${b}\n${rounds} rounds of ${applies} applies each, alternating, ${fresh ? 'each folder written just before its apply' : 'the folders written before the first apply'}; load ${os.loadavg()[0].toFixed(2)}`);
  for (let i = 0; i < rounds; i++) {
    for (const root of i % 2 ? [b, a] : [a, b]) all.get(root)!.push(runChild(root, applies));
  }
  const summary = (root: string) => {
    const reps = all.get(root)!;
    const cpu = reps.flatMap((x) => x.cpuMs.slice(1));
    const wall = reps.flatMap((x) => x.wallMs.slice(1));
    const ops: Record<string, { calls: number; ms: number }> = {};
    for (const rep of reps) for (const [k, o] of Object.entries(rep.ops)) {
      const t = (ops[k] ??= { calls: 0, ms: 0 });
      t.calls = o.calls;
      t.ms += o.ms / reps.length / applies;
    }
    return { cpu: median(cpu), wall: median(wall), ops, payload: `${reps[0].payloadBytes} B ${reps[0].payloadSha}` };
  };
  // Each round's pair (both children ran back to back): B/A of their medians, so a change of the
  // machine's load between rounds cancels out.
  const pairs = all.get(a)!.map((ra, i) => {
    const rb = all.get(b)![i];
    return { cpu: median(rb.cpuMs.slice(1)) / median(ra.cpuMs.slice(1)), wall: median(rb.wallMs.slice(1)) / median(ra.wallMs.slice(1)) };
  });
  console.log(`per round B/A, CPU: ${pairs.map((p) => p.cpu.toFixed(2)).join(' ')}; median ${median(pairs.map((p) => p.cpu)).toFixed(3)}`);
  console.log(`per round B/A, wall: ${pairs.map((p) => p.wall.toFixed(2)).join(' ')}; median ${median(pairs.map((p) => p.wall)).toFixed(3)}`);
  const sa = summary(a);
  const sb = summary(b);
  console.log(`payload A ${sa.payload}, B ${sb.payload}`);
  console.log(`median CPU ms per apply (first apply of each child left out): A ${sa.cpu.toFixed(1)}, B ${sb.cpu.toFixed(1)}: B/A ${(sb.cpu / sa.cpu).toFixed(3)}`);
  console.log(`median wall ms per apply: A ${sa.wall.toFixed(1)}, B ${sb.wall.toFixed(1)}: B/A ${(sb.wall / sa.wall).toFixed(3)}`);
  for (const k of [...new Set([...Object.keys(sa.ops), ...Object.keys(sb.ops)])].sort()) {
    const x = sa.ops[k] ?? { calls: 0, ms: 0 };
    const y = sb.ops[k] ?? { calls: 0, ms: 0 };
    console.log(`  FileOps.${k}: calls per apply A ${x.calls}, B ${y.calls}; ms per apply A ${x.ms.toFixed(2)}, B ${y.ms.toFixed(2)}`);
  }
  if (argv.includes('--strace')) {
    // Two applies of each checkout under strace, every thread apart (no call split across lines).
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'nd-between-strace-'));
    const seen = new Map<string, ReturnType<typeof folderCalls>>();
    for (const root of [a, b]) {
      const prefix = path.join(tmp, root === a ? 'a' : 'b', 't');
      mkdirSync(path.dirname(prefix));
      runChild(root, 2, prefix);
      seen.set(root, folderCalls(prefix));
    }
    await rm(tmp, { recursive: true, force: true });
    const [x, y] = [seen.get(a)!, seen.get(b)!];
    const total = (c: Map<string, number>) => [...c.values()].reduce((s, v) => s + v, 0);
    console.log(`system calls on the model folders, two applies and the clean-up (strace -ff): A ${total(x.calls)}, B ${total(y.calls)}; bytes read A ${x.read}, B ${y.read}; written A ${x.written}, B ${y.written}`);
    const kinds = (c: Map<string, number>) => {
      const k = new Map<string, number>();
      for (const [key, v] of c) k.set(key.split(' ')[0], (k.get(key.split(' ')[0]) ?? 0) + v);
      return k;
    };
    const [kx, ky] = [kinds(x.calls), kinds(y.calls)];
    console.log(`  per call: ${[...new Set([...kx.keys(), ...ky.keys()])].sort().map((k) => `${k} ${kx.get(k) ?? 0}/${ky.get(k) ?? 0}`).join(', ')} (A/B)`);
    const differ = [...new Set([...x.calls.keys(), ...y.calls.keys()])].filter((k) => x.calls.get(k) !== y.calls.get(k));
    console.log(differ.length ? `  calls that differ (A/B): ${differ.map((k) => `${k} ${x.calls.get(k) ?? 0}/${y.calls.get(k) ?? 0}`).join('; ')}` : '  the same calls on the same files, call for call');
  }
}

if (argv[0] === '--child') await child(path.resolve(argv[1]), Number(argv[2]), argv[3] === 'fresh', argv[4] === 'apply');
else await main();

/**
 * Crash injection: kill an applying process (SIGKILL, from itself, before its N-th mutating
 * file-system operation: see child.ts) at every step of the on-disk protocol, then check that
 *
 * 1. a loader reading model.json and the shards it names sees exactly the old or exactly the new
 *    version (by fingerprint), never a mix or a broken folder;
 * 2. running the same apply again finishes the update (or reports it already applied), records
 *    the sequence, and leaves no leftovers (temp files, the journal, model.json.prev, lock
 *    files, or shards model.json does not name).
 *
 * Scenarios cover the CLI and the library, one and many shards, a first and a second update,
 * a health check that rolls back, torn writes (half the data, then the kill), a second kill
 * during the recovery of the first, and a model JSON file sharing its folder with another model
 * (whose files must stay byte for byte as they were after every kill and every re-run).
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../cli/ndiff.ts';
import { bundleChild } from './bundle.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../../src/core/hasher.ts';
import { topkDiff } from '../../src/topk-diff/encoder.ts';
import { applyToModelDir } from '../../src/io/tfjs/folder-update.ts';
import { openTfjsModelDir, referencedFiles, writeModelDir } from '../../src/io/tfjs/index.ts';
import { modelFilesOf } from '../../src/io/durable/control-files.ts';
import { FileSequenceStore } from '../../src/io/durable/sequence-file.ts';
import type { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { generateKeyPair, signPayload } from '../../src/sign/node-keys.ts';
import { baseAndTarget } from '../helpers/models.ts';
import { withTfjsFrame } from '../helpers/dirs.ts';

interface ChildJob {
  mode: 'cli' | 'lib';
  dir: string;
  payload: string;
  state?: string;
  health?: 'pass' | 'fail';
  shardBytes?: number;
  publicKey?: string;
}

export interface Scenario {
  name: string;
  /** The folder before the apply (copied for every kill). */
  pristine: string;
  /** A state file outside the folder, copied beside each run (else the state is in the folder). */
  pristineState?: string;
  job: Omit<ChildJob, 'dir' | 'state'> & { stateOutside?: boolean };
  old: string;
  new: string;
  /** What a complete run of the child ends at (the new version; the old one if its health check fails). */
  completes: string;
  modelId: string;
  sequence: number;
  /** Kill with a torn write where the operation writes data. */
  torn?: boolean;
  /** A model JSON file sharing the folder with other models (undefined: the folder's model.json). */
  modelFile?: string;
  /** The other models' files in the folder: each must keep its pristine bytes. */
  untouched?: string[];
}

/** The path an apply is given: the folder, or the model file in it. */
function modelPath(dir: string, s: Scenario): string {
  return s.modelFile ? join(dir, s.modelFile) : dir;
}

/** The other models' files, compared with the pristine folder's (a problem, or null). */
async function untouchedProblem(dir: string, s: Scenario): Promise<string | null> {
  for (const name of s.untouched ?? []) {
    const [was, now] = await Promise.all([readFile(join(s.pristine, name)), readFile(join(dir, name)).catch(() => null)]);
    if (now === null) return `another model's file ${name} is gone`;
    if (Buffer.compare(was, now) !== 0) return `another model's file ${name} changed`;
  }
  return null;
}

export interface KillRecord {
  scenario: string;
  at: number;
  op: string;
  /** 'old' | 'new' | a description of what was wrong. */
  seen: string;
  /** 'ok' or what went wrong when the apply was run again. */
  rerun: string;
  /** Set for double kills: the second kill's point and what the loader saw after it. */
  second?: { at: number; op: string; seen: string };
}

export interface CrashSummary {
  kills: number;
  sawOld: number;
  sawNew: number;
  /** Kills after which the folder was neither version (must be 0). */
  neither: KillRecord[];
  /** Re-runs that did not finish cleanly (must be 0). */
  rerunFailures: KillRecord[];
  records: KillRecord[];
}

const hasherPromise: Promise<Hasher> = getHasher();

async function loaderSees(dir: string, s: Scenario): Promise<string> {
  const other = await untouchedProblem(dir, s);
  if (other) return other;
  try {
    const fp = fingerprintStore(await hasherPromise, await openTfjsModelDir(dir, s.modelFile ? { modelJsonFile: s.modelFile } : {})).fingerprint;
    return fp === s.old ? 'old' : fp === s.new ? 'new' : `neither (fingerprint ${fp})`;
  } catch (e) {
    return `unloadable: ${(e as Error).message.slice(0, 200)}`;
  }
}

/** Files beyond the model file, its shards, the state file, the recorded digests, the model id file and the other models' files. */
async function leftovers(dir: string, s: Scenario): Promise<string[]> {
  const files = modelFilesOf(s.modelFile);
  const keep = new Set([...(await referencedFiles(dir, s.modelFile)), '.ndiff-state.json', files.digests, files.modelId, ...(s.untouched ?? [])]);
  return (await readdir(dir)).filter((f) => !keep.has(f));
}

function runChild(childFile: string, job: ChildJob, env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childFile, JSON.stringify(job)], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

export interface Fixture {
  root: string;
  child: string;
  scenarios: Scenario[];
}

/** The model.json (less its manifest) of the folders {@link writeFolder} writes. */
const FOLDER_MODEL_JSON = { format: 'graph-model', generatedBy: 'crash test', modelTopology: {} } as const;

async function writeFolder(dir: string, store: MemoryWeightStore, shardBytes?: number): Promise<void> {
  const tensors = new Map(store.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: store.values(t.name) }]));
  await writeModelDir(dir, { ...FOLDER_MODEL_JSON }, tensors, shardBytes ? { shardBytes } : {});
}

/** Models, payloads and scenarios in a fresh temp folder. */
export async function buildFixture(): Promise<Fixture> {
  const hasher = await hasherPromise;
  const root = await mkdtemp(join(tmpdir(), 'ndiff-crash-'));
  const child = await bundleChild(root);
  // With the frame of the folders writeFolder makes: the payloads are for those folders.
  const frame = (s: MemoryWeightStore) => withTfjsFrame(s, FOLDER_MODEL_JSON);
  const v1 = frame(baseAndTarget(71).base);
  const t2 = frame(baseAndTarget(71).target);
  const t3 = frame(baseAndTarget(72).target);
  const p12 = topkDiff(hasher, v1, t2, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 1 });
  const v2 = v1.clone();
  for (const [n, v] of p12.targetValues) v2.values(n).set(v);
  const p23 = topkDiff(hasher, v2, t3, { budgetBytes: 6000, codec: 'f16', modelId: 'kws', sequence: 2 });
  const fp = (s: MemoryWeightStore) => fingerprintStore(hasher, s).fingerprint;
  const key = generateKeyPair();
  await writeFile(join(root, 'release.public.pem'), key.publicKeyPem);
  await writeFile(join(root, 'p12.signed.ndiff'), signPayload(p12.bytes, key.privateKeyPem));
  await writeFile(join(root, 'p12.ndiff'), p12.bytes);
  await writeFile(join(root, 'p23.ndiff'), p23.bytes);

  // v1 as a converter would write it (one shard), v1 in small shards, and v2 after an apply
  await writeFolder(join(root, 'v1'), v1);
  await writeFolder(join(root, 'v1-sharded'), v1, 4096);
  await cp(join(root, 'v1'), join(root, 'v2'), { recursive: true });
  await applyToModelDir(join(root, 'v2'), p12.bytes);
  // v1 as kws.json + kws.bin in a folder it shares with face.json + face.bin (updated before, in place)
  const shared = join(root, 'shared');
  await mkdir(shared);
  const v1Json = JSON.parse(await readFile(join(root, 'v1', 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  await cp(join(root, 'v1', v1Json.weightsManifest[0].paths[0]), join(shared, 'kws.bin'));
  v1Json.weightsManifest[0].paths = ['kws.bin'];
  await writeFile(join(shared, 'kws.json'), JSON.stringify(v1Json));
  const face = baseAndTarget(73);
  await writeFolder(join(root, 'face'), face.base);
  const faceJson = JSON.parse(await readFile(join(root, 'face', 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  await cp(join(root, 'face', faceJson.weightsManifest[0].paths[0]), join(shared, 'face.bin'));
  faceJson.weightsManifest[0].paths = ['face.bin'];
  await writeFile(join(shared, 'face.json'), JSON.stringify(faceJson));
  const pf = topkDiff(hasher, frame(face.base), frame(face.target), { budgetBytes: 1_000_000, codec: 'f32', modelId: 'face', sequence: 1 });
  await applyToModelDir(join(shared, 'face.json'), pf.bytes);
  const faceFiles = (await readdir(shared)).filter((f) => f.startsWith('face'));

  const old1 = fp(v1);
  const new2 = p12.payload.header.targetFingerprint;
  const new3 = p23.payload.header.targetFingerprint;
  const scenarios: Scenario[] = [
    { name: 'cli, signed, one shard, state in the folder', pristine: join(root, 'v1'), job: { mode: 'cli', payload: join(root, 'p12.signed.ndiff'), publicKey: join(root, 'release.public.pem') }, old: old1, new: new2, completes: new2, modelId: 'kws', sequence: 1 },
    { name: 'library, 5 shards of 4 KiB, state file outside', pristine: join(root, 'v1-sharded'), job: { mode: 'lib', payload: join(root, 'p12.ndiff'), shardBytes: 4096, stateOutside: true }, old: old1, new: new2, completes: new2, modelId: 'kws', sequence: 1 },
    { name: 'cli, second update (v2 -> v3: old shards are ours, confirmation deletes them)', pristine: join(root, 'v2'), job: { mode: 'cli', payload: join(root, 'p23.ndiff') }, old: new2, new: new3, completes: new3, modelId: 'kws', sequence: 2 },
    { name: 'library, health check fails: switch, then rollback', pristine: join(root, 'v1'), job: { mode: 'lib', payload: join(root, 'p12.ndiff'), health: 'fail' }, old: old1, new: new2, completes: old1, modelId: 'kws', sequence: 1 },
    { name: 'cli, torn writes (half the data written, then the kill)', pristine: join(root, 'v1'), job: { mode: 'cli', payload: join(root, 'p12.ndiff') }, old: old1, new: new2, completes: new2, modelId: 'kws', sequence: 1, torn: true },
    { name: 'cli, kws.json in a folder shared with face.json (face updated before)', pristine: shared, job: { mode: 'cli', payload: join(root, 'p12.ndiff') }, old: old1, new: new2, completes: new2, modelId: 'kws', sequence: 1, modelFile: 'kws.json', untouched: faceFiles },
  ];
  return { root, child, scenarios };
}

function jobFor(s: Scenario, dir: string): ChildJob {
  const { stateOutside, ...rest } = s.job;
  return { ...rest, dir: modelPath(dir, s), ...(stateOutside ? { state: `${dir}.state.json` } : {}) };
}

/** The operations a clean run performs (so kills can target each of them). */
export async function countOperations(fx: Fixture, s: Scenario): Promise<string[]> {
  const dir = join(fx.root, 'count', s.name.replace(/\W+/g, '-'));
  await mkdir(join(fx.root, 'count'), { recursive: true });
  await rm(dir, { recursive: true, force: true });
  await rm(`${dir}.state.json`, { force: true });
  await cp(s.pristine, dir, { recursive: true });
  const logFile = `${dir}.ops`;
  const r = await runChild(fx.child, jobFor(s, dir), { NDIFF_CRASH_AT: '0', NDIFF_CRASH_LOG: logFile });
  const expectedCode = s.job.health === 'fail' ? 5 : 0;
  if (r.code !== expectedCode) throw new Error(`${s.name}: the uninterrupted child exited ${r.code} (${r.signal}), expected ${expectedCode}: ${r.stderr}`);
  const seen = await loaderSees(dir, s);
  if (seen !== (s.completes === s.new ? 'new' : 'old')) throw new Error(`${s.name}: an uninterrupted run ended at ${seen}`);
  return (await readFile(logFile, 'utf8')).split('\n').filter(Boolean);
}

/** Run the same apply again in this process, as a user would after the crash, and check the end state. */
async function rerun(fx: Fixture, s: Scenario, dir: string): Promise<string> {
  const job = jobFor(s, dir);
  try {
    if (s.job.mode === 'cli') {
      const out: string[] = [];
      const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(l), progress: () => {} };
      const argv = ['apply', '--model', job.dir, '--patch', job.payload, ...(job.publicKey ? ['--public-key', job.publicKey] : []), ...(job.state ? ['--state', job.state] : [])];
      const code = await main(argv, io);
      if (code !== 0) return `ndiff apply exited ${code}: ${out.join(' | ')}`;
      if (!/patched|already at target/.test(out.join('\n'))) return `unexpected output: ${out.join(' | ')}`;
    } else {
      // the health-check scenario is re-run with a passing health check: it must then finish
      const res = await applyToModelDir(job.dir, new Uint8Array(await readFile(job.payload)), { ...(job.state ? { state: job.state } : {}), ...(job.shardBytes ? { shardBytes: job.shardBytes } : {}), healthCheck: () => true });
      if (res.status !== 'applied' && res.status !== 'already-applied') return `status ${res.status}`;
    }
  } catch (e) {
    return `threw ${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
  const seen = await loaderSees(dir, s);
  if (seen !== 'new') return `after the re-run the loader sees ${seen}`;
  const extra = await leftovers(dir, s);
  if (extra.length) return `leftovers after the re-run: ${extra.join(', ')}`;
  const recorded = await new FileSequenceStore(job.state ?? join(dir, '.ndiff-state.json')).get(s.modelId);
  if (recorded !== s.sequence) return `the state file records ${recorded}, expected ${s.sequence}`;
  return 'ok';
}

/**
 * Kill at each point of `points` (1-based operation numbers) and check. With `second`, each
 * first kill is followed by a run of the child killed at a second point (the recovery's own
 * operations), before the final re-run.
 */
export async function killAt(fx: Fixture, s: Scenario, ops: string[], points: number[], options: { second?: (first: number) => number[]; concurrency?: number } = {}): Promise<CrashSummary> {
  const summary: CrashSummary = { kills: 0, sawOld: 0, sawNew: 0, neither: [], rerunFailures: [], records: [] };
  const tasks: (() => Promise<void>)[] = [];
  const runDir = join(fx.root, 'runs');
  await mkdir(runDir, { recursive: true });
  let n = 0;
  const count = (rec: KillRecord, seen: string) => {
    summary.kills++;
    if (seen === 'old') summary.sawOld++;
    else if (seen === 'new') summary.sawNew++;
    else summary.neither.push(rec);
  };
  for (const at of points) {
    for (const second of options.second ? options.second(at) : [0]) {
      tasks.push(async () => {
        const dir = join(runDir, `${s.name.replace(/\W+/g, '-')}-${at}-${second}-${n++}`);
        await cp(s.pristine, dir, { recursive: true });
        const job = jobFor(s, dir);
        const env = { NDIFF_CRASH_AT: String(at), ...(s.torn ? { NDIFF_CRASH_TORN: '1' } : {}) };
        const r = await runChild(fx.child, job, env);
        const rec: KillRecord = { scenario: s.name, at, op: ops[at - 1] ?? '(past the end)', seen: '', rerun: '' };
        if (r.signal !== 'SIGKILL') {
          rec.seen = `not killed (exit ${r.code}): ${r.stderr.slice(0, 200)}`;
          summary.neither.push(rec);
          summary.records.push(rec);
          return;
        }
        rec.seen = await loaderSees(dir, s);
        count(rec, rec.seen);
        if (second > 0) {
          // a second crash, during the recovery and the apply that follow the first one
          const r2 = await runChild(fx.child, job, { NDIFF_CRASH_AT: String(second) });
          const seen2 = r2.signal === 'SIGKILL' ? await loaderSees(dir, s) : r2.code === (s.job.health === 'fail' ? 5 : 0) ? 'finished' : `exit ${r2.code}: ${r2.stderr.slice(0, 200)}`;
          rec.second = { at: second, op: r2.signal === 'SIGKILL' ? '(see the op log of the recovery run)' : '(ran to the end)', seen: seen2 };
          if (r2.signal === 'SIGKILL') count({ ...rec }, seen2);
          else if (seen2 !== 'finished') summary.neither.push(rec);
        }
        rec.rerun = await rerun(fx, s, dir);
        if (rec.rerun !== 'ok') summary.rerunFailures.push(rec);
        summary.records.push(rec);
        await rm(dir, { recursive: true, force: true });
        await rm(`${dir}.state.json`, { force: true });
      });
    }
  }
  const concurrency = options.concurrency ?? 2;
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < tasks.length) await tasks[next++]();
  }));
  return summary;
}

/** Every point 1..n, or `count` points spread evenly over 1..n (first and last included). */
export function spread(n: number, count = n): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i + 1);
  return [...new Set(Array.from({ length: count }, (_, i) => 1 + Math.round((i * (n - 1)) / Math.max(1, count - 1))))];
}

export function merge(parts: CrashSummary[]): CrashSummary {
  return parts.reduce((a, b) => ({
    kills: a.kills + b.kills,
    sawOld: a.sawOld + b.sawOld,
    sawNew: a.sawNew + b.sawNew,
    neither: [...a.neither, ...b.neither],
    rerunFailures: [...a.rerunFailures, ...b.rerunFailures],
    records: [...a.records, ...b.records],
  }), { kills: 0, sawOld: 0, sawNew: 0, neither: [], rerunFailures: [], records: [] });
}

/**
 * `npm run bench:release`: what devices download to reach the newest version of a release, per
 * version they start from, against the full model: a chain of model versions released with
 * `ndiff release`'s library (exact payloads from each of the last 3 versions), served over
 * HTTP by a local static server, and one real device update per starting version (the bytes are
 * counted by the server, and each device must end at the newest fingerprint).
 *
 * The chain: each version moves 1% of every tensor's weights of the previous one (the test
 * helper `perturbed`, a stand-in for a sparse fine-tune; no training here) of the MobileNetV2
 * from the nsfwjs npm package (2.6M weights, written as float32), 8 versions. The
 * keyword-spotting chain's models are not kept by its benchmark (only its results), and
 * retraining them takes hours here, so it is not used.
 *
 *   npm run bench:release                 # the MobileNetV2 chain
 *   npm run bench:release -- --quick      # the small test model, 5 versions (used by a test)
 *   npm run bench:release -- --json FILE  # also write the rows as JSON
 *   npm run bench:release -- --workers 1,2 [--kills 20] [--quick] [--history N] [--lock-seconds S]
 *   npm run bench:release -- --workers 1,2 --plan training [--epochs N] [--methods sparse,hash]
 *                            [--budgets 1%,2%,5%] [--seeds N] [--data DIR]
 *                                         # plans on the job engine (bench/release-queue.ts)
 */
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { updateModel } from '../src/io/updater/node-updater.ts';
import { addVersion } from '../src/release/add.ts';
import { generateKeyPair, loadPrivateKey } from '../src/sign/node-keys.ts';
import { baseAndTarget } from '../test/helpers/models.ts';
import { perturbed } from '../test/helpers/perturb.ts';
import { tempDir, writeStore } from '../test/helpers/dirs.ts';
import { serveRelease } from '../test/helpers/release-server.ts';
import { pretrainedModelDir } from '../examples/pretrained/nsfwjs.ts';
import type { LearnedMethod } from '../src/release/learned.ts';

/** One starting point. */
export interface ReleaseBenchRow {
  /** `v3`, or `unknown` (a model of the same architecture that no version is). */
  from: string;
  /** `v3 -> v6`, `v1 -> v4 -> v6`, or `full model`. */
  path: string;
  /** Body bytes of release files the server sent (the manifest excluded). */
  bytes: number;
  /** The newest version's full package. */
  fullBytes: number;
  /** Bytes of the manifest (every run fetches it once). */
  manifestBytes: number;
}

export interface ReleaseBenchResult {
  model: string;
  weights: number;
  versions: number;
  history: number;
  rows: ReleaseBenchRow[];
}

/** Run the bench (see the module doc). */
export async function runReleaseBench(options: { quick?: boolean; log?: (line: string) => void } = {}): Promise<ReleaseBenchResult> {
  const log = options.log ?? console.log;
  const quick = options.quick ?? false;
  const work = await tempDir('nd-bench-release-');
  try {
    let model = quick ? baseAndTarget(1).base : MemoryWeightStore.copyOf(await openTfjsModelDir(await pretrainedModelDir('layers')));
    const name = quick ? 'test model (test/helpers/models.ts)' : 'MobileNetV2 (nsfwjs), float32';
    const count = quick ? 5 : 8;
    const fraction = quick ? 0.05 : 0.01;
    const history = 3;
    const keys = generateKeyPair();
    const key = loadPrivateKey(keys.privateKeyPem);
    const releaseDir = join(work, 'release');
    const dirs: string[] = [];
    const fingerprints: string[] = [];
    for (let v = 1; v <= count; v++) {
      if (v > 1) model = perturbed(model, fraction, 100 + v);
      const dir = join(work, `v${v}`);
      await writeStore(dir, model);
      const r = await addVersion(releaseDir, dir, { modelId: 'bench', history, key, expiresAt: Math.floor(Date.now() / 1000) + 3600 });
      dirs.push(dir);
      fingerprints.push(r.fingerprint);
      log(`version ${v}: ${r.fingerprint}, ${r.jobs.length} payload(s) into it`);
    }
    const weights = model.list().reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    const server = await serveRelease(releaseDir);
    const rows: ReleaseBenchRow[] = [];
    try {
      const starts: [string, (dir: string) => Promise<void>][] = dirs.slice(0, -1).map((d, i) => [`v${i + 1}`, (to: string) => cp(d, to, { recursive: true })]);
      starts.push(['unknown', (to: string) => writeStore(to, perturbed(model, 0.5, 999))]);
      for (const [from, make] of starts) {
        const device = join(work, 'devices', from, 'model');
        await mkdir(join(device, '..'), { recursive: true });
        await make(device);
        const first = server.log.length;
        const r = await updateModel({ model: device, modelId: 'bench', urls: [server.url], trustedKeys: [keys.publicKeyPem] });
        if (r.status !== 'updated') throw new Error(`device on ${from}: ${r.status} ${r.error?.message ?? ''}`);
        const held = fingerprintStore(await getHasher(), await openTfjsModelDir(device)).fingerprint;
        if (held !== fingerprints[count - 1]) throw new Error(`device on ${from} ended at ${held}, the newest is ${fingerprints[count - 1]}`);
        const served = server.log.slice(first);
        const path = r.path === 'full' ? 'full model' : [`v${r.steps[0].fromVersion}`, ...r.steps.map((s) => `v${s.toVersion}`)].join(' -> ');
        rows.push({
          from,
          path,
          bytes: served.filter((q) => q.path.startsWith('/blobs/')).reduce((n, q) => n + q.sent, 0),
          fullBytes: r.fullBytes ?? 0,
          manifestBytes: served.filter((q) => q.path === '/manifest.json').reduce((n, q) => n + q.sent, 0),
        });
      }
    } finally {
      await server.close();
    }
    return { model: name, weights, versions: count, history, rows };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The rows as a Markdown table. */
export function releaseBenchTable(r: ReleaseBenchResult): string {
  const lines = [
    `${r.model}, ${r.weights.toLocaleString('en')} weights; ${r.versions} versions; payloads from the last ${r.history}; newest: v${r.versions}`,
    '',
    '| device holds | path | bytes downloaded | of the full model | manifest |',
    '| --- | --- | ---: | ---: | ---: |',
    ...r.rows.map((x) => `| ${x.from} | ${x.path} | ${x.bytes.toLocaleString('en')} | ${((100 * x.bytes) / x.fullBytes).toFixed(1)}% | ${x.manifestBytes.toLocaleString('en')} |`),
    '',
    `Full model (the newest version's package): ${r.rows[0]?.fullBytes.toLocaleString('en')} bytes.`,
  ];
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const json = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
  if (args.includes('--workers')) {
    const { runReleaseQueueBench, releaseQueueTable } = await import('./release-queue.ts');
    const workers = (args[args.indexOf('--workers') + 1] ?? '').split(',').map(Number);
    if (!workers.length || workers.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new Error('--workers expects counts of worker processes, e.g. 1,2');
    const kills = args.includes('--kills') ? Number(args[args.indexOf('--kills') + 1]) : undefined;
    const history = args.includes('--history') ? Number(args[args.indexOf('--history') + 1]) : undefined;
    if (history !== undefined && !(Number.isSafeInteger(history) && history >= 1)) throw new Error('--history expects a count of versions, e.g. 4');
    const lockSeconds = args.includes('--lock-seconds') ? Number(args[args.indexOf('--lock-seconds') + 1]) : undefined;
    const value = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
    const plan = value('--plan') ?? 'post-hoc';
    if (plan !== 'post-hoc' && plan !== 'training') throw new Error(`--plan expects post-hoc or training, found ${plan}`);
    const epochs = value('--epochs') !== undefined ? Number(value('--epochs')) : undefined;
    if (epochs !== undefined && !(Number.isSafeInteger(epochs) && epochs >= 1)) throw new Error('--epochs expects a whole number of epochs a learned job trains, e.g. 40');
    const seeds = value('--seeds') !== undefined ? Number(value('--seeds')) : undefined;
    if (seeds !== undefined && !(Number.isSafeInteger(seeds) && seeds >= 1)) throw new Error('--seeds expects how many quick keyword data sets to pool, e.g. 6');
    const training = {
      ...(epochs ? { epochs } : {}),
      ...(seeds ? { seeds } : {}),
      ...(value('--methods') ? { methods: value('--methods')!.split(',') as LearnedMethod[] } : {}),
      ...(value('--budgets') ? { budgets: value('--budgets')!.split(',') } : {}),
      ...(value('--data') ? { dataDir: value('--data')! } : {}),
    };
    const r = await runReleaseQueueBench({ workers, plan, training, ...(kills ? { kills } : {}), ...(history ? { history } : {}), ...(lockSeconds ? { lockSeconds } : {}), quick: args.includes('--quick'), log: (l) => process.stderr.write(l + '\n') });
    console.log(releaseQueueTable(r));
    if (json) await writeFile(json, JSON.stringify(r, null, 2) + '\n');
    process.exit(r.rows.every((x) => x.identical) ? 0 : 1);
  }
  const result = await runReleaseBench({ quick: args.includes('--quick'), log: (l) => process.stderr.write(l + '\n') });
  console.log(releaseBenchTable(result));
  if (json) await writeFile(json, JSON.stringify(result, null, 2) + '\n');
}

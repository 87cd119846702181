/**
 * Publish's one-pass check of a top-k job result (src/release/topk-check.ts) beside the job that
 * made it: CPU seconds of `runJob` (open the states, build the payload, keep it) and of
 * `verifyJobResult` (open the states, check the payload), run side by side in this process, the
 * least of `--reps` runs each. Edges: Silero VAD v5 -> v6 (the .onnx files of
 * `@ricky0123/vad-web`) and the nearest and farthest jobs of the release bench's post-hoc plans
 * (bench/release-queue.ts: the MobileNetV2 of nsfwjs, each version moving 1% of the one before,
 * v10 -> v11 and v1 -> v11), at top-k budgets 1%, 2% and 5%. A budget the exact payload fits
 * makes an exact payload (method `exact`): its check applies it, as before.
 *
 *   node --conditions=neural-diff-source --import tsx bench/topk-check.ts [--reps 3] [--no-mobilenet]
 */
import { join } from 'node:path';
import { copyFile } from 'node:fs/promises';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { addVersion } from '../src/release/add.ts';
import { readJobResult, runJob, verifyJobResult } from '../src/release/jobs.ts';
import { readRecord, type EdgePolicy } from '../src/release/record.ts';
import { generateKeyPair, loadPrivateKey } from '../src/sign/node-keys.ts';
import { perturbed } from '../test/helpers/perturb.ts';
import { tempDir, writeStore } from '../test/helpers/dirs.ts';
import { pretrainedModelDir } from '../examples/pretrained/nsfwjs.ts';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const reps = Number(arg('--reps') ?? 3);
const budgets = ['1%', '2%', '5%'];

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** The job's and the check's least CPU seconds over `reps` runs, one after the other, for the edge v1 -> v2 at `budget`. */
async function edge(work: string, name: string, v1: string, v2: string, budget: string): Promise<{ job: number; check: number; bytes: number; method: string }> {
  const keys = generateKeyPair();
  const key = loadPrivateKey(keys.privateKeyPem);
  const dir = join(work, `${name.replace(/\W+/g, '-')}-${budget.replace('%', 'pc')}`);
  const policy: EdgePolicy = { method: 'topk', budget };
  await addVersion(dir, v1, { modelId: `bench-${name}`, history: 1, key, expiresAt: Math.floor(Date.now() / 1000) + 3600 });
  await addVersion(dir, v2, { history: 1, policy, planOnly: true });
  const record = (await readRecord(dir))!;
  const job = record.pending!.jobs[0];
  let bestJob = Infinity;
  let bestCheck = Infinity;
  let bytes = 0;
  let method = '';
  for (let r = 0; r < reps; r++) {
    const c0 = cpuSeconds();
    await runJob(dir, record, job);
    const c1 = cpuSeconds();
    const done = (await readJobResult(dir, job.id))!;
    const c2 = cpuSeconds();
    const entry = await verifyJobResult(dir, record, job, done.result, done.payload!);
    const c3 = cpuSeconds();
    bestJob = Math.min(bestJob, c1 - c0);
    bestCheck = Math.min(bestCheck, c3 - c2);
    bytes = entry.length;
    method = entry.method;
  }
  return { job: bestJob, check: bestCheck, bytes, method };
}

const work = await tempDir('nd-bench-topk-check-');
const edges: { name: string; v1: string; v2: string }[] = [];
const vad = join(import.meta.dirname, '..', 'node_modules/@ricky0123/vad-web/dist');
await copyFile(join(vad, 'silero_vad_v5.onnx'), join(work, 'silero_v5.onnx'));
await copyFile(join(vad, 'silero_vad_v6.onnx'), join(work, 'silero_v6.onnx'));
edges.push({ name: 'silero-vad-v5-v6', v1: join(work, 'silero_v5.onnx'), v2: join(work, 'silero_v6.onnx') });
if (!process.argv.includes('--no-mobilenet')) {
  const model = MemoryWeightStore.copyOf(await openTfjsModelDir(await pretrainedModelDir('layers')));
  // The release bench's versions: each moves 1% of the one before; its plan's nearest job is v10 -> v11, its farthest v1 -> v11.
  let m: MemoryWeightStore = model;
  for (let v = 1; v <= 11; v++) {
    if (v > 1) m = perturbed(m, 0.01, 200 + v);
    if (v === 1 || v >= 10) await writeStore(join(work, `mobilenet-v${v}`), m);
  }
  edges.push({ name: 'mobilenetv2 v10->v11', v1: join(work, 'mobilenet-v10'), v2: join(work, 'mobilenet-v11') });
  edges.push({ name: 'mobilenetv2 v1->v11', v1: join(work, 'mobilenet-v1'), v2: join(work, 'mobilenet-v11') });
}
console.log(`| edge | budget | payload | job CPU-s | check CPU-s | check / job |`);
console.log(`|---|---|---|---|---|---|`);
for (const e of edges) {
  for (const budget of budgets) {
    const r = await edge(work, e.name, e.v1, e.v2, budget);
    console.log(`| ${e.name} | ${budget} | ${r.bytes} bytes (${r.method}) | ${r.job.toFixed(3)} | ${r.check.toFixed(3)} | ${(r.check / r.job).toFixed(2)}x |`);
  }
}

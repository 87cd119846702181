/**
 * The long fuzz run (`npm run fuzz`):
 *
 *   node --import tsx test/fuzz/run.ts [--cases 100000] [--disk-cases 2000] [--onnx-cases 200] [--tflite-cases 300] [--release-cases 300] [--structural-cases 3000] [--big] [--seed N] [--slow-ms 2000] [--hang-s 60] [--json FILE]
 *
 * `--release-cases`: poisoned release folders (test/fuzz/release-folder.ts): release.json and job
 * files mutated, then `ndiff release publish`; what it signs a device must accept whole.
 *
 * `--onnx-cases`: hostile ONNX model files on disk (test/fuzz/onnx-files.ts: aliases, duplicates,
 * FIFOs, symlinks, offsets past 4 GiB, then byte mutations); `--big` adds an apply of a tensor
 * at an offset past 4 GiB in a sparse file.
 *
 * `--tflite-cases`: hostile LiteRT model files on disk (test/fuzz/tflite-files.ts: FIFOs, links to
 * devices, files past 2 GiB, offsets past the end, buffers over the model's tables, then byte and
 * offset mutations).
 *
 * `--structural-cases`: hostile structural payloads (format v7, test/fuzz/structural.ts) for ONNX,
 * LiteRT and TF.js pairs whose structure changed, in memory and every tenth on disk through the
 * file or folder update.
 *
 * The fuzzer runs in a worker thread; the main thread is a watchdog: if no case finishes for
 * `--hang-s` seconds (a hang inside synchronous code, which no timer in the worker could
 * interrupt), it stops the worker and prints the case that hung. Exit 0 only when every case
 * ended in success or a typed refusal with the weights untouched.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { rm, writeFile } from 'node:fs/promises';
import { buildCorpus } from './corpus.ts';
import { fuzz, type FuzzSummary } from './harness.ts';
import { fuzzOnnxFiles } from './onnx-files.ts';
import { fuzzTfliteFiles } from './tflite-files.ts';
import { fuzzStructural, type StructuralFuzzSummary } from './structural.ts';
import { buildReleaseFixture, fuzzReleaseFolder, type ReleaseFuzzSummary } from './release-folder.ts';

interface Job {
  cases: number;
  diskCases: number;
  seed: number;
  slowMs: number;
  progress: Int32Array;
}

/** `--name N`; the last one given wins (`npm run fuzz -- --cases 20` after any defaults). */
function arg(name: string, fallback: number): number {
  const i = process.argv.lastIndexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v)) throw new Error(`--${name} needs a number, got ${process.argv[i + 1]}`);
  return v;
}

function toJson(v: unknown): string {
  return JSON.stringify(v, (_, x) => (x instanceof Uint8Array ? { bytes: [...x] } : typeof x === 'bigint' ? `${x}n` : x));
}

if (!isMainThread) {
  const job = workerData as Job;
  const corpus = await buildCorpus();
  const report = (phase: string) => (n: number, c: unknown) => {
    Atomics.add(job.progress, 0, 1);
    if (n % 97 === 0 || phase === 'disk') parentPort!.postMessage({ type: 'case', phase, n, case: toJson(c) });
  };
  const t0 = performance.now();
  const memory = await fuzz(corpus, { cases: job.cases, seed: job.seed, slowMs: job.slowMs, onCase: report('memory') });
  const t1 = performance.now();
  const disk = job.diskCases > 0 ? await fuzz(corpus, { cases: job.diskCases, seed: job.seed + 1, disk: true, slowMs: job.slowMs, onCase: report('disk') }) : null;
  const t2 = performance.now();
  parentPort!.postMessage({ type: 'done', memory, disk, memorySeconds: (t1 - t0) / 1000, diskSeconds: (t2 - t1) / 1000 });
} else {
  const seed = arg('seed', Date.now() % 2 ** 31);
  const job = { cases: arg('cases', 100_000), diskCases: arg('disk-cases', 2000), seed, slowMs: arg('slow-ms', 2000), progress: new Int32Array(new SharedArrayBuffer(4)) };
  const hangSeconds = arg('hang-s', 60);
  const jsonIndex = process.argv.lastIndexOf('--json');
  const jsonFile = jsonIndex >= 0 ? process.argv[jsonIndex + 1] : undefined;
  console.log(`neural-diff payload fuzz: ${job.cases} in-memory cases + ${job.diskCases} model-folder cases, seed ${seed} (repeat with --seed ${seed})`);
  // tsx's loader hooks are per thread, and Node 20 resolves a worker's entry file before its
  // --import runs: register tsx inside the worker, then load this file.
  const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(boot, { eval: true, workerData: job });
  let lastCase = '';
  let lastProgress = 0;
  let stalled = 0;
  const started = Date.now();
  const watchdog = setInterval(() => {
    const done = Atomics.load(job.progress, 0);
    if (done !== lastProgress) {
      if (Math.floor(done / 10_000) !== Math.floor(lastProgress / 10_000)) console.log(`  ${done} cases, ${((Date.now() - started) / 1000).toFixed(0)} s`);
      lastProgress = done;
      stalled = 0;
      return;
    }
    if (++stalled >= hangSeconds) {
      console.log(`HANG: no case finished for ${hangSeconds} s after case ${done}; the last case reported:\n${lastCase}`);
      void worker.terminate();
      clearInterval(watchdog);
      process.exitCode = 1;
    }
  }, 1000);
  worker.on('message', async (m: { type: string; case?: string; memory?: FuzzSummary; disk?: FuzzSummary | null; memorySeconds?: number; diskSeconds?: number }) => {
    if (m.type === 'case') {
      lastCase = m.case as string;
      return;
    }
    clearInterval(watchdog);
    const print = (name: string, s: FuzzSummary, seconds: number) => {
      console.log(`\n${name}: ${s.cases} cases in ${seconds.toFixed(0)} s (slowest case ${s.maxMs.toFixed(0)} ms)`);
      for (const [k, v] of Object.entries(s.outcomes).sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(32)} ${v}`);
      const get = (k: string) => s.outcomes[k] ?? 0;
      console.log(`  => crashes ${get('crash')}, hangs/slow ${get('slow')}, modified weights on rejection ${get('modified')}, wrong target ${get('wrong-target')}, tampered signature accepted ${get('forged')}`);
      if (s.firstBad) console.log(`  first bad case: ${toJson(s.firstBad)}`);
    };
    print('in memory (applyPayload)', m.memory as FuzzSummary, m.memorySeconds as number);
    if (m.disk) print('model folders on disk (applyToModelDir, every file compared)', m.disk, m.diskSeconds as number);
    // Hostile ONNX files on disk (test/fuzz/onnx-files.ts), in this thread: every open is
    // non-blocking, and each case has its own time limit.
    const onnxCases = arg('onnx-cases', 200);
    const t3 = performance.now();
    const onnx = onnxCases > 0 ? await fuzzOnnxFiles({ cases: onnxCases, seed, big: process.argv.includes('--big') }) : null;
    if (onnx) {
      console.log(`\nONNX model files on disk (openOnnxFile + applyToOnnxFile, every file compared): ${onnx.cases} cases in ${((performance.now() - t3) / 1000).toFixed(0)} s`);
      for (const [k, v] of Object.entries(onnx.outcomes).sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(32)} ${v}`);
      if (onnx.firstBad) console.log(`  first bad case: ${onnx.firstBad}`);
    }
    // Hostile .tflite files on disk (test/fuzz/tflite-files.ts).
    const tfliteCases = arg('tflite-cases', 300);
    const t5 = performance.now();
    const tflite = tfliteCases > 0 ? await fuzzTfliteFiles({ cases: tfliteCases, seed }) : null;
    if (tflite) {
      console.log(`\nLiteRT model files on disk (openTfliteFile + applyToTfliteFile, every file compared): ${tflite.cases} cases in ${((performance.now() - t5) / 1000).toFixed(0)} s`);
      for (const [k, v] of Object.entries(tflite.outcomes).sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(32)} ${v}`);
      if (tflite.firstBad) console.log(`  first bad case: ${tflite.firstBad}`);
    }
    // Structural payloads (test/fuzz/structural.ts), in memory and every tenth on disk.
    const structuralCases = arg('structural-cases', 3000);
    const t6 = performance.now();
    const structural: StructuralFuzzSummary | null = structuralCases > 0 ? await fuzzStructural({ cases: structuralCases, seed, diskEvery: 10 }) : null;
    if (structural) {
      console.log(`\nstructural payloads (rebuildModelBytes and rebuildModelFiles, every tenth also rebuildOnnxFile, rebuildTfliteFile or rebuildModelDir): ${structural.cases} cases in ${((performance.now() - t6) / 1000).toFixed(0)} s (slowest ${structural.maxMs.toFixed(0)} ms)`);
      for (const [k, v] of Object.entries(structural.outcomes).sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(32)} ${v}`);
      for (const b of structural.firstBad) console.log(`  bad: ${b}`);
    }
    // Poisoned release folders (test/fuzz/release-folder.ts): what publish signs, a device accepts whole.
    const releaseCases = arg('release-cases', 300);
    const t4 = performance.now();
    let release: ReleaseFuzzSummary | null = null;
    if (releaseCases > 0) {
      const fx = await buildReleaseFixture();
      release = await fuzzReleaseFolder(fx, { cases: releaseCases, seed }).finally(() => rm(fx.root, { recursive: true, force: true }));
      console.log(`\nrelease folders (poisoned release.json and job files, then publish): ${release.cases} cases in ${((performance.now() - t4) / 1000).toFixed(0)} s`);
      for (const [k, v] of Object.entries(release.outcomes).sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(32)} ${v}`);
      for (const b of release.bad.slice(0, 5)) console.log(`  bad: ${JSON.stringify(b)}`);
    }
    const bad = (m.memory as FuzzSummary).bad + (m.disk?.bad ?? 0) + (onnx?.bad ?? 0) + (tflite?.bad ?? 0) + (structural?.bad ?? 0) + (release?.bad.length ?? 0);
    const total = (m.memory as FuzzSummary).cases + (m.disk?.cases ?? 0) + (onnx?.cases ?? 0) + (tflite?.cases ?? 0) + (structural?.cases ?? 0) + (release?.cases ?? 0);
    console.log(`\n${total} cases, ${bad} bad: ${bad === 0 ? 'PASS' : 'FAIL'}`);
    if (jsonFile) await writeFile(jsonFile, JSON.stringify({ seed, memory: m.memory, disk: m.disk, onnx, tflite, structural, release, memorySeconds: m.memorySeconds, diskSeconds: m.diskSeconds }, null, 2));
    process.exitCode = bad === 0 ? 0 : 1;
    await worker.terminate();
  });
  worker.on('error', (e) => {
    clearInterval(watchdog);
    console.log(`the fuzz worker crashed: ${e.stack ?? e}\nlast case: ${lastCase}`);
    process.exitCode = 1;
  });
}

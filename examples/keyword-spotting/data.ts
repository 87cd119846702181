/**
 * Keyword-spotting benchmark data (issue #4, item 1).
 *
 * Generates the features a keyword CNN is trained and evaluated on through a base model and five
 * successive updates, each shipped to the device as a diff against the model it holds:
 *
 * | step | update           | what changes                                                        |
 * |------|------------------|---------------------------------------------------------------------|
 * | 0    | base             | 24 command words + `_silence_` + `_unknown_`, espeak-ng voices      |
 * | 1    | new-words-1      | 4 new words (car, dog, key, hot)                                    |
 * | 2    | new-words-2      | 4 new words (ball, ear, sky, jet)                                   |
 * | 3    | flite-voices     | same words, another synthesizer (flite): a domain shift             |
 * | 4    | real-voices      | real recordings (ktuberling / klettres), split by speaker           |
 * | 5    | far-field        | reverberant rooms, cheap microphones, babble and colored noise      |
 *
 * The class index space is fixed up front (every word any update uses, plus spare slots) and
 * written with everything else to `manifest.json`. Each split is `x.npy` (float32
 * `[n, 49, 40, 1]` log-mel, see `examples/lib/audio/logmel.ts`), `y.npy` (int32 class index) and
 * `source.npy` (int32 index into `manifest.sources`: which voice / speaker made the row).
 *
 * Run: `node --import tsx examples/keyword-spotting/data.ts [--quick] [--out DIR] [--seed N] [--jobs N] [--inflight N]`
 *
 * Missing Debian packages (espeak-ng, flite, sox, ktuberling-data, klettres-data) are installed
 * with apt-get at run time; the sound data is GPL-2+ and never committed.
 *
 * This file is the entry (generate() and the command line); its parts: `vocabulary.ts` (words,
 * classes, voices), `tools.ts` (the Debian packages), `plan.ts` (recordings found, sizes,
 * augmentation, every split's rows), `pool.ts` (the worker processes, see `worker.ts` and
 * `render.ts`), `manifest.ts` (what `manifest.json` holds).
 *
 * @module
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError } from '../../src/core/errors.ts';
import { KWS_LOGMEL, frameCount } from '../lib/audio/logmel.ts';
import { writeNpy } from '../../src/io/npy/npy.ts';
import { buildUpdates, sha256, type KwsManifest, type SplitManifest } from './manifest.ts';
import { FULL, QUICK, RANGES, Sources, findRealClips, planSplits, type PlanContext } from './plan.ts';
import { WorkerPool, runSplit } from './pool.ts';
import { Rng, decodeWithSox, type Assets } from './render.ts';
import { ToolsUnavailableError, ensureTools, espeakAccents, espeakVariants, fliteVoices, toolVersions } from './tools.ts';
import {
  BABBLE_EVAL_LANGS,
  BABBLE_TRAIN_LANGS,
  ESPEAK_EVAL_ACCENTS,
  ESPEAK_TRAIN_ACCENTS,
  EVAL_VARIANT_SHARE,
  FLITE_EVAL_VOICES,
  FLITE_TRAIN_VOICES,
  REAL_EVAL_SPEAKERS,
  REAL_TRAIN_SPEAKERS,
  classTable,
} from './vocabulary.ts';

// What users of the data import from here (the benchmark, bench/quantized.ts, the tests).
export {
  BASE_WORDS,
  ESPEAK_EVAL_ACCENTS,
  ESPEAK_TRAIN_ACCENTS,
  FLITE_EVAL_VOICES,
  FLITE_TRAIN_VOICES,
  REAL_EVAL_SPEAKERS,
  REAL_TRAIN_SPEAKERS,
  SPARE_SLOTS,
  UNKNOWN_WORDS,
  UPDATE1_WORDS,
  UPDATE2_WORDS,
  classTable,
  type ClassInfo,
  type ClassKind,
} from './vocabulary.ts';
export { ToolsUnavailableError, ensureTools } from './tools.ts';
export type { SourceInfo } from './plan.ts';
export type { KwsManifest, SplitManifest, UpdateManifest } from './manifest.ts';

// =============================================================================================
// Main

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** output folder (default `examples/keyword-spotting/data`) */
  out: string;
  /** a few words and voices, finishes in seconds */
  quick: boolean;
  /** seed of every random choice */
  seed: number;
  /** worker processes (each renders rows and starts its own synthesizers); default: CPU count */
  jobs: number;
  /** synthesizer processes each worker keeps running at once (default 2) */
  inflight: number;
  log?: (line: string) => void;
}

/** What {@link generate} did (timing; not part of the deterministic manifest). */
export interface GenerateReport {
  manifest: KwsManifest;
  manifestPath: string;
  utterances: number;
  seconds: number;
  /** wall-clock rate while generating (depends on what else runs on the machine) */
  utterancesPerSecond: number;
  /** CPU time per utterance over all processes (load-independent) */
  cpuMsPerUtterance: number;
  perSplit: Record<string, { count: number; seconds: number }>;
}

/**
 * Generates every split and `manifest.json` under `options.out`. Deterministic for a given seed,
 * mode and installed package versions.
 */
export async function generate(options: GenerateOptions): Promise<GenerateReport> {
  const log = options.log ?? ((l: string) => console.log(l));
  const t0 = performance.now();
  const installed = ensureTools(log);
  if (installed.length === 0) log('tools: espeak-ng, flite, sox, ktuberling-data, klettres-data are installed');
  const sizes = options.quick ? QUICK : FULL;

  // voices
  const accentsAvailable = espeakAccents();
  for (const a of [...ESPEAK_TRAIN_ACCENTS, ...ESPEAK_EVAL_ACCENTS]) {
    if (!accentsAvailable.has(a)) throw new UsageError(`espeak-ng has no voice ${a} (found ${[...accentsAvailable].join(', ')}); install the Debian espeak-ng-data package`);
  }
  const fl = fliteVoices();
  for (const v of [...FLITE_TRAIN_VOICES, ...FLITE_EVAL_VOICES]) {
    if (!fl.has(v)) throw new UsageError(`flite has no voice ${v} (found ${[...fl].join(', ')}); install Debian's flite package`);
  }
  const variants = espeakVariants();
  const shuffled = Rng.of(options.seed, 'variants').shuffle(['', ...variants]);
  const nEval = Math.max(1, Math.round(shuffled.length * EVAL_VARIANT_SHARE));
  const evalVariantsAll = shuffled.slice(0, nEval).sort();
  const trainVariantsAll = shuffled.slice(nEval).sort();
  const trainVariants = sizes.trainVariants === null ? trainVariantsAll : trainVariantsAll.slice(0, sizes.trainVariants);
  const evalVariants = sizes.evalVariants === null ? evalVariantsAll : evalVariantsAll.slice(0, sizes.evalVariants);

  // real recordings
  const { clips: allClips, babble: babbleFiles } = findRealClips();
  const classes = classTable();
  const classIndex = new Map(classes.map((c) => [c.name, c.index]));
  const ctx: PlanContext = { seed: options.seed, sizes, classIndex, sources: new Sources(), trainVariants, evalVariants, realClips: allClips };
  const splits = planSplits(ctx);
  const total = splits.reduce((a, s) => a + s.rows.length, 0);
  log(`plan: ${splits.length} splits, ${total} utterances, ${classes.length} class slots (${options.quick ? 'quick' : 'full'} mode, seed ${options.seed}, ${options.jobs} worker processes x ${options.inflight} synthesizers)`);

  // decode the recordings the plan uses, and the babble banks
  const assets: Assets = { real: new Map(), babble: { train: [], eval: [] } };
  const needed = new Set<string>();
  for (const sp of splits) for (const r of sp.rows) if (r.synth.kind === 'real') needed.add(r.synth.file);
  const babblePick = (langs: string[]) =>
    langs.flatMap((l) => Rng.of(options.seed, 'babble', l).shuffle([...(babbleFiles[l] ?? [])]).slice(0, sizes.babbleClipsPerLang));
  const babbleTrainFiles = babblePick(BABBLE_TRAIN_LANGS);
  const babbleEvalFiles = babblePick(BABBLE_EVAL_LANGS);
  const toDecode = [...needed, ...babbleTrainFiles, ...babbleEvalFiles];
  const decoded = new Map<string, Float32Array>();
  const td = performance.now();
  let di = 0;
  await Promise.all(
    Array.from({ length: Math.max(2, options.jobs * options.inflight) }, async () => {
      for (;;) {
        const i = di++;
        if (i >= toDecode.length) return;
        decoded.set(toDecode[i], await decodeWithSox(toDecode[i]));
      }
    }),
  );
  for (const f of needed) assets.real.set(f, decoded.get(f)!);
  assets.babble.train = babbleTrainFiles.map((f) => decoded.get(f)!);
  assets.babble.eval = babbleEvalFiles.map((f) => decoded.get(f)!);
  if (assets.babble.train.length === 0 || assets.babble.eval.length === 0) throw new UsageError('no ktuberling recordings found for babble noise; reinstall ktuberling-data');
  log(`decoded ${toDecode.length} real recordings with sox in ${((performance.now() - td) / 1000).toFixed(1)} s`);

  // run
  const pool = new WorkerPool(options.jobs, assets, options.inflight);
  const mainCpu0 = process.cpuUsage();
  try {
    return await runAll();
  } finally {
    pool.close();
  }

  async function runAll(): Promise<GenerateReport> {
    mkdirSync(options.out, { recursive: true });
    rmSync(join(options.out, 'manifest.json'), { force: true });
    const perSplit: GenerateReport['perSplit'] = {};
    const splitManifests: Record<string, SplitManifest> = {};
    const tg = performance.now();
    let doneTotal = 0;
    for (const spec of splits) {
      const res = await runSplit(spec, pool, log, options.quick);
      const n = spec.rows.length;
      const frames = frameCount();
      const xShape = [n, frames, KWS_LOGMEL.melBins, 1];
      const dir = join(options.out, spec.name);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const xb = writeNpy(res.x, xShape);
      const yb = writeNpy(res.y, [n]);
      const sb = writeNpy(res.source, [n]);
      writeFileSync(join(dir, 'x.npy'), xb);
      writeFileSync(join(dir, 'y.npy'), yb);
      writeFileSync(join(dir, 'source.npy'), sb);
      const perClass: Record<string, number> = {};
      for (const c of classes) {
        let k = 0;
        for (let i = 0; i < n; i++) if (res.y[i] === c.index) k++;
        if (k) perClass[c.name] = k;
      }
      splitManifests[spec.name] = {
        update: spec.update,
        role: spec.role,
        description: spec.description,
        count: n,
        files: { x: `${spec.name}/x.npy`, y: `${spec.name}/y.npy`, source: `${spec.name}/source.npy` },
        shapes: { x: xShape, y: [n], source: [n] },
        sha256: { x: sha256(xb), y: sha256(yb), source: sha256(sb) },
        perClass,
        generator: spec.generator,
      };
      perSplit[spec.name] = { count: n, seconds: res.seconds };
      doneTotal += n;
      const elapsed = (performance.now() - tg) / 1000;
      log(
        `${spec.name.padEnd(15)} ${String(n).padStart(6)} rows in ${res.seconds.toFixed(1)} s (${(n / res.seconds).toFixed(0)} utt/s); total ${doneTotal}/${total}, ${(doneTotal / elapsed).toFixed(0)} utt/s`,
      );
    }

    const manifest: KwsManifest = {
      format: 'neural-diff/kws-data@1',
      generator: 'examples/keyword-spotting/data.ts',
      mode: options.quick ? 'quick' : 'full',
      seed: options.seed,
      feature: {
        ...KWS_LOGMEL,
        frames: frameCount(),
        shape: [frameCount(), KWS_LOGMEL.melBins, 1],
        window: 'periodic Hann',
        melScale: 'htk',
        spectrum: 'power',
        log: 'natural',
        logFloor: Math.log(KWS_LOGMEL.logOffset),
        alignment: 'clip cropped / zero-padded to 1 s around the energy centroid (examples/lib/audio/logmel.ts centerOnEnergy), then augmented',
        layout: 'x: float32 [n, frames, melBins, 1], row-major; y: int32 [n] class index; source: int32 [n] index into sources',
        code: 'examples/lib/audio/logmel.ts',
      },
      numClasses: classes.length,
      classes,
      updates: buildUpdates(classes, splits.map((s) => s.name)),
      splits: splitManifests,
      heldOut: {
        espeakAccents: { train: [...sizes.trainAccents], eval: [...sizes.evalAccents] },
        espeakVariants: { train: trainVariants, eval: evalVariants },
        fliteVoices: { train: [...sizes.fliteTrain], eval: [...sizes.fliteEval] },
        realSpeakers: { train: [...REAL_TRAIN_SPEAKERS], eval: [...REAL_EVAL_SPEAKERS] },
        babbleLanguages: { train: BABBLE_TRAIN_LANGS, eval: BABBLE_EVAL_LANGS },
      },
      sources: ctx.sources.list,
      generation: {
        note: "Deterministic for a given seed, mode and package versions; '' as an espeak-ng variant means the accent's default voice.",
        sizes,
        ranges: RANGES,
        unknownWords: [...sizes.unknownWords],
        realRecordings: {
          note: 'class words recorded by a training speaker are train rows; by the held-out speaker, eval rows. Every other recording (other words, letter names) is _unknown_.',
          wordsByTrainSpeakers: [...new Set(allClips.filter((c) => (REAL_TRAIN_SPEAKERS as readonly string[]).includes(c.speaker) && classIndex.has(c.word)).map((c) => `${c.word}@${c.speaker}`))],
          wordsByEvalSpeakers: [...new Set(allClips.filter((c) => (REAL_EVAL_SPEAKERS as readonly string[]).includes(c.speaker) && classIndex.has(c.word)).map((c) => `${c.word}@${c.speaker}`))],
        },
        packages: toolVersions(),
      },
    };
    const manifestPath = join(options.out, 'manifest.json');
    writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    const seconds = (performance.now() - t0) / 1000;
    const genSeconds = (performance.now() - tg) / 1000;
    const workerCpu = await pool.cpu();
    const mainCpu = process.cpuUsage(mainCpu0);
    const cpuSeconds = workerCpu.self + workerCpu.children + (mainCpu.user + mainCpu.system) / 1e6;
    const cpuMsPerUtterance = (1000 * cpuSeconds) / Math.max(1, total);
    const report: GenerateReport = {
      manifest,
      manifestPath,
      utterances: total,
      seconds,
      utterancesPerSecond: total / genSeconds,
      cpuMsPerUtterance,
      perSplit,
    };
    const cores = availableParallelism();
    writeFileSync(
      join(options.out, 'run.json'),
      `${JSON.stringify(
        {
          utterances: total,
          seconds,
          generationSeconds: genSeconds,
          utterancesPerSecond: report.utterancesPerSecond,
          cpuSeconds: { workers: workerCpu.self, synthesizers: workerCpu.children, main: (mainCpu.user + mainCpu.system) / 1e6 },
          cpuMsPerUtterance,
          idleMachineEstimate: `${((cores * 1000) / cpuMsPerUtterance).toFixed(0)} utt/s on ${cores} idle cores`,
          jobs: options.jobs,
          inflight: options.inflight,
          perSplit,
        },
        null,
        2,
      )}\n`,
    );
    log(
      `done: ${total} utterances in ${seconds.toFixed(1)} s (${report.utterancesPerSecond.toFixed(0)} utt/s while generating; ${cpuMsPerUtterance.toFixed(1)} CPU-ms per utterance, i.e. ~${((cores * 1000) / cpuMsPerUtterance).toFixed(0)} utt/s on ${cores} idle cores); manifest ${manifestPath}`,
    );
    return report;
  }
}

const DEFAULT_OUT = fileURLToPath(new URL('./data', import.meta.url));

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      seed: { type: 'string', default: '1' },
      jobs: { type: 'string' },
      inflight: { type: 'string', default: '2' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      [
        'usage: node --import tsx examples/keyword-spotting/data.ts [--quick] [--out DIR] [--seed N] [--jobs N] [--inflight N]',
        '  --quick       a few words and voices (about 150 utterances, seconds)',
        '  --out DIR     output folder (default examples/keyword-spotting/data)',
        '  --seed N      seed of every random choice (default 1)',
        '  --jobs N      worker processes (default: number of CPUs)',
        '  --inflight N  synthesizer processes per worker (default 2)',
      ].join('\n'),
    );
    return;
  }
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed must be an integer, found ${values.seed}`);
  const jobs = values.jobs === undefined ? availableParallelism() : Number(values.jobs);
  if (!Number.isSafeInteger(jobs) || jobs < 1) throw new UsageError(`--jobs must be a positive integer, found ${values.jobs}`);
  const inflight = Number(values.inflight);
  if (!Number.isSafeInteger(inflight) || inflight < 1) throw new UsageError(`--inflight must be a positive integer, found ${values.inflight}`);
  const out = resolve(values.out ?? DEFAULT_OUT);
  await generate({ out, quick: values.quick ?? false, seed, jobs, inflight });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = e instanceof ToolsUnavailableError ? 3 : 1;
  });
}
/**
 * The training plan of `npm run bench:release -- --workers 1,2 --plan training`: what a team's
 * release of the keyword model trains, as the job engine runs it (#80).
 *
 * The keyword CNN of `examples/keyword-spotting/model.ts` trained on the keyword benchmark's own
 * speech features (espeak-ng and flite voices, rendered by `examples/keyword-spotting/data.ts` in
 * its quick mode, once per seed and pooled, so the data is a few hundred utterances, not the full
 * benchmark's hours of synthesis; the Debian packages are installed by the generator when missing),
 * with labels, into four versions: v1 on the base words, v2 adding update 1's words, v3 update 2's,
 * v4 the flite voices (each version the previous one trained further, as the benchmark's full
 * chain does). The plans: version 4 released with learned payloads from each of the last 3
 * versions, for every method and budget given (default sparse and hash at 1%, 2% and 5%: 18 jobs),
 * each trained toward v4 on the pooled training inputs and measured on the pooled eval inputs, one
 * thread a job, its learning rate tuned as `ndiff train` tunes by default: a job is 20 to 60
 * CPU-seconds here on the native backend. `--quick` (a test's): 2 data sets, sparse at 5%, 10
 * epochs without tuning, 3 jobs.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { initBackend } from '../src/engine/backend.ts';
import { silenceTfjsNodeBanner } from '../src/engine/quiet.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import type { LabelledData } from '../src/train/data.ts';
import type { EdgePolicy } from '../src/release/record.ts';
import type { LearnedInputs, LearnedMethod } from '../src/release/learned.ts';
import { generate, type KwsManifest } from '../examples/keyword-spotting/data.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';
import { concatRows, loadSplit } from '../examples/keyword-spotting/splits.ts';

/** One plan of the set: a policy and, for a learned one, its inputs. */
export interface PlannedPolicy {
  policy: EdgePolicy;
  learned?: LearnedInputs;
}

export interface TrainingPlanSet {
  model: string;
  /** The versions' TF.js folders, oldest first. */
  versions: string[];
  plans: PlannedPolicy[];
  /** Rows of training and eval inputs the jobs get. */
  trainRows: number;
  evalRows: number;
}

export interface TrainingPlanOptions {
  /** Methods of the learned plans (default sparse, hash). */
  methods?: LearnedMethod[];
  /** Budgets of each method (default 1%, 2%, 5%). */
  budgets?: string[];
  /** Epochs a job trains at most (default 30; each job tunes its learning rate as `ndiff train` does by default, and stops early as it does). */
  epochs?: number;
  /** Quick-mode data sets pooled (default 24, each a different seed: about 1,250 training utterances). */
  seeds?: number;
  /** Where the generated data is kept between runs (default: under `work`). */
  dataDir?: string;
  /** A small plan for a test: 2 data sets, sparse at 5%, 10 epochs, no tuning (3 jobs of a few CPU-seconds). */
  quick?: boolean;
  log?: (line: string) => void;
}

const VERSION_STEPS = [
  { splits: ['base-train'], epochs: 60 },
  { splits: ['base-train', 'u1-words-train'], epochs: 30 },
  { splits: ['base-train', 'u1-words-train', 'u2-words-train'], epochs: 30 },
  { splits: ['base-train', 'u1-words-train', 'u2-words-train', 'u3-flite-train'], epochs: 30 },
];

/** Build the versions, the pooled data and the plans under `work` (see the module doc). */
export async function trainingPlanSet(work: string, options: TrainingPlanOptions = {}): Promise<TrainingPlanSet> {
  const log = options.log ?? console.log;
  const quick = options.quick ?? false;
  const seeds = options.seeds ?? (quick ? 2 : 24);
  const dataRoot = options.dataDir ?? join(work, 'kws-data');
  const manifests: { dir: string; manifest: KwsManifest }[] = [];
  for (let s = 1; s <= seeds; s++) {
    const dir = join(dataRoot, `seed-${s}`);
    if (!existsSync(join(dir, 'manifest.json'))) {
      const r = await generate({ out: dir, quick: true, seed: s, jobs: 2, inflight: 2, log: () => {} });
      log(`keyword data, seed ${s}: ${r.utterances} utterances in ${r.seconds.toFixed(1)} s`);
      manifests.push({ dir, manifest: r.manifest });
    } else {
      manifests.push({ dir, manifest: JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as KwsManifest });
    }
  }
  // The rows of `names` from every seed's data, one block.
  const pooled = (names: string[]) => concatRows(manifests.flatMap(({ dir, manifest }) => names.map((n) => loadSplit(dir, manifest, n))));
  const numClasses = manifests[0].manifest.numClasses;

  await initBackend('auto');
  silenceTfjsNodeBanner();
  const model = keywordModel(numClasses, 0);
  const versions: string[] = [];
  for (const [i, step] of VERSION_STEPS.entries()) {
    const rows = pooled(step.splits);
    const data: LabelledData = { x: tf.tensor(rows.x, rows.shape, 'float32'), y: rows.y };
    const res = await trainDiff(model, data, { method: 'full', budgetBytes: 0, epochs: step.epochs, seed: 1 + i, tune: 'off', learningRate: 1e-3, threads: 1, validation: 0 });
    data.x.dispose();
    const dir = join(work, 'models', `v${i + 1}`);
    await model.save(fileSystemIO(dir));
    versions.push(dir);
    log(`version ${i + 1}: trained on ${rows.y.length} utterances (${step.splits.join(', ')}), ${step.epochs} epochs, ${res.trainSeconds.toFixed(1)} s`);
  }
  model.dispose();

  const evalSplits = ['base-eval', 'u1-words-eval', 'u2-words-eval', 'u3-flite-eval'];
  const trainRows = pooled(VERSION_STEPS[VERSION_STEPS.length - 1].splits);
  const evalRows = pooled(evalSplits);
  const trainDir = join(work, 'job-inputs', 'train');
  const evalDir = join(work, 'job-inputs', 'eval');
  await mkdir(trainDir, { recursive: true });
  await mkdir(evalDir, { recursive: true });
  // Inputs only: a learned job distills the new version (its teacher), so labels are not needed.
  await saveNpy(join(trainDir, 'x.npy'), trainRows.x, trainRows.shape);
  await saveNpy(join(evalDir, 'x.npy'), evalRows.x, evalRows.shape);
  await writeFile(join(work, 'job-inputs', 'README'), 'Pooled quick-mode keyword features: the learned jobs\' training and eval inputs.\n');

  const methods: LearnedMethod[] = options.methods ?? (quick ? ['sparse'] : ['sparse', 'hash']);
  const budgets = options.budgets ?? (quick ? ['5%'] : ['1%', '2%', '5%']);
  const epochs = options.epochs ?? (quick ? 10 : 30);
  const tune = quick ? ('off' as const) : ('quick' as const);
  const plans: PlannedPolicy[] = methods.flatMap((method) => budgets.map((budget) => ({
    policy: { method: 'learned' as const, budget },
    learned: { method, train: trainDir, eval: evalDir, epochs, seed: 1, tune, threads: 1 },
  })));
  return { model: `keyword CNN (examples/keyword-spotting), ${versions.length} versions`, versions, plans, trainRows: trainRows.y.length, evalRows: evalRows.y.length };
}

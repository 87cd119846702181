/**
 * On-grid GGUF payloads of the real fine-tunes, ranked by the weights alone and calibrated through
 * llama.cpp (`ndiff diff --budget B` and `--budget B --calibrate TEXT`), measured on held-out text
 * through llama.cpp: mean KL(target || patched) as a share of KL(target || base), greedy agreement with the target,
 * perplexity, at each budget. The calibration is made once per pair and type and used for every
 * budget (the ranking `ndiff diff --calibrate` makes); each payload is applied in place to a copy
 * of v1 by the device's applier, and all the copies of one pair and type are measured in one run.
 *
 * Needs the pairs of bench/llm/make-pairs.sh, their calibration text
 * (`~/.cache/neural-diff/py/bin/python bench/llm/calibration-text.py`: the 24,000 characters of
 * training text before each held-out cut) and node-llama-cpp (`sh scripts/install-llama.sh`).
 *
 *   npm run bench:gguf-ongrid -- [--pairs DIR] [--types q4_k_m,q8_0] [--budgets 10%,25%] [--only v1-v2]
 *
 * DIR defaults to ~/.cache/neural-diff/llm-pairs (its gguf/, held-out/ and calibrate/ folders).
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { parseBudget } from '../src/diff/budget.ts';
import { calibrateGgufTensors } from '../src/front/measure/gguf-calibrate.ts';
import { measureGguf } from '../src/front/measure/gguf-runtime.ts';
import { ongridGgufDiff, rankGgufChange, type TensorWeights } from '../src/gguf-diff/index.ts';
import { openGgufModel } from '../src/io/gguf/files.ts';
import { applyToGgufFile } from '../src/io/gguf/in-place.ts';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const root = arg('--pairs') ?? path.join(homedir(), '.cache/neural-diff/llm-pairs');
const types = (arg('--types') ?? 'q4_k_m,q8_0').split(',');
const budgets = (arg('--budgets') ?? '10%,25%').split(',');
/** The pairs: base, target, and the domain of the target's fine-tune (its held-out and calibration text). */
const PAIRS = [['v1', 'v2', 'fortunes'], ['v2', 'v3', 'bible'], ['v1', 'lora', 'fortunes']] as const;
const only = arg('--only');
const pairs = PAIRS.filter(([a, b]) => only === undefined || only.split(',').includes(`${a}-${b}`));

for (const dir of ['gguf', 'held-out', 'calibrate']) {
  if (!existsSync(path.join(root, dir))) {
    console.error(`${path.join(root, dir)} is missing: make the pairs with bench/llm/make-pairs.sh and the calibration text with bench/llm/calibration-text.py (or give --pairs DIR)`);
    process.exit(2);
  }
}

const hasher = await getHasher();
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const rows: string[] = [];
const work = mkdtempSync(path.join(tmpdir(), 'ndiff-bench-ongrid-'));
try {
  for (const [from, to, domain] of pairs) {
    for (const type of types) {
      const base = path.join(root, 'gguf', `${from}-${type}.gguf`);
      const target = path.join(root, 'gguf', `${to}-${type}.gguf`);
      const heldOut = path.join(root, 'held-out', `${domain}.txt`);
      const calibrate = path.join(root, 'calibrate', `${domain}.txt`);
      const t0 = performance.now();
      const a = openGgufModel(base);
      const b = openGgufModel(target);
      let calibration: Awaited<ReturnType<typeof calibrateGgufTensors>>;
      const modelBytes = b.model.parts.reduce((n, p) => n + p.header.fileSize, 0);
      const made: { file: string; budget: string; ranking: string; bytes: number }[] = [];
      try {
        const { tensorScore } = rankGgufChange(a.model, b.model);
        calibration = await calibrateGgufTensors({ base, target, calibrate, tensorScore, progress: (l) => console.error(l) });
        for (const budget of budgets) {
          for (const [ranking, weights] of [['weights', undefined], ['calibrated', calibration.weights]] as [string, TensorWeights | undefined][]) {
            const r = ongridGgufDiff(hasher, a.model, b.model, parseBudget(budget, modelBytes), { modelId: 'pairs', sequence: 1, createdBy: 'bench' }, weights);
            const file = path.join(work, `${from}-${to}-${type}-${budget}-${ranking}.gguf`);
            copyFileSync(base, file);
            await applyToGgufFile(file, r.payload, { state: null });
            made.push({ file, budget, ranking, bytes: r.payload.length });
          }
        }
      } finally {
        a.close();
        b.close();
      }
      const m = await measureGguf({ target, base, models: made.map((x) => x.file), eval: heldOut, threads: 1, onProgress: (l) => console.error(l) });
      const baseRow = m.models.find((x) => x.role === 'base')!;
      rows.push(`| ${from} -> ${to} | ${type.toUpperCase()} | none (the base) | | 0 | 100% | ${pct(baseRow.agreement)} | ${baseRow.perplexity.toFixed(1)} |`);
      for (const x of made) {
        const row = m.models.find((y) => y.model === x.file)!;
        rows.push(`| ${from} -> ${to} | ${type.toUpperCase()} | ${x.budget} | ${x.ranking} | ${x.bytes.toLocaleString('en-US')} | ${pct(row.meanKl / baseRow.meanKl)} | ${pct(row.agreement)} | ${row.perplexity.toFixed(1)} |`);
      }
      console.error(`${from} -> ${to} ${type}: calibration ${calibration.report.seconds.toFixed(1)} s (${calibration.report.runs} runs, ${calibration.report.tensors.length} tensors; largest gains ${calibration.report.tensors.slice(0, 3).map((t) => `${t.tensor} ${t.gain.toFixed(4)}`).join(', ')}); all ${((performance.now() - t0) / 1000).toFixed(1)} s; ${m.positions} held-out positions, KL(target || base) ${baseRow.meanKl.toFixed(4)}`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log('| pair | type | budget | ranking | payload bytes | KL(target \\|\\| patched) / KL(target \\|\\| base) | agreement with the target | perplexity |');
console.log('|---|---|---|---|---:|---:|---:|---:|');
for (const r of rows) console.log(r);

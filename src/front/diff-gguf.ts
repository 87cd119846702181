/**
 * `ndiff diff` of two GGUF models (llama.cpp's files): the GGUF block payload (format v8,
 * docs/format/gguf.md §18.4) for two versions of one layout. Budget `all`: every changed ggml
 * block exactly. A byte budget (`10%` of the target file, `2MB`, bytes): the on-grid payload
 * (§18.6, src/gguf-diff/), the same format whose target is a mix of the two versions, each block
 * v1's or v2's, chosen by the squared dequantized change per payload byte. With `eval` (a held-out
 * text) the payload is measured through llama.cpp before it is written (diff-gguf-eval.ts) and
 * refused when no closer to v2 than v1; budget `auto` with `minAgreement` writes the smallest
 * on-grid payload of the grid that meets it, the exact one when none does. With `calibrate` (a
 * text from where the model runs) the on-grid ranking weighs each tensor by the effect its change
 * has on the outputs through llama.cpp (measure/gguf-calibrate.ts) instead of by its change alone.
 * A method is refused, saying so, and two models laid out differently are refused with what
 * differs (ship the new file whole).
 */
import { writeFile } from 'node:fs/promises';
import { UsageError } from '../core/errors.ts';
import { getHasher } from '../core/hasher.ts';
import { CREATED_BY } from '../diff/build.ts';
import { formatBytes, parseBudget } from '../diff/budget.ts';
import { defaultDiffThreads, GgufChunkCoders } from '../io/gguf/chunk-coders.ts';
import { ongridGgufDiff, rankGgufChange, type OngridGgufResult, type TensorWeights } from '../gguf-diff/index.ts';
import { readModelIdRecord } from '../io/durable/model-id-file.ts';
import { diffGgufModels, type GgufDiffResult } from '../io/gguf/diff.ts';
import { openGgufModel } from '../io/gguf/files.ts';
import { ggufModelFiles } from '../io/gguf/in-place.ts';
import { budgetChoiceText, searchBudget, type BudgetSearchReport } from './budget-search.ts';
import { checkGgufTarget, ggufCloseness, ggufEvalText, measureGgufPayload, refuseGgufMovingAway } from './diff-gguf-eval.ts';
import { calibrateGgufTensors, type GgufCalibrationReport } from './measure/gguf-calibrate.ts';
import { isEveryChange, type DiffSettings } from './diff-options.ts';
import type { DiffPayload, GgufPayloadEval, ValueDiffReport } from './diff-types.ts';
import { qualityTargetOf } from './quality-target.ts';

/** What an on-grid GGUF payload took (docs/format/gguf.md §18.6). */
export interface OngridGgufReport {
  /** Scored units (ggml blocks; 32-weight groups of F32/F16/BF16 tensors) that changed, and those the payload carries. */
  changedBlocks: number;
  takenBlocks: number;
  /** Changed blocks of types without a dequantizer, always carried. */
  opaqueBlocks: number;
  /** The share of the squared dequantized change (sum over weights of (v2 - v1)^2) carried. */
  changeCarried: number;
  /** Codings of a mixed model tried to meet the budget. */
  tries: number;
  /** With `calibrate`: each changed tensor's measured effect, and the weight it was ranked by. */
  calibration?: GgufCalibrationReport;
}

/**
 * {@link diffGguf}'s result: a value report (codec `gguf-blocks`; `kept` and `changed` count
 * bytes: with budget all both the changed ranges' bytes; on the grid the bytes of the changed
 * blocks carried and of all changed blocks, with the changed bytes outside blocks), the payload
 * and no warnings.
 * Method `exact` for budget all, `ongrid` for a byte budget (with {@link OngridGgufReport}).
 */
export interface GgufDiffReport extends Pick<ValueDiffReport, 'out' | 'bytes' | 'modelBytes' | 'targetModelBytes' | 'smallerThanModel' | 'payloadToModelRatio' | 'budgetBytes' | 'kept' | 'changed' | 'seconds' | 'shareCarried' | 'llamaEval' | 'budgetSearch'>, DiffPayload {
  codec: 'gguf-blocks';
  /** The stored-bytes digests of the two models (docs/format/gguf.md §18.4), not the float32 fingerprints of §18.3. */
  baseFingerprint: string;
  targetFingerprint: string;
  method: 'exact' | 'ongrid';
  formatVersion: 8;
  /** The on-grid payload's choice (method `ongrid` only). */
  ongrid?: OngridGgufReport;
  structural?: undefined;
  changedBytes: number;
  changedTensors: string[];
  /** Header (metadata) or padding bytes changed. */
  headerChanged: boolean;
}

/**
 * The metrics document `--metrics-out` writes for a GGUF payload (`ndiff report` reads it): the
 * fields of the other formats' diffs, with the runtime's figures under `eval` when `--eval`
 * measured it (agreement with the target on the text's next tokens, and the mean KL and
 * perplexity beside it).
 */
function ggufMetricsDocument(s: DiffSettings, modelId: string, r: GgufDiffResult | OngridGgufResult, method: 'exact' | 'ongrid', seconds: number, e: GgufPayloadEval | undefined): string {
  return JSON.stringify({
    kind: 'ndiff-diff-metrics', method, modelId, sequence: s.sequence, target: s.target, budgetRequested: s.budget,
    bytes: r.payload.length, modelBytes: r.modelBytes, targetModelBytes: r.modelBytes, budgetBytes: 'budgetBytes' in r ? r.budgetBytes : 0,
    baseFingerprint: r.baseFingerprint, targetFingerprint: r.targetFingerprint, formatVersion: 8,
    accuracyBefore: null, accuracyAfter: null, trainSeconds: seconds,
    // What --json reports as llamaEval: `base` and `patched` are what ndiff report reads.
    ...(e ? { eval: e } : {}),
  }, null, 2) + '\n';
}

/** The options a GGUF diff has no use for, by their names, when given. */
function unusable(s: DiffSettings): string[] {
  return [
    s.method !== undefined && `method (--method ${s.method})`,
    s.modelOut !== undefined && 'modelOut (--model-out)',
    s.codec !== 'auto' && `codec (--codec ${s.codec})`,
    s.exactCodec !== 'auto' && `exactCodec (--exact-codec ${s.exactCodec})`,
    s.lowbitCodesOnly === true && 'lowbitCodesOnly (--lowbit-codes-only)',
    s.state.length > 0 && 'state (--state)',
    s.output !== undefined && 'output (--output)',
    s.outputKind !== undefined && 'outputKind (--output-kind)',
  ].filter((x): x is string => typeof x === 'string');
}

/**
 * The GGUF block payload from `s.base` to `s.target` (two .gguf models; a split model by any
 * part's name), written to `s.out` when given.
 * @throws UsageError options a GGUF diff does not take, or a budget auto target other than minAgreement;
 *   NoImprovementError with `eval`, a payload no closer to the target than the base (nothing written);
 *   MissingDependencyError with `eval` or budget auto, node-llama-cpp not installed;
 *   ModelMismatchError two models laid out differently; ModelFormatError an unreadable file
 */
export async function diffGguf(s: DiffSettings): Promise<GgufDiffReport> {
  const auto = qualityTargetOf(s);
  if (auto) checkGgufTarget(auto.target);
  const extra = unusable(s);
  if (extra.length) throw new UsageError(`${extra.join(', ')} do${extra.length === 1 ? 'es' : ''} not apply to GGUF models, which are diffed from their stored blocks (exactly with budget all, on the device's grid under a byte budget): leave ${extra.length === 1 ? 'it' : 'them'} out`, { options: extra });
  const first = ggufModelFiles(s.base)[0];
  const modelId = s.modelId ?? (await readModelIdRecord(first));
  if (modelId === undefined || modelId === '') {
    throw new UsageError(`which model is this an update of? ${first} records no model id: pass modelId (--model-id ID), the id devices know this model by (e.g. qwen-0.5b-chat), and keep it for every later update of it`, { base: s.base });
  }
  if (s.calibrate !== undefined && isEveryChange(s) && !auto) {
    throw new UsageError(`calibrate (--calibrate) ranks the blocks a lossy GGUF payload carries under a byte budget; budget all carries every change exactly, so there is nothing to rank: give a byte budget (--budget 10%) or budget auto, or leave calibrate out`, { calibrate: s.calibrate });
  }
  const threads = s.threads ?? defaultDiffThreads();
  if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`threads (--threads): expected a whole number of at least 1, found ${s.threads}`, { threads: s.threads });
  const hasher = await getHasher();
  const t0 = performance.now();
  // Worker threads for the chunks' coding, started only if a diff has enough to code.
  const coders = threads > 1 ? new GgufChunkCoders(threads) : undefined;
  const base = openGgufModel(s.base);
  try {
    const target = openGgufModel(s.target);
    try {
      const options = { modelId, sequence: s.sequence, createdBy: CREATED_BY, ...(s.expiresAt !== undefined ? { expiresAt: s.expiresAt } : {}), ...(coders ? { coders } : {}) };
      const modelBytes = target.model.parts.reduce((n, p) => n + p.header.fileSize, 0);
      const exactDiff = () => diffGgufModels(hasher, base.model, target.model, { ...options, onChunk: tenths(s.progress) });
      // --calibrate: each changed tensor weighed once by its effect through llama.cpp, for every budget tried.
      let weights: TensorWeights | undefined;
      let calibration: GgufCalibrationReport | undefined;
      if (s.calibrate !== undefined) {
        const { tensorScore } = rankGgufChange(base.model, target.model);
        ({ weights, report: calibration } = await calibrateGgufTensors({ base: s.base, target: s.target, calibrate: s.calibrate, tensorScore, progress: s.progress }));
      }
      const ongridDiff = (budget: string) => ongridGgufDiff(hasher, base.model, target.model, parseBudget(budget, modelBytes), options, weights);
      let r: GgufDiffResult | OngridGgufResult;
      let measured: GgufPayloadEval | undefined;
      let budgetSearch: BudgetSearchReport | undefined;
      if (auto) {
        // Each grid budget's on-grid payload, measured on the held-out text; the smallest meeting
        // the target is written as `budget: B` alone writes it, else the exact payload.
        const search = await searchBudget({
          target: auto.target, grid: auto.grid, modelBytes, allowWorse: !!s.allowWorse, progress: s.progress,
          candidates: () => [{ how: 'on grid', make: async (budget) => {
            const made = ongridDiff(budget);
            const e = await measureGgufPayload(s, made.payload);
            return { result: { made, e }, bytes: made.payload.length, closeness: ggufCloseness(e) };
          } }],
        });
        budgetSearch = { ...search.report, chosen: search.found?.budget ?? 'all', chosenHow: search.found ? search.found.how : 'exact', fallback: !search.found };
        if (search.found) ({ made: r, e: measured } = search.found.result);
        else {
          r = exactDiff();
          // Every grid payload tried fell short of it: the line says the exact payload's size.
          budgetSearch.ceilingBytes = r.payload.length;
          measured = await measureGgufPayload(s, r.payload);
        }
        s.progress(budgetChoiceText(budgetSearch));
      } else {
        r = isEveryChange(s) ? exactDiff() : ongridDiff(s.budget);
        if (s.eval !== undefined) {
          measured = await measureGgufPayload(s, r.payload);
          s.progress(ggufEvalText(measured));
          refuseGgufMovingAway(s, measured, r.payload.length);
        }
      }
      if (s.out !== undefined) await writeFile(s.out, r.payload);
      const o = 'takenBlocks' in r ? r : undefined;
      if (s.metricsOut !== undefined) await writeFile(s.metricsOut, ggufMetricsDocument(s, modelId, r, o ? 'ongrid' : 'exact', (performance.now() - t0) / 1000, measured));
      s.progress(`${r.changedBytes} bytes changed in ${r.runs} ranges (${r.changedTensors.length} tensors${r.header ? ', and header or padding bytes' : ''}) of ${formatBytes(r.modelBytes)}${o ? `, ${o.takenBlocks} of ${o.changedBlocks} changed blocks taken (${(100 * o.changeCarried).toFixed(1)}% of the squared dequantized change)` : ''}: a GGUF block payload (format v8) of ${formatBytes(r.payload.length)}`);
      return {
        ...(s.out !== undefined ? { out: s.out } : {}),
        bytes: r.payload.length, modelBytes: r.modelBytes, targetModelBytes: r.modelBytes, smallerThanModel: r.payload.length < r.modelBytes, payloadToModelRatio: r.payload.length / r.modelBytes,
        budgetBytes: o ? o.budgetBytes : 0, kept: o ? o.keptBytes : r.changedBytes, changed: o ? o.changedBlockBytes : r.changedBytes, codec: 'gguf-blocks', seconds: (performance.now() - t0) / 1000,
        baseFingerprint: r.baseFingerprint, targetFingerprint: r.targetFingerprint, method: o ? 'ongrid' : 'exact', formatVersion: 8,
        payload: r.payload, warnings: [], changedBytes: r.changedBytes, changedTensors: r.changedTensors, headerChanged: r.header,
        ...(o ? { shareCarried: o.changeCarried, ongrid: { changedBlocks: o.changedBlocks, takenBlocks: o.takenBlocks, opaqueBlocks: o.opaqueBlocks, changeCarried: o.changeCarried, tries: o.tries, ...(calibration ? { calibration } : {}) } } : {}),
        ...(measured ? { llamaEval: measured } : {}),
        ...(budgetSearch ? { budgetSearch } : {}),
      };
    } finally {
      target.close();
    }
  } finally {
    base.close();
    coders?.close();
  }
}

/**
 * A progress line at each tenth of the changed bytes coded, on a model whose changes take more
 * than a few chunks (a large model's exact diff runs for minutes).
 */
function tenths(progress: (line: string) => void): (coded: number, changed: number) => void {
  let said = 0;
  return (coded, changed) => {
    if (changed < 64 << 20) return;
    const tenth = Math.floor((10 * coded) / changed);
    if (tenth > said && coded < changed) {
      said = tenth;
      progress(`coding the changed blocks: ${10 * tenth}% (${formatBytes(coded)} of ${formatBytes(changed)})`);
    }
  };
}

/**
 * `ndiff diff` of two GGUF models (llama.cpp's files): the GGUF block payload (format v8,
 * docs/format/gguf.md §18.4), every changed ggml block exactly, for two versions of one layout.
 * Exact only for now: a byte budget, a method, `eval` or `calibrate` are refused, saying so, and
 * two models laid out differently are refused with what differs (ship the new file whole).
 */
import { writeFile } from 'node:fs/promises';
import { UsageError } from '../core/errors.ts';
import { getHasher } from '../core/hasher.ts';
import { CREATED_BY } from '../diff/build.ts';
import { formatBytes } from '../diff/budget.ts';
import { readModelIdRecord } from '../io/durable/model-id-file.ts';
import { diffGgufModels } from '../io/gguf/diff.ts';
import { openGgufModel } from '../io/gguf/files.ts';
import { ggufModelFiles } from '../io/gguf/in-place.ts';
import { isEveryChange, type DiffSettings } from './diff-options.ts';
import type { DiffPayload, ValueDiffReport } from './diff-types.ts';

/** {@link diffGguf}'s result: a value report (method `exact`, codec `gguf-blocks`; `kept` and `changed` count changed bytes), the payload and no warnings. */
export interface GgufDiffReport extends Pick<ValueDiffReport, 'out' | 'bytes' | 'modelBytes' | 'targetModelBytes' | 'smallerThanModel' | 'payloadToModelRatio' | 'budgetBytes' | 'kept' | 'changed' | 'seconds'>, DiffPayload {
  codec: 'gguf-blocks';
  /** The stored-bytes digests of the two models (docs/format/gguf.md §18.4), not the float32 fingerprints of §18.3. */
  baseFingerprint: string;
  targetFingerprint: string;
  method: 'exact';
  formatVersion: 8;
  structural?: undefined;
  changedBytes: number;
  changedTensors: string[];
  /** Header (metadata) or padding bytes changed. */
  headerChanged: boolean;
}

/** The options a GGUF diff has no use for, by their names, when given. */
function unusable(s: DiffSettings): string[] {
  return [
    s.method !== undefined && `method (--method ${s.method})`,
    s.calibrate !== undefined && 'calibrate (--calibrate)',
    s.eval !== undefined && 'eval (--eval)',
    s.modelOut !== undefined && 'modelOut (--model-out)',
    s.metricsOut !== undefined && 'metricsOut (--metrics-out)',
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
 * @throws UsageError a budget other than `all`, or options a GGUF diff does not take;
 *   ModelMismatchError two models laid out differently; ModelFormatError an unreadable file
 */
export async function diffGguf(s: DiffSettings): Promise<GgufDiffReport> {
  if (!isEveryChange(s)) {
    throw new UsageError(`budget ${s.budget} (--budget ${s.budget}) asks for a lossy payload, and GGUF models are diffed exactly only for now (every changed ggml block, byte for byte): give budget all (--budget all)`, { budget: s.budget, expected: 'all' });
  }
  const extra = unusable(s);
  if (extra.length) throw new UsageError(`${extra.join(', ')} do${extra.length === 1 ? 'es' : ''} not apply to GGUF models, which are diffed exactly (budget all) from their stored blocks: leave ${extra.length === 1 ? 'it' : 'them'} out`, { options: extra });
  const first = ggufModelFiles(s.base)[0];
  const modelId = s.modelId ?? (await readModelIdRecord(first));
  if (modelId === undefined || modelId === '') {
    throw new UsageError(`which model is this an update of? ${first} records no model id: pass modelId (--model-id ID), the id devices know this model by (e.g. qwen-0.5b-chat), and keep it for every later update of it`, { base: s.base });
  }
  const hasher = await getHasher();
  const t0 = performance.now();
  const base = openGgufModel(s.base);
  try {
    const target = openGgufModel(s.target);
    try {
      const r = diffGgufModels(hasher, base.model, target.model, { modelId, sequence: s.sequence, createdBy: CREATED_BY, ...(s.expiresAt !== undefined ? { expiresAt: s.expiresAt } : {}) });
      if (s.out !== undefined) await writeFile(s.out, r.payload);
      s.progress(`${r.changedBytes} bytes changed in ${r.runs} ranges (${r.changedTensors.length} tensors${r.header ? ', and header or padding bytes' : ''}) of ${formatBytes(r.modelBytes)}: a GGUF block payload (format v8) of ${formatBytes(r.payload.length)}`);
      return {
        ...(s.out !== undefined ? { out: s.out } : {}),
        bytes: r.payload.length, modelBytes: r.modelBytes, targetModelBytes: r.modelBytes, smallerThanModel: r.payload.length < r.modelBytes, payloadToModelRatio: r.payload.length / r.modelBytes,
        budgetBytes: 0, kept: r.changedBytes, changed: r.changedBytes, codec: 'gguf-blocks', seconds: (performance.now() - t0) / 1000,
        baseFingerprint: r.baseFingerprint, targetFingerprint: r.targetFingerprint, method: 'exact', formatVersion: 8,
        payload: r.payload, warnings: [], changedBytes: r.changedBytes, changedTensors: r.changedTensors, headerChanged: r.header,
      };
    } finally {
      target.close();
    }
  } finally {
    base.close();
  }
}

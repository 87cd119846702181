/**
 * A GGUF payload measured through llama.cpp before it is written (`ndiff diff --eval TEXT` on two
 * .gguf models), and `--budget auto --min-agreement A`: the smallest on-grid payload of the grid
 * whose patched model agrees with v2 on at least A of the held-out text's next tokens.
 *
 * The payload is measured on the model a device ends with: the base's files copied to a private
 * folder and patched there by the device's own in-place apply (which also proves the payload
 * reaches its target), then run beside v2 and v1 by `ndiff measure`'s code (gguf-runtime.ts):
 * greedy agreement with v2, mean KL(v2 || patched), perplexity. A payload no closer to v2 than v1
 * itself (gguf-closeness.ts's rule) is refused as `--eval` refuses one for the other formats
 * (NoImprovementError, exit 10, nothing written) unless `allowWorse`.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NoImprovementError, UsageError } from '../core/errors.ts';
import type { PayloadCloseness } from '../diff/closeness.ts';
import { formatBytes } from '../diff/budget.ts';
import { applyToGgufFile, ggufModelFiles } from '../io/gguf/in-place.ts';
import type { DiffSettings } from './diff-options.ts';
import type { GgufEvalRow, GgufPayloadEval } from './diff-types.ts';
import { measureGguf } from './measure/gguf-runtime.ts';
import type { QualityTarget } from './quality-target.ts';

/**
 * Patch a private copy of the base with `payload` (every part of a split model) and measure it
 * beside the target and the base on `s.eval` through llama.cpp.
 * @throws MissingDependencyError node-llama-cpp is not installed; the apply's and measure's typed errors
 */
export async function measureGgufPayload(s: Pick<DiffSettings, 'base' | 'target' | 'eval'>, payload: Uint8Array): Promise<GgufPayloadEval> {
  const evalText = s.eval as string;
  const dir = await mkdtemp(path.join(tmpdir(), 'ndiff-gguf-eval-'));
  try {
    const parts = ggufModelFiles(s.base);
    for (const p of parts) await copyFile(p, path.join(dir, path.basename(p)));
    const patched = path.join(dir, path.basename(parts[0]));
    await applyToGgufFile(patched, payload, { state: null });
    const r = await measureGguf({ target: s.target, base: s.base, models: [patched], eval: evalText });
    const row = (role: 'base' | 'model' | 'target') => {
      const m = r.models.find((x) => x.role === role);
      if (!m) throw new Error(`measureGguf returned no ${role} row`);
      return m;
    };
    const [b, p, t] = [row('base'), row('model'), row('target')];
    const pick = (m: typeof b): GgufEvalRow => ({ agreement: m.agreement, meanKl: m.meanKl, perplexity: m.perplexity });
    return { kind: 'gguf-llama', eval: evalText, positions: r.positions, base: pick(b), patched: pick(p), targetPerplexity: t.perplexity, movesAway: r.notCloser.length > 0, runtime: r.runtime };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The figures as the budget search reads them: agreement, with mean KL where the other formats hold mean |output − target|. */
export function ggufCloseness(e: GgufPayloadEval): PayloadCloseness {
  return {
    examples: e.positions, metric: 'top1',
    base: { agreement: e.base.agreement, meanAbsDiff: e.base.meanKl },
    patched: { agreement: e.patched.agreement, meanAbsDiff: e.patched.meanKl },
    movesAway: e.movesAway,
  };
}

/** One line of what `--eval` measured. */
export function ggufEvalText(e: GgufPayloadEval): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  return `through llama.cpp on ${e.positions} positions of ${e.eval}: base + payload agrees with the target on ${pct(e.patched.agreement)} of next tokens (KL ${e.patched.meanKl.toFixed(4)}, perplexity ${e.patched.perplexity.toFixed(2)}), the base alone ${pct(e.base.agreement)} (KL ${e.base.meanKl.toFixed(4)}); the target's perplexity ${e.targetPerplexity.toFixed(2)}`;
}

/** Refuse a payload measured no closer to the target than the base (nothing written), unless allowWorse. */
export function refuseGgufMovingAway(s: DiffSettings, e: GgufPayloadEval, bytes: number): void {
  if (!e.movesAway || s.allowWorse) return;
  throw new NoImprovementError(
    `the ${formatBytes(bytes)} payload leaves the model no closer to ${s.target} than ${s.base} itself (through llama.cpp: agreement ${(100 * e.patched.agreement).toFixed(2)}% against ${(100 * e.base.agreement).toFixed(2)}%, mean KL ${e.patched.meanKl.toFixed(4)} against ${e.base.meanKl.toFixed(4)}). Nothing was written${s.out !== undefined ? ` (${s.out})` : ''}: give a larger budget, or pass allowWorse (--allow-worse) to write it anyway`,
    { metric: 'top1', examples: e.positions, base: e.base, patched: e.patched },
  );
}

/** The quality targets a GGUF search takes: agreement with v2 on held-out text (values and labels are not what a language model's outputs are). */
export function checkGgufTarget(t: QualityTarget): void {
  if (t.option === 'minAgreement') return;
  throw new UsageError(`${t.option === 'maxMeanAbsDiff' ? 'maxMeanAbsDiff (--max-mean-abs-diff)' : 'maxAccuracyDrop (--max-accuracy-drop)'} does not measure a language model: a GGUF payload's quality is its greedy next-token agreement with the target on held-out text: state the target as minAgreement (--min-agreement 0.98)`, { option: t.option });
}

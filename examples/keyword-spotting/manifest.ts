/**
 * The `manifest.json` of the keyword-spotting data (see `data.ts`): its types, the update chain
 * it describes, and the digests of the split files.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { SourceInfo } from './plan.ts';
import type { ClassInfo } from './vocabulary.ts';

/** Where a split's files are and what they hold. */
export interface SplitManifest {
  update: number;
  role: 'train' | 'eval';
  description: string;
  count: number;
  files: { x: string; y: string; source: string };
  shapes: { x: number[]; y: number[]; source: number[] };
  sha256: { x: string; y: string; source: string };
  /** rows per class name (classes with no rows are left out) */
  perClass: Record<string, number>;
  generator: Record<string, unknown>;
}

/** One step of the update chain. */
export interface UpdateManifest {
  step: number;
  id: string;
  title: string;
  /** classes this update starts training (names) */
  newClasses: string[];
  /** indices of the classes the model must know after this update (all earlier ones too) */
  activeClasses: number[];
  /** the split with this update's new data */
  train: string;
  /** earlier train splits to mix in (replay) so older classes and conditions are not forgotten */
  replay: string[];
  /** this update's own eval split */
  eval: string;
  /** every eval split the model after this update should be measured on (forgetting included) */
  evalAll: string[];
}

/** The `manifest.json` written next to the splits. */
export interface KwsManifest {
  format: 'neural-diff/kws-data@1';
  generator: string;
  mode: 'full' | 'quick';
  seed: number;
  feature: Record<string, unknown>;
  numClasses: number;
  classes: ClassInfo[];
  updates: UpdateManifest[];
  splits: Record<string, SplitManifest>;
  heldOut: Record<string, { train: string[]; eval: string[] }>;
  sources: SourceInfo[];
  generation: Record<string, unknown>;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function buildUpdates(classes: ClassInfo[], splitNames: string[]): UpdateManifest[] {
  const titles = [
    ['base', 'base model: 24 command words, silence, unknown (espeak-ng)'],
    ['new-words-1', 'add 4 words: car, dog, key, hot'],
    ['new-words-2', 'add 4 words: ball, ear, sky, jet'],
    ['flite-voices', 'adapt to another synthesizer (flite voices)'],
    ['real-voices', 'adapt to real recorded voices (ktuberling / klettres speakers)'],
    ['far-field', 'adapt to reverberant rooms, cheap microphones and babble noise'],
  ];
  const prefix = ['base', 'u1-words', 'u2-words', 'u3-flite', 'u4-real', 'u5-far'];
  const out: UpdateManifest[] = [];
  for (let step = 0; step < titles.length; step++) {
    const train = `${prefix[step]}-train`;
    const evalName = `${prefix[step]}-eval`;
    if (!splitNames.includes(train) || !splitNames.includes(evalName)) throw new Error(`missing split for update ${step}`);
    out.push({
      step,
      id: titles[step][0],
      title: titles[step][1],
      newClasses: classes.filter((c) => c.introducedIn === step).map((c) => c.name),
      activeClasses: classes.filter((c) => c.introducedIn !== null && c.introducedIn <= step).map((c) => c.index),
      train,
      replay: prefix.slice(0, step).map((p) => `${p}-train`),
      eval: evalName,
      evalAll: prefix.slice(0, step + 1).map((p) => `${p}-eval`),
    });
  }
  return out;
}

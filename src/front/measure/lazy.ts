/**
 * The pieces of `ndiff diff --eval` / `--calibrate` that run models need tfjs, an optional peer
 * dependency that the `neural-diff` entry never loads up front (a bundler of the entry must not
 * pull it in either: test/package.test.ts). They are imported at run time through these
 * functions, by specifiers a bundler does not follow; callers wrap them in
 * importWithTrainerPeers (src/train/peer.ts), which turns a missing tfjs into a
 * MissingDependencyError naming the install command.
 */

/** `.ts` when this module runs from its source (tsx, the test suite), `.js` from dist/. */
const EXT = new URL(import.meta.url).pathname.endsWith('.ts') ? '.ts' : '.js';

/** `@tensorflow/tfjs`, imported when first needed. */
export function tfjsModule(): Promise<typeof import('@tensorflow/tfjs')> {
  const specifier = '@tensorflow/tfjs';
  return import(specifier) as Promise<typeof import('@tensorflow/tfjs')>;
}

/** A module of `src/train` (`path` relative to it, without extension, e.g. `onnx/payload-closeness`), imported when first needed. */
export function trainModule<T>(path: string): Promise<T> {
  return import(new URL(`../../train/${path}${EXT}`, import.meta.url).href) as Promise<T>;
}

/** A module of `src/engine` (`path` relative to it, without extension, e.g. `backend`), imported when first needed. */
export function engineModule<T>(path: string): Promise<T> {
  return import(new URL(`../../engine/${path}${EXT}`, import.meta.url).href) as Promise<T>;
}

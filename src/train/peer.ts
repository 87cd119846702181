/**
 * The trainers need `@tensorflow/tfjs` and `@tensorflow/tfjs-backend-wasm`, which are optional
 * peer dependencies of neural-diff (a device that only applies payloads never installs them).
 * Everything that trains loads them through {@link loadTrainer}, which turns "cannot find
 * package" into an error that names the command to run.
 */
import { MissingDependencyError } from '../core/errors.ts';

/** What a build server installs beside neural-diff to train diffs. */
export const TRAINER_INSTALL = 'npm i @tensorflow/tfjs @tensorflow/tfjs-backend-wasm';

/** The tfjs packages the trainers import. */
export const TRAINER_PACKAGES = ['@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm'] as const;

/** The package a module-not-found error names, when it is one of the trainer's peers. */
export function missingTrainerPackage(e: unknown): string | undefined {
  const err = e as { code?: string; message?: string } | null;
  if (!err || (err.code !== 'ERR_MODULE_NOT_FOUND' && err.code !== 'MODULE_NOT_FOUND')) return undefined;
  return TRAINER_PACKAGES.find((p) => err.message?.includes(`'${p}'`) || err.message?.includes(`"${p}"`));
}

/** The error for a missing trainer peer, naming the install command. */
export function missingTrainerError(pkg: string, what = 'training diffs'): MissingDependencyError {
  return new MissingDependencyError(
    `${what} needs ${pkg}, which is not installed (neural-diff lists tfjs as an optional peer dependency so that devices that only apply payloads do not install it): run \`${TRAINER_INSTALL}\` in your project`,
    { package: pkg, install: TRAINER_INSTALL },
  );
}

/**
 * Import a module that needs tfjs, converting a missing tfjs into a {@link MissingDependencyError}.
 * Any other failure is passed on unchanged.
 */
export async function importWithTrainerPeers<T>(load: () => Promise<T>, what?: string): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const pkg = missingTrainerPackage(e);
    if (pkg) throw missingTrainerError(pkg, what);
    throw e;
  }
}

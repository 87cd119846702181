/**
 * llama.cpp (node-llama-cpp) for the tests that run GGUF models. It is no dependency of
 * neural-diff, so CI's `npm ci` does not install it: when it is found nowhere, the tests install
 * it once with scripts/install-llama.sh (pinned, into .cache/llama/, about 20 s and 85 MB from the
 * npm registry); when that fails (no registry), they skip, saying why and what to run.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { MissingDependencyError } from '../../src/core/errors.ts';
import { loadLlamaRuntime, type LoadedLlama } from '../../src/front/measure/llama-runtime.ts';

const root = join(import.meta.dirname, '..', '..');

/** node-llama-cpp loaded, installed first when missing; or why the tests that need it skip. */
export async function llamaForTests(): Promise<{ runtime?: LoadedLlama; skip: string | false }> {
  try {
    return { runtime: await loadLlamaRuntime(), skip: false };
  } catch (e) {
    if (!(e instanceof MissingDependencyError)) throw e;
  }
  const run = spawnSync('sh', [join(root, 'scripts', 'install-llama.sh')], { encoding: 'utf8', timeout: 600_000 });
  if (run.status !== 0) {
    const why = (run.stderr || run.error?.message || '').trim().split('\n').slice(-3).join(' ');
    return { skip: `node-llama-cpp is not installed and scripts/install-llama.sh failed (${why}): run it where the npm registry answers` };
  }
  return { runtime: await loadLlamaRuntime(), skip: false };
}

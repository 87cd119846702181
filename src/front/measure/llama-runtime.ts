/**
 * llama.cpp for `ndiff measure`: the Node binding node-llama-cpp, which neural-diff does not
 * depend on (its optional GPU builds alone are about 650 MB; a device that applies payloads never
 * needs it). It is found, in order: in the folder `NEURAL_DIFF_LLAMA_DIR` names (set: there only),
 * where Node resolves it from neural-diff (an app that installed node-llama-cpp itself), in the
 * current folder's node_modules, and in `.cache/llama/` beside neural-diff's package.json (where
 * `scripts/install-llama.sh` installs it, pinned). Absent everywhere: a MissingDependencyError
 * naming the command to run.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MissingDependencyError } from '../../core/errors.ts';

/** The node-llama-cpp release measured and documented (docs/guides/llm.md). */
export const LLAMA_VERSION = '3.21.1';

/** The npm name of node-llama-cpp's prebuilt llama.cpp for this platform (CPU build; Metal on Apple silicon). */
export function prebuiltPackage(platform: string = process.platform, arch: string = process.arch): string {
  const os = platform === 'darwin' ? 'mac' : platform === 'win32' ? 'win' : platform;
  return `@node-llama-cpp/${os}-${arch}${platform === 'darwin' && arch === 'arm64' ? '-metal' : ''}`;
}

/** What an app runs to install llama.cpp for `ndiff measure`: pinned, without the optional GPU builds. */
export function llamaInstallCommand(): string {
  return `npm install --omit=optional node-llama-cpp@${LLAMA_VERSION} ${prebuiltPackage()}@${LLAMA_VERSION}`;
}

/** The command that installs it into neural-diff's own cache folder, from a checkout of neural-diff. */
export const LLAMA_SCRIPT = 'sh scripts/install-llama.sh';

/** neural-diff's package root: two folders up from src/front/measure (three from dist/src/front/measure). */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

/** The folder `scripts/install-llama.sh` installs into: `$NEURAL_DIFF_LLAMA_DIR`, else `.cache/llama/` beside package.json. */
export function llamaCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NEURAL_DIFF_LLAMA_DIR ? path.resolve(env.NEURAL_DIFF_LLAMA_DIR) : path.join(packageRoot(), '.cache', 'llama');
}

/** The parts of node-llama-cpp's module that measuring uses (its own types are not installed with neural-diff). */
export interface NodeLlamaCpp {
  getLlama(options: Record<string, unknown>): Promise<Llama>;
  LlamaLogLevel: { error: unknown };
}

/** A loaded llama.cpp (node-llama-cpp's `Llama`). */
export interface Llama {
  loadModel(options: { modelPath: string }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}

/** A loaded GGUF model (node-llama-cpp's `LlamaModel`). */
export interface LlamaModel {
  tokenize(text: string, specialTokens?: boolean): number[];
  readonly tokens: { readonly bos: number | null };
  readonly trainContextSize: number;
  createContext(options: { contextSize: number; batchSize: number; threads: number; sequences?: number; lora?: string }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}

/** A context of a model (node-llama-cpp's `LlamaContext`). */
export interface LlamaContext {
  getSequence(): LlamaContextSequence;
  dispose(): Promise<void>;
}

/** One sequence of a context: its KV cache (node-llama-cpp's `LlamaContextSequence`). */
export interface LlamaContextSequence {
  controlledEvaluate(input: (number | [number, { generateNext?: { probabilities?: boolean } }])[]): Promise<(undefined | { next: { probabilities?: Map<number, number> } })[]>;
  clearHistory(): Promise<void>;
}

/** The module and where it came from. */
export interface LoadedLlama {
  module: NodeLlamaCpp;
  /** The node-llama-cpp version found. */
  version: string;
  /** The folder of the node-llama-cpp package that was loaded. */
  from: string;
}

/** The entry file of the node-llama-cpp package in `pkgDir` (its `exports["."].import`, else `main`). */
function entryOf(pkgDir: string): { entry: string; version: string } {
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { version?: string; main?: string; exports?: Record<string, Record<string, string> | string> };
  const dot = pkg.exports?.['.'];
  const rel = typeof dot === 'string' ? dot : dot?.import ?? dot?.default ?? pkg.main ?? 'index.js';
  return { entry: path.join(pkgDir, rel), version: pkg.version ?? 'unknown' };
}

async function importFrom(pkgDir: string): Promise<LoadedLlama> {
  const { entry, version } = entryOf(pkgDir);
  return { module: (await import(pathToFileURL(entry).href)) as NodeLlamaCpp, version, from: pkgDir };
}

/** The error for llama.cpp not found, naming both ways to install it and where it was looked for. */
export function missingLlamaError(looked: string[], cause?: unknown): MissingDependencyError {
  const install = llamaInstallCommand();
  const why = cause instanceof Error ? ` (${cause.message.split('\n')[0]})` : '';
  return new MissingDependencyError(
    `measuring GGUF models needs llama.cpp through node-llama-cpp ${LLAMA_VERSION}, which is not installed${why}: run \`${install}\` in your project, or \`${LLAMA_SCRIPT}\` in a checkout of neural-diff (it installs them into ${llamaCacheDir()}); looked in ${looked.join(', ')}`,
    { package: 'node-llama-cpp', version: LLAMA_VERSION, install, script: LLAMA_SCRIPT, looked },
  );
}

/** Whether `e` is a module-not-found error naming node-llama-cpp itself (not one of its own imports). */
function notFound(e: unknown): boolean {
  const err = e as { code?: string; message?: string } | null;
  return !!err && (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') && /['"]node-llama-cpp['"]/.test(err.message ?? '');
}

/**
 * Import node-llama-cpp from the places the top comment lists.
 * @throws MissingDependencyError when it is in none of them (the message says what to run)
 */
export async function loadLlamaRuntime(env: NodeJS.ProcessEnv = process.env): Promise<LoadedLlama> {
  const cacheModules = path.join(llamaCacheDir(env), 'node_modules', 'node-llama-cpp');
  if (env.NEURAL_DIFF_LLAMA_DIR) {
    if (!existsSync(path.join(cacheModules, 'package.json'))) throw missingLlamaError([cacheModules]);
    return importFrom(cacheModules);
  }
  const looked = ['node-llama-cpp as Node resolves it from neural-diff'];
  try {
    const specifier = 'node-llama-cpp';
    const module = (await import(specifier)) as NodeLlamaCpp;
    return { module, version: await resolvedVersion(), from: 'node-llama-cpp' };
  } catch (e) {
    if (!notFound(e)) throw e;
  }
  const local = path.join(process.cwd(), 'node_modules', 'node-llama-cpp');
  for (const dir of [local, cacheModules]) {
    looked.push(dir);
    if (existsSync(path.join(dir, 'package.json'))) return importFrom(dir);
  }
  throw missingLlamaError(looked);
}

/** The version of the node-llama-cpp that Node resolves (its package.json beside the entry). */
async function resolvedVersion(): Promise<string> {
  try {
    let dir = path.dirname(fileURLToPath(import.meta.resolve('node-llama-cpp')));
    for (let i = 0; i < 4 && !existsSync(path.join(dir, 'package.json')); i++) dir = path.dirname(dir);
    return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

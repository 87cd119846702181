/**
 * `update`: what `ndiff update` does, as a library call: bring a model on this machine to the
 * newest version a release folder offers over HTTP (the updater of `neural-diff/node`), the model
 * id found as the command finds it, a health check as a shell command or a function, and the
 * warning when the model's inputs or outputs changed. `checkUpdate` is `ndiff update --check`.
 */
import * as path from 'node:path';
import { UsageError } from '../core/errors.ts';
import type { TrustedKey } from '../apply/ed25519.ts';
import type { UpdateCheck, UpdateResult } from '../updater/updater.ts';
import { readFolderModelId } from '../io/tfjs/folder-update.ts';
import { readModelIdRecord } from '../io/durable/model-id-file.ts';
import { isGgufPath, isModelFilePath } from '../io/model-paths.ts';
import { defaultStateDir, nodeUpdater, updateModel, type NodeUpdateOptions } from '../io/updater/node-updater.ts';
import { FileUpdaterState } from '../io/updater/state-files.ts';
import { readPublicKeyFile } from '../sign/node-keys.ts';
import { interfaceWarning, modelPortsAt } from './ports.ts';
import type { Progress } from './progress.ts';
import { runHealthCheck } from './health-check.ts';

/** What {@link update} and {@link checkUpdate} take. */
export interface UpdateOptions {
  /** The model: a TF.js folder or model JSON file, an `.onnx`, `.tflite` or `.safetensors` file, or a `.gguf` model (updated by payloads only, in place behind its undo journal). */
  model: string;
  /** Base URLs of the release folder, tried in order (mirrors). */
  from: string[];
  /** The release's trusted Ed25519 public keys: key files' paths, or keys. */
  publicKeys: (string | TrustedKey)[];
  /** The id the release was created with (default: the id the model folder recorded, or the only one the state knows). */
  modelId?: string;
  /** The folder of the updater's state and partial downloads (default `<model>.ndiff-updater`). */
  state?: string;
  /** Seconds without a byte before a request is abandoned (default 30). */
  timeout?: number;
  /** Bytes per second a download must average after its first `timeout` seconds (default 1024). */
  minRate?: number;
  /** Refuse to download more bytes than this in one update. */
  maxBytes?: number;
  /**
   * Run once the update is in place: a shell command (NDIFF_MODEL, NDIFF_VERSION and
   * NDIFF_FINGERPRINT set; a non-zero exit fails it) or a function; a failure rolls back.
   */
  healthCheck?: string | NodeUpdateOptions['healthCheck'];
  /** Seconds a health check command may run before it is stopped and counts as failed (default 300). */
  healthCheckTimeout?: number;
  /** Try again the payloads an earlier health check failed. */
  retryFailed?: boolean;
  /** Progress lines, as `ndiff update` prints them on stderr. */
  onProgress?: Progress;
}

/** What {@link update} returns: the updater's result, and the warning when the model's inputs or outputs changed. */
export type UpdateReport = UpdateResult & { interfaceChanged?: true; warning?: string };

async function modelIdOf(o: UpdateOptions, stateDir: string): Promise<string> {
  if (o.modelId) return o.modelId;
  // A model file records its id beside it at its first confirmed apply (<file>.ndiff-model.json).
  const recorded = isModelFilePath(o.model) || isGgufPath(o.model) ? await readModelIdRecord(o.model).catch(() => undefined) : await readFolderModelId(o.model).catch(() => undefined);
  if (recorded) return recorded;
  const known = Object.keys(await new FileUpdaterState(path.join(stateDir, 'state.json')).read());
  if (known.length === 1) return known[0];
  throw new UsageError(`which model is ${o.model}? pass modelId (--model-id) (the id the release was created with); nothing records it yet`);
}

/**
 * The health check command, run as `ndiff apply` runs its own (src/front/health-check.ts): its
 * output is progress, never stdout (which `--json` keeps for one document), and one that gives no
 * answer within `timeoutS` is stopped and fails the check.
 */
function healthCommand(command: string, model: string, timeoutS: number, progress: Progress): NonNullable<NodeUpdateOptions['healthCheck']> {
  // A model file (ONNX, LiteRT, safetensors, GGUF, or a model JSON of another name) is named to the check as NDIFF_MODEL_FILE.
  const file = isModelFilePath(model) || isGgufPath(model) || (/\.json$/i.test(model) && path.basename(model) !== 'model.json') ? model : undefined;
  const dir = file ? path.dirname(model) : path.basename(model) === 'model.json' ? path.dirname(model) : model;
  return ({ version, fingerprint }) => runHealthCheck(command, dir, timeoutS, progress, file, { NDIFF_MODEL: model, NDIFF_VERSION: String(version), NDIFF_FINGERPRINT: fingerprint });
}

/** Refuses a `--from` that is not an http(s) URL (a folder path, `file://`), saying how to serve a release folder. */
function checkReleaseUrls(urls: readonly string[]): void {
  for (const u of urls) {
    let protocol: string | undefined;
    try {
      protocol = new URL(u).protocol;
    } catch {
      protocol = undefined;
    }
    if (protocol === 'http:' || protocol === 'https:') continue;
    throw new UsageError(`from (--from) ${u}: expected the http:// or https:// URL of a release folder, found ${protocol ? `a ${protocol}// URL` : 'no URL (a path?)'}: ndiff update fetches a release as devices do, over HTTP; serve the folder \`ndiff release\` wrote with any static file server (to try one on this machine: python3 -m http.server 8000 --directory site, then --from http://127.0.0.1:8000/kws/)`, { from: u });
  }
}

async function updaterOptions(o: UpdateOptions): Promise<NodeUpdateOptions> {
  checkReleaseUrls(o.from);
  const stateDir = o.state ?? defaultStateDir(o.model);
  const trustedKeys = await Promise.all(o.publicKeys.map((k) => (typeof k === 'string' ? readPublicKeyFile(k) : k)));
  const modelId = await modelIdOf(o, stateDir);
  const hc = o.healthCheck;
  const timeout = o.healthCheckTimeout ?? 300;
  if (!(timeout > 0)) throw new UsageError(`healthCheckTimeout (--health-check-timeout) must be a positive number of seconds, got ${timeout}`, { expected: 'seconds > 0', found: timeout });
  const progress = o.onProgress ?? (() => {});
  return {
    model: o.model, modelId, urls: o.from, trustedKeys, stateDir, timeoutMs: (o.timeout ?? 30) * 1000, minBytesPerSecond: o.minRate ?? 1024,
    ...(o.maxBytes !== undefined ? { maxDownloadBytes: o.maxBytes } : {}),
    ...(hc ? { healthCheck: typeof hc === 'string' ? healthCommand(hc, o.model, timeout, progress) : hc } : {}),
    onProgress: progress,
    ...(o.retryFailed ? { retryFailed: true } : {}),
  };
}

/**
 * Bring the model to the newest version, as `ndiff update` does. A run that fails returns its
 * result with `status: 'failed'` and the typed error's code and message in `error` (the model kept
 * as it was); options that do not fit throw a UsageError.
 */
export async function update(o: UpdateOptions): Promise<UpdateReport> {
  const options = await updaterOptions(o);
  // The inputs and outputs before and after: a structural payload or a package may change them,
  // and the app that feeds the model must then change with it (said as diff says it).
  const portsBefore = await modelPortsAt(o.model);
  const r = await updateModel(options);
  const portsAfter = r.status === 'updated' && portsBefore ? await modelPortsAt(o.model) : undefined;
  const warning = portsBefore && portsAfter ? interfaceWarning(portsBefore, portsAfter, `${o.model} was updated to version ${r.latest}, but the app that feeds the model must change with it`) : undefined;
  return warning ? { ...r, interfaceChanged: true, warning } : r;
}

/** What an update would do, downloading only the manifest (`ndiff update --check`). */
export async function checkUpdate(o: UpdateOptions): Promise<UpdateCheck> {
  return nodeUpdater(await updaterOptions(o)).check();
}

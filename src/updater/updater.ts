/**
 * The device updater: one call, `update()`, takes the model a device holds to the newest version
 * a release folder offers, over HTTP from any static host.
 *
 * 1. fetch `manifest.json` from the first mirror whose copy passes every trust check
 *    (trust.ts: signature by a trusted key, model id, expiry, no rollback of the release number);
 *    the release number is recorded at once;
 * 2. read the fingerprint of the model held (a crash-interrupted install is finished or undone
 *    first) and plan the cheapest path to the newest version (plan.ts): payloads, a chain of
 *    them, or the full package;
 * 3. download every file of the path (download.ts: size cap, timeout, mirrors, Range resume,
 *    length and SHA-256 checked), all before anything is applied;
 * 4. apply, crash-safely, through the target's applier; each payload's header must be the one
 *    the manifest lists (model id, base, target, sequence);
 * 5. a payload that fails the health check is rolled back and recorded, and never tried again;
 *    the plan is made again without it (a longer chain, or the full package); a payload that
 *    cannot be downloaded or is refused is left out for this run;
 * 6. report: the result object, also given to `onReport`.
 *
 * Fetching and storage are injected (the WHATWG `fetch`, an {@link UpdaterStateStore}, a
 * {@link DownloadStore}, a {@link ModelTarget}), so the same code runs in Node, Electron,
 * browsers and React Native. No node module is imported here.
 */
import { verifyPayload } from '../apply/apply.ts';
import type { Ed25519Verifier } from '../apply/ed25519.ts';
import { openSignedPayload, type PublicKeyInput } from '../apply/signature.ts';
import { decodeStructuralPayload, isStructuralPayload } from '../apply/rebuild.ts';
import { DownloadError, FreshnessError, HealthCheckError, ModelMismatchError, NeuralDiffError, PayloadTooLargeError, UsageError } from '../core/errors.ts';
import { downloadFile, emptyStats, fetchSmallFile, type DownloadStats, type FetchLike } from './download.ts';
import { DEFAULT_MAX_MANIFEST_BYTES, MANIFEST_FILE, packageBytes, versionOf, type ManifestPayload, type ManifestVersion, type ReleaseFile, type ReleaseManifest } from './manifest.ts';
import { decodeGgufPayload, isGgufPayloadDocument } from '../io/gguf/payload.ts';
import { packageKey, planUpdate, type UpdatePlan } from './plan.ts';
import { loadRecord, MemoryDownloadStore, sequenceStoreOf, type DownloadStore, type UpdaterRecord, type UpdaterStateStore } from './state.ts';
import type { ModelTarget, PendingUpdateOutcome, UpdateHealthCheck } from './target.ts';
import { openTrustedRelease, type TrustedRelease } from './trust.ts';
import type { RetryOptions } from './retry.ts';

/**
 * Settings of an {@link Updater}; with when a mirror is asked again ({@link RetryOptions}:
 * backoff with jitter, `Retry-After`, the bound on a run's waits, the injectable sleep and random).
 */
export interface UpdaterOptions extends Omit<RetryOptions, 'now'> {
  /** The model id this device holds (the release's `--model-id`). */
  modelId: string;
  /** Base URLs of the release folder, tried in order (a CDN first, a mirror next). */
  urls: readonly string[];
  /** The publisher's public keys: the manifest must be signed by one of them. */
  trustedKeys: readonly PublicKeyInput[];
  /** The device's model. */
  target: ModelTarget;
  /** Where the updater's record lives (durable: file, IndexedDB, AsyncStorage). */
  state: UpdaterStateStore;
  /** Partial downloads (default: in memory, resumes within a run only). */
  downloads?: DownloadStore;
  /** Default: the global `fetch`. */
  fetch?: FetchLike;
  /** Milliseconds since 1970 (default `Date.now`): manifest expiry, and a `Retry-After` date. */
  now?: () => number;
  /** Abort a request that delivers nothing for this long (default 30 s). */
  timeoutMs?: number;
  /** Forget, before updating, the payloads and packages that failed a health check here before (see {@link Updater.forgetFailed}). */
  retryFailed?: boolean;
  /** Slowest average pace of a download, bytes per second, after its first `timeoutMs` (default 1024; 0: off): a slower mirror is left for the next. */
  minBytesPerSecond?: number;
  /** Bytes buffered before they are stored (default 256 KiB). */
  chunkBytes?: number;
  /** Requests per mirror and file, resumes included (default 4). */
  attemptsPerMirror?: number;
  /** Cap on the manifest's size (default 4 MiB). */
  maxManifestBytes?: number;
  /** Refuse to download more than this in one run (default: no cap beyond the manifest's lengths). */
  maxDownloadBytes?: number;
  /** Runs once an update is in place, before it is kept: false or a throw rolls back. */
  healthCheck?: UpdateHealthCheck;
  /** Called once per run with the result. */
  onReport?: (result: UpdateResult) => void | Promise<void>;
  /** Progress lines. */
  onProgress?: (message: string) => void;
  verifier?: Ed25519Verifier;
}

/** One thing the run did or tried. */
export interface UpdateStep {
  kind: 'payload' | 'full';
  /** The release file (`blobs/<sha256>`), or the first file of the package. */
  file: string;
  bytes: number;
  fromVersion?: number;
  toVersion: number;
  method?: string;
  outcome: 'applied' | 'installed' | 'health-check-failed' | 'download-failed' | 'refused';
  error?: { code: string; message: string };
  /** What the target said of an applied payload (a shared data file kept): also given to `onProgress` as `warning: …`. */
  warnings?: string[];
}

/** What {@link Updater.update} did. */
export interface UpdateResult {
  /** `up-to-date`: nothing to do; `updated`: the device holds the newest version now; `failed`: see `error`. */
  status: 'up-to-date' | 'updated' | 'failed';
  modelId: string;
  /** The manifest's release number, when one was accepted. */
  release?: number;
  /** The newest version the release offers. */
  latest?: number;
  /** The fingerprint held before the run (undefined: no model, or unreadable). */
  fromFingerprint?: string;
  /** The fingerprint held after the run. */
  fingerprint?: string;
  /** The path of the last plan: none, payloads, or the full package. */
  path: 'none' | 'payloads' | 'full';
  /** Bytes of the newest full package (what the run is compared against). */
  fullBytes?: number;
  download: DownloadStats;
  steps: UpdateStep[];
  /**
   * An update an earlier run switched in and never confirmed (killed during its health check),
   * finished by this run before it read the fingerprint: confirmed (this run's health check
   * passed) or rolled back (see {@link ModelTarget.settlePending}).
   */
  pendingUpdate?: PendingUpdateOutcome;
  error?: { code: string; message: string };
}

/** What {@link Updater.check} found, without downloading anything but the manifest. */
export interface UpdateCheck {
  release: number;
  latest: number;
  fingerprint?: string;
  plan: UpdatePlan | null;
  /** True when an earlier run left an update unfinished (killed after its switch): the next update finishes it first, with its health check (see {@link UpdateResult.pendingUpdate}). */
  pendingUpdate?: boolean;
}

const errorOf = (e: unknown) => ({ code: e instanceof NeuralDiffError ? e.code : 'ND_INTERNAL', message: (e as Error)?.message ?? String(e) });

/** The device updater (module doc). */
export class Updater {
  private readonly fetch: FetchLike;
  private readonly downloads: DownloadStore;

  constructor(private readonly options: UpdaterOptions) {
    if (!options.modelId) throw new UsageError('the updater needs the model id this device holds (modelId)');
    if (!options.urls?.length) throw new UsageError('the updater needs at least one base URL of the release folder (urls)');
    if (!options.trustedKeys?.length) throw new UsageError('the updater needs the publisher\'s public key (trustedKeys)');
    const global = (globalThis as { fetch?: FetchLike }).fetch;
    const fetch = options.fetch ?? (global ? (url: string, init: Parameters<FetchLike>[1]) => global(url, init) : undefined);
    if (!fetch) throw new UsageError('no fetch: this runtime has no global fetch; pass options.fetch');
    this.fetch = fetch;
    this.downloads = options.downloads ?? new MemoryDownloadStore();
  }

  private downloadOptions() {
    const o = this.options;
    const retry: RetryOptions = { retryBaseMs: o.retryBaseMs, retryCapMs: o.retryCapMs, maxRetryAfterMs: o.maxRetryAfterMs, maxRetryWaitMs: o.maxRetryWaitMs, sleep: o.sleep, random: o.random, now: o.now };
    return { ...retry, fetch: this.fetch, mirrors: o.urls, timeoutMs: o.timeoutMs, ...(o.minBytesPerSecond !== undefined ? { minBytesPerSecond: o.minBytesPerSecond } : {}), chunkBytes: o.chunkBytes, attemptsPerMirror: o.attemptsPerMirror, ...(o.maxDownloadBytes !== undefined ? { maxRunBytes: o.maxDownloadBytes } : {}) };
  }

  /** Fetch and verify the manifest, and record its release number. */
  private async refresh(stats: DownloadStats, record: UpdaterRecord): Promise<{ release: TrustedRelease; record: UpdaterRecord }> {
    const o = this.options;
    let release: TrustedRelease | undefined;
    const policy = { trustedKeys: o.trustedKeys, modelId: o.modelId, now: o.now, maxManifestBytes: o.maxManifestBytes, verifier: o.verifier };
    const { bytes } = await fetchSmallFile(MANIFEST_FILE, o.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES, this.downloadOptions(), stats, async (bytes) => {
      release = await openTrustedRelease(bytes, policy, record);
    });
    // The record as it is now: another run (an update beside a check) may have written it while
    // the manifest was fetched; what it recorded is kept, and the manifest judged against it.
    const fresh = await loadRecord(o.state, o.modelId);
    if (fresh.release !== record.release || fresh.manifestSha256 !== record.manifestSha256) release = await openTrustedRelease(bytes, policy, fresh);
    record = fresh;
    const m = (release as TrustedRelease).manifest;
    if (record.release !== m.release || record.manifestSha256 !== (release as TrustedRelease).sha256) {
      record = { ...record, release: m.release, manifestSha256: (release as TrustedRelease).sha256 };
      await o.state.save(o.modelId, record);
    }
    return { release: release as TrustedRelease, record };
  }

  /**
   * Forget the payloads and packages that failed a health check on this device, so the next
   * update tries them again (after the app or its health check was fixed).
   * @returns how many were forgotten.
   */
  async forgetFailed(): Promise<number> {
    const record = await loadRecord(this.options.state, this.options.modelId);
    const n = record.failed.length;
    if (n) await this.options.state.save(this.options.modelId, { ...record, failed: [], failedCleared: (record.failedCleared ?? 0) + 1 });
    return n;
  }

  /** Fetch the manifest and plan, without downloading or changing the model. */
  async check(): Promise<UpdateCheck> {
    const { release, record } = await this.refresh(emptyStats(), await loadRecord(this.options.state, this.options.modelId));
    // Read only: an update an earlier run left unconfirmed is reported, never finished or undone here.
    const pendingUpdate = (await this.options.target.hasPending?.()) === true;
    const fingerprint = await this.options.target.fingerprint({ recover: false });
    const failed = new Set(record.failed);
    const m = release.manifest;
    return { release: m.release, latest: m.latest, fingerprint, plan: planUpdate(m, fingerprint, { payloads: failed, noFullPackage: this.options.target.installs === false || failed.has(packageKey(versionOf(m, m.latest))), noStructural: !rebuilds(this.options.target) }), ...(pendingUpdate ? { pendingUpdate } : {}) };
  }

  /**
   * Bring the model to the newest version (module doc). Resolves with the result (also when it
   * failed: `status: 'failed'` and `error`); rejects only on errors that are not neural-diff's
   * (a bug, or the app's adapters throwing something else).
   */
  async update(): Promise<UpdateResult> {
    const o = this.options;
    const result: UpdateResult = { status: 'failed', modelId: o.modelId, path: 'none', download: emptyStats(), steps: [] };
    try {
      if (o.retryFailed) await this.forgetFailed();
      await this.run(result);
    } catch (e) {
      if (!(e instanceof NeuralDiffError)) throw e;
      result.status = 'failed';
      result.error = errorOf(e);
    }
    await o.onReport?.(result);
    return result;
  }

  private async run(result: UpdateResult): Promise<void> {
    const o = this.options;
    const progress = o.onProgress ?? (() => {});
    // What the target said of each payload applied (by its SHA-256).
    const warnings = new Map<string, string[]>();
    const stats = result.download;
    let { release, record } = await this.refresh(stats, await loadRecord(o.state, o.modelId));
    const m: ReleaseManifest = release.manifest;
    const latest = versionOf(m, m.latest);
    result.release = m.release;
    result.latest = m.latest;
    const sequences = sequenceStoreOf(o.state);
    // What failed a health check in this run (not "on this device before", in the error).
    const failedNow = new Set<string>();
    const remember = async (key: string) => {
      record = await loadRecord(o.state, o.modelId);
      if (!record.failed.includes(key)) {
        record.failed.push(key);
        failedNow.add(key);
      }
      await o.state.save(o.modelId, record);
    };
    // An update an earlier run switched in and never confirmed is finished first, by this run's
    // health check: the fingerprint read next is then a version the device keeps.
    if (o.target.settlePending) {
      const check = o.healthCheck;
      let checked: string | undefined;
      const pending = await o.target.settlePending(check && (({ kind, fingerprint }) => {
        checked = fingerprint;
        // A version's fingerprint, or a state a lossy payload reached: the version it leads to.
        const version = m.versions.find((v) => v.fingerprint === fingerprint)?.version ?? m.payloads.find((p) => p.target === fingerprint)?.toVersion ?? 0;
        return check({ kind, version, fingerprint });
      }));
      if (pending) {
        result.pendingUpdate = pending;
        for (const line of pending.actions) progress(line);
        // Failed its health check now: remembered as a failure during its own run would be, so
        // this run does not apply it (and run the failing check on it) again.
        if (pending.outcome === 'rolled-back' && pending.healthCheck === 'failed' && checked !== undefined) {
          for (const p of m.payloads) if (p.target === checked) await remember(p.sha256);
          if (latest.fingerprint === checked) await remember(packageKey(latest));
        }
      }
    }
    let current = await o.target.fingerprint();
    result.fromFingerprint = current;
    result.fingerprint = current;
    const skipped = new Set<string>(); // left out for this run only
    let fullFailed = false;
    const now = o.now ?? Date.now;
    const health = (kind: 'payload' | 'full', version: number, fingerprint: string) => o.healthCheck && (() => (o.healthCheck as UpdateHealthCheck)({ kind, version, fingerprint }));

    // Each round plans from what the device holds now; a step that fails takes its payload out.
    for (let round = 0; round <= m.payloads.length + 1; round++) {
      const failed = new Set(record.failed);
      const installs = o.target.installs !== false;
      const plan = planUpdate(m, current, { payloads: new Set([...failed, ...skipped]), noFullPackage: !installs || fullFailed || failed.has(packageKey(latest)), noStructural: !rebuilds(o.target) });
      // No payload path at all from here (not one left out because it failed): the full model only.
      if (!plan && !installs && !planUpdate(m, current, { noFullPackage: true, noStructural: !rebuilds(o.target) })) throw noInstall(o.target, latest, m.modelId, current);
      if (!plan) throw noWayLeft(result, record, failedNow, latest.version, m.modelId, current);
      if (plan.kind !== 'none' || !result.steps.length) result.path = plan.kind;
      result.fullBytes = plan.fullBytes;
      if (plan.kind === 'none') {
        const recorded = (await loadRecord(o.state, o.modelId)).sequence;
        // A crash between a confirmed install and recording its sequence: record it now.
        if (recorded === undefined || recorded < latest.version) await sequences.set(o.modelId, latest.version, { fingerprint: plan.fingerprint });
        result.status = result.steps.some((s) => s.outcome === 'applied' || s.outcome === 'installed') ? 'updated' : 'up-to-date';
        result.fingerprint = plan.fingerprint;
        return;
      }
      if (o.maxDownloadBytes !== undefined) await this.checkDownloadCap(plan, latest.files, stats, o.maxDownloadBytes);
      progress(plan.kind === 'full'
        ? `plan: the full model of version ${latest.version} (${plan.bytes} bytes)`
        : `plan: ${plan.steps.length} payload(s), ${plan.bytes} bytes (the full model is ${plan.fullBytes})`);

      if (plan.kind === 'payloads') {
        const fetched: Uint8Array[] = [];
        let broken: ManifestPayload | undefined;
        for (const p of plan.steps) {
          try {
            const bytes = await downloadFile(p, this.downloads, this.downloadOptions(), stats);
            // A manifest written before structural payloads were marked: found out here, before the rest of the path is fetched.
            if (!rebuilds(o.target) && isStructuralPayload(bytes)) {
              await this.downloads.remove(p.sha256);
              throw new ModelMismatchError(`payload ${p.file} is a structural payload (format v7, the model's files rebuilt), which this target cannot take: the update goes another way (the full model)`, { structural: true });
            }
            fetched.push(bytes);
          } catch (e) {
            if (!(e instanceof NeuralDiffError)) throw e;
            result.steps.push({ ...stepOf(p), outcome: e instanceof ModelMismatchError ? 'refused' : 'download-failed', error: errorOf(e) });
            broken = p;
            break;
          }
        }
        if (broken) {
          skipped.add(broken.sha256);
          continue;
        }
        for (const [k, p] of plan.steps.entries()) {
          try {
            await this.checkPayloadHeader(fetched[k], p, m);
            const applied = await o.target.applyPayload(fetched[k], { trustedKeys: o.trustedKeys, expectedModelId: m.modelId, sequenceStore: sequences, now, healthCheck: health('payload', p.toVersion, p.target) });
            if (applied?.warnings?.length) warnings.set(p.sha256, applied.warnings);
          } catch (e) {
            if (!(e instanceof NeuralDiffError)) throw e;
            const healthFailed = e instanceof HealthCheckError;
            result.steps.push({ ...stepOf(p), outcome: healthFailed ? 'health-check-failed' : 'refused', error: errorOf(e) });
            if (healthFailed) await remember(p.sha256);
            else skipped.add(p.sha256);
            await this.downloads.remove(p.sha256);
            current = await o.target.fingerprint();
            result.fingerprint = current;
            break;
          }
          const said = warnings.get(p.sha256);
          for (const w of said ?? []) progress(`warning: ${w}`);
          result.steps.push({ ...stepOf(p), outcome: 'applied', ...(said ? { warnings: said } : {}) });
          await this.downloads.remove(p.sha256);
          current = p.target;
          result.fingerprint = current;
          progress(`applied ${p.file}: version ${p.toVersion} (${p.method})`);
        }
        continue;
      }

      // The full package.
      const step: UpdateStep = { kind: 'full', file: latest.files[0].file, bytes: plan.bytes, toVersion: latest.version, outcome: 'installed' };
      const recorded = (await loadRecord(o.state, o.modelId)).sequence;
      if (recorded !== undefined && recorded > latest.version) {
        throw new FreshnessError(
          `this device applied sequence ${recorded} of model ${JSON.stringify(m.modelId)}, newer than version ${latest.version}, the newest this release offers: installing it would roll the device back, so it was refused; the release record was reset or rebuilt: publish the model as a version above ${recorded}`,
          { reason: 'stale', recorded, latest: latest.version },
        );
      }
      let files: { path: string; bytes: Uint8Array }[];
      try {
        files = [];
        for (const f of latest.files) files.push({ path: f.path, bytes: await downloadFile(f, this.downloads, this.downloadOptions(), stats) });
      } catch (e) {
        if (!(e instanceof NeuralDiffError)) throw e;
        result.steps.push({ ...step, outcome: 'download-failed', error: errorOf(e) });
        fullFailed = true;
        continue;
      }
      try {
        await o.target.installPackage(files, { modelId: m.modelId, fingerprint: latest.fingerprint, healthCheck: health('full', latest.version, latest.fingerprint) });
      } catch (e) {
        if (!(e instanceof NeuralDiffError)) throw e;
        const healthFailed = e instanceof HealthCheckError;
        result.steps.push({ ...step, outcome: healthFailed ? 'health-check-failed' : 'refused', error: errorOf(e) });
        if (healthFailed) await remember(packageKey(latest));
        fullFailed = true;
        current = await o.target.fingerprint();
        result.fingerprint = current;
        continue;
      }
      await sequences.set(o.modelId, latest.version, { fingerprint: latest.fingerprint });
      for (const f of latest.files) await this.downloads.remove(f.sha256);
      result.steps.push(step);
      current = latest.fingerprint;
      result.fingerprint = current;
      progress(`installed the full model of version ${latest.version}`);
    }
    throw new NeuralDiffError('ND_NO_UPDATE_PATH', `gave up after ${result.steps.length} step(s) without reaching version ${latest.version}: see the steps`, {});
  }

  /**
   * Refuse a plan whose downloads would take this run past `cap` bytes, counting what the run
   * received already (ways tried before this one) and leaving out the bytes the download store
   * holds from an earlier run.
   */
  private async checkDownloadCap(plan: UpdatePlan, packageFiles: readonly ReleaseFile[], stats: DownloadStats, cap: number): Promise<void> {
    let needed = 0;
    for (const f of plan.kind === 'full' ? packageFiles : plan.steps) needed += f.length - Math.min(f.length, await this.downloads.size(f.sha256));
    const total = stats.bytesReceived + needed;
    if (total <= cap) return;
    const way = plan.kind === 'full' ? `the full model of version ${plan.version.version}` : `${plan.steps.length} payload(s)`;
    throw new PayloadTooLargeError(
      total,
      cap,
      `this update would download ${total} bytes (${stats.bytesReceived} received so far in this run, ${needed} more for ${way}), above maxDownloadBytes (--max-bytes) ${cap}: nothing more was downloaded and the device keeps the model it holds now; raise the cap, or run the update where a larger download is fine`,
    );
  }

  /** The payload must be the one the manifest lists (mix-and-match of signed files is refused). */
  private async checkPayloadHeader(bytes: Uint8Array, p: ManifestPayload, m: ReleaseManifest): Promise<void> {
    const policy = { trustedKeys: this.options.trustedKeys, verifier: this.options.verifier };
    const opened = await openSignedPayload(bytes, policy);
    // A structural payload (format v7) rebuilds the model's files; its target's apply checks the rest.
    const header = isStructuralPayload(opened.payload) ? (await decodeStructuralPayload(opened.payload)).header
      // A GGUF block payload (format v8) names its base and target by their stored bytes; its apply checks the rest.
      : this.options.target.kind === 'gguf' && isGgufPayloadDocument(opened.payload) ? decodeGgufPayload(opened.payload).header
      : (await verifyPayload(bytes, policy)).payload.header;
    const wrong = header.modelId !== m.modelId ? `model id ${JSON.stringify(header.modelId)}` : header.baseFingerprint !== p.base ? `base ${header.baseFingerprint}` : header.targetFingerprint !== p.target ? `target ${header.targetFingerprint}` : header.sequence !== p.sequence ? `sequence ${header.sequence}` : '';
    if (wrong) {
      throw new ModelMismatchError(
        `payload ${p.file} has ${wrong}, but the manifest lists it for model ${JSON.stringify(m.modelId)}, base ${p.base}, target ${p.target}, sequence ${p.sequence}: the release folder is inconsistent (a payload built outside \`ndiff release\`, or files mixed between releases); it was not applied: rebuild the release`,
        { file: p.file },
      );
    }
  }
}

/**
 * The error when no way to the newest version is left: a download error (exit 11 in the CLI)
 * when every step of this run failed to download; otherwise what failed, including the ways left
 * out because they failed a health check here before (and how to try them again).
 */
function noWayLeft(result: UpdateResult, record: UpdaterRecord, failedNow: ReadonlySet<string>, version: number, modelId: string, current: string | undefined): NeuralDiffError {
  const steps = result.steps;
  if (steps.length > 0 && steps.every((s) => s.outcome === 'download-failed')) {
    return new DownloadError(`could not download any way to version ${version} of model ${JSON.stringify(modelId)}: ${steps.map((s) => s.error?.message ?? s.outcome).join('; ').slice(0, 600)}: check the network and the release URLs; the device keeps its model`, { steps: steps.length });
  }
  const now = record.failed.filter((k) => failedNow.has(k)).length;
  const before = record.failed.length - now;
  const which = [
    ...(before ? [`${before} way(s) (payloads or the full model) failed a health check on this device before`] : []),
    ...(now ? [`${now} way(s) failed one in this run`] : []),
  ];
  const remembered = which.length ? ` ${which.join(', and ')} and are not tried again; once the app or its health check is fixed, try them again with \`ndiff update --retry-failed\` (library: retryFailed, or Updater.forgetFailed())` : '';
  const tried = steps.length ? ` This run tried ${steps.length}: ${steps.map((s) => `${s.kind === 'full' ? 'the full model' : `payload v${s.fromVersion}->v${s.toVersion}`} ${s.outcome}${s.error ? ` (${s.error.code})` : ''}`).join(', ')}.` : ' This run tried none.';
  return new NeuralDiffError('ND_NO_UPDATE_PATH', `no way left to version ${version} of model ${JSON.stringify(modelId)} from ${current ?? 'no model'}.${tried}${remembered} The device keeps its model.`, { steps: steps.length, failedBefore: before, failedNow: now });
}

/**
 * The error when a target that installs no full package (a `.gguf` model: see
 * {@link ModelTarget.installs}) has no payload path to the newest version: the model it holds is
 * none the release has payloads from (or none at all), and only the full model would reach it.
 */
function noInstall(target: ModelTarget, latest: ManifestVersion, modelId: string, current: string | undefined): NeuralDiffError {
  const bytes = packageBytes(latest);
  const held = current === undefined ? 'there is no model here (or it cannot be read)' : `the model here is ${current}, which no payload of this release starts from (another version, or a file changed since)`;
  return new NeuralDiffError(
    'ND_NO_UPDATE_PATH',
    `${held}, so only the full model of version ${latest.version} of ${JSON.stringify(modelId)} (${bytes} bytes, ${latest.files.map((f) => f.file).join(', ')}) would reach it, and a ${target.kind} model is never installed whole by the updater: it would be downloaded into memory and written as a second copy beside the model, which a model of gigabytes does not fit. Nothing was downloaded and the model is untouched: download the full model yourself (its SHA-256 is in the manifest), replace the file with it while the app is stopped, then run the update again to keep it current by payloads`,
    { reason: 'no-full-install', kind: target.kind, version: latest.version, bytes, ...(current !== undefined ? { fingerprint: current } : {}) },
  );
}

/** Whether `target` takes structural payloads (format v7): see {@link ModelTarget.rebuilds}. */
function rebuilds(target: ModelTarget): boolean {
  return target.rebuilds ?? target.kind !== 'weights';
}

function stepOf(p: ManifestPayload): Omit<UpdateStep, 'outcome'> {
  return { kind: 'payload', file: p.file, bytes: p.length, fromVersion: p.fromVersion, toVersion: p.toVersion, method: p.method };
}

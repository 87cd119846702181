/**
 * `neural-diff/updater`: the device updater. Fetches a signed release manifest from a static
 * host, plans the cheapest path from the model the device holds to the newest version, downloads
 * with resume and checks every byte, and applies through the crash-safe appliers. No node module
 * and no tfjs: Node and Electron adapters (files, global fetch) are in `neural-diff/node`; the
 * browser keeps its state in IndexedDB ({@link IndexedDbUpdaterState}).
 *
 * ```ts
 * import { Updater, MemoryDownloadStore } from 'neural-diff/updater';
 * const updater = new Updater({ modelId: 'kws', urls: ['https://cdn.example.com/kws/'], trustedKeys: [publicKeyPem], target, state });
 * const result = await updater.update();
 * ```
 *
 * @module neural-diff/updater
 */
export { Updater, type UpdaterOptions, type UpdateResult, type UpdateStep, type UpdateCheck } from './updater.ts';
export { openTrustedRelease, isTrustedRelease, type TrustedRelease, type ManifestPolicy } from './trust.ts';
export { planUpdate, packageKey, type UpdatePlan, type PlanExclusions } from './plan.ts';
export { validateManifest, manifestSigningInput, serializeManifest, versionOf, packageBytes, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, MANIFEST_SIGNING_TAG, DEFAULT_MAX_MANIFEST_BYTES, type ReleaseManifest, type SignedManifest, type ManifestSignature, type ManifestVersion, type ManifestPayload, type PackageFile, type ReleaseFile } from './manifest.ts';
import { canonicalJson as canonicalJsonOf, type CanonicalJsonOptions } from '../core/canonical-json.ts';
export type { CanonicalJsonOptions };
/**
 * The canonical text a release manifest's signature covers (docs/FORMAT.md, 13.1): by default
 * numbers are safe integers only, as manifests hold them, so a fraction is refused as it always
 * was here; pass `{ numbers: 'any' }` for any finite number.
 * @throws UsageError for a value canonical JSON cannot hold
 */
export function canonicalJson(value: unknown, options: CanonicalJsonOptions = { numbers: 'safe-integers' }): string {
  return canonicalJsonOf(value, options);
}
export { downloadFile, fetchSmallFile, joinUrl, emptyStats, type FetchLike, type FetchResponse, type DownloadOptions, type DownloadStats, type DownloadAttempt } from './download.ts';
export { retryAfterMs, RETRY_DEFAULTS, type RetryOptions } from './retry.ts';
export { MemoryUpdaterState, MemoryDownloadStore, sequenceStoreOf, loadRecord, type UpdaterRecord, type UpdaterStateStore, type DownloadStore } from './state.ts';
export { weightStoreTarget, type ModelTarget, type TargetApplyOptions, type TargetApplyResult, type TargetInstallOptions, type PackageFileBytes, type UpdateHealthCheck, type PendingUpdateOutcome, type PendingCheck, type WeightStoreTargetOptions } from './target.ts';
export { IndexedDbUpdaterState, IndexedDbDownloadStore } from './indexeddb.ts';
export { sha256Hex, sha256Pure } from './sha256.ts';
export { NeuralDiffError, DownloadError, SignatureError, FreshnessError, HealthCheckError, ModelMismatchError } from '../core/errors.ts';
// Types named in the signatures above, so callers can name them too.
export type { IndexedDbOptions, Durability } from './indexeddb.ts';

/**
 * Every trust decision about a release manifest, in one place that the updater cannot go around
 * (the shape of python-tuf's trusted metadata set): a manifest is used only as a
 * {@link TrustedRelease}, and the only way to make one is {@link openTrustedRelease}, which, in
 * this order and before anything else reads the manifest:
 *
 * 1. caps its size;
 * 2. parses it as JSON and takes the canonical form of its signed part;
 * 3. requires a valid Ed25519 signature by a trusted key over it (a domain tag first);
 * 4. checks its structure (manifest.ts);
 * 5. requires the model id the device expects;
 * 6. refuses it once expired (freeze);
 * 7. refuses a release number below the highest one accepted (rollback), and the same number
 *    with other content.
 */
import { FreshnessError, ModelMismatchError, PayloadFormatError, PayloadTooLargeError, SignatureError, UsageError } from '../core/errors.ts';
import { decodeUtf8Strict } from '../core/utf8-decode.ts';
import { fromHex } from '../core/hex.ts';
import { resolveVerifier, verifyEd25519, type Ed25519Verifier } from '../apply/ed25519.ts';
import { parseTrustedKeys, type PublicKeyInput } from '../apply/signature.ts';
import { canonicalJson } from '../core/canonical-json.ts';
import { DEFAULT_MAX_MANIFEST_BYTES, MANIFEST_JSON, MANIFEST_SIGNING_TAG, validateManifest, type ReleaseManifest } from './manifest.ts';
import { sha256Hex } from './sha256.ts';
import { encodeUtf8 } from '../core/utf8.ts';
import type { UpdaterRecord } from './state.ts';

/** What a device requires of a manifest. */
export interface ManifestPolicy {
  /** The publisher's public keys (PEM, hex, base64 or raw); at least one. */
  trustedKeys: readonly PublicKeyInput[];
  /** The model id this device holds. */
  modelId: string;
  /** Milliseconds since 1970 (default `Date.now`). */
  now?: () => number;
  /** Size cap before parsing (default 4 MiB). */
  maxManifestBytes?: number;
  verifier?: Ed25519Verifier;
}

/** A manifest that passed every check of {@link openTrustedRelease}. */
export interface TrustedRelease {
  readonly manifest: ReleaseManifest;
  /** SHA-256 of the signed bytes (what the device records beside the release number). */
  readonly sha256: string;
  /** The key that signed it. */
  readonly keyId: string;
}
const trusted = new WeakSet<TrustedRelease>();

/** True for an object {@link openTrustedRelease} returned (not a look-alike). */
export function isTrustedRelease(r: unknown): r is TrustedRelease {
  return typeof r === 'object' && r !== null && trusted.has(r as TrustedRelease);
}

/**
 * Verify manifest bytes against the device's policy and its record (the last release accepted).
 * @throws PayloadTooLargeError, PayloadFormatError, SignatureError, ModelMismatchError, FreshnessError, UsageError
 */
export async function openTrustedRelease(bytes: Uint8Array, policy: ManifestPolicy, record: Pick<UpdaterRecord, 'release' | 'manifestSha256'> = {}): Promise<TrustedRelease> {
  const keys = parseTrustedKeys(policy.trustedKeys);
  if (!keys.length) throw new UsageError('the updater needs the publisher\'s public key (trustedKeys): a release manifest is only used when signed by a trusted key');
  const limit = policy.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES;
  if (bytes.length > limit) throw new PayloadTooLargeError(bytes.length, limit);
  let doc: unknown;
  try {
    doc = JSON.parse(decodeUtf8Strict(bytes));
  } catch (e) {
    throw new PayloadFormatError(`release manifest is not JSON (${(e as Error).message}): expected the manifest.json \`ndiff release\` writes; the server sent something else (an error page, a truncated file): check the URL`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || typeof (doc as { signed?: unknown }).signed !== 'object' || !Array.isArray((doc as { signatures?: unknown }).signatures)) {
    throw new PayloadFormatError('release manifest: expected {"signed": {...}, "signatures": [...]}, found another JSON document: check the URL');
  }
  const { signed, signatures } = doc as { signed: unknown; signatures: unknown[] };
  let message: Uint8Array;
  try {
    message = encodeUtf8(MANIFEST_SIGNING_TAG + canonicalJson(signed, MANIFEST_JSON));
  } catch (e) {
    throw new PayloadFormatError(`release manifest: its signed part holds a value a manifest cannot (${(e as Error).message}): it is not one \`ndiff release\` writes`);
  }
  const impl = await resolveVerifier(policy.verifier);
  const offered: string[] = [];
  let keyId: string | undefined;
  for (const s of signatures.slice(0, 16)) {
    if (typeof s !== 'object' || s === null) continue;
    const { keyId: id, sig } = s as { keyId?: unknown; sig?: unknown };
    if (typeof id !== 'string' || typeof sig !== 'string' || !/^[0-9a-f]{128}$/.test(sig)) continue;
    offered.push(id);
    const key = keys.find((k) => k.keyId === id);
    if (key && (await verifyEd25519(key, fromHex(sig), message, impl))) {
      keyId = id;
      break;
    }
  }
  if (!keyId) {
    const known = offered.filter((id) => keys.some((k) => k.keyId === id));
    throw new SignatureError(
      known.length
        ? `release manifest: the signature by trusted key ${known[0]} does not match its content: the manifest was altered after signing (or damaged in transit); it was refused: fetch it again, and if it persists, the server holds a tampered manifest`
        : `release manifest is signed by ${offered.length ? `key(s) ${offered.join(', ')}` : 'no key'}, none of which this device trusts (${keys.map((k) => k.keyId).join(', ')}): it was refused. Sign releases with a trusted key (\`ndiff release publish --key\`), or give the device that publisher's public key if it is legitimate`,
      { offered, trusted: keys.map((k) => k.keyId) },
    );
  }
  const manifest = validateManifest(signed);
  if (manifest.modelId !== policy.modelId) {
    throw new ModelMismatchError(
      `release manifest is for model ${JSON.stringify(manifest.modelId)}, this device holds ${JSON.stringify(policy.modelId)}: the URL points at another model's release folder, or the release was created with another --model-id; point the device at the release of ${JSON.stringify(policy.modelId)}`,
      { expected: policy.modelId, found: manifest.modelId },
    );
  }
  const now = (policy.now ?? Date.now)();
  if (!Number.isFinite(now)) throw new FreshnessError(`the device clock returned ${now}: cannot check the manifest's expiry, so it was refused: fix the clock source`, { reason: 'clock' });
  if (now >= manifest.expiresAt * 1000) {
    throw new FreshnessError(
      `release manifest ${manifest.release} of model ${JSON.stringify(manifest.modelId)} expired at ${new Date(manifest.expiresAt * 1000).toISOString()} and the device clock says ${new Date(now).toISOString()}: it was refused (a server withholding updates keeps serving an old manifest). The publisher must re-sign it (\`ndiff release publish\`) before it expires; if the device clock is wrong, fix it first`,
      { reason: 'expired', release: manifest.release, expiresAt: manifest.expiresAt, now },
    );
  }
  const sha256 = await sha256Hex(message);
  if (record.release !== undefined && manifest.release < record.release) {
    throw new FreshnessError(
      `release manifest ${manifest.release} of model ${JSON.stringify(manifest.modelId)} is older than release ${record.release}, which this device accepted before: it is a replayed or rolled-back manifest and was refused; a mirror serving it is stale or hostile`,
      { reason: 'rollback', release: manifest.release, recorded: record.release },
    );
  }
  if (record.release === manifest.release && record.manifestSha256 !== undefined && record.manifestSha256 !== sha256) {
    throw new FreshnessError(
      `release manifest ${manifest.release} of model ${JSON.stringify(manifest.modelId)} differs from the release ${manifest.release} this device accepted before: two manifests under one release number are refused (the publisher must give every publication a new number; a signing key may be misused)`,
      { reason: 'release-reused', release: manifest.release },
    );
  }
  const out: TrustedRelease = Object.freeze({ manifest, sha256, keyId });
  trusted.add(out);
  return out;
}

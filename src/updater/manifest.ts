/**
 * The release manifest: the one file a device fetches first, signed by the publisher. It names
 * every other file of a release folder by its SHA-256 (content-addressed, so a CDN may cache
 * them forever) with its length, lists the versions of one model (fingerprint and the files of
 * its full package) and the payloads between them (base and target fingerprints, sequence).
 * docs/FORMAT.md specifies it, with a test vector.
 *
 * ```json
 * {"signed": {"format": "neural-diff-release", "formatVersion": 1, "modelId": "kws", "release": 7, ...},
 *  "signatures": [{"keyId": "3f2a…", "sig": "<128 hex chars>"}]}
 * ```
 *
 * What is signed is the domain tag {@link MANIFEST_SIGNING_TAG} followed by the canonical JSON
 * (src/core/canonical-json.ts, numbers restricted to safe integers) of `signed`. This file is pure: it parses and checks the structure; the
 * trust decisions (signature, expiry, rollback) are in trust.ts.
 */
import { PayloadFormatError } from '../core/errors.ts';
import { encodeUtf8 } from '../core/utf8.ts';
import { canonicalJson } from '../core/canonical-json.ts';

/** `format` of a manifest. */
export const MANIFEST_FORMAT = 'neural-diff-release';
/** The manifest format version this code writes and reads. */
export const MANIFEST_FORMAT_VERSION = 1;
/** Prefixed to the canonical JSON before signing, so a manifest signature means nothing else. */
export const MANIFEST_SIGNING_TAG = 'neural-diff release manifest v1\n';
/** Canonical JSON as manifests are signed and written: integers only (docs/FORMAT.md, 13.1). */
export const MANIFEST_JSON = { numbers: 'safe-integers' } as const;
/** The name of the manifest in a release folder. */
export const MANIFEST_FILE = 'manifest.json';
/** Default cap on the manifest's size, before it is parsed. */
export const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** A file of the release folder, named by its content. */
export interface ReleaseFile {
  /** Its path in the release folder: `blobs/<sha256>`. */
  file: string;
  /** Its exact length in bytes. */
  length: number;
  /** SHA-256 of its bytes, 64 lowercase hex chars. */
  sha256: string;
}

/** One file of a full model package, and the name it takes on the device. */
export interface PackageFile extends ReleaseFile {
  /** Its name in the model folder (`model.json`, `group1-shard1of1.bin`, `model.onnx`). */
  path: string;
}

/** One version of the model, as a full package. */
export interface ManifestVersion {
  /** 1, 2, 3, … in the order the versions were added; the sequence of payloads into it. */
  version: number;
  /** The model fingerprint of this version (src/core/fingerprint.ts). */
  fingerprint: string;
  /** The files of the full model. */
  files: PackageFile[];
}

/** One payload: takes a model whose fingerprint is `base` to `target`. */
export interface ManifestPayload extends ReleaseFile {
  base: string;
  target: string;
  /** The payload header's sequence: the version it leads to. */
  sequence: number;
  /** The version whose fingerprint (or a state reached from it) is `base`. */
  fromVersion: number;
  /** The version the payload leads to (`target` is its fingerprint when `exact`). */
  toVersion: number;
  /** How it was made: `exact` (bit for bit), `topk`, … */
  method: string;
  /** True when `target` is the fingerprint of version `toVersion` itself. */
  exact: boolean;
  /**
   * True for a structural payload (format v7): it rebuilds the model's files, so only a target
   * that keeps the model in files can take it (absent on other payloads, and in manifests written
   * before it was recorded).
   */
  structural?: true;
}

/** The signed part of a manifest. */
export interface ReleaseManifest {
  format: typeof MANIFEST_FORMAT;
  formatVersion: number;
  /** The model id every payload header carries (from the release record, never a folder name). */
  modelId: string;
  /** What the model files are: a TF.js folder, an ONNX file, a LiteRT file, a safetensors file or a GGUF file (payloads named by stored-bytes digests). */
  modelKind: 'tfjs' | 'onnx' | 'tflite' | 'safetensors' | 'gguf';
  /** The manifest's own version: higher on every publication; devices refuse a lower one. */
  release: number;
  /** When it was made (ISO 8601, informative). */
  createdAt: string;
  /** Seconds since 1970 from which devices refuse it (a withheld-update attack serves old manifests). */
  expiresAt: number;
  /** The newest version: where every device should end. */
  latest: number;
  versions: ManifestVersion[];
  payloads: ManifestPayload[];
}

/** One signature over the manifest. */
export interface ManifestSignature {
  /** 16 hex chars: the first 8 bytes of SHA-512 of the raw public key (as payload envelopes name keys). */
  keyId: string;
  /** The 64-byte Ed25519 signature, 128 lowercase hex chars. */
  sig: string;
}

/** The manifest file: the signed part and its signatures. */
export interface SignedManifest {
  signed: ReleaseManifest;
  signatures: ManifestSignature[];
}

/** The bytes an Ed25519 signature over `manifest` covers. */
export function manifestSigningInput(manifest: ReleaseManifest): Uint8Array {
  return encodeUtf8(MANIFEST_SIGNING_TAG + canonicalJson(manifest, MANIFEST_JSON));
}

/** The manifest file's text (canonical JSON of the whole document, then a newline). */
export function serializeManifest(doc: SignedManifest): Uint8Array {
  return encodeUtf8(canonicalJson(doc, MANIFEST_JSON) + '\n');
}

const HEX64 = /^[0-9a-f]{64}$/;
const FINGERPRINT = /^[0-9a-f]{16}$/;
/** A model file's name on the device: no folders, nothing hidden (the applier's control files start with a dot). */
export const PACKAGE_PATH = /^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,199}$/;
const MAX_ENTRIES = 100_000;

function fail(what: string, found: unknown): never {
  const shown = typeof found === 'string' ? JSON.stringify(found.length > 60 ? found.slice(0, 60) + '…' : found) : Array.isArray(found) ? 'an array' : found === null ? 'null' : typeof found === 'object' ? 'an object' : String(found);
  throw new PayloadFormatError(`release manifest: ${what}, found ${shown}: the manifest is not one \`ndiff release\` writes (damaged, or from another tool); do not use it: publish it again`, { field: what });
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`expected ${what} to be an object`, v);
  return v as Record<string, unknown>;
}
function int(v: unknown, what: string, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail(`expected ${what} to be an integer >= ${min}`, v);
  return v as number;
}
function str(v: unknown, what: string, re?: RegExp, max = 1000): string {
  if (typeof v !== 'string' || v.length > max || (re && !re.test(v))) fail(`expected ${what} to be ${re ? `a string matching ${re}` : 'a string'}`, v);
  return v as string;
}
function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v) || v.length > MAX_ENTRIES) fail(`expected ${what} to be an array of at most ${MAX_ENTRIES} entries`, v);
  return v as unknown[];
}

function releaseFile(v: Record<string, unknown>, what: string): ReleaseFile {
  const sha256 = str(v.sha256, `${what}.sha256`, HEX64);
  const file = str(v.file, `${what}.file`, /^blobs\/[0-9a-f]{64}$/);
  if (file !== `blobs/${sha256}`) fail(`expected ${what}.file to be blobs/<its sha256> (content-addressed)`, file);
  return { file, length: int(v.length, `${what}.length`), sha256 };
}

/**
 * Check the structure of a parsed manifest document (after its signature was verified) and
 * return it typed. Also checks the references: every payload's versions exist, the latest
 * version exists, an exact payload's target is its version's fingerprint.
 *
 * @throws PayloadFormatError naming the first field that is wrong
 */
export function validateManifest(doc: unknown): ReleaseManifest {
  const m = obj(doc, 'signed');
  if (m.format !== MANIFEST_FORMAT) fail(`expected signed.format "${MANIFEST_FORMAT}"`, m.format);
  const formatVersion = int(m.formatVersion, 'signed.formatVersion', 1);
  if (formatVersion !== MANIFEST_FORMAT_VERSION) {
    throw new PayloadFormatError(`release manifest format version ${formatVersion} is not supported (this updater reads ${MANIFEST_FORMAT_VERSION}): update neural-diff on the device`, { found: formatVersion });
  }
  const modelKind = m.modelKind;
  if (modelKind !== 'tfjs' && modelKind !== 'onnx' && modelKind !== 'tflite' && modelKind !== 'safetensors' && modelKind !== 'gguf') fail('expected signed.modelKind "tfjs", "onnx", "tflite", "safetensors" or "gguf"', modelKind);
  const versions = list(m.versions, 'signed.versions').map((raw, i): ManifestVersion => {
    const v = obj(raw, `signed.versions[${i}]`);
    const files = list(v.files, `signed.versions[${i}].files`).map((f, j) => {
      const what = `signed.versions[${i}].files[${j}]`;
      const o = obj(f, what);
      return { path: str(o.path, `${what}.path`, PACKAGE_PATH), ...releaseFile(o, what) };
    });
    if (!files.length) fail(`expected signed.versions[${i}].files to list the model's files`, files);
    if (new Set(files.map((f) => f.path)).size !== files.length) fail(`expected the paths of signed.versions[${i}].files to differ`, files.map((f) => f.path).join(','));
    return { version: int(v.version, `signed.versions[${i}].version`, 1), fingerprint: str(v.fingerprint, `signed.versions[${i}].fingerprint`, FINGERPRINT), files };
  });
  const byVersion = new Map(versions.map((v) => [v.version, v]));
  if (byVersion.size !== versions.length) fail('expected every version number once in signed.versions', versions.map((v) => v.version).join(','));
  const latest = int(m.latest, 'signed.latest', 1);
  if (!byVersion.has(latest)) fail('expected signed.latest to be one of signed.versions', latest);
  const payloads = list(m.payloads, 'signed.payloads').map((raw, i): ManifestPayload => {
    const what = `signed.payloads[${i}]`;
    const p = obj(raw, what);
    const out: ManifestPayload = {
      ...releaseFile(p, what),
      base: str(p.base, `${what}.base`, FINGERPRINT),
      target: str(p.target, `${what}.target`, FINGERPRINT),
      sequence: int(p.sequence, `${what}.sequence`, 1),
      fromVersion: int(p.fromVersion, `${what}.fromVersion`, 1),
      toVersion: int(p.toVersion, `${what}.toVersion`, 1),
      method: str(p.method, `${what}.method`, /^[a-z0-9-]{1,40}$/),
      exact: p.exact === true ? true : p.exact === false ? false : fail(`expected ${what}.exact to be a boolean`, p.exact),
      ...(p.structural === true ? { structural: true } : p.structural === undefined ? {} : fail(`expected ${what}.structural to be true or absent`, p.structural)),
    };
    const to = byVersion.get(out.toVersion);
    if (!to || !byVersion.has(out.fromVersion)) fail(`expected ${what}.fromVersion and .toVersion to be listed versions`, `${out.fromVersion}->${out.toVersion}`);
    if (out.fromVersion >= out.toVersion) fail(`expected ${what} to lead to a later version`, `${out.fromVersion}->${out.toVersion}`);
    if (out.sequence !== out.toVersion) fail(`expected ${what}.sequence to be its toVersion ${out.toVersion}`, out.sequence);
    if (out.exact && out.target !== to.fingerprint) fail(`expected the exact ${what}.target to be version ${out.toVersion}'s fingerprint ${to.fingerprint}`, out.target);
    if (out.base === out.target) fail(`expected ${what}.base and .target to differ`, out.base);
    return out;
  });
  return {
    format: MANIFEST_FORMAT,
    formatVersion,
    modelId: str(m.modelId, 'signed.modelId', /^[^\u0000-\u001f\u007f]{1,200}$/),
    modelKind,
    release: int(m.release, 'signed.release', 1),
    createdAt: str(m.createdAt, 'signed.createdAt', undefined, 64),
    expiresAt: int(m.expiresAt, 'signed.expiresAt', 1),
    latest,
    versions,
    payloads,
  };
}

/** The version numbered `n` (it exists in a validated manifest when `n` came from it). */
export function versionOf(manifest: ReleaseManifest, n: number): ManifestVersion {
  const v = manifest.versions.find((x) => x.version === n);
  if (!v) throw new PayloadFormatError(`release manifest lists no version ${n}`);
  return v;
}

/** Bytes of a version's full package. */
export function packageBytes(version: ManifestVersion): number {
  return version.files.reduce((n, f) => n + f.length, 0);
}

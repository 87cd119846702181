/**
 * A release folder of a GGUF model for the updater tests, in the layout `ndiff release` writes
 * (blobs by SHA-256, `manifest.json` signed by an Ed25519 key, docs/format/release-manifests.md)
 * with `modelKind: "gguf"`: each version's full file (a split model's parts), and the exact GGUF block payload (format
 * v8, `diffGgufModels`, signed) from each version to the next, base and target named by their
 * stored-bytes digests. Deterministic but for the key.
 */
import { createPrivateKey } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { getHasher } from '../../src/core/hasher.ts';
import { toHex } from '../../src/core/hex.ts';
import { diffGgufModels } from '../../src/io/gguf/diff.ts';
import { bytesSource } from '../../src/io/gguf/header.ts';
import { ggufModelOf, ggufSplitModel, type GgufModel } from '../../src/io/gguf/model.ts';
import { bytes8, ggufModelDigest } from '../../src/io/gguf/payload.ts';
import { sha256Of } from '../../src/release/blobs.ts';
import { signManifest } from '../../src/release/publish.ts';
import { generateKeyPair, signPayload, type GeneratedKeyPair } from '../../src/sign/node-keys.ts';
import { MANIFEST_FILE, serializeManifest, type ManifestPayload, type ReleaseFile, type ReleaseManifest } from '../../src/updater/manifest.ts';

/** What {@link writeGgufRelease} wrote. */
export interface GgufRelease {
  /** The folder to serve. */
  dir: string;
  /** The publisher's key pair (its public key PEM at `publicKeyFile`). */
  keys: GeneratedKeyPair;
  publicKeyFile: string;
  /** Each version's stored-bytes digest, version 1 first. */
  digests: string[];
  manifest: ReleaseManifest;
}

/** A version of a split model: its parts' bytes, in split order. */
export type GgufParts = readonly Uint8Array[];

/** The stored-bytes digest of a GGUF model, one file or a split model's parts (docs/format/gguf.md, 18.4). */
export async function ggufBytesDigest(bytes: Uint8Array | GgufParts): Promise<string> {
  const hasher = await getHasher();
  const parts = bytes instanceof Uint8Array ? [bytes] : bytes;
  return ggufModelDigest(hasher, parts.map((b) => toHex(bytes8(hasher.h64(b)))));
}

/** A version opened as a GGUF model from its bytes (a split model's parts named `partNames`). */
function modelOf(version: Uint8Array | GgufParts, partNames?: readonly string[]): GgufModel {
  if (version instanceof Uint8Array) return ggufModelOf(bytesSource(version));
  const names = partNames as readonly string[];
  return ggufSplitModel(version.length, (no) => bytesSource(version[no - 1], names[no - 1]), names[0]);
}

async function blob(dir: string, bytes: Uint8Array): Promise<ReleaseFile> {
  const sha256 = sha256Of(bytes);
  await writeFile(path.join(dir, 'blobs', sha256), bytes);
  return { file: `blobs/${sha256}`, length: bytes.length, sha256 };
}

/**
 * Write the release of `versions` (one GGUF file each, or with `partNames` a split model's parts,
 * of one layout) into `dir`: payloads `v1 -> v2`, `v2 -> v3`, ...; `extraPayloads` are listed too
 * (for a manifest that lies, say).
 */
export async function writeGgufRelease(dir: string, versions: readonly (Uint8Array | GgufParts)[], o: { modelId?: string; fileName?: string; partNames?: readonly string[]; keys?: GeneratedKeyPair; extraPayloads?: (rel: { digests: string[]; blob: (bytes: Uint8Array) => Promise<ReleaseFile>; sign: (payload: Uint8Array) => Uint8Array }) => Promise<ManifestPayload[]> } = {}): Promise<GgufRelease> {
  const modelId = o.modelId ?? 'tiny-llm';
  const keys = o.keys ?? generateKeyPair();
  const key = createPrivateKey(keys.privateKeyPem);
  await mkdir(path.join(dir, 'blobs'), { recursive: true });
  const hasher = await getHasher();
  const digests = await Promise.all(versions.map((v) => ggufBytesDigest(v)));
  const payloads: ManifestPayload[] = [];
  for (let i = 1; i < versions.length; i++) {
    const r = diffGgufModels(hasher, modelOf(versions[i - 1], o.partNames), modelOf(versions[i], o.partNames), { modelId, sequence: i + 1, createdBy: 'test' });
    const signed = signPayload(r.payload, key);
    payloads.push({ ...(await blob(dir, signed)), base: digests[i - 1], target: digests[i], sequence: i + 1, fromVersion: i, toVersion: i + 1, method: 'exact', exact: true });
  }
  if (o.extraPayloads) payloads.push(...(await o.extraPayloads({ digests, blob: (b) => blob(dir, b), sign: (p) => signPayload(p, key) })));
  const manifest: ReleaseManifest = {
    format: 'neural-diff-release', formatVersion: 1, modelId, modelKind: 'gguf', release: 1,
    createdAt: '2026-01-01T00:00:00.000Z', expiresAt: Math.floor(Date.now() / 1000) + 86_400, latest: versions.length,
    versions: await Promise.all(versions.map(async (v, i) => ({
      version: i + 1,
      fingerprint: digests[i],
      files: v instanceof Uint8Array ? [{ path: o.fileName ?? 'model.gguf', ...(await blob(dir, v)) }] : await Promise.all(v.map(async (part, k) => ({ path: (o.partNames as readonly string[])[k], ...(await blob(dir, part)) }))),
    }))),
    payloads,
  };
  await writeFile(path.join(dir, MANIFEST_FILE), serializeManifest(signManifest(manifest, key)));
  const publicKeyFile = path.join(dir, '..', `${path.basename(dir)}.public.pem`);
  await writeFile(publicKeyFile, keys.publicKeyPem);
  return { dir, keys, publicKeyFile, digests, manifest };
}

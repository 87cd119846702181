/**
 * The release manifest test vector of docs/FORMAT.md (section 13): a small manifest signed with
 * the RFC 8032 test key 1 (Ed25519 signatures are deterministic, so the bytes are fixed).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { signManifest } from '../../src/release/publish.ts';
import { serializeManifest, type ReleaseManifest } from '../../src/updater/manifest.ts';

/** RFC 8032 section 7.1, test 1: the secret key (seed). */
export const RFC8032_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
/** Its public key. */
export const RFC8032_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';

/** The seed as a node:crypto private key (PKCS#8 DER: a fixed prefix, then the seed). */
export function rfc8032Key(): KeyObject {
  return createPrivateKey({ key: Buffer.from('302e020100300506032b657004220420' + RFC8032_SEED, 'hex'), format: 'der', type: 'pkcs8' });
}

const blob = (byte: string) => ({ file: `blobs/${byte.repeat(32)}`, sha256: byte.repeat(32) });

/** The vector's manifest: two versions of a TF.js model and one exact payload between them. */
export const VECTOR_MANIFEST: ReleaseManifest = {
  format: 'neural-diff-release',
  formatVersion: 1,
  modelId: 'kws',
  modelKind: 'tfjs',
  release: 2,
  createdAt: '2026-01-01T00:00:00.000Z',
  expiresAt: 1798761600,
  latest: 2,
  versions: [
    { version: 1, fingerprint: '1111111111111111', files: [{ path: 'model.json', length: 812, ...blob('a1') }, { path: 'group1-shard1of1.bin', length: 40960, ...blob('a2') }] },
    { version: 2, fingerprint: '2222222222222222', files: [{ path: 'model.json', length: 812, ...blob('b1') }, { path: 'group1-shard1of1.bin', length: 40960, ...blob('b2') }] },
  ],
  payloads: [{ length: 977, ...blob('c1'), base: '1111111111111111', target: '2222222222222222', sequence: 2, fromVersion: 1, toVersion: 2, method: 'exact', exact: true }],
};

/** The manifest file's bytes for the vector. */
export function vectorManifestFile(): Uint8Array {
  return serializeManifest(signManifest(VECTOR_MANIFEST, rfc8032Key()));
}

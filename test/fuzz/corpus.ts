/**
 * Seed payloads for the fuzzer: every patch kind and value codec, both position codings, header
 * options (expiry, metadata), each bare and signed with the trusted test key.
 */
import { sign as nodeSign, type KeyObject } from 'node:crypto';
import { getHasher, type Hasher } from '../../src/core/hasher.ts';
import { buildPayload } from '../../src/diff/build.ts';
import { topkDiff } from '../../src/topk-diff/encoder.ts';
import { keyIdOf } from '../../src/apply/ed25519.ts';
import { envelopeSigningInput, sealEnvelope } from '../../src/apply/envelope.ts';
import type { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { generateKeyPair, loadPrivateKey, rawPublicKey } from '../../src/sign/node-keys.ts';
import { baseAndTarget, rng } from '../helpers/models.ts';

export interface CorpusEntry {
  name: string;
  base: MemoryWeightStore;
  bytes: Uint8Array;
  signed: Uint8Array;
}

export interface Corpus {
  hasher: Hasher;
  entries: CorpusEntry[];
  /** PEM of the key devices trust in the fuzz cases. */
  trustedPublicKeyPem: string;
  /** Signs any bytes as an envelope with the trusted key (even bytes that do not decode). */
  signRaw(payload: Uint8Array): Uint8Array;
}

export async function buildCorpus(): Promise<Corpus> {
  const hasher = await getHasher();
  const key = generateKeyPair();
  const priv: KeyObject = loadPrivateKey(key.privateKeyPem);
  const keyId = keyIdOf(rawPublicKey(priv));
  const signRaw = (payload: Uint8Array): Uint8Array => {
    const input = envelopeSigningInput(payload, keyId);
    return sealEnvelope(input, new Uint8Array(nodeSign(null, input, priv)));
  };
  const entries: CorpusEntry[] = [];
  const add = (name: string, base: MemoryWeightStore, bytes: Uint8Array) => entries.push({ name, base, bytes, signed: signRaw(bytes) });

  const a = baseAndTarget(101);
  const b = baseAndTarget(202);
  add('topk-f16', a.base, topkDiff(hasher, a.base, a.target, { budgetBytes: 3000, codec: 'f16', modelId: 'kws', sequence: 3 }).bytes);
  add('topk-i8', a.base, topkDiff(hasher, a.base, a.target, { budgetBytes: 2000, codec: 'i8', modelId: 'kws', sequence: 4 }).bytes);
  add('topk-f32-bitmap', b.base, topkDiff(hasher, b.base, b.target, { budgetBytes: 40_000, codec: 'f32', modelId: 'kws', sequence: 5, expiresAt: 4_000_000_000, meta: { accuracy: '0.93', epochs: 4 } }).bytes);
  const r = rng(7);
  const vals = (n: number) => Float32Array.from({ length: n }, () => (r() - 0.5) * 0.02);
  add('hash-dense', a.base, buildPayload(hasher, a.base, [
    { kind: 'hash', name: 'dense/kernel', seed: 1234, signed: true, buckets: vals(17), codec: 'f16' },
    { kind: 'hash', name: 'conv1/kernel', seed: 99, signed: false, buckets: vals(5), codec: 'f32' },
    { kind: 'dense', name: 'out/bias', values: vals(10), codec: 'i8' },
  ], { method: 'hash', modelId: 'kws', sequence: 6 }).bytes);
  add('lowrank', b.base, buildPayload(hasher, b.base, [
    { kind: 'lowrank', name: 'dense/kernel', rank: 2, u: vals(128 * 2), v: vals(2 * 32), codec: 'f16' },
    { kind: 'sparse', name: 'dense/bias', positions: Uint32Array.from([0, 5, 31]), values: vals(3), codec: 'f32' },
  ], { method: 'lowrank', modelId: 'kws', sequence: 7 }).bytes);
  return { hasher, entries, trustedPublicKeyPem: key.publicKeyPem, signRaw };
}

/**
 * The release manifest (src/updater/manifest.ts, trust.ts, plan.ts): canonical JSON, the test
 * vector of docs/FORMAT.md, every trust check (signature, unknown key, tampering, model id,
 * expiry, rollback, a reused release number), and the planner's choices (one payload, a chain,
 * the full package when cheaper or when no path exists, failed payloads left out).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { canonicalJson } from '../src/core/canonical-json.ts';
import { MANIFEST_JSON } from '../src/updater/manifest.ts';
import { sha256Pure, sha256Hex } from '../src/updater/sha256.ts';
import { manifestSigningInput, validateManifest, type ManifestPayload, type ReleaseManifest } from '../src/updater/manifest.ts';
import { openTrustedRelease, isTrustedRelease } from '../src/updater/trust.ts';
import { planUpdate, packageKey } from '../src/updater/plan.ts';
import { signManifest } from '../src/release/publish.ts';
import { serializeManifest } from '../src/updater/manifest.ts';
import { generateKeyPair, loadPrivateKey } from '../src/sign/node-keys.ts';
import { toHex } from '../src/core/hex.ts';
import { NeuralDiffError } from '../src/core/errors.ts';
import fc from 'fast-check';
import { VECTOR_MANIFEST, RFC8032_PUBLIC, rfc8032Key, vectorManifestFile } from './vectors/release-manifest.ts';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string; details?: { reason?: string } }) => `${e.code}${e.details?.reason ? `:${e.details.reason}` : ''}`);
const NOW = () => Date.UTC(2026, 5, 1);
const policy = { trustedKeys: [RFC8032_PUBLIC], modelId: 'kws', now: NOW };

describe('sha256', () => {
  test('the pure SHA-256 is node:crypto\'s on every length across three blocks and on a megabyte', async () => {
    for (let n = 0; n < 200; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 131 + n) & 255);
      assert.equal(toHex(sha256Pure(b)), createHash('sha256').update(b).digest('hex'), `length ${n}`);
    }
    const big = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 7919) & 255);
    assert.equal(toHex(sha256Pure(big)), createHash('sha256').update(big).digest('hex'));
    assert.equal(await sha256Hex(big), createHash('sha256').update(big).digest('hex'));
  });
});

describe('canonical JSON', () => {
  test('sorts keys by UTF-16 code units, no whitespace, escapes as JSON.stringify', () => {
    assert.equal(canonicalJson({ b: 1, a: [true, null, 'x"\n'], A: { z: -3, é: 'é' } }), '{"A":{"z":-3,"é":"é"},"a":[true,null,"x\\"\\n"],"b":1}');
  });
  test('as manifests use it, refuses what a manifest cannot hold (fractions, -0, unsafe integers)', () => {
    for (const v of [1.5, -0, 2 ** 53, NaN]) assert.throws(() => canonicalJson({ v }, MANIFEST_JSON), /safe integers/);
    // The same function hashes a TF.js model.json (the frame), whose numbers may be anything JSON holds.
    assert.equal(canonicalJson({ v: [1.5, -0, 2 ** 53] }), '{"v":[1.5,0,9007199254740992]}');
    assert.throws(() => canonicalJson({ v: NaN }), /JSON has no such number/);
  });
});

describe('the test vector (docs/FORMAT.md section 13, docs/format/release-manifests.md)', () => {
  test('is reproduced byte for byte, and its signing input and signature are the ones in the docs', () => {
    const file = vectorManifestFile();
    assert.deepEqual(file, new Uint8Array(readFileSync(new URL('./vectors/release-manifest.json', import.meta.url))));
    const doc = readFileSync(new URL('../docs/format/release-manifests.md', import.meta.url), 'utf8');
    const signed = JSON.parse(new TextDecoder().decode(file)) as { signatures: { keyId: string; sig: string }[] };
    assert.ok(doc.includes(signed.signatures[0].sig.slice(0, 64)) && doc.includes(signed.signatures[0].sig.slice(64)), 'the signature hex is in docs/format/release-manifests.md');
    assert.ok(doc.includes(createHash('sha256').update(manifestSigningInput(VECTOR_MANIFEST)).digest('hex')), 'the SHA-256 of the signing input is in docs/format/release-manifests.md');
    assert.ok(doc.includes(signed.signatures[0].keyId));
  });
  test('verifies with the RFC 8032 public key, with WebCrypto and with the pure verifier', async () => {
    for (const verifier of ['webcrypto', 'pure'] as const) {
      const r = await openTrustedRelease(vectorManifestFile(), { ...policy, verifier });
      assert.equal(r.manifest.release, 2);
      assert.ok(isTrustedRelease(r));
      assert.ok(!isTrustedRelease({ ...r }), 'a copy is not trusted');
    }
  });
});

describe('trust checks', () => {
  const other = generateKeyPair();
  const file = (m: ReleaseManifest, key = rfc8032Key()) => serializeManifest(signManifest(m, key));
  test('refuses a manifest signed by an unknown key, with both key ids in the message', async () => {
    const err: unknown = await openTrustedRelease(file(VECTOR_MANIFEST, loadPrivateKey(other.privateKeyPem)), policy).catch((e: unknown) => e);
    assert.equal((err as { code: string }).code, 'ND_SIGNATURE');
    assert.match((err as Error).message, new RegExp(other.keyId));
  });
  test('refuses any changed byte of the signed part (tampered) and unsigned or garbled files', async () => {
    const good = new TextDecoder().decode(vectorManifestFile());
    const tampered = good.replace('"length":977', '"length":978');
    assert.notEqual(tampered, good);
    assert.equal(await code(openTrustedRelease(new TextEncoder().encode(tampered), policy)), 'ND_SIGNATURE');
    assert.equal(await code(openTrustedRelease(new TextEncoder().encode(JSON.stringify({ signed: VECTOR_MANIFEST, signatures: [] })), policy)), 'ND_SIGNATURE');
    assert.equal(await code(openTrustedRelease(new TextEncoder().encode('<html>404</html>'), policy)), 'ND_PAYLOAD_FORMAT');
    assert.equal(await code(openTrustedRelease(new Uint8Array(5 * 1024 * 1024), policy)), 'ND_PAYLOAD_TOO_LARGE');
  });
  test('refuses another model\'s manifest, an expired one, a rolled-back one and a reused release number', async () => {
    assert.equal(await code(openTrustedRelease(vectorManifestFile(), { ...policy, modelId: 'vad' })), 'ND_MODEL_MISMATCH');
    assert.equal(await code(openTrustedRelease(vectorManifestFile(), { ...policy, now: () => VECTOR_MANIFEST.expiresAt * 1000 })), 'ND_FRESHNESS:expired');
    assert.equal(await code(openTrustedRelease(vectorManifestFile(), policy, { release: 3 })), 'ND_FRESHNESS:rollback');
    const accepted = await openTrustedRelease(vectorManifestFile(), policy, { release: 2 });
    assert.equal(await code(openTrustedRelease(vectorManifestFile(), policy, { release: 2, manifestSha256: accepted.sha256 })), 'ok');
    const reused = file({ ...VECTOR_MANIFEST, createdAt: '2026-01-02T00:00:00.000Z' });
    assert.equal(await code(openTrustedRelease(reused, policy, { release: 2, manifestSha256: accepted.sha256 })), 'ND_FRESHNESS:release-reused');
  });
  test('a signed manifest that breaks the structure rules is still refused (exact payload to the wrong target, a path with a folder)', async () => {
    const wrongTarget = { ...VECTOR_MANIFEST, payloads: [{ ...VECTOR_MANIFEST.payloads[0], target: '3333333333333333' }] };
    assert.equal(await code(openTrustedRelease(file(wrongTarget), policy)), 'ND_PAYLOAD_FORMAT');
    const escaping = { ...VECTOR_MANIFEST, versions: [VECTOR_MANIFEST.versions[0], { ...VECTOR_MANIFEST.versions[1], files: [{ ...VECTOR_MANIFEST.versions[1].files[0], path: '../model.json' }] }] };
    assert.equal(await code(openTrustedRelease(file(escaping), policy)), 'ND_PAYLOAD_FORMAT');
    assert.throws(() => validateManifest({ ...VECTOR_MANIFEST, latest: 9 }), /latest/);
  });
});

describe('hostile manifests', () => {
  test('any mutation of a signed manifest is refused with a typed error, or means the same signed content', async () => {
    const good = vectorManifestFile();
    const original = (await openTrustedRelease(good, policy)).sha256;
    await fc.assert(fc.asyncProperty(
      fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'insert')), { minLength: 1, maxLength: 4 }),
      async (edits) => {
        let bytes = good.slice();
        for (const [at, value, kind] of edits) {
          const i = Math.min(at, bytes.length - 1);
          if (kind === 'set') bytes[i] = value;
          else if (kind === 'cut') bytes = bytes.slice(0, i);
          else bytes = Uint8Array.from([...bytes.subarray(0, i), value, ...bytes.subarray(i)]);
          if (!bytes.length) bytes = Uint8Array.of(value);
        }
        try {
          const r = await openTrustedRelease(bytes, policy);
          assert.equal(r.sha256, original, 'accepted only when the signed content is unchanged (e.g. whitespace outside it)');
        } catch (e) {
          assert.ok(e instanceof NeuralDiffError, `a ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
        }
      },
    ), { numRuns: 300, seed: 36 });
  });
});

describe('planner', () => {
  // Versions 1..4 (fingerprints f1..f4), package 10,000 bytes each.
  const fp = (v: number) => `${v}`.repeat(16);
  const files = (v: number) => [{ path: 'model.json', file: `blobs/${'0'.repeat(63)}${v}`, sha256: `${'0'.repeat(63)}${v}`, length: 10_000 }];
  let n = 0;
  const pay = (from: number, to: number, length: number, extra: Partial<ManifestPayload> = {}): ManifestPayload => {
    const sha256 = (++n).toString(16).padStart(64, 'e');
    return { file: `blobs/${sha256}`, sha256, length, base: fp(from), target: fp(to), sequence: to, fromVersion: from, toVersion: to, method: 'exact', exact: true, ...extra };
  };
  const manifest = (payloads: ManifestPayload[]): ReleaseManifest => ({ ...VECTOR_MANIFEST, latest: 4, versions: [1, 2, 3, 4].map((v) => ({ version: v, fingerprint: fp(v), files: files(v) })), payloads });
  const p12 = pay(1, 2, 1000);
  const p23 = pay(2, 3, 1000);
  const p34 = pay(3, 4, 1000);
  const p14 = pay(1, 4, 4000);
  const p24 = pay(2, 4, 1500);
  const m = manifest([p12, p23, p34, p14, p24]);

  test('takes the fewest bytes: a chain when cheaper than the direct payload, the direct one otherwise', () => {
    const from1 = planUpdate(m, fp(1));
    assert.deepEqual(from1?.steps.map((s) => s.sha256), [p12.sha256, p24.sha256]); // 2,500 < 3,000 (chain of 3) < 4,000 (direct)
    assert.equal(from1?.bytes, 2500);
    assert.deepEqual(planUpdate(m, fp(3))?.steps, [p34]);
    assert.equal(planUpdate(m, fp(4))?.kind, 'none');
  });
  test('the full package for an unknown model, no model, or when it is cheaper than every path', () => {
    assert.equal(planUpdate(m, 'ffffffffffffffff')?.kind, 'full');
    assert.equal(planUpdate(m, undefined)?.kind, 'full');
    const costly = manifest([pay(1, 4, 12_000)]);
    assert.deepEqual([planUpdate(costly, fp(1))?.kind, planUpdate(costly, fp(1))?.bytes], ['full', 10_000]);
  });
  test('leaves out failed payloads (a longer path, then the full package) and a failed package', () => {
    assert.deepEqual(planUpdate(m, fp(1), { payloads: new Set([p24.sha256]) })?.steps.map((s) => s.sha256), [p12.sha256, p23.sha256, p34.sha256]);
    assert.equal(planUpdate(m, fp(3), { payloads: new Set([p34.sha256]) })?.kind, 'full');
    assert.equal(planUpdate(m, fp(3), { payloads: new Set([p34.sha256]), noFullPackage: true }), null);
    assert.equal(packageKey(m.versions[3]), `package:${fp(4)}`);
  });
  test('a lossy state of the newest version counts as the newest; ties go to fewer steps', () => {
    const lossy = pay(2, 4, 500, { target: 'abababababababab', exact: false, method: 'topk' });
    const withLossy = manifest([p12, p23, p34, lossy]);
    assert.equal(planUpdate(withLossy, 'abababababababab')?.kind, 'none');
    assert.deepEqual(planUpdate(withLossy, fp(2))?.steps, [lossy]);
    const tie = manifest([pay(1, 2, 500), pay(2, 4, 500), pay(1, 4, 1000)]);
    assert.equal(planUpdate(tie, fp(1))?.steps.length, 1);
  });
});

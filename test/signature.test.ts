/**
 * Signed envelopes: both Ed25519 paths (WebCrypto, pure) on RFC 8032 vectors and on every kind of
 * tampering; the policy (require or not, trusted keys, rotation); refusal before decoding.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { getHasher } from '../src/core/hasher.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import {
  applyPayload,
  applyVerifiedPayload,
  verifyPayload,
  MemoryWeightStore,
  NeuralDiffError,
  PayloadFormatError,
  PayloadTooLargeError,
  SignatureError,
  UsageError,
  parsePublicKey,
  keyIdOf,
  webCryptoHasEd25519,
  parseEnvelope,
  isSignedEnvelope,
  ENVELOPE_OVERHEAD,
} from '../src/apply/index.ts';
import { decodePayload } from '../src/core/format.ts';
import { applyDecodedPayload } from '../src/apply/apply.ts';
import { hasCanonicalScalar, verifyEd25519, SELF_TEST_S, type TrustedKey } from '../src/apply/ed25519.ts';
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { generateKeyPair, loadPrivateKey, signPayload } from '../src/sign/node-keys.ts';
import { baseAndTarget, snapshot, sameBytes } from './helpers/models.ts';

const hasher = await getHasher();
const { base, target } = baseAndTarget(31);
const built = topkDiff(hasher, base, target, { budgetBytes: 3000, modelId: 'kws', sequence: 3 });
const keyA = generateKeyPair();
const keyB = generateKeyPair();
const signedA = signPayload(built.bytes, keyA.privateKeyPem);
const signedB = signPayload(built.bytes, keyB.privateKeyPem);
const verifiers = ['pure', 'webcrypto'] as const;

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
}

async function refusedWith(bytes: Uint8Array, options: Parameters<typeof applyPayload>[2], type: new (...a: never[]) => NeuralDiffError, pattern: RegExp): Promise<void> {
  const device = base.clone();
  const before = snapshot(device);
  const err = await applyPayload(device, bytes, options).then(() => assert.fail('expected a refusal'), (e: unknown) => e);
  assert.ok(err instanceof type, `expected ${type.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  assert.match((err as Error).message, pattern);
  assert.ok(sameBytes(before, snapshot(device)), 'the model was modified');
}

describe('Ed25519 implementations', () => {
  test('WebCrypto has Ed25519 on this Node (the default path)', async () => {
    assert.equal(await webCryptoHasEd25519(), true);
  });

  test('the WebCrypto self-test signature is S = 1 + SHA-512(B || B) mod L for the key B (secret scalar 1), and verifies on node:crypto and the pure path', async () => {
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    const B = hex('58' + '66'.repeat(31));
    const h = createHash('sha512').update(B).update(B).digest();
    let k = 0n;
    for (let i = 63; i >= 0; i--) k = (k << 8n) | BigInt(h[i]);
    let S = (1n + k) % L;
    const sBytes = new Uint8Array(32);
    for (let i = 0; i < 32; i++, S >>= 8n) sBytes[i] = Number(S & 0xffn);
    assert.equal(Buffer.from(sBytes).toString('hex'), SELF_TEST_S);
    const signature = hex('58' + '66'.repeat(31) + SELF_TEST_S);
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), B]);
    const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    assert.equal(nodeVerify(null, new Uint8Array(0), publicKey, signature), true);
    const key = parsePublicKey(B);
    assert.equal(await verifyEd25519(key, signature, new Uint8Array(0), 'pure'), true);
    // and it is a real check: another S, or a message, does not verify
    const other = signature.slice();
    other[40] ^= 1;
    assert.equal(nodeVerify(null, new Uint8Array(0), publicKey, other), false);
    assert.equal(await verifyEd25519(key, signature, Uint8Array.of(0), 'pure'), false);
  });

  // RFC 8032 section 7.1, tests 1-3
  const vectors = [
    ['d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '', 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'],
    ['3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72', '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'],
    ['fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'af82', '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a'],
  ];
  for (const impl of verifiers) {
    test(`${impl}: RFC 8032 vectors verify; any flipped bit does not`, async () => {
      for (const [pub, msg, sig] of vectors) {
        const key = parsePublicKey(pub);
        assert.equal(await verifyEd25519(key, hex(sig), hex(msg), impl), true, pub);
        for (const bit of [0, 7, 100, 255, 256, 300, 511]) {
          const bad = hex(sig);
          bad[bit >> 3] ^= 1 << (bit & 7);
          assert.equal(await verifyEd25519(key, bad, hex(msg), impl), false, `sig bit ${bit}`);
        }
        if (msg) {
          const m = hex(msg);
          m[0] ^= 1;
          assert.equal(await verifyEd25519(key, hex(sig), m, impl), false, 'message bit');
        }
      }
    });

    test(`${impl}: a malleated signature (S + L) is refused`, async () => {
      const [pub, msg, sig] = vectors[1];
      const s = hex(sig);
      // S + L (L = 2^252 + 27742317777372353535851937790883648493) still fits in 32 bytes here
      let v = 0n;
      for (let i = 63; i >= 32; i--) v = (v << 8n) | BigInt(s[i]);
      v += 2n ** 252n + 27742317777372353535851937790883648493n;
      for (let i = 32; i < 64; i++) {
        s[i] = Number(v & 0xffn);
        v >>= 8n;
      }
      assert.equal(hasCanonicalScalar(s), false);
      assert.equal(await verifyEd25519(parsePublicKey(pub), s, hex(msg), impl), false);
    });
  }

  test('public keys parse from PEM, hex, base64, DER and raw bytes to the same key id', () => {
    const fromPem = parsePublicKey(keyA.publicKeyPem);
    const raw = keyA.publicKey;
    const der = new Uint8Array([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, ...raw]);
    for (const input of [raw, Buffer.from(raw).toString('hex'), Buffer.from(raw).toString('base64'), Buffer.from(raw).toString('base64url'), der, `\n  ${keyA.publicKeyPem}  \n`]) {
      assert.equal(parsePublicKey(input).keyId, fromPem.keyId);
    }
    assert.equal(fromPem.keyId, keyA.keyId);
    assert.equal(keyIdOf(raw), keyA.keyId);
    assert.match(keyA.keyId, /^[0-9a-f]{16}$/);
  });

  test('bad trusted keys are usage errors that say what was expected', () => {
    const cases: [Uint8Array | string, RegExp][] = [
      [keyA.privateKeyPem, /not a PUBLIC KEY; a private key must never be given to a device/],
      ['hello', /not PEM, hex or base64/],
      [new Uint8Array(31), /31 bytes where an Ed25519 key has 32/],
      // the identity point and a small-order point: no real key
      ['0100000000000000000000000000000000000000000000000000000000000000', /small or mixed order/],
      ['c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', /small or mixed order/],
      // y >= p: not a canonical encoding
      ['edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', /not a point on the curve/],
    ];
    for (const [input, pattern] of cases) {
      assert.throws(() => parsePublicKey(input, 'trusted key #1'), (e: unknown) => e instanceof UsageError && pattern.test(e.message) && /expected the \.public\.pem file written by `ndiff keygen`/.test(e.message), String(input).slice(0, 40));
    }
  });

  test('a refused key\'s text is described, never quoted: a private key or secret seed passed as the public key stays out of the message', () => {
    // What a build engineer might paste by mistake: the private PEM, or a 32-byte secret as hex or base64 (this one, y >= p, is no curve point).
    const secretHex = `f3${'ff'.repeat(30)}7f`;
    const cases: [string, RegExp][] = [
      [keyA.privateKeyPem, /a PEM block labelled PRIVATE KEY/],
      [secretHex, /64 characters of hex/],
      [Buffer.from(secretHex, 'hex').toString('base64'), /44 characters of base64/],
    ];
    for (const [input, found] of cases) {
      const body = input.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, '');
      assert.throws(() => parsePublicKey(input, 'trusted key #1'), (e: unknown) => {
        assert.ok(e instanceof UsageError);
        assert.match(e.message, found);
        for (let i = 0; i + 8 <= body.length; i++) assert.ok(!e.message.includes(body.slice(i, i + 8)), `the message quotes the key's text (${body.slice(i, i + 8)}): ${e.message}`);
        return true;
      });
    }
    // Text that is not key material is still quoted, so a wrong file can be recognised.
    assert.throws(() => parsePublicKey('<html>Not Found</html>'), /found the text "<html>Not Found<\/html>"/);
  });

  test('a signing key that is not a private key says what was found: the public key devices hold, another PEM block, or no PEM at all', () => {
    const cases: [string, RegExp][] = [
      [keyA.publicKeyPem, /found a PUBLIC KEY: the key devices verify with; signing needs its private half, the \.private\.pem file `ndiff keygen` wrote beside it/],
      ['-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', /found a PEM block labelled CERTIFICATE/],
      ['{"kty":"OKP"}', /found no PEM block \(13 characters\)/],
    ];
    for (const [input, found] of cases) {
      assert.throws(() => loadPrivateKey(input, 'keys/release.public.pem'), (e: unknown) => {
        assert.ok(e instanceof UsageError);
        assert.match(e.message, /^keys\/release\.public\.pem is not a readable private key/);
        assert.match(e.message, found);
        assert.match(e.message, /expected the \.private\.pem file written by `ndiff keygen`/);
        assert.doesNotMatch(e.message, /DECODER|routines/, 'no OpenSSL internals');
        return true;
      });
    }
  });
});

describe('the envelope', () => {
  test('is the payload framed by a 13-byte header and a 64-byte signature', () => {
    assert.equal(signedA.length, built.bytes.length + ENVELOPE_OVERHEAD);
    assert.ok(isSignedEnvelope(signedA) && !isSignedEnvelope(built.bytes));
    assert.deepEqual([...signedA.subarray(0, 5)], [0x4e, 0x44, 0x53, 0x47, 1]);
    const env = parseEnvelope(signedA);
    assert.equal(env.keyId, keyA.keyId);
    assert.deepEqual(env.payload, built.bytes);
    assert.equal(env.signedBytes.length, signedA.length - 64);
  });

  test('node:crypto verifies what neural-diff signed, over header + payload (interoperable)', async () => {
    const { verify, createPublicKey } = await import('node:crypto');
    const env = parseEnvelope(signedA);
    assert.equal(verify(null, env.signedBytes, createPublicKey(keyA.publicKeyPem), env.signature), true);
  });

  test('decodePayload on an envelope points to the right entry point', () => {
    assert.throws(() => decodePayload(signedA), (e: unknown) => e instanceof PayloadFormatError && /found a signed envelope \("NDSG"\): pass the envelope to applyPayload/.test(e.message));
  });

  test('signPayload refuses garbage and envelopes', () => {
    assert.throws(() => signPayload(new TextEncoder().encode('not a payload'), keyA.privateKeyPem), (e: unknown) => e instanceof PayloadFormatError && /refusing to sign/.test(e.message));
    assert.throws(() => signPayload(signedA, keyA.privateKeyPem), (e: unknown) => e instanceof UsageError && /already a signed envelope/.test(e.message));
    assert.throws(() => loadPrivateKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----'), UsageError);
  });
});

describe('the signature policy on apply', () => {
  for (const verifier of verifiers) {
    test(`${verifier}: a payload signed by a trusted key applies, and says who signed it`, async () => {
      const device = base.clone();
      const res = await applyPayload(device, signedA, { trustedKeys: [keyA.publicKeyPem], verifier });
      assert.equal(res.status, 'applied');
      assert.deepEqual(res.signature, { signed: true, keyId: keyA.keyId, verified: true, verifier });
    });
  }

  test('key rotation: any of several trusted keys is accepted', async () => {
    for (const bytes of [signedA, signedB]) {
      const res = await applyPayload(base.clone(), bytes, { trustedKeys: [keyA.publicKeyPem, keyB.publicKey] });
      assert.equal(res.status, 'applied');
    }
  });

  test('unsigned payload under a require policy: refused before decoding, saying how to sign', async () => {
    await refusedWith(built.bytes, { trustedKeys: [keyA.publicKeyPem] }, SignatureError, /payload is not signed.*ndiff sign <payload> --key <private\.pem>/);
    // garbage that is not even msgpack gets the same answer: nothing was decoded
    await refusedWith(new TextEncoder().encode('{"a": 1}'), { trustedKeys: [keyA.publicKeyPem] }, SignatureError, /payload is not signed/);
    // and explicit requireSignature: true is the same
    await refusedWith(built.bytes, { trustedKeys: [keyA.publicKeyPem], requireSignature: true }, SignatureError, /not signed/);
  });

  test('signed with a key the device does not trust', async () => {
    await refusedWith(signedB, { trustedKeys: [keyA.publicKeyPem] }, SignatureError, new RegExp(`signed by key id ${keyB.keyId}, which is not one of the 1 key\\(s\\) this device trusts \\(${keyA.keyId}\\)`));
    // even when unsigned payloads are allowed: a signature that cannot be trusted is not ignored
    await refusedWith(signedB, { trustedKeys: [keyA.publicKeyPem], requireSignature: false }, SignatureError, /not one of/);
  });

  test('a forged key id (B signed, A\'s id written in) fails verification', async () => {
    const forged = signedB.slice();
    forged.set(signedA.subarray(5, 13), 5);
    await refusedWith(forged, { trustedKeys: [keyA.publicKeyPem] }, SignatureError, /signature does not match the payload for trusted key id/);
  });

  test('one flipped bit anywhere in the envelope is refused with a typed error and the model untouched', async () => {
    let bits = 0;
    const kinds = new Map<string, number>();
    for (let byte = 0; byte < signedA.length; byte += byte < 80 || byte > signedA.length - 70 ? 1 : 11) {
      for (const bit of [0, 3, 7]) {
        const bad = signedA.slice();
        bad[byte] ^= 1 << bit;
        const device = base.clone();
        const before = snapshot(device);
        const err = await applyPayload(device, bad, { trustedKeys: [keyA.publicKeyPem] }).then(() => null, (e: unknown) => e);
        assert.ok(err instanceof SignatureError, `byte ${byte} bit ${bit}: ${(err as Error)?.message ?? 'applied!'}`);
        assert.ok(sameBytes(before, snapshot(device)));
        const kind = /not signed/.test(err.message) ? 'magic' : /version/.test(err.message) ? 'version' : /not one of/.test(err.message) ? 'key id' : 'signature';
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
        bits++;
      }
    }
    assert.ok(bits > 600, `${bits} flips`);
    assert.deepEqual([...kinds.keys()].sort(), ['key id', 'magic', 'signature', 'version']);
  });

  test('a truncated or unknown-version envelope is a SignatureError saying what to do', async () => {
    await refusedWith(signedA.subarray(0, 60), { trustedKeys: [keyA.publicKeyPem] }, SignatureError, /envelope is 60 bytes: expected at least 78 .* truncated: fetch it again/);
    const v2 = signedA.slice();
    v2[4] = 2;
    await refusedWith(v2, { trustedKeys: [keyA.publicKeyPem] }, SignatureError, /envelope version 2 is not supported .* update neural-diff on the device/);
    // cut in the signature: the signature no longer matches
    await refusedWith(signedA.subarray(0, signedA.length - 1), { trustedKeys: [keyA.publicKeyPem] }, SignatureError, /does not match/);
  });

  test('no trusted key and no requirement: bare and signed payloads apply, the signature reported as unchecked', async () => {
    const bare = await applyPayload(base.clone(), built.bytes);
    assert.deepEqual(bare.signature, { signed: false, verified: false });
    const signed = await applyPayload(base.clone(), signedA);
    assert.deepEqual(signed.signature, { signed: true, keyId: keyA.keyId, verified: false });
  });

  test('requireSignature without a trusted key is a usage error', async () => {
    await refusedWith(signedA, { requireSignature: true }, UsageError, /no trusted key is configured/);
  });

  test('an oversized envelope is refused before its signature is even checked', async () => {
    await refusedWith(signedA, { trustedKeys: [keyA.publicKeyPem], maxPayloadBytes: 100 }, PayloadTooLargeError, /limit is 100 bytes/);
  });

  test('verifyPayload + applyVerifiedPayload; the shortcuts that would skip the signature refuse', async () => {
    const verified = await verifyPayload(signedA, { trustedKeys: [keyA.publicKeyPem] });
    assert.equal((await applyVerifiedPayload(base.clone(), verified, { trustedKeys: [keyA.publicKeyPem] })).status, 'applied');
    // a hand-made "verified" object is not accepted
    await assert.rejects(applyVerifiedPayload(base.clone(), { ...verified }, {}), (e: unknown) => e instanceof UsageError && /takes the object verifyPayload returned/.test(e.message));
    // verified without keys, applied with keys: refused
    const unchecked = await verifyPayload(signedA);
    await assert.rejects(applyVerifiedPayload(base.clone(), unchecked, { trustedKeys: [keyA.publicKeyPem] }), (e: unknown) => e instanceof SignatureError && /verified without a signature check/.test(e.message));
    // a decoded payload cannot carry a signature check
    await assert.rejects(applyDecodedPayload(base.clone(), decodePayload(built.bytes), { trustedKeys: [keyA.publicKeyPem] }), (e: unknown) => e instanceof UsageError && /cannot check a signature/.test(e.message));
  });

  test('a crypto.subtle that says yes to every signature is not chosen: auto falls back to the pure verifier', async () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
    const fresh = '../src/apply/ed25519.ts?yes-to-everything';
    const mod = (await import(fresh)) as typeof import('../src/apply/ed25519.ts');
    const real = globalThis.crypto.subtle;
    const yes = { importKey: real.importKey.bind(real), verify: async () => true } as unknown as SubtleCrypto;
    Object.defineProperty(globalThis, 'crypto', { value: { subtle: yes }, configurable: true, writable: true });
    try {
      assert.equal(await mod.webCryptoHasEd25519(), false);
      assert.equal(await mod.resolveVerifier('auto'), 'pure');
      const key: TrustedKey = mod.parsePublicKey(keyA.publicKeyPem);
      const env = parseEnvelope(signedA);
      assert.equal(await mod.verifyEd25519(key, new Uint8Array(64), env.signedBytes, await mod.resolveVerifier('auto')), false);
    } finally {
      if (saved) Object.defineProperty(globalThis, 'crypto', saved);
    }
  });

  test('the pure verifier works with WebCrypto absent (React Native)', async () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
    // a fresh module instance, so its cached WebCrypto probe runs without crypto
    const fresh = '../src/apply/ed25519.ts?no-webcrypto';
    const mod = (await import(fresh)) as typeof import('../src/apply/ed25519.ts');
    Object.defineProperty(globalThis, 'crypto', { value: undefined, configurable: true, writable: true });
    try {
      assert.equal(await mod.webCryptoHasEd25519(), false);
      assert.equal(await mod.resolveVerifier('auto'), 'pure');
      await assert.rejects(mod.resolveVerifier('webcrypto'), UsageError);
      const key: TrustedKey = mod.parsePublicKey(keyA.publicKeyPem);
      const env = parseEnvelope(signedA);
      assert.equal(await mod.verifyEd25519(key, env.signature, env.signedBytes, 'pure'), true);
    } finally {
      if (saved) Object.defineProperty(globalThis, 'crypto', saved);
    }
    assert.ok(new MemoryWeightStore({}).list().length === 0);
  });
});

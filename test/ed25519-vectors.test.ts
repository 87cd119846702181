/**
 * Ed25519 as the standards decide it, on both verifier paths of the device (pure and WebCrypto)
 * in Node: all 151 cases of Wycheproof's ed25519_test.json, RFC 8032's TEST 1024 and TEST
 * SHA(abc), and the twelve ed25519-speccheck cases ("Taming the many EdDSAs"), whose verdicts on
 * every path must be the ones docs/security/ed25519-verdicts.md writes down. The same checks run
 * in headless Chromium in test/browser-ed25519.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createPrivateKey, sign } from 'node:crypto';
import { rfc8032Problems, speccheckVerdicts, wycheproofDisagreements, type Rfc8032Vector, type SpeccheckCase, type WycheproofFile } from './helpers/ed25519-verdicts.ts';
import { documentedVerdicts, thisNodeAlone } from './helpers/ed25519-verdict-table.ts';
import { parsePublicKey, verifyEd25519 } from '../src/apply/ed25519.ts';
import { parseTrustedKeys } from '../src/apply/signature.ts';

const dir = new URL('./vectors/ed25519/', import.meta.url);
const json = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, dir), 'utf8')) as T;
const wycheproof = json<WycheproofFile>('wycheproof-ed25519_test.json');
const speccheck = json<SpeccheckCase[]>('speccheck-cases.json');
const rfc8032 = json<{ vectors: Rfc8032Vector[] }>('rfc8032.json').vectors;
const verifiers = ['pure', 'webcrypto'] as const;

test('the committed vector files are the upstream ones: 151 Wycheproof cases (88 valid, 63 invalid, none "acceptable"), 12 speccheck cases, and their licenses', () => {
  const tests = wycheproof.testGroups.flatMap((g) => g.tests);
  assert.equal(wycheproof.numberOfTests, 151);
  assert.equal(tests.length, 151);
  assert.equal(tests.filter((t) => t.result === 'valid').length, 88);
  assert.equal(tests.filter((t) => t.result === 'invalid').length, 63);
  assert.equal(speccheck.length, 12);
  for (const name of ['LICENSE-wycheproof', 'LICENSE-speccheck']) assert.match(readFileSync(new URL(name, dir), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
});

for (const impl of verifiers) {
  test(`${impl}: every Wycheproof case gets the file's verdict`, async () => {
    const { checked, disagreements } = await wycheproofDisagreements(wycheproof, impl);
    assert.equal(checked, 151);
    assert.deepEqual(disagreements, []);
  });

  test(`${impl}: RFC 8032 TEST 1024 and TEST SHA(abc) verify, and refuse any changed bit`, async () => {
    assert.deepEqual(await rfc8032Problems(rfc8032, impl), []);
  });
}

test('the RFC 8032 vectors are transcribed right: node:crypto signing each message with its secret key gives the RFC signature byte for byte', () => {
  for (const v of rfc8032) {
    const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(v.secretKey, 'hex')]), format: 'der', type: 'pkcs8' });
    assert.equal(sign(null, Buffer.from(v.message, 'hex'), privateKey).toString('hex'), v.signature, v.name);
  }
  assert.deepEqual(rfc8032.map((v) => v.message.length / 2), [1023, 64]);
});

test('speccheck: each path decides each case as docs/security/ed25519-verdicts.md says (the column of this Node release), and the device refuses all twelve on both paths', async () => {
  const measured = await speccheckVerdicts(speccheck);
  const documented = documentedVerdicts();
  assert.deepEqual(documented.map((r) => r.case), [...speccheck.keys()], 'the page has one row per case, in order');
  for (const [i, m] of measured.entries()) {
    const d = documented[i];
    assert.deepEqual({ pure: m.pure, webcrypto: m.webcrypto, pureAlone: m.pureAlone, webcryptoAlone: m.webcryptoAlone }, { pure: d.pure, webcrypto: d.webcrypto, pureAlone: d.pureAlone, webcryptoAlone: thisNodeAlone(d) }, `case ${i}`);
    // The policy: through the API a device decides the same on both paths.
    assert.equal(m.pure, m.webcrypto, `case ${i}: the paths disagree`);
    assert.notEqual(m.pure, 'accepted', `case ${i} was accepted`);
  }
});

test('speccheck: where the verifiers alone would disagree (a key of small order or a non-canonical key), the key is refused before either runs', async () => {
  const documented = documentedVerdicts();
  const split = documented.filter((r) => [r.node22Alone, r.node24Alone, r.chromiumAlone].some((v) => v !== r.pureAlone));
  assert.ok(split.length > 0, 'the page records where the verifiers alone differ');
  for (const r of split) {
    assert.equal(r.pure, 'key refused', `case ${r.case}`);
    assert.throws(() => parsePublicKey(speccheck[r.case].pub_key), /small or mixed order|not a point on the curve/);
  }
  // A trusted key cannot be handed to the verifier unchecked: verifyEd25519 takes what parsePublicKey made, and
  // the policies parse again even a TrustedKey object (src/apply/signature.ts parseTrustedKeys).
  const smuggled = { raw: Buffer.from(speccheck[0].pub_key, 'hex'), keyId: '0000000000000000' };
  assert.throws(() => parseTrustedKeys([smuggled]), /small or mixed order/);
  // Case 6 has a key that is fine: S >= L is refused before either verifier runs.
  const key = parsePublicKey(speccheck[6].pub_key);
  for (const impl of verifiers) assert.equal(await verifyEd25519(key, Buffer.from(speccheck[6].signature, 'hex'), Buffer.from(speccheck[6].message, 'hex'), impl), false);
});

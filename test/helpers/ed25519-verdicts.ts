/**
 * What each Ed25519 path decides on the standard vectors (test/vectors/ed25519/): Wycheproof's
 * ed25519_test.json, the ed25519-speccheck cases and RFC 8032's TEST 1024 and TEST SHA(abc).
 * Imports nothing from Node, so test/browser-ed25519.test.ts bundles this same code into headless
 * Chromium and the verdicts there are reached exactly as in test/ed25519-vectors.test.ts.
 * docs/security/ed25519-verdicts.md is the table both tests compare these verdicts with.
 */
import { parsePublicKey, verifyEd25519, webCryptoHasEd25519, type TrustedKey } from '../../src/apply/ed25519.ts';
import { verifySignature } from '../../src/apply/ed25519-point.ts';
import { fromHex } from '../../src/core/hex.ts';

/** One case of ed25519-speccheck's cases.json. */
export interface SpeccheckCase {
  message: string;
  pub_key: string;
  signature: string;
}

/** Wycheproof's ed25519_test.json, the fields read here. */
export interface WycheproofFile {
  numberOfTests: number;
  testGroups: { publicKey: { pk: string }; tests: { tcId: number; comment: string; msg: string; sig: string; result: 'valid' | 'invalid' | 'acceptable'; flags: string[] }[] }[];
}

/** RFC 8032 vectors as test/vectors/ed25519/rfc8032.json holds them. */
export interface Rfc8032Vector {
  name: string;
  secretKey: string;
  publicKey: string;
  message: string;
  signature: string;
}

/** A verdict as the table in docs/security/ed25519-verdicts.md writes it. */
export type Verdict = 'accepted' | 'refused' | 'key refused';

/** What each path decides on one speccheck case. */
export interface SpeccheckVerdicts {
  /** The device's decision through the API (parsePublicKey, then verifyEd25519), on each path. */
  pure: Verdict;
  webcrypto: Verdict;
  /** The verifiers alone, given the key's bytes unchecked: ed25519-point.ts's verifySignature and crypto.subtle.verify. */
  pureAlone: Verdict;
  webcryptoAlone: Verdict;
}

const subtle = (): SubtleCrypto => (globalThis as { crypto: Crypto }).crypto.subtle;

/** crypto.subtle's own verdict, its key imported from the raw bytes without our checks (an import it refuses is a refusal). */
async function webCryptoAlone(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): Promise<Verdict> {
  try {
    const key = await subtle().importKey('raw', publicKey as Uint8Array<ArrayBuffer>, { name: 'Ed25519' }, false, ['verify']);
    return (await subtle().verify({ name: 'Ed25519' }, key, signature as Uint8Array<ArrayBuffer>, message as Uint8Array<ArrayBuffer>)) ? 'accepted' : 'refused';
  } catch {
    return 'refused';
  }
}

/** The verdicts of every path on every speccheck case, in the file's order. */
export async function speccheckVerdicts(cases: readonly SpeccheckCase[]): Promise<SpeccheckVerdicts[]> {
  if (!(await webCryptoHasEd25519())) throw new Error('this runtime\'s crypto.subtle has no Ed25519: the WebCrypto column cannot be measured');
  const out: SpeccheckVerdicts[] = [];
  for (const c of cases) {
    const [publicKey, signature, message] = [fromHex(c.pub_key), fromHex(c.signature), fromHex(c.message)];
    let key: TrustedKey | undefined;
    try {
      key = parsePublicKey(publicKey);
    } catch {
      key = undefined;
    }
    const through = async (impl: 'pure' | 'webcrypto'): Promise<Verdict> => (key ? ((await verifyEd25519(key, signature, message, impl)) ? 'accepted' : 'refused') : 'key refused');
    out.push({
      pure: await through('pure'),
      webcrypto: await through('webcrypto'),
      pureAlone: verifySignature(publicKey, signature, message) ? 'accepted' : 'refused',
      webcryptoAlone: await webCryptoAlone(publicKey, signature, message),
    });
  }
  return out;
}

/** Wycheproof cases whose verdict on `impl` differs from the file's `result`, as "tcId comment: got". */
export async function wycheproofDisagreements(file: WycheproofFile, impl: 'pure' | 'webcrypto'): Promise<{ checked: number; disagreements: string[] }> {
  let checked = 0;
  const disagreements: string[] = [];
  for (const group of file.testGroups) {
    const key = parsePublicKey(group.publicKey.pk);
    for (const t of group.tests) {
      if (t.result === 'acceptable') throw new Error(`tcId ${t.tcId} is "acceptable": decide the project's verdict for it first`);
      const got = await verifyEd25519(key, fromHex(t.sig), fromHex(t.msg), impl);
      if (got !== (t.result === 'valid')) disagreements.push(`tcId ${t.tcId} (${t.comment}; ${t.flags.join(', ')}): expected ${t.result}, ${impl} ${got ? 'accepted' : 'refused'}`);
      checked++;
    }
  }
  return { checked, disagreements };
}

/**
 * RFC 8032 vectors on `impl`: each must verify, and none with one bit of its signature, its
 * message (first, middle and last byte) changed. Returns what went wrong.
 */
export async function rfc8032Problems(vectors: readonly Rfc8032Vector[], impl: 'pure' | 'webcrypto'): Promise<string[]> {
  const problems: string[] = [];
  for (const v of vectors) {
    const key = parsePublicKey(v.publicKey);
    const [signature, message] = [fromHex(v.signature), fromHex(v.message)];
    if (!(await verifyEd25519(key, signature, message, impl))) problems.push(`${v.name}: refused`);
    for (const bit of [0, 255, 256, 511]) {
      const bad = signature.slice();
      bad[bit >> 3] ^= 1 << (bit & 7);
      if (await verifyEd25519(key, bad, message, impl)) problems.push(`${v.name}: accepted with signature bit ${bit} flipped`);
    }
    for (const at of [0, message.length >> 1, message.length - 1]) {
      const bad = message.slice();
      bad[at] ^= 0x80;
      if (await verifyEd25519(key, signature, bad, impl)) problems.push(`${v.name}: accepted with message byte ${at} changed`);
    }
  }
  return problems;
}

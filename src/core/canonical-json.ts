/**
 * Canonical JSON: RFC 8785, the JSON Canonicalization Scheme (JCS), of a parsed JSON value: no
 * whitespace, object keys sorted by UTF-16 code units, strings and numbers as ECMAScript's
 * `JSON.stringify` writes them (JCS serializes them exactly so). Two users of it:
 *
 * - the TF.js frame (src/io/tfjs/frame.ts) hashes model.json as parsed, numbers of any kind;
 * - a release manifest's signature covers its `signed` member with numbers restricted to safe
 *   integers (`numbers: 'safe-integers'`: no fractions, no -0, nothing past 2^53 - 1), so a signer
 *   and a verifier in another language agree on every byte without reproducing ECMAScript's
 *   number formatting (docs/FORMAT.md, 13.1).
 *
 * Pure code (no node, no tfjs): devices compute both.
 */
import { UsageError } from './errors.ts';

/** Options of {@link canonicalJson}. */
export interface CanonicalJsonOptions {
  /**
   * `'any'` (default): every finite number, as `JSON.stringify` writes it (`-0` as `0`).
   * `'safe-integers'`: only integers in ±(2^53 − 1), and not `-0`; any other number is refused.
   */
  numbers?: 'any' | 'safe-integers';
}

/**
 * The canonical text of `value` (a value `JSON.parse` could give: null, booleans, numbers,
 * strings, arrays, plain objects; object members whose value is `undefined` are left out).
 * @throws UsageError for a value JSON cannot hold (a function, a bigint, a number that is not
 *   finite) or, with `numbers: 'safe-integers'`, a number that is not a safe integer
 */
export function canonicalJson(value: unknown, options: CanonicalJsonOptions = {}): string {
  const integersOnly = options.numbers === 'safe-integers';
  const write = (v: unknown): string => {
    if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
    if (typeof v === 'number') {
      if (integersOnly && (!Number.isSafeInteger(v) || Object.is(v, -0))) throw new UsageError(`canonical JSON here holds only safe integers, found ${v}: write fractions and large numbers as strings`);
      if (!Number.isFinite(v)) throw new UsageError(`canonical JSON cannot hold ${v}: JSON has no such number`);
      return JSON.stringify(v);
    }
    if (Array.isArray(v)) return `[${v.map(write).join(',')}]`;
    if (typeof v === 'object') {
      const obj = v as Record<string, unknown>;
      // Array.prototype.sort orders strings by UTF-16 code units, as JCS does.
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${write(obj[k])}`).join(',')}}`;
    }
    throw new UsageError(`canonical JSON cannot hold a ${typeof v}`);
  };
  return write(value);
}

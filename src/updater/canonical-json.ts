/**
 * Canonical JSON for what a release manifest signs: RFC 8785 (JCS) restricted to the values a
 * manifest holds (objects, arrays, strings, booleans, null and safe integers; no fractions, no
 * -0). For these, JCS is JSON.stringify with object keys sorted by UTF-16 code units and no
 * whitespace, since JCS serializes strings and integers exactly as ECMAScript does. Any other
 * value is refused, so a signer and a verifier in another language agree on every byte.
 */
import { UsageError } from '../core/errors.ts';

/** The canonical text of `value` (throws UsageError for a value a manifest cannot hold). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || Object.is(value, -0)) throw new UsageError(`canonical JSON holds only safe integers, found ${value}: write fractions and large numbers as strings`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.keys(value as object).sort().filter((k) => (value as Record<string, unknown>)[k] !== undefined);
    return `{${entries.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  throw new UsageError(`canonical JSON cannot hold a ${typeof value}`);
}

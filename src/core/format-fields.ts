/**
 * Reading the fields of a decoded payload document (format.ts): each refusal a
 * `PayloadFormatError` that says what was expected and what was found. Pure: no I/O.
 */
import { PayloadFormatError } from './errors.ts';

export function fail(message: string, details: Record<string, unknown> = {}): never {
  throw new PayloadFormatError(`${message}; the payload is corrupt or not a neural-diff payload: fetch it again or fall back to the full model`, details);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}
export function isUint(v: unknown, max = Number.MAX_SAFE_INTEGER): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}
export function own(o: Record<string, unknown>, k: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined;
}
export function bin(o: Record<string, unknown>, k: string, where: string, len?: number): Uint8Array {
  const v = own(o, k);
  if (!(v instanceof Uint8Array)) fail(`${where}: field "${k}" must be binary, found ${describe(v)}`);
  if (len !== undefined && v.length !== len) fail(`${where}: field "${k}" must be ${len} bytes, found ${v.length}`);
  return v;
}
export function str(o: Record<string, unknown>, k: string, where: string, maxLen = 4096): string {
  const v = own(o, k);
  if (typeof v !== 'string' || v.length > maxLen) fail(`${where}: field "${k}" must be a string of at most ${maxLen} chars, found ${describe(v)}`);
  return v;
}
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v instanceof Uint8Array) return `${v.length} bytes of binary`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return `${typeof v} ${typeof v === 'object' ? '' : String(v)}`.trim();
}

/**
 * `--expires` and `expires`: when a payload or a release manifest stops being accepted, as the
 * commands and library calls take it. Pure (no I/O), so the CLI's option parsing and the library's
 * option checks read it without loading the model readers.
 */
import { UsageError } from './errors.ts';

/** `--expires` as seconds since the epoch: an ISO date or a duration from now (`30d`, `12h`, `90m`). */
export function parseExpiry(s: string, now = Date.now()): number {
  const d = /^(\d+)\s*([dhm])$/.exec(s.trim());
  if (d) return Math.floor(now / 1000) + Number(d[1]) * { d: 86400, h: 3600, m: 60 }[d[2] as 'd' | 'h' | 'm'];
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`expires (--expires) ${JSON.stringify(s)} is not understood: use an ISO date (2027-01-31T00:00:00Z) or a duration from now (30d, 12h, 90m)`);
  return Math.floor(t / 1000);
}

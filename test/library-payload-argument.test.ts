/**
 * A payload argument that is neither a path nor bytes is a usage error saying which forms are
 * taken: `inspect({ payload: 'v1-v2.ndiff' })` (the options object verify and apply take) was
 * refused as a corrupt payload (ND_PAYLOAD_FORMAT, what a device says of bad bytes), and verify
 * and apply said only "expected the payload bytes as a Uint8Array, found object".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UsageError } from '../src/core/errors.ts';
import { apply } from '../src/front/apply.ts';
import { inspect } from '../src/front/inspect.ts';
import { verify } from '../src/front/verify.ts';

const root = mkdtempSync(path.join(tmpdir(), 'nd-payload-arg-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const refused = (found: string, call: string) => (e: unknown) =>
  e instanceof UsageError && e.code === 'ND_USAGE' && e.message.startsWith(`payload: expected a payload file's path or its bytes (a Uint8Array), found ${found}: pass one, as in ${call}`);

test('inspect, verify and apply refuse a payload given as neither a path nor bytes, naming both forms', async () => {
  await assert.rejects(inspect({ payload: 'v1-v2.ndiff' } as never), refused('an object', "inspect('v1-v2.ndiff')"));
  await assert.rejects(inspect(5 as never), refused('number 5', "inspect('v1-v2.ndiff')"));
  const buffer = new ArrayBuffer(8);
  await assert.rejects(verify({ payload: buffer as never }), (e: unknown) => refused('an ArrayBuffer', "verify({ payload: 'v1-v2.ndiff' })")(e) && (e as Error).message.endsWith('(wrap an ArrayBuffer: new Uint8Array(buffer))'));
  await assert.rejects(apply({ model: path.join(root, 'model'), payload: [1, 2] as never }), refused('an array', "apply({ model, payload: 'v1-v2.ndiff' })"));
});

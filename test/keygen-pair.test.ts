/**
 * keygen writes both halves of a key pair or neither: with `<out>.public.pem` already there (an
 * old release key) and no private file, it refused but left a new `<out>.private.pem` beside the
 * old public key, a pair that does not match (payloads signed with it are refused by every device
 * holding that public key), and the next keygen then refused the private file instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../src/core/errors.ts';
import { keygen } from '../src/front/keys.ts';
import { main } from '../cli/ndiff.ts';

test('keygen refuses an existing public key without leaving a new private key beside it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nd-keygen-pair-'));
  try {
    const out = join(dir, 'release');
    const old = '-----BEGIN PUBLIC KEY-----\nold\n-----END PUBLIC KEY-----\n';
    writeFileSync(`${out}.public.pem`, old);
    await assert.rejects(keygen({ out }), (e: unknown) => e instanceof UsageError && e.message === `${out}.public.pem already exists: keygen never overwrites a key, and writes both halves of a pair or neither; pick another out (--out) name or remove the old key deliberately`);
    assert.equal(existsSync(`${out}.private.pem`), false, 'no private key without its public half');
    assert.equal(readFileSync(`${out}.public.pem`, 'utf8'), old, 'the old public key is untouched');
    const err: string[] = [];
    assert.equal(await main(['keygen', '--out', out], { out: () => {}, err: (l) => err.push(l), progress: () => {} }), 2);
    assert.match(err.join('\n'), /release\.public\.pem already exists: .*pick another --out name/);
    assert.equal(existsSync(`${out}.private.pem`), false);
    // Once the old key is moved away, both halves are written.
    rmSync(`${out}.public.pem`);
    const k = await keygen({ out });
    assert.ok(existsSync(k.privateKeyFile) && existsSync(k.publicKeyFile));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

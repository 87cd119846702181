/**
 * The library's `inspect` and `verify` (neural-diff) against `ndiff inspect --json` and
 * `ndiff verify --json`: the same fields for a signed value payload and a structural one, with
 * and without a model; a payload for another key refused with the typed error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { diff, inspect, verify, readPrivateKeyFile, signPayload, writeKeyPairFiles, SignatureError } from 'neural-diff';
import { structuralPair, valuePair } from './helpers/structural-pairs.ts';

const BIN = path.join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

function ndiffJson(args: string[]): Record<string, unknown> {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json', '--quiet'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const plain = (x: unknown) => JSON.parse(JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as unknown;

test('inspect and verify give the fields ndiff prints, for a signed value payload and a structural one', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-lib-inspect-'));
  try {
    const keys = await writeKeyPairFiles(path.join(dir, 'release'));
    const privateKey = await readPrivateKeyFile(keys.privateKeyFile);
    const publicKey = keys.publicKeyFile;
    const stranger = await writeKeyPairFiles(path.join(dir, 'stranger'));
    for (const [name, pair] of [['value', valuePair('onnx', 2)], ['structural', structuralPair('onnx', 2)]] as const) {
      const at = { base: path.join(dir, name, 'v1.onnx'), target: path.join(dir, name, 'v2.onnx') };
      await mkdir(path.join(dir, name), { recursive: true });
      await writeFile(at.base, pair.base);
      await writeFile(at.target, pair.target);
      const made = await diff({ base: at.base, target: at.target, budget: 'all', modelId: 'inspected' });
      const signed = path.join(dir, name, 'p.signed.ndiff');
      await writeFile(signed, signPayload(made.payload, privateKey));
      const shown = await inspect(signed);
      assert.equal(shown.structural === true, name === 'structural');
      // A signed file is the payload and its envelope: both sizes, so neither reads as the other.
      const fileBytes = (await readFile(signed)).length;
      assert.equal(shown.fileBytes, fileBytes);
      const human = spawnSync(process.execPath, [BIN, 'inspect', signed], { encoding: 'utf8' });
      assert.match(human.stdout.split('\n')[0], new RegExp(`\\b${made.payload.length} bytes; ${fileBytes} with its signature\\b`), human.stdout);
      assert.deepEqual(plain(shown), ndiffJson(['inspect', signed]));
      assert.deepEqual(plain(await inspect(new Uint8Array(await readFile(signed)))), plain({ ...shown, file: undefined }), 'bytes show the same as the file');
      const checked = await verify({ payload: signed, publicKeys: [publicKey], model: at.base });
      assert.equal(checked.signature.verified, true);
      assert.deepEqual(checked.model, { path: at.base, status: 'applies' });
      assert.deepEqual(plain(checked), ndiffJson(['verify', signed, '--public-key', publicKey, '--model', at.base]));
      await assert.rejects(verify({ payload: signed, publicKeys: [stranger.publicKeyFile] }), SignatureError);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

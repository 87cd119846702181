/**
 * `ndiff update --from` takes the http(s) URL of a release folder. A newcomer's first try is the
 * folder `ndiff release` just wrote (`--from site/pose/`) or a file:// URL: refused as a usage
 * error (exit 2) that says how to serve the folder, not exit 11 "check the network".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, copyFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { EXIT } from '../cli/common.ts';

test('ndiff update refuses a --from that is a folder path or a file:// URL, saying to serve the release over HTTP', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-update-from-'));
  try {
    const key = path.join(dir, 'k');
    assert.equal((await run('keygen', '--out', key)).code, 0);
    const model = path.join(dir, 'm.tflite');
    await copyFile(key + '.public.pem', model); // never read: the URL is refused first
    for (const from of [path.join(dir, 'site') + '/', 'site/pose/', `file://${dir}/site/`]) {
      const r = await run('update', '--model', model, '--from', from, '--public-key', `${key}.public.pem`, '--model-id', 'm');
      assert.equal(r.code, EXIT.usage, r.err);
      assert.match(r.err, /expected the http:\/\/ or https:\/\/ URL of a release folder/);
      assert.match(r.err, /static file server/);
      // Where the command is documented says the same, not only the error.
      const serve = /python3 -m http\.server 8000 --directory site/.exec(r.err)?.[0];
      assert.ok(serve, r.err);
      for (const doc of ['docs/cli/update.md', 'docs/PUBLISHING.md']) {
        assert.ok((await readFile(path.join(import.meta.dirname, '..', doc), 'utf8')).includes(serve), `${doc} says how to serve a release folder to try it: ${serve}`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

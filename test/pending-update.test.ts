/**
 * Issue 61, finding 1: an update switched in and left unconfirmed. `ndiff update --health-check
 * CMD` is killed (SIGKILL) while its health check runs, after the new version is switched in, for
 * a `.tflite` file, an `.onnx` file and a TF.js folder, by an ordinary (value) payload and by a
 * structural one. The device runs the new version with the previous one and a journal kept
 * beside it. Every command that meets it must finish it the same way (src/io/durable/pending-update.ts):
 *
 * - `ndiff update` or `ndiff apply` without a health check refuses (exit 5, ND_PENDING_UPDATE),
 *   the model untouched: never "up to date" over an update that could still be undone, never a
 *   silent rollback by an apply of a payload it then refuses;
 * - with a health check, it runs it: passed, the update is confirmed (and said so: `pendingUpdate`
 *   in --json, a line on stderr), nothing left beside the model; failed, rolled back, and said so,
 *   even when the payload is then refused.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { structuralPair, valuePair, type PairFormat, type StructuralPair } from './helpers/structural-pairs.ts';
import { fingerprintOf, writeModel } from './helpers/model-on-disk.ts';

const cli = fileURLToPath(new URL('../cli/ndiff.mjs', import.meta.url));

/** What an unconfirmed switch leaves beside the model (the kept previous version and the journal). */
async function leftovers(model: string, format: PairFormat): Promise<string[]> {
  const names = format === 'tfjs' ? await readdir(model) : (await readdir(dirname(model))).map((n) => join(dirname(model), n)).filter((n) => n.startsWith(model + '.')).map((n) => n.slice(model.length));
  return names.filter((n) => n === 'model.json.prev' || n === '.ndiff-journal.json' || n === '.ndiff-prev' || n === '.ndiff-update.json').sort();
}

/** Run `ndiff update` in a process of its own whose health check kills it (SIGKILL) after the switch. */
function updateKilledDuringHealthCheck(argv: string[]): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'update', ...argv, '--health-check', 'kill -9 $PPID'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (_code, signal) => resolve({ signal, stderr }));
  });
}

describe('an update left unconfirmed by a kill during its health check (issue 61, finding 1)', () => {
  let work: string;
  let server: ReleaseServer;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'nd-pending-'));
    await mkdir(join(work, 'sites'));
    assert.equal((await run('keygen', '--out', join(work, 'k'))).code, 0);
    server = await serveRelease(join(work, 'sites'));
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const format of ['tflite', 'onnx', 'tfjs'] as const) {
    for (const structural of [false, true]) {
      const name = `${format}-${structural ? 'structural' : 'values'}`;
      test(`${format === 'tfjs' ? 'a TF.js folder' : `a .${format} file`}, ${structural ? 'a structural' : 'an ordinary'} release: the next command finishes the update with its health check (confirmed or rolled back, and says which) or refuses without one, the model untouched`, { timeout: 300_000 }, async () => {
        const pair = structural ? structuralPair(format, 1) : valuePair(format, 1);
        const file = format === 'tfjs' ? '' : `model.${format}`;
        const [v1, v2] = ['v1', 'v2'].map((v) => join(work, name, v, file));
        await writeModel(v1, pair, 'base');
        await writeModel(v2, pair, 'target');
        const [fp1, fp2] = [await fingerprintOf(v1, format), await fingerprintOf(v2, format)];
        const site = join(work, 'sites', name);
        const key = join(work, 'k.private.pem');
        const pub = join(work, 'k.public.pem');
        for (const [v, extra] of [[v1, ['--model-id', 'm']], [v2, []]] as const) {
          const add = await run('release', 'add', '--release', site, '--model', v, ...extra, '--key', key, '--expires', '30d');
          assert.equal(add.code, 0, add.err);
        }
        const manifest = validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
        assert.equal(manifest.payloads.length, 1);
        const payload = join(site, manifest.payloads[0].file);

        // The device holds v1; `ndiff update --health-check` is killed while the check runs.
        const device = join(work, name, 'a', format === 'tfjs' ? 'model' : file);
        await writeModel(device, pair, 'base');
        const from = ['--model', device, '--from', `${server.url}${name}/`, '--public-key', pub, '--model-id', 'm'];
        const killed = await updateKilledDuringHealthCheck(from);
        assert.equal(killed.signal, 'SIGKILL', killed.stderr);
        assert.equal(await fingerprintOf(device, format), fp2, 'killed after the switch: the device runs v2');
        const kept = format === 'tfjs' ? ['.ndiff-journal.json', 'model.json.prev'] : ['.ndiff-prev', '.ndiff-update.json'];
        assert.deepEqual(await leftovers(device, format), kept, 'the previous version and the journal wait beside it');
        // A second device in the same state, for the health check that fails.
        await cp(join(work, name, 'a'), join(work, name, 'b'), { recursive: true });
        const deviceB = join(work, name, 'b', format === 'tfjs' ? 'model' : file);
        const fromB = ['--model', deviceB, '--from', `${server.url}${name}/`, '--public-key', pub, '--model-id', 'm'];

        // A check (changes nothing) says an update waits to be finished.
        const check = await run('update', ...from, '--check');
        assert.equal(check.code, 0, check.err);
        assert.match(check.out, /switched in was never confirmed/);
        assert.equal(await fingerprintOf(device, format), fp2);
        assert.deepEqual(await leftovers(device, format), kept);
        // Without a health check: refused, nothing changed (never "up to date" over it).
        const plain = await run('update', ...from, '--json');
        assert.equal(plain.code, 5, plain.out + plain.err);
        assert.equal((JSON.parse(plain.out) as { error: { code: string } }).error.code, 'ND_PENDING_UPDATE');
        assert.match(plain.err, /switched in but never confirmed .*run the command again with the health check/);
        assert.equal(await fingerprintOf(device, format), fp2);
        assert.deepEqual(await leftovers(device, format), kept);
        // An apply of a payload it then refuses (another model id) must not roll the model back on the way.
        const other = await run('apply', '--model', device, '--patch', payload, '--model-id', 'other');
        assert.equal(other.code, 5, other.err);
        assert.match(other.err, /never confirmed/);
        assert.equal(await fingerprintOf(device, format), fp2, 'no silent rollback to v1');
        assert.deepEqual(await leftovers(device, format), kept);

        // With a health check that passes: confirmed, said so, nothing left beside the model.
        const confirmed = await run('update', ...from, '--health-check', 'true', '--json');
        assert.equal(confirmed.code, 0, confirmed.err);
        const doc = JSON.parse(confirmed.out) as { status: string; pendingUpdate?: { outcome: string; healthCheck: string }; steps: unknown[] };
        assert.equal(doc.status, 'up-to-date');
        assert.deepEqual(doc.steps, []);
        assert.equal(doc.pendingUpdate?.outcome, 'confirmed');
        assert.equal(doc.pendingUpdate?.healthCheck, 'passed');
        assert.match(confirmed.err, /never confirmed .*the health check passed: confirmed/);
        assert.equal(await fingerprintOf(device, format), fp2);
        assert.deepEqual(await leftovers(device, format), []);
        const later = await run('apply', '--model', device, '--patch', payload, '--model-id', 'other');
        assert.equal(later.code, 4, later.err);
        assert.equal(await fingerprintOf(device, format), fp2, 'confirmed: a later apply has nothing to undo');

        // With a health check that fails, by an apply whose payload is then refused: rolled back, and said so.
        const failed = await run('apply', '--model', deviceB, '--patch', payload, '--model-id', 'other', '--health-check', 'false');
        assert.equal(failed.code, 4, failed.err);
        assert.match(failed.err, /never confirmed .*the health check failed .*rolled back to the previous version/);
        assert.equal(await fingerprintOf(deviceB, format), fp1);
        assert.deepEqual(await leftovers(deviceB, format), []);
        // ... and the next update brings it to v2 again, by the payload.
        const again = await run('update', ...fromB, '--json');
        assert.equal(again.code, 0, again.err);
        assert.equal((JSON.parse(again.out) as { status: string }).status, 'updated');
        assert.equal(await fingerprintOf(deviceB, format), fp2);
      });
    }
  }
});

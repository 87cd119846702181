/**
 * A `.safetensors` file through the crash-safe front doors, as `.onnx` and `.tflite` files go:
 * `ndiff apply` and `apply()` patch it with the journal, kept previous version, replay state
 * beside the file and recorded model id (the bytes the in-memory applier makes); a payload for
 * another base and a hostile header are refused with typed errors and the file untouched byte for
 * byte; a kill at any operation leaves the old file or the new one, never a mix, and the next
 * apply recovers; `release add` publishes safetensors versions and `ndiff update` brings a
 * device's file to the newest, rolling back (and saying so) when the health check fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BaseMismatchError, ModelFormatError, ModelMismatchError } from '../src/core/errors.ts';
import { applyPayload } from '../src/apply/index.ts';
import { structuralDiff } from '../src/diff/structural.ts';
import { getHasher } from '../src/core/hasher.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { structuralPair } from './helpers/structural-pairs.ts';
import { openSafetensorsFile, writeSafetensorsFile } from '../src/io/safetensors/files.ts';
import { generateKeyPair, loadPrivateKey } from '../src/sign/node-keys.ts';
import { diff } from '../src/front/diff.ts';
import { apply } from '../src/front/apply.ts';
import { fingerprint } from '../src/front/fingerprint.ts';
import { update } from '../src/front/update.ts';
import { release } from '../src/front/release.ts';
import { ndiffProcess, runNdiff } from './helpers/ndiff-run.ts';
import { serveRelease } from './helpers/release-server.ts';
import { crashSafetensors } from './crash/safetensors.ts';

const root = mkdtempSync(path.join(tmpdir(), 'nd-safetensors-apply-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const ndiff = (argv: string[]) => runNdiff(...argv);

const w = new Float32Array(256).map((_, i) => Math.sin(i));
const tensors = (k: number) => ({
  'fc.weight': { shape: [16, 16], data: w.map((v, i) => v + (i % 9 === 0 ? 0.25 * k : 0)) },
  'fc.bias': { shape: [4], data: new Float32Array([0.1, 0.2 + 0.05 * k, 0.3, 0.4]) },
  // A half tensor (decoded and written back) and an integer one (passed through byte for byte).
  'emb': { shape: [8], dtype: 'F16', data: Float32Array.from({ length: 8 }, (_, i) => (i === k ? 2 : 0.5)) },
  'ids': { shape: [2], dtype: 'I64', data: new Uint8Array(16).fill(7) },
});
const v1 = path.join(root, 'v1.safetensors');
const v2 = path.join(root, 'v2.safetensors');
const v3 = path.join(root, 'v3.safetensors');
await writeSafetensorsFile(v1, tensors(0));
await writeSafetensorsFile(v2, tensors(1));
await writeSafetensorsFile(v3, tensors(2));
const payloadFile = path.join(root, 'v1-v2.ndiff');
const made = await diff({ base: v1, target: v2, budget: 'all', modelId: 'st', out: payloadFile });
const payload = new Uint8Array(readFileSync(payloadFile));

/** The file the in-memory applier makes from a copy of v1. */
async function inMemory(): Promise<Buffer> {
  const copy = path.join(root, `mem-${Math.random().toString(16).slice(2)}.safetensors`);
  cpSync(v1, copy);
  await applyPayload(await openSafetensorsFile(copy), payload);
  return readFileSync(copy);
}

/** A fresh device copy of v1 in a folder of its own. */
function device(name: string): string {
  const dir = mkdtempSync(path.join(root, `${name}-`));
  const file = path.join(dir, 'model.safetensors');
  cpSync(v1, file);
  return file;
}

const leftovers = (file: string) => readdirSync(path.dirname(file)).filter((n) => /\.tmp-|\.ndiff-prev|\.ndiff-update\.|\.ndiff-apply\.lock|\.ndiff-(incoming|retired)/.test(n));

test('apply() patches a .safetensors file crash-safely: the in-memory applier\'s bytes, the sequence and model id recorded beside it, a second apply already applied', async () => {
  const file = device('lib');
  const r = await apply({ model: file, payload: payloadFile });
  assert.equal(r.status, 'applied');
  assert.equal(r.targetFingerprint, made.targetFingerprint);
  assert.ok(readFileSync(file).equals(await inMemory()), 'the bytes applyPayload makes in memory');
  assert.equal((await fingerprint({ model: file })).fingerprint, made.targetFingerprint);
  assert.equal(r.sequenceRecorded, true);
  assert.equal(r.statePath, `${file}.ndiff-state.json`);
  const state = JSON.parse(readFileSync(`${file}.ndiff-state.json`, 'utf8')) as Record<string, unknown>;
  assert.match(JSON.stringify(state), /"st"/);
  assert.equal((JSON.parse(readFileSync(`${file}.ndiff-model.json`, 'utf8')) as { modelId: string }).modelId, 'st');
  assert.deepEqual(leftovers(file), []);
  const again = await apply({ model: file, payload });
  assert.equal(again.status, 'already-applied');
  // The recorded id now guards the file: a payload of another model id is refused, the file untouched.
  const other = path.join(root, 'other-id.ndiff');
  await diff({ base: v1, target: v2, budget: 'all', modelId: 'another', out: other });
  const before = readFileSync(file);
  await assert.rejects(apply({ model: file, payload: other }), ModelMismatchError);
  assert.ok(readFileSync(file).equals(before));
});

test('ndiff apply patches a .safetensors file: the in-memory bytes; run again it says already applied; --dry-run writes nothing', async () => {
  const file = device('cli');
  const dry = await ndiff(['apply', '--model', file, '--patch', payloadFile, '--dry-run']);
  assert.equal(dry.code, 0, dry.err);
  assert.ok(readFileSync(file).equals(readFileSync(v1)), 'a dry run writes nothing');
  const cli = await ndiff(['apply', '--model', file, '--patch', payloadFile]);
  assert.equal(cli.code, 0, cli.err);
  assert.ok(readFileSync(file).equals(await inMemory()));
  assert.ok(existsSync(`${file}.ndiff-state.json`) && existsSync(`${file}.ndiff-model.json`));
  const again = await ndiff(['apply', '--model', file, '--patch', payloadFile]);
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /is already at target/);
  // A health check that fails rolls the file back to v1, byte for byte.
  const checked = device('cli-health');
  const failed = await ndiff(['apply', '--model', checked, '--patch', payloadFile, '--health-check', 'exit 1']);
  assert.equal(failed.code, 5, failed.err);
  assert.ok(readFileSync(checked).equals(readFileSync(v1)), 'rolled back');
  assert.deepEqual(leftovers(checked), []);
});

test('a payload for another base is refused, the .safetensors file untouched byte for byte', async () => {
  const file = device('wrong-base');
  cpSync(v3, file);
  const before = readFileSync(file);
  await assert.rejects(apply({ model: file, payload }), BaseMismatchError);
  assert.ok(readFileSync(file).equals(before));
  assert.deepEqual(leftovers(file), []);
  assert.equal(existsSync(`${file}.ndiff-model.json`), false);
  const cli = await ndiff(['apply', '--model', file, '--patch', payloadFile]);
  assert.equal(cli.code, 4, cli.err);
  assert.ok(readFileSync(file).equals(before));
});

/** A safetensors file with the header `header` (a JSON object) and `data` bytes after it, or a raw header length. */
function hostile(header: unknown, data: number, headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

test('a hostile .safetensors header (offsets past the end, overlapping tensors, a huge header length) is refused with a typed error, the file untouched', async () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ['offsets past the end', hostile({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), /data_offsets \[begin, end\] within the 8-byte data section/],
    ['overlapping tensors', hostile({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, 24), /without gaps or overlaps/],
    ['a huge header length', hostile({}, 16, 2n ** 40n), /the header length field says 1099511627776 bytes/],
  ];
  for (const [what, bytes, message] of cases) {
    const file = path.join(mkdtempSync(path.join(root, 'hostile-')), 'model.safetensors');
    writeFileSync(file, bytes);
    await assert.rejects(apply({ model: file, payload }), (e: unknown) => e instanceof ModelFormatError && message.test(e.message), what);
    const cli = await ndiff(['apply', '--model', file, '--patch', payloadFile]);
    assert.equal(cli.code, 7, `${what}: ${cli.err}`);
    assert.ok(readFileSync(file).equals(bytes), `${what}: the file is untouched`);
    assert.deepEqual(leftovers(file), [], what);
  }
});

test('a structural payload (format v7) is refused for a .safetensors file with a typed error, nothing written', async () => {
  const pair = structuralPair('tflite', 7);
  const built = structuralDiff(await getHasher(), pair.base, pair.target, { kind: 'tflite', open: (b) => new TfliteWeightStore(b) }, { modelId: 'st', sequence: 2 });
  const file = device('structural');
  await assert.rejects(apply({ model: file, payload: built.bytes }), (e: unknown) => e instanceof ModelMismatchError && /no structural payload is made/.test(e.message));
  assert.ok(readFileSync(file).equals(readFileSync(v1)));
  assert.deepEqual(leftovers(file), []);
});

test('ndiff apply killed before each of its file operations: the old file or the new one byte for byte, never a mix; the next apply recovers and finishes', { timeout: 600_000 }, async () => {
  const r = await crashSafetensors();
  assert.deepEqual(r.bad, []);
  assert.equal(r.kills, r.operations.length);
  assert.ok(r.sawOld > 0 && r.sawNew > 0, `old ${r.sawOld}, new ${r.sawNew}: the kills did not straddle the switch`);
  // The documented protocol: the journal before the previous version is kept, the switch by a rename.
  const journal = r.operations.findIndex((o) => /^rename\(m\.safetensors\.ndiff-update\.json\.tmp-/.test(o));
  const keep = r.operations.findIndex((o) => o === 'link(m.safetensors -> m.safetensors.ndiff-prev)');
  const sw = r.operations.findIndex((o) => /^rename\(m\.safetensors\.tmp-\S+ -> m\.safetensors\)$/.test(o));
  assert.ok(journal >= 0 && journal < keep && keep < sw, r.operations.join('\n'));
});

test('ndiff apply killed from outside while its health check runs: the file runs v2, unconfirmed; the next apply refuses without a check, rolls back on a failing one, confirms on a passing one', { timeout: 300_000 }, async () => {
  const fifoDir = mkdtempSync(path.join(root, 'hc-fifos-'));
  const [started, release] = [path.join(fifoDir, 'started'), path.join(fifoDir, 'release')];
  for (const f of [started, release]) assert.equal(spawnSync('mkfifo', [f]).status, 0, 'mkfifo');
  const file = device('killed-in-check');
  // The check says which process runs it, then waits on a fifo: the test kills that process there.
  const run = ndiffProcess(['apply', '--model', file, '--patch', payloadFile, '--health-check', `echo $PPID > '${started}'; read x < '${release}'`]);
  const pid = Number((await readFile(started, 'utf8')).trim());
  process.kill(pid, 'SIGKILL');
  const killed = await run;
  await writeFile(release, 'go\n'); // the check's shell, left waiting, ends
  assert.equal(killed.signal, 'SIGKILL', killed.stderr);
  assert.ok(readFileSync(file).equals(await inMemory()), 'killed after the switch: the file is v2');
  assert.deepEqual(leftovers(file).filter((n) => !n.startsWith('.ndiff-apply.lock')).sort(), ['model.safetensors.ndiff-prev', 'model.safetensors.ndiff-update.json'], 'the previous version kept, the journal says the update is unconfirmed');
  assert.equal((JSON.parse(readFileSync(`${file}.ndiff-update.json`, 'utf8')) as { awaitsHealthCheck?: boolean }).awaitsHealthCheck, true);
  const v2Bytes = readFileSync(file);

  // Without a health check: refused (exit 5), nothing changed.
  const plain = await ndiff(['apply', '--model', file, '--patch', payloadFile]);
  assert.equal(plain.code, 5, plain.err);
  assert.match(plain.err, /interrupted after its switch but before it was confirmed \(its health check never finished\)/);
  assert.ok(readFileSync(file).equals(v2Bytes));
  // A failing check on a copy: rolled back to v1 byte for byte (then the payload's own check fails too).
  const copy = device('killed-in-check-copy');
  for (const n of ['', '.ndiff-prev', '.ndiff-update.json']) cpSync(file + n, copy + n);
  const failing = await ndiff(['apply', '--model', copy, '--patch', payloadFile, '--health-check', 'false', '--json']);
  assert.match(failing.err, /the health check failed now .*rolled back to the previous version/);
  assert.ok(readFileSync(copy).equals(readFileSync(v1)), 'rolled back to v1');
  assert.deepEqual(leftovers(copy), []);
  // A passing one: confirmed, the update kept, nothing left beside it.
  const passing = await ndiff(['apply', '--model', file, '--patch', payloadFile, '--health-check', 'true', '--json']);
  assert.equal(passing.code, 0, passing.err);
  assert.equal((JSON.parse(passing.out) as { pendingUpdate?: { outcome: string } }).pendingUpdate?.outcome, 'confirmed');
  assert.ok(readFileSync(file).equals(v2Bytes));
  assert.deepEqual(leftovers(file), []);
});

test('documented limit: applyPayload over openSafetensorsFile (an atomic rewrite, no journal) killed in its health check keeps the new version with nothing unconfirmed', { timeout: 300_000 }, async () => {
  const fifoDir = mkdtempSync(path.join(root, 'store-fifos-'));
  const [started, release] = [path.join(fifoDir, 'started'), path.join(fifoDir, 'release')];
  for (const f of [started, release]) assert.equal(spawnSync('mkfifo', [f]).status, 0, 'mkfifo');
  const file = device('store-killed-in-check');
  // The library's in-memory route: the store's commit rewrites the file; the check then waits on a fifo.
  const script = `import { readFileSync, writeFileSync } from 'node:fs';
import { applyPayload } from './src/apply/index.ts';
import { openSafetensorsFile } from './src/io/safetensors/files.ts';
await applyPayload(await openSafetensorsFile(${JSON.stringify(file)}), new Uint8Array(readFileSync(${JSON.stringify(payloadFile)})), { healthCheck: () => { writeFileSync(${JSON.stringify(started)}, 'checking\\n'); readFileSync(${JSON.stringify(release)}); return true; } });`;
  const child = spawn(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', '--input-type=module', '-e', script], { cwd: path.resolve('.'), stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
  assert.equal((await readFile(started, 'utf8')).trim(), 'checking');
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  assert.ok(readFileSync(file).equals(await inMemory()), 'the new version, written before the check');
  assert.deepEqual(leftovers(file), [], 'no journal, no kept previous version: nothing says the check never finished');
  // So the next crash-safe apply finds nothing to settle: already at the target, no check asked for.
  const next = await ndiff(['apply', '--model', file, '--patch', payloadFile]);
  assert.equal(next.code, 0, next.err);
  assert.match(next.out, /is already at target/);
});

test('release add publishes .safetensors versions; ndiff update brings a device\'s file to the newest, and a failing health check rolls back and says so', { timeout: 300_000 }, async () => {
  const site = path.join(root, 'site');
  const keys = generateKeyPair();
  const key = loadPrivateKey(keys.privateKeyPem);
  const publicKey = path.join(root, 'release.public.pem');
  writeFileSync(publicKey, keys.publicKeyPem);
  const first = await release.add({ release: site, model: v1, modelId: 'st', key });
  const second = await release.add({ release: site, model: v2, key });
  assert.equal(first.fingerprint, made.baseFingerprint);
  assert.equal(second.fingerprint, made.targetFingerprint);
  assert.equal(JSON.parse(readFileSync(path.join(site, 'release.json'), 'utf8')).modelKind, 'safetensors');
  const server = await serveRelease(site);
  try {
    // A health check that fails: rolled back, the file v1's bytes, the result says so.
    const failing = device('update-fail');
    const res = await update({ model: failing, from: [server.url], publicKeys: [publicKey], modelId: 'st', healthCheck: () => false });
    assert.equal(res.status, 'failed', JSON.stringify(res));
    assert.ok(readFileSync(failing).equals(readFileSync(v1)), 'rolled back to v1 byte for byte');
    assert.ok(res.steps.some((s) => s.kind === 'payload' && s.error?.code === 'ND_HEALTH_CHECK'), JSON.stringify(res.steps));
    assert.deepEqual(leftovers(failing), []);
    const cliDevice = device('update-cli-fail');
    const cliFail = await ndiff(['update', '--model', cliDevice, '--from', server.url, '--public-key', publicKey, '--model-id', 'st', '--health-check', 'exit 1']);
    assert.equal(cliFail.code, 5, cliFail.err);
    assert.match(cliFail.err, /payload v1->v2 health-check-failed \(ND_HEALTH_CHECK\), the full model health-check-failed \(ND_HEALTH_CHECK\)/);
    assert.match(cliFail.err, /The device keeps its model\./);
    assert.ok(readFileSync(cliDevice).equals(readFileSync(v1)), 'rolled back to v1 byte for byte');
    assert.deepEqual(leftovers(cliDevice), []);
    // A passing one: the file reaches v2 through the payload, its id recorded for the next update.
    const passing = device('update-pass');
    const ok = await update({ model: passing, from: [server.url], publicKeys: [publicKey], modelId: 'st', healthCheck: () => true });
    assert.equal(ok.status, 'updated', JSON.stringify(ok));
    assert.equal(ok.steps[0]?.kind, 'payload');
    assert.equal(ok.fingerprint, made.targetFingerprint);
    assert.equal((await fingerprint({ model: passing })).fingerprint, made.targetFingerprint);
    assert.equal((await update({ model: passing, from: [server.url], publicKeys: [publicKey] })).status, 'up-to-date');
    // The command's health check is told the file and its folder, as docs/cli/update.md says.
    const cliPass = device('update-cli-pass');
    const told = await ndiff(['update', '--model', cliPass, '--from', server.url, '--public-key', publicKey, '--model-id', 'st', '--health-check', `test "$NDIFF_MODEL_FILE" = '${cliPass}' && test "$NDIFF_MODEL_DIR" = '${path.dirname(cliPass)}'`]);
    assert.equal(told.code, 0, told.err);
    assert.ok(readFileSync(cliPass).equals(readFileSync(v2)), 'v2, the check having passed');
  } finally {
    await server.close();
  }
});

test('a .safetensors version whose tensors changed gets no payload (none is structural for one): ndiff update installs the full file', { timeout: 300_000 }, async () => {
  const site = path.join(root, 'site-reshaped');
  const keys = generateKeyPair();
  const key = loadPrivateKey(keys.privateKeyPem);
  const publicKey = path.join(root, 'reshaped.public.pem');
  writeFileSync(publicKey, keys.publicKeyPem);
  const grown = path.join(root, 'grown.safetensors');
  await writeSafetensorsFile(grown, { ...tensors(1), 'fc2.weight': { shape: [4, 4], data: new Float32Array(16).fill(0.5) } });
  await release.add({ release: site, model: v1, modelId: 'st', key });
  const added = await release.add({ release: site, model: grown, key });
  assert.equal(added.added, 0, JSON.stringify(added));
  assert.match(added.skipped?.[0]?.why ?? '', /no structural payload is made for a \.safetensors file: devices holding it get the full file/);
  const server = await serveRelease(site);
  try {
    const file = device('reshaped');
    const res = await update({ model: file, from: [server.url], publicKeys: [publicKey], modelId: 'st' });
    assert.equal(res.status, 'updated', JSON.stringify(res));
    assert.deepEqual(res.steps.map((s) => s.kind), ['full']);
    assert.ok(readFileSync(file).equals(readFileSync(grown)), 'the new file, byte for byte');
    assert.deepEqual(leftovers(file), []);
  } finally {
    await server.close();
  }
});

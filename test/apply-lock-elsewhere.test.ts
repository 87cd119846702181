/**
 * The apply lock's reach: a lock written on another host (a shared network folder) or in another
 * PID namespace of this machine (another container on the same volume) cannot be judged stale from
 * here, so it is refused (`LockHeldElsewhereError`) rather than deleted; a lock of this host and
 * namespace whose holder is dead, and a lock written before these fields were recorded, are still
 * judged by pid, boot and start as before.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { LockHeldElsewhereError, ModelFormatError } from '../src/core/errors.ts';
import { lockModelDir, LOCK_FILE } from '../src/io/tfjs/folder-update.ts';
import { tempDir } from './helpers/dirs.ts';
import { crashingFileOps } from './helpers/file-ops.ts';

const linux = existsSync('/proc/sys/kernel/random/boot_id') && existsSync('/proc/self/ns/pid');
const boot = linux ? readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() : '';
const pidns = linux ? readlinkSync('/proc/self/ns/pid') : '';
const OTHER_BOOT = '00000000-0000-0000-0000-000000000000';

/** A pid that ran and no longer runs. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim());
}

/** Write a lock file as an apply of pid `pid` would, with the record `fields`; returns its name. */
async function lockOf(dir: string, pid: number, fields: object): Promise<string> {
  const name = `${LOCK_FILE}-${pid}-${Date.now()}-0123456789ab`;
  await writeFile(join(dir, name), JSON.stringify({ pid, startedAt: new Date().toISOString(), ...fields }));
  return name;
}

/** Take the lock and let it go: resolves when the folder's lock was free (stale ones deleted). */
async function takeAndRelease(dir: string): Promise<void> {
  const release = await lockModelDir(dir);
  await release();
}

/** The same through `fileOps`. */
async function takeAndReleaseWith(dir: string, fileOps: ReturnType<typeof crashingFileOps>): Promise<void> {
  const release = await lockModelDir(dir, { fileOps });
  await release();
}

describe('the apply lock of another host or PID namespace', () => {
  test('a lock written on another host is refused, not broken as stale, and the error says whose it is and what to do', async () => {
    const dir = await tempDir();
    // Another host's pid means nothing here: this one is dead here, and its boot is not this one.
    const name = await lockOf(dir, deadPid(), { boot: OTHER_BOOT, start: '1', host: `not-${hostname()}`, pidns: 'pid:[4026531836]' });
    await assert.rejects(lockModelDir(dir), (e: unknown) => {
      assert.ok(e instanceof LockHeldElsewhereError && e instanceof ModelFormatError, String(e));
      assert.match(e.message, new RegExp(`on another host \\(not-${hostname()}; this is ${hostname()}\\)`));
      assert.match(e.message, /is not broken as stale/);
      assert.match(e.message, new RegExp(`delete ${join(dir, name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} by hand`));
      assert.equal(e.details.reason, 'another host');
      assert.equal(e.details.lockFile, join(dir, name));
      return true;
    });
    assert.ok((await readdir(dir)).includes(name), 'the lock file is kept');
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(LOCK_FILE)), [name], 'no lock of this process left behind');
  });

  test('a lock of another host written without a boot id (not Linux) is refused too', async () => {
    const dir = await tempDir();
    const name = await lockOf(dir, deadPid(), { host: `not-${hostname()}` });
    await assert.rejects(lockModelDir(dir), LockHeldElsewhereError);
    assert.ok((await readdir(dir)).includes(name));
  });

  test('a lock of the same host name but another machine id is another host', async () => {
    const dir = await tempDir();
    await lockOf(dir, deadPid(), { boot: OTHER_BOOT, start: '1', host: hostname(), machine: 'ffffffffffffffffffffffffffffffff' });
    const machine = existsSync('/etc/machine-id') ? readFileSync('/etc/machine-id', 'utf8').trim() : '';
    if (machine) await assert.rejects(lockModelDir(dir), LockHeldElsewhereError);
    else await takeAndRelease(dir); // no machine id here to compare: the same host name, another boot, stale
  });

  test('a lock of this host name and machine from another boot is stale (a reboot)', async () => {
    const dir = await tempDir();
    const machine = existsSync('/etc/machine-id') ? readFileSync('/etc/machine-id', 'utf8').trim() : undefined;
    await lockOf(dir, process.ppid, { boot: OTHER_BOOT, start: '1', host: hostname(), ...(machine ? { machine } : {}) });
    await takeAndRelease(dir);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(LOCK_FILE)), []);
  });

  test('a lock written before these fields were recorded is judged as before: a dead pid stale, a live one held', async () => {
    const dir = await tempDir();
    await lockOf(dir, deadPid(), linux ? { boot, start: '1' } : {});
    await takeAndRelease(dir);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(LOCK_FILE)), []);
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ pid: process.ppid, startedAt: new Date().toISOString() }));
    await assert.rejects(lockModelDir(dir), (e: unknown) => e instanceof ModelFormatError && !(e instanceof LockHeldElsewhereError) && /another apply or update \(pid \d+\) is updating/.test(e.message));
  });
});

describe('the apply lock of another PID namespace (Linux)', { skip: linux ? false : 'no /proc boot id or PID namespace here' }, () => {
  test('a lock of this host and boot from another PID namespace is refused, not broken as stale', async () => {
    const dir = await tempDir();
    // Its pid is dead here, or another process: from another namespace, neither says anything.
    const name = await lockOf(dir, deadPid(), { boot, start: '1', host: hostname(), pidns: 'pid:[1]' });
    await assert.rejects(lockModelDir(dir), (e: unknown) => {
      assert.ok(e instanceof LockHeldElsewhereError, String(e));
      assert.match(e.message, new RegExp(`in another PID namespace of this machine \\(pid:\\[1\\]; this process is in ${pidns.replace(/[[\]]/g, '\\$&')}\\)`));
      assert.match(e.message, /another container sharing the volume/);
      assert.equal(e.details.reason, 'another PID namespace');
      return true;
    });
    assert.ok((await readdir(dir)).includes(name));
  });

  test('a lock of this host, boot and PID namespace whose pid is dead is still stale', async () => {
    const dir = await tempDir();
    await lockOf(dir, deadPid(), { boot, start: '1', host: hostname(), pidns });
    await takeAndRelease(dir);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(LOCK_FILE)), []);
  });

  test('a lock of this host under another host name (the same boot and namespace: renamed) is judged by its pid', async () => {
    const dir = await tempDir();
    await lockOf(dir, deadPid(), { boot, start: '1', host: `not-${hostname()}`, pidns });
    await takeAndRelease(dir);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(LOCK_FILE)), []);
  });

  test('a lock file whose record is not written yet is not deleted at first sight: written by then from another namespace, it is refused', async () => {
    const dir = await tempDir();
    // Another container has created its lock file and not yet written its record: its pid (from the
    // name) is dead here. It writes the record when this process first withdraws.
    const pid = deadPid();
    const name = `${LOCK_FILE}-${pid}-${Date.now()}-0123456789ab`;
    await writeFile(join(dir, name), '');
    const ops: string[] = [];
    const fileOps = crashingFileOps((op) => {
      ops.push(op);
      if (op.startsWith(`unlink ${LOCK_FILE}-${process.pid}-`)) writeFileSync(join(dir, name), JSON.stringify({ pid, startedAt: new Date().toISOString(), boot, start: '1', host: hostname(), pidns: 'pid:[1]' }));
      return false;
    });
    await assert.rejects(lockModelDir(dir, { fileOps }), LockHeldElsewhereError);
    assert.ok(!ops.includes(`unlink ${name}`), `the other lock was never deleted: ${ops.join(', ')}`);
    assert.ok((await readdir(dir)).includes(name));
  });

  test('a lock file of this namespace left empty (cut short by a crash) is deleted after a second look', async () => {
    const dir = await tempDir();
    const name = `${LOCK_FILE}-${deadPid()}-${Date.now()}-0123456789ab`;
    await writeFile(join(dir, name), '');
    const ops: string[] = [];
    await takeAndReleaseWith(dir, crashingFileOps((op) => (ops.push(op), false)));
    // Seen once and withdrawn from, then deleted: create, unlink (ours), create, unlink (it).
    const named = ops.map((op) => (op === `unlink ${name}` ? 'unlink theirs' : op.replace(/ \.ndiff-apply\.lock-.*$/, ' ours')));
    assert.deepEqual(named.slice(0, 4), ['create ours', 'unlink ours', 'create ours', 'unlink theirs']);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(LOCK_FILE)), []);
  });

  test('the lock an apply takes records its host, machine and PID namespace', async () => {
    const dir = await tempDir();
    const release = await lockModelDir(dir);
    const name = (await readdir(dir)).find((f) => f.startsWith(`${LOCK_FILE}-`));
    assert.ok(name);
    const body = JSON.parse(await readFile(join(dir, name), 'utf8'));
    assert.equal(body.host, hostname());
    assert.equal(body.pidns, pidns);
    if (existsSync('/etc/machine-id') && readFileSync('/etc/machine-id', 'utf8').trim()) assert.equal(body.machine, readFileSync('/etc/machine-id', 'utf8').trim());
    await release();
  });

  const canUnshare = linux && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;
  test('an apply holding the lock in a real other PID namespace (unshare) is not taken for dead', { skip: canUnshare ? false : 'cannot make a PID namespace here (unshare, root)' }, async (t) => {
    const dir = join(await tempDir(), 'model');
    await mkdir(dir);
    const sig = (n: string) => join(dir, '..', n);
    await writeFile(sig('go'), ''); // the helper's delayed unlink (of its own lock, at release) goes on at once
    const root = join(import.meta.dirname, '..');
    const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, '--conditions=neural-diff-source', '--import', 'tsx', join(root, 'test/helpers/lock-child.ts'), dir, sig('ready'), sig('go'), sig('release')], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      let out = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => { out += d; if (out.includes('\n')) resolve(); });
        child.on('exit', () => reject(new Error(`the child in its own PID namespace exited before taking the lock: ${out}`)));
        t.signal.addEventListener('abort', () => reject(new Error('the test ended while the child took the lock')), { once: true });
      });
      assert.equal(out.trim(), 'locked');
      const record = JSON.parse(await readFile(join(dir, (await readdir(dir)).find((f) => f.startsWith(`${LOCK_FILE}-`)) as string), 'utf8'));
      assert.notEqual(record.pidns, pidns, 'the child ran in a PID namespace of its own');
      await assert.rejects(lockModelDir(dir), LockHeldElsewhereError);
    } finally {
      await writeFile(sig('release'), '');
      assert.equal(await exited, 0);
    }
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(LOCK_FILE)), [], 'the child let its lock go');
  });
});

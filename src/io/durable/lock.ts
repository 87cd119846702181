/**
 * The apply lock of a model folder (one writer per folder, across processes and within one), and
 * the report and options shared by the functions that change a model folder or file. Node only.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readlink, realpath } from 'node:fs/promises';
import { hostname, uptime } from 'node:os';
import * as path from 'node:path';
import { LockHeldElsewhereError, ModelFormatError } from '../../core/errors.ts';
import { errCode, nodeFileOps, readIfExists, type FileOps } from './durable.ts';
import { LOCK_FILE } from './control-files.ts';
import type { RecoveryReport } from './pending-update.ts';

export type { RecoveryReport } from './pending-update.ts';


/** Options of the functions that change a model folder. */
export interface FolderOptions {
  /** The file operations that change the folder (default: node:fs; tests record them). */
  fileOps?: FileOps;
}


/**
 * Model folders this process holds the lock of (resolved paths): two applies in one process
 * exclude each other too. An entry is added synchronously, before the first await.
 */
const heldLocks = new Set<string>();

/** `.ndiff-apply.lock-<pid>-<ms since 1970>-<12 hex>`: one file per apply, never reused. */
const LOCK_NAME = /^\.ndiff-apply\.lock-(\d+)-(\d+)-[0-9a-f]{12}$/;
/** Attempts at the lock when another live apply's lock file is seen (with a short random pause between). */
const LOCK_ATTEMPTS = 4;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errCode(e) === 'EPERM';
  }
}

/** Linux: this boot's id (/proc/sys/kernel/random/boot_id); undefined where there is none. */
async function bootId(): Promise<string | undefined> {
  const b = await readIfExists('/proc/sys/kernel/random/boot_id').catch(() => null);
  return b ? new TextDecoder().decode(b).trim() || undefined : undefined;
}

/**
 * Where this process runs, as a lock records it: the host name, the machine id
 * (/etc/machine-id), this boot's id and the PID namespace (/proc/self/ns/pid, e.g.
 * `pid:[4026531836]`); each but the host name undefined where there is none.
 */
interface LockPlace {
  host: string;
  machine?: string;
  boot?: string;
  pidns?: string;
}

async function lockPlace(): Promise<LockPlace> {
  const machine = await readIfExists('/etc/machine-id').catch(() => null);
  const pidns = await readlink('/proc/self/ns/pid').catch(() => undefined);
  return {
    host: hostname(),
    machine: (machine && new TextDecoder().decode(machine).trim()) || undefined,
    boot: await bootId(),
    pidns: pidns && /^pid:\[\d+\]$/.test(pidns) ? pidns : undefined,
  };
}

/** Why a lock's holder cannot be seen from here, or undefined when it can. */
type Elsewhere = 'another host' | 'another PID namespace';

/**
 * Whether the lock record `body` was written where this process cannot see its holder. With the
 * same boot id it is this kernel: another PID namespace (a container) when the namespaces differ
 * (its pids mean other processes here), else seen. With another boot id, or none to compare, it
 * is another host when the host name or the machine id differ; the same name and machine with
 * another boot is a reboot of this one (its lock stale). A record without these fields (written
 * before they were recorded, or where they are not known) is judged as before, by pid and time.
 */
function elsewhere(body: { boot?: unknown; host?: unknown; machine?: unknown; pidns?: unknown }, here: LockPlace): Elsewhere | undefined {
  if (typeof body.boot === 'string' && body.boot === here.boot) {
    return typeof body.pidns === 'string' && here.pidns !== undefined && body.pidns !== here.pidns ? 'another PID namespace' : undefined;
  }
  if (typeof body.host === 'string' && body.host !== here.host) return 'another host';
  if (typeof body.machine === 'string' && here.machine !== undefined && body.machine !== here.machine) return 'another host';
  return undefined;
}

/** The holder of a lock file that is not stale; `elsewhere` when it cannot be seen from here. */
interface LockHolder {
  pid: number;
  /** The lock file's name. */
  name: string;
  elsewhere?: Elsewhere;
  /** The host name the lock records, if any. */
  host?: string;
  /** The PID namespace the lock records, if any. */
  pidns?: string;
}

/**
 * Linux: when process `pid` started, in clock ticks since boot (/proc/<pid>/stat, field 22), as
 * text; undefined where there is no such file (no /proc, the process is gone, or hidden from us).
 */
async function startTicks(pid: number): Promise<string | undefined> {
  const b = await readIfExists(`/proc/${pid}/stat`).catch(() => null);
  if (!b) return undefined;
  const text = new TextDecoder().decode(b);
  // After the command's closing parenthesis come fields 3, 4, ...: the start is the 20th of them.
  const start = text.slice(text.lastIndexOf(')') + 2).split(' ')[19];
  return start && /^\d+$/.test(start) ? start : undefined;
}

/**
 * The live holder a lock file names, or null when it is stale. A lock written on another host, or
 * in another PID namespace of this machine (see {@link elsewhere}), is never stale: whether its
 * holder runs cannot be seen from here. Where the lock file says which
 * boot and which process start took it (Linux), by those alone: a lock of another boot, or whose
 * pid now belongs to a process started at another time (a pid reused since the holder died), is
 * stale; no clock is read, so one set forward while the lock is held (a device without a clock
 * battery that finds the time after it boots) does not make a live lock look older than the boot.
 * Elsewhere, or for a lock written without them: stale when its pid no longer runs, it was taken
 * before the last boot (after a reboot the same pid may belong to another process), or it is this
 * process's own pid (this process holds no other lock on the folder, so the file is a leftover of
 * a run with the same pid before a reboot).
 *
 * A lock file whose record cannot be read yet (created, its record not yet written: from another
 * host or namespace its pid would say nothing) is held the first time it is seen in one taking
 * of the lock (`unread` records it), and judged by its name after the next pause.
 */
async function liveHolder(dir: string, name: string, here: LockPlace, unread: Set<string>): Promise<LockHolder | null> {
  let body: { pid?: unknown; startedAt?: unknown; boot?: unknown; start?: unknown; host?: unknown; machine?: unknown; pidns?: unknown } | undefined;
  const bytes = await readIfExists(path.join(dir, name)).catch(() => new Uint8Array()); // unreadable: judged as unread
  if (bytes === null) return null; // gone since the listing
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    body = undefined; // being written, or cut short by a crash
  }
  let pid: unknown;
  let takenAt = NaN;
  const m = LOCK_NAME.exec(name);
  if (m) {
    pid = Number(m[1]);
    takenAt = Number(m[2]);
    if (body === undefined && !unread.has(name)) {
      unread.add(name);
      return { pid: pid as number, name };
    }
  } else {
    // An older applier's lock, `.ndiff-apply.lock` with {"pid", "startedAt"} inside.
    if (body === undefined) return null; // a lock cut short by a crash
    pid = body?.pid;
    takenAt = typeof body?.startedAt === 'string' ? Date.parse(body.startedAt) : NaN;
  }
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid)) return null;
  // Before the pid is looked at: from another host or namespace, it names some other process here.
  if (body !== undefined && body.pid === pid) {
    const far = elsewhere(body, here);
    if (far) return { pid, name, elsewhere: far, host: typeof body.host === 'string' ? body.host : undefined, pidns: typeof body.pidns === 'string' ? body.pidns : undefined };
  }
  if (pid === process.pid) return null;
  if (typeof body?.boot === 'string' && typeof body.start === 'string' && body.pid === pid) {
    if (here.boot !== undefined) {
      if (here.boot !== body.boot) return null;
      const start = await startTicks(pid);
      // No start to read: gone, or hidden from this user (then alive by the signal check).
      if (start === undefined) return pidAlive(pid) ? { pid, name } : null;
      return start === body.start ? { pid, name } : null;
    }
  }
  const bootedAt = Date.now() - uptime() * 1000;
  if (Number.isFinite(takenAt) && takenAt < bootedAt - 5000) return null;
  if (!pidAlive(pid)) return null;
  return { pid, name };
}

/**
 * Take the folder's apply lock, for one writer per model folder.
 *
 * Each apply creates a lock file of its own, named by its pid, start time and a random nonce,
 * then lists the folder: if another live apply's lock file is there, it removes its own and
 * (after a few tries, a short random pause apart) refuses; lock files of dead processes, or from
 * before the last boot, are deleted. No file is ever taken over or reused, so a delayed deletion
 * of a stale lock can only delete that stale file, never a lock another apply has just taken;
 * and of two applies that create their files at the same time, the one that lists the folder
 * last sees the other's file, so they cannot both hold the lock.
 *
 * A lock file written on another host (a network file system) or in another PID namespace of
 * this machine (another container sharing the volume) is never deleted: whether its holder still
 * runs cannot be seen from here, so it is refused with {@link LockHeldElsewhereError}, which says
 * whose lock it is and how to remove it by hand.
 *
 * @throws LockHeldElsewhereError the lock is held from another host or PID namespace.
 * @throws ModelFormatError another live apply holds the lock, no such folder, or the folder
 *   cannot be written (permissions, read-only file system).
 * @returns the release function.
 */
export async function lockModelDir(dir: string, options: FolderOptions & { writer?: string; what?: string } = {}): Promise<(() => Promise<void>) & { file: string }> {
  const ops = options.fileOps ?? nodeFileOps;
  const keys = [path.resolve(dir)];
  // The same lock keeps one writer in a release folder (`ndiff release`): the words say which.
  const writer = options.writer ?? 'apply or update';
  const what = options.what ?? 'model folder';
  const inProcess = () => new ModelFormatError(`${/^[aeiou]/.test(writer) ? 'an' : 'a'} ${writer} to ${dir} is already running in this process: expected one writer per ${what}; await it, then retry`, { dir });
  if (heldLocks.has(keys[0])) throw inProcess();
  heldLocks.add(keys[0]);
  const unreserve = () => keys.forEach((k) => heldLocks.delete(k));
  try {
    // The same folder under another path (a symlink) is the same lock.
    const real = await realpath(dir).catch(() => keys[0]);
    if (real !== keys[0]) {
      if (heldLocks.has(real)) throw inProcess();
      heldLocks.add(real);
      keys.push(real);
    }
    // Which boot and which start of this pid hold the lock (Linux), so a reused pid is told apart;
    // which host, machine and PID namespace, so a lock no one here can see is not taken as stale.
    const here = await lockPlace();
    const start = await startTicks(process.pid);
    const { host, machine, boot, pidns } = here;
    const body = new TextEncoder().encode(JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString(), ...(boot && start ? { boot, start } : {}), host, ...(machine ? { machine } : {}), ...(pidns ? { pidns } : {}) }) + '\n');
    const unread = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      const mine = `${LOCK_FILE}-${process.pid}-${Date.now()}-${randomBytes(6).toString('hex')}`;
      const file = path.join(dir, mine);
      try {
        await ops.writeNewFile(file, [body]);
      } catch (e) {
        throw lockWriteError(dir, e);
      }
      let holder: LockHolder | null = null;
      for (const name of (await readdir(dir)).sort()) {
        if (name === mine || !(name === LOCK_FILE || LOCK_NAME.test(name))) continue;
        const live = await liveHolder(dir, name, here, unread);
        if (live) holder ??= live;
        // A stale lock file is its dead owner's alone: deleting it, even late, harms no one.
        else await ops.unlink(path.join(dir, name)).catch(() => {});
      }
      if (!holder) {
        // `file`: the lock file's name, for a caller that renames the folder with the lock in it.
        return Object.assign(async () => {
          unreserve();
          await ops.unlink(file).catch(() => {});
        }, { file: mine });
      }
      await ops.unlink(file).catch(() => {});
      if (attempt >= LOCK_ATTEMPTS) {
        if (holder.elsewhere) throw heldElsewhere(dir, holder, here, writer, what);
        throw new ModelFormatError(`another ${writer} (pid ${holder.pid}) is updating ${dir} now: expected one writer per ${what}; wait for it to finish, then retry`, { dir, pid: holder.pid });
      }
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 60));
    }
  } catch (e) {
    unreserve();
    throw e;
  }
}

/** The error for a lock held from another host or PID namespace: whose it is, why it stays, what to do. */
function heldElsewhere(dir: string, holder: LockHolder, here: LockPlace, writer: string, what: string): LockHeldElsewhereError {
  const file = path.join(dir, holder.name);
  const where = holder.elsewhere === 'another host'
    ? `on another host (${holder.host ?? 'unnamed'}; this is ${here.host}) sharing the ${what}, e.g. over NFS`
    : `in another PID namespace of this machine (${holder.pidns}; this process is in ${here.pidns}), e.g. another container sharing the volume`;
  const check = holder.elsewhere === 'another host' ? `on ${holder.host ?? 'that host'}` : 'in that container (or that it is gone)';
  return new LockHeldElsewhereError(
    `the ${what} ${dir} is locked by pid ${holder.pid} ${where}: expected one writer per ${what}, and whether that process still runs cannot be seen from here, so its lock ${file} is not broken as stale. Wait for that ${writer} to finish; if none runs there (check ${check}), delete ${file} by hand, then retry`,
    { dir, lockFile: file, pid: holder.pid, reason: holder.elsewhere, host: holder.host, pidNamespace: holder.pidns },
  );
}

/** The error for a lock file that cannot be created: no folder, or a folder this user cannot write. */
function lockWriteError(dir: string, e: unknown): unknown {
  const code = errCode(e);
  if (code === 'ENOENT' || code === 'ENOTDIR') return new ModelFormatError(`no model folder at ${dir}: check the path`, { dir });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new ModelFormatError(
      `cannot write in the model folder ${dir} (${code}${code === 'EROFS' ? ': a read-only file system' : ': permission denied'}): an apply writes its lock, the new shards and model.json there; expected a folder this user can write. Nothing was changed: run the apply as the folder's owner, or make the folder writable`,
      { dir, code },
    );
  }
  return e;
}

/**
 * A model of what a power cut leaves of a folder, in the spirit of ALICE (Pillai et al., OSDI
 * 2014) and CrashMonkey (Mohan et al., OSDI 2018):
 *
 * 1. {@link RecordingFileOps} records every file-system operation an apply makes through the
 *    applier's own file layer (src/io/durable/durable.ts `FileOps`), with the bytes it writes and the
 *    inode each name points to;
 * 2. {@link crashStates} takes a crash point (a prefix of the record) and decides which of the
 *    operations in the prefix reached the disk, under these rules (the abstract persistence
 *    model):
 *    - a write is durable once an fsync of its file follows it in the prefix; before that it
 *      may be lost, persisted in part (its first half) or as zeros of its length (the size
 *      reached the disk, the data did not);
 *    - a change of a name (create, rename, link, unlink) is durable once an fsync of its folder
 *      follows it in the prefix; before that it may be lost, in any combination, except that
 *      an operation on a name whose earlier creation was lost cannot happen (a rename of a file
 *      that is not there);
 *    - nothing after the prefix happened; operations covered by a barrier (an fsync) cannot be
 *      lost, so nothing after a barrier persists without what the barrier made durable;
 *    - an fsync of a file does not make its name durable (POSIX does not promise it; ext4 does,
 *      so this model is harsher than ext4 with data=ordered).
 * 3. {@link materialize} writes the folder a crash state describes into a real folder (hard
 *    links as hard links), where the applier's recovery runs on it as after a reboot.
 *
 * It models the file layer, not the disk: a disk or controller that acknowledges an fsync it
 * did not perform, or that tears a sector a file system believed atomic, is outside it.
 */
import { mkdir, link, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { nodeFileOps, type FileOps, type NewFile } from '../../src/io/durable/durable.ts';

/** A folder as names (top-level files only) pointing at inodes, and the inodes' bytes. */
export interface FolderImage {
  names: Map<string, number>;
  data: Map<number, Uint8Array>;
}

/** One recorded operation. Names are relative to the folder; inodes are the recorder's numbers. */
export type FsOp =
  | { op: 'create'; name: string; ino: number }
  | { op: 'write'; name: string; ino: number; offset: number; bytes: Uint8Array }
  | { op: 'fsync'; name: string; ino: number }
  | { op: 'rename'; from: string; to: string; ino: number }
  | { op: 'link'; from: string; to: string; ino: number }
  | { op: 'unlink'; name: string; ino: number }
  | { op: 'syncDir' };

/** One line per operation, for reports. */
export function describeOp(o: FsOp): string {
  switch (o.op) {
    case 'create': return `create ${o.name}`;
    case 'write': return `write ${o.name} (${o.bytes.length} bytes at ${o.offset})`;
    case 'fsync': return `fsync ${o.name}`;
    case 'rename': return `rename ${o.from} -> ${o.to}`;
    case 'link': return `link ${o.from} -> ${o.to}`;
    case 'unlink': return `unlink ${o.name}`;
    case 'syncDir': return 'fsync the folder';
  }
}

/** Read a folder's top-level files, grouping hard links (same device and inode) into one inode. */
export async function snapshotFolder(dir: string): Promise<FolderImage> {
  const names = new Map<string, number>();
  const data = new Map<number, Uint8Array>();
  const byIno = new Map<string, number>();
  for (const name of (await readdir(dir)).sort()) {
    const file = path.join(dir, name);
    const st = await stat(file);
    if (!st.isFile()) continue;
    const key = `${st.dev}:${st.ino}`;
    let ino = byIno.get(key);
    if (ino === undefined) {
      ino = byIno.size + 1;
      byIno.set(key, ino);
      data.set(ino, new Uint8Array(await readFile(file)));
    }
    names.set(name, ino);
  }
  return { names, data };
}

/** Write the folder an image describes into `dir` (which must not exist yet). */
export async function materialize(image: FolderImage, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const first = new Map<number, string>();
  for (const [name, ino] of [...image.names].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const file = path.join(dir, name);
    const already = first.get(ino);
    if (already !== undefined) {
      await link(already, file);
      continue;
    }
    first.set(ino, file);
    await writeFile(file, image.data.get(ino) ?? new Uint8Array());
  }
}

/** A key equal for two images exactly when they describe the same folder (names, links and bytes). */
export function imageKey(image: FolderImage): string {
  const h = createHash('sha256');
  const order = new Map<number, number>();
  for (const [name, ino] of [...image.names].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (!order.has(ino)) order.set(ino, order.size);
    const bytes = image.data.get(ino) ?? new Uint8Array();
    h.update(`${name}\0${order.get(ino)}\0${bytes.length}\0`);
    h.update(createHash('sha256').update(bytes).digest());
  }
  return h.digest('hex');
}

/**
 * A {@link FileOps} that performs each operation on the real folder (node:fs) and records it.
 * Operations run one at a time, in call order, so a record is one sequence the applier could
 * have issued (the applier writes up to four shards at once; any interleaving of them is a
 * valid history, and a fixed one makes runs repeatable).
 */
export class RecordingFileOps implements FileOps {
  readonly log: FsOp[] = [];
  private readonly names: Map<string, number>;
  private nextIno: number;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly dir: string, initial: FolderImage) {
    this.names = new Map(initial.names);
    this.nextIno = Math.max(0, ...initial.data.keys()) + 1;
  }

  private nameOf(file: string): string {
    const resolved = path.resolve(file);
    if (path.dirname(resolved) !== path.resolve(this.dir)) throw new Error(`the power-loss recorder models one folder (${this.dir}); the apply changed ${file}`);
    return path.basename(resolved);
  }

  /** Run `fn` after every operation called before it has finished. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  writeNewFile(file: string, parts: readonly Uint8Array[], options: { sync?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      await nodeFileOps.writeNewFile(file, parts, options);
      const name = this.nameOf(file);
      const ino = this.nextIno++;
      this.names.set(name, ino);
      this.log.push({ op: 'create', name, ino });
      let offset = 0;
      for (const part of parts) {
        // A copy: the parts are views of live arrays that change after the call.
        this.log.push({ op: 'write', name, ino, offset, bytes: part.slice() });
        offset += part.length;
      }
      if (options.sync) this.log.push({ op: 'fsync', name, ino });
    });
  }

  openNewFile(file: string): Promise<NewFile> {
    return this.serial(async () => {
      const real = await (nodeFileOps.openNewFile as NonNullable<FileOps['openNewFile']>)(file);
      const name = this.nameOf(file);
      const ino = this.nextIno++;
      this.names.set(name, ino);
      this.log.push({ op: 'create', name, ino });
      let offset = 0;
      // Each call recorded in call order, as the one-at-a-time queue runs it; the name is the
      // one the file had when it was opened (nothing renames a file while it is written).
      return {
        append: (bytes) => this.serial(async () => {
          const copy = bytes.slice(); // the bytes as the call gave them
          await real.append(copy);
          this.log.push({ op: 'write', name, ino, offset, bytes: copy });
          offset += copy.length;
        }),
        sync: () => this.serial(async () => {
          await real.sync();
          this.log.push({ op: 'fsync', name, ino });
        }),
        close: () => real.close(),
      };
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.serial(async () => {
      await nodeFileOps.rename(from, to);
      const f = this.nameOf(from);
      const t = this.nameOf(to);
      const ino = this.names.get(f) as number;
      this.names.delete(f);
      this.names.set(t, ino);
      this.log.push({ op: 'rename', from: f, to: t, ino });
    });
  }

  link(existing: string, newPath: string): Promise<void> {
    return this.serial(async () => {
      await nodeFileOps.link(existing, newPath);
      const f = this.nameOf(existing);
      const t = this.nameOf(newPath);
      const ino = this.names.get(f) as number;
      this.names.set(t, ino);
      this.log.push({ op: 'link', from: f, to: t, ino });
    });
  }

  unlink(file: string): Promise<void> {
    return this.serial(async () => {
      await nodeFileOps.unlink(file);
      const name = this.nameOf(file);
      const ino = this.names.get(name) as number;
      this.names.delete(name);
      this.log.push({ op: 'unlink', name, ino });
    });
  }

  mkdir(dir: string): Promise<void> {
    // The folder exists (the harness made it): mkdir -p of it changes nothing.
    return this.serial(async () => {
      if (path.resolve(dir) !== path.resolve(this.dir)) throw new Error(`the power-loss recorder models one folder; the apply made ${dir}`);
      await nodeFileOps.mkdir(dir);
    });
  }

  syncDir(dir: string): Promise<void> {
    return this.serial(async () => {
      if (path.resolve(dir) !== path.resolve(this.dir)) throw new Error(`the power-loss recorder models one folder; the apply fsynced ${dir}`);
      await nodeFileOps.syncDir(dir);
      this.log.push({ op: 'syncDir' });
    });
  }
}

/** How much of an un-fsynced write reached the disk. */
export type Tear = 'full' | 'half' | 'zeros';

/** Which operations of a prefix reached the disk. */
export interface Persistence {
  /** Indices (into the log) of operations not covered by a barrier that persisted. */
  persisted: ReadonlySet<number>;
  /** For persisted writes not covered by an fsync: how much of them (default full). */
  tears?: ReadonlyMap<number, Tear>;
}

/** The operations of `log.slice(0, point)` that a barrier in the prefix made durable, and the others (pending). */
export function classify(log: readonly FsOp[], point: number): { forced: Set<number>; pending: number[] } {
  const lastFsync = new Map<number, number>();
  let lastSyncDir = -1;
  for (let i = 0; i < point; i++) {
    const o = log[i];
    if (o.op === 'fsync') lastFsync.set(o.ino, i);
    else if (o.op === 'syncDir') lastSyncDir = i;
  }
  const forced = new Set<number>();
  const pending: number[] = [];
  for (let i = 0; i < point; i++) {
    const o = log[i];
    if (o.op === 'fsync' || o.op === 'syncDir') continue;
    const durable = o.op === 'write' ? (lastFsync.get(o.ino) ?? -1) > i : lastSyncDir > i;
    if (durable) forced.add(i);
    else pending.push(i);
  }
  return { forced, pending };
}

/** The folder after a crash at `point` with `choice` persisted (see the module doc). */
export function imageAfter(initial: FolderImage, log: readonly FsOp[], point: number, forced: ReadonlySet<number>, choice: Persistence): FolderImage {
  const names = new Map(initial.names);
  const data = new Map(initial.data);
  for (let i = 0; i < point; i++) {
    const o = log[i];
    if (o.op === 'fsync' || o.op === 'syncDir') continue;
    if (!forced.has(i) && !choice.persisted.has(i)) continue;
    switch (o.op) {
      case 'create':
        names.set(o.name, o.ino);
        if (!data.has(o.ino)) data.set(o.ino, new Uint8Array());
        break;
      case 'write': {
        const tear = forced.has(i) ? 'full' : choice.tears?.get(i) ?? 'full';
        const bytes = tear === 'full' ? o.bytes : tear === 'half' ? o.bytes.subarray(0, o.bytes.length >> 1) : new Uint8Array(o.bytes.length);
        const old = data.get(o.ino) ?? new Uint8Array();
        const out = new Uint8Array(Math.max(old.length, o.offset + bytes.length));
        out.set(old);
        out.set(bytes, o.offset);
        data.set(o.ino, out);
        break;
      }
      // An operation on a name whose earlier change was lost cannot have happened.
      case 'rename':
        if (names.get(o.from) === o.ino) {
          names.delete(o.from);
          names.set(o.to, o.ino);
        }
        break;
      case 'link':
        if (names.get(o.from) === o.ino) names.set(o.to, o.ino);
        break;
      case 'unlink':
        if (names.get(o.name) === o.ino) names.delete(o.name);
        break;
    }
  }
  // Drop the bytes of inodes no name reaches (a file whose creation was lost).
  const live = new Set(names.values());
  for (const ino of [...data.keys()]) if (!live.has(ino)) data.delete(ino);
  return { names, data };
}

/** A deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One folder a power cut could leave. */
export interface CrashState {
  /** Operations issued before the cut (a prefix of the log). */
  point: number;
  /** Which of the pending operations persisted: `all`, `none`, `drop <i>`, `only <i>`, `torn <i> half|zeros`, `random <n>`. */
  variant: string;
  image: FolderImage;
}

/**
 * Every crash state to check for a recorded log: for each prefix (0 to the whole log), the
 * pending operations (not yet covered by a barrier) all persisted, none persisted, each one
 * lost alone, each one persisted alone, each pending write torn (half, or zeros) with the rest
 * persisted, and `randomPerPoint` random subsets (each write in them torn one time in four).
 * Deduplicated: a folder that several choices lead to is returned once.
 */
export function* crashStates(initial: FolderImage, log: readonly FsOp[], options: { seed?: number; randomPerPoint?: number; points?: readonly number[] } = {}): Generator<CrashState> {
  const seen = new Set<string>();
  const random = prng(options.seed ?? 1);
  const points = options.points ?? Array.from({ length: log.length + 1 }, (_, i) => i);
  for (const point of points) {
    const { forced, pending } = classify(log, point);
    const choices: [string, Persistence][] = [
      ['all', { persisted: new Set(pending) }],
      ['none', { persisted: new Set() }],
    ];
    for (const i of pending) {
      choices.push([`drop ${i}`, { persisted: new Set(pending.filter((j) => j !== i)) }]);
      choices.push([`only ${i}`, { persisted: new Set([i]) }]);
      if (log[i].op === 'write') {
        for (const tear of ['half', 'zeros'] as const) choices.push([`torn ${i} ${tear}`, { persisted: new Set(pending), tears: new Map([[i, tear]]) }]);
      }
    }
    for (let r = 0; r < (options.randomPerPoint ?? 2); r++) {
      const persisted = new Set(pending.filter(() => random() < 0.5));
      const tears = new Map<number, Tear>();
      for (const i of persisted) if (log[i].op === 'write' && random() < 0.25) tears.set(i, random() < 0.5 ? 'half' : 'zeros');
      choices.push([`random ${r}`, { persisted, tears }]);
    }
    for (const [variant, choice] of choices) {
      const image = imageAfter(initial, log, point, forced, choice);
      const key = imageKey(image);
      if (seen.has(key)) continue;
      seen.add(key);
      yield { point, variant, image };
    }
  }
}

/**
 * `neural-diff/gguf`: a GGUF model patched in place on the device, with no node module and no
 * WebAssembly: in the browser's Origin Private File System (OPFS), or in any folder an app can
 * read and write at positions (a {@link GgufVolume}: React Native's file modules, a custom store).
 *
 * In the browser the model is a file of an OPFS folder (`navigator.storage.getDirectory()`, or a
 * folder in it), and the apply runs in a dedicated Web Worker: only there does OPFS offer
 * synchronous access handles, which read and write a file in place. (The `createWritable()`
 * streams of the page write a swap copy of the whole file and swap it in on `close()`: a second
 * copy of a multi-GB model, which this entry never makes.) The protocol is the one `ndiff apply`
 * runs on disk (`in-place-core.ts`): the base checked, the old bytes of every changed range
 * journalled in `<model>.ndiff-undo` and flushed before the first overwrite, the target checked
 * byte for byte, a switch marker, the health check, then the journal deleted; a tab closed, a
 * worker terminated or a crash anywhere leaves the old version or the new one once
 * {@link recoverGgufInOpfs} (or the next apply) has run. OPFS has no folder flush: a file created,
 * moved or removed is as durable as the browser's storage makes it.
 *
 * The model id is recorded in `<model>.ndiff-model.json` beside the model, the applied sequence in
 * the browser's persistent store (IndexedDB, else localStorage: `browserSequenceStore`), unless
 * `sequences` says otherwise.
 *
 * Kept up to date from a release by `neural-diff/updater`'s `Updater` through
 * {@link ggufOpfsTarget} (or {@link ggufVolumeTarget} for another volume): it fetches the manifest
 * and the payload for the version held, and applies it here.
 *
 * @module neural-diff/gguf
 */
import { ModelFormatError, UsageError } from '../../core/errors.ts';
import { getHasher } from '../../core/hasher.ts';
import type { Hasher } from '../../core/hash-types.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import type { SignaturePolicy } from '../../apply/signature.ts';
import { browserSequenceStore } from '../../apply/sequence-stores.ts';
import type { RecoveryReport } from '../durable/pending-update.ts';
import type { PendingOptions } from '../durable/pending-update.ts';
import { MODEL_ID_SUFFIX, modelIdRecordText, parseModelIdRecord } from '../durable/model-id-record.ts';
import { readGgufHeader, type GgufSource } from './header.ts';
import { applyInPlace, recoverInPlace, volumeFileDigest, type InPlaceResult } from './in-place-core.ts';
import { ggufModelOf, ggufSplitModel, splitPartName, splitPartPath, type GgufModel } from './model.ts';
import { ggufModelDigest } from './payload.ts';
import { checkGgufTargetPayload } from './target-payload.ts';
import type { ModelTarget, PendingUpdateOutcome } from '../../updater/target.ts';
import { openGgufPayloadFrom, PURE_PAYLOAD_DIGESTS, type GgufPayloadReader, type OpenedGgufPayload } from './payload-open.ts';
import { GGUF_UNDO_SUFFIX } from './undo-journal.ts';
import type { GgufVolume, VolumeFile, VolumeOpenMode } from './volume.ts';

export type { GgufVolume, VolumeFile, VolumeOpenMode } from './volume.ts';
export type { InPlaceResult } from './in-place-core.ts';
export type { GgufPayloadReader, OpenedGgufPayload } from './payload-open.ts';
export type { GgufSource } from './header.ts';
export type { GgufChunk, GgufPartDigests, GgufPayloadHeader, GgufRun } from './payload.ts';
export type { PendingOptions, PendingHealthCheck, PendingSettlement } from '../durable/pending-update.ts';
export type { RecoveryReport } from '../durable/pending-update.ts';
export { GGUF_UNDO_SUFFIX } from './undo-journal.ts';

/** An OPFS synchronous access handle (a dedicated worker's; the DOM typings lack it). */
export interface OpfsSyncAccessHandle {
  read(buffer: Uint8Array, options: { at: number }): number;
  write(buffer: Uint8Array, options: { at: number }): number;
  flush(): void;
  getSize(): number;
  truncate(size: number): void;
  close(): void;
}

/** An OPFS file handle, as far as the apply uses it. */
export interface OpfsFileHandle {
  getFile(): Promise<Blob>;
  createSyncAccessHandle?(): Promise<OpfsSyncAccessHandle>;
  move?(name: string): Promise<void>;
}

/** An OPFS folder (`FileSystemDirectoryHandle`), as far as the apply uses it. */
export interface OpfsDirectory {
  getFileHandle(name: string, options?: { create?: boolean }): Promise<OpfsFileHandle>;
  removeEntry(name: string): Promise<void>;
}

const isNotFound = (e: unknown) => (e as { name?: string })?.name === 'NotFoundError' || (e as { name?: string })?.name === 'TypeMismatchError';

/** The volumes {@link opfsVolume} made, and how each reads a file it has open as a header source (synchronously, through its access handle). */
const headerSources = new WeakMap<GgufVolume, (name: string) => GgufSource>();

/** One open access handle per file, shared by every opening of it (OPFS lets a file have one at a time). */
interface Shared {
  handle: OpfsSyncAccessHandle;
  users: number;
}

/**
 * The OPFS folder `dir` as a {@link GgufVolume}, its files read and written through synchronous
 * access handles (a dedicated worker's). `label` prefixes the names in messages.
 * @throws UsageError (at the first open) where there are no synchronous access handles: the page's main thread
 */
export function opfsVolume(dir: OpfsDirectory, label = 'opfs:'): GgufVolume {
  const open = new Map<string, Shared>();
  const describe = (name: string) => `${label}${name}`;
  const fileHandle = async (name: string, create = false): Promise<OpfsFileHandle | undefined> => {
    try {
      return await dir.getFileHandle(name, { create });
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  };
  const acquire = async (name: string, fh: OpfsFileHandle): Promise<Shared> => {
    let s = open.get(name);
    if (!s) {
      if (typeof fh.createSyncAccessHandle !== 'function') {
        throw new UsageError(`cannot patch ${describe(name)} in place here: OPFS synchronous access handles exist only in a dedicated Web Worker; run the apply in a worker (the page's createWritable() would write a whole second copy of the model)`, { file: describe(name) });
      }
      s = { handle: await fh.createSyncAccessHandle(), users: 0 };
      open.set(name, s);
    }
    s.users++;
    return s;
  };
  const release = (name: string, s: Shared) => {
    if (--s.users === 0) {
      s.handle.close();
      open.delete(name);
    }
  };
  const readExactly = (h: OpfsSyncAccessHandle, name: string, position: number, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    let at = 0;
    while (at < length) {
      const n = h.read(out.subarray(at), { at: position + at });
      if (n === 0) throw new ModelFormatError(`${describe(name)} ended at ${position + at} bytes while ${length} bytes from ${position} were read: it changed meanwhile or is damaged`, { what: describe(name) });
      at += n;
    }
    return out;
  };
  const volume: GgufVolume = {
    describe,
    async open(name: string, mode: VolumeOpenMode): Promise<VolumeFile> {
      let fh = await fileHandle(name);
      if (mode === 'wx' && fh) throw new UsageError(`${describe(name)} exists: expected to create it anew`, { file: describe(name) });
      if (!fh && (mode === 'r' || mode === 'r+')) throw new ModelFormatError(`no file ${describe(name)} in the model's OPFS folder: expected a .gguf model; check the name`, { file: describe(name) });
      fh ??= (await fileHandle(name, true)) as OpfsFileHandle;
      const s = await acquire(name, fh);
      if (mode === 'w') s.handle.truncate(0);
      let closed = false;
      return {
        size: async () => s.handle.getSize(),
        read: async (position, length) => readExactly(s.handle, name, position, length),
        write: async (bytes, position) => {
          let at = 0;
          while (at < bytes.length) at += s.handle.write(bytes.subarray(at), { at: position + at });
        },
        sync: async () => s.handle.flush(),
        close: async () => {
          if (closed) return;
          closed = true;
          release(name, s);
        },
      };
    },
    async size(name: string): Promise<number | undefined> {
      const s = open.get(name);
      if (s) return s.handle.getSize();
      const fh = await fileHandle(name);
      return fh ? (await fh.getFile()).size : undefined;
    },
    async readText(name: string): Promise<string | undefined> {
      const fh = await fileHandle(name);
      return fh ? new TextDecoder().decode(new Uint8Array(await (await fh.getFile()).arrayBuffer())) : undefined;
    },
    async remove(name: string): Promise<boolean> {
      try {
        await dir.removeEntry(name);
        return true;
      } catch (e) {
        if (isNotFound(e)) return false;
        throw e;
      }
    },
    async rename(from: string, to: string): Promise<void> {
      const fh = await fileHandle(from);
      if (!fh) throw new ModelFormatError(`no file ${describe(from)} to rename`, { file: describe(from) });
      if (typeof fh.move !== 'function') throw new UsageError(`this browser cannot rename files of the Origin Private File System (FileSystemHandle.move): the in-place apply needs it`, { file: describe(from) });
      // A move over an existing file is refused by some browsers: the old one goes first. Where
      // that matters (the switch marker), its absence only means an update is rolled back.
      await volume.remove(to);
      await fh.move(to);
    },
    // OPFS has no folder flush: its entries are as durable as the browser's storage makes them.
    syncFolder: async () => {},
  };
  headerSources.set(volume, (name) => {
    const sh = open.get(name);
    if (!sh) throw new Error(`${describe(name)} is not open`);
    return { name: describe(name), size: sh.handle.getSize(), read: (offset, length) => readExactly(sh.handle, name, offset, length) };
  });
  return volume;
}

/** The files of the model named `name` in its folder: itself, or every part of a split model. */
export function ggufPartNames(name: string): string[] {
  const split = splitPartName(name);
  return split ? Array.from({ length: split.count }, (_, i) => splitPartPath(split.prefix, i + 1, split.count)) : [name];
}

/** The model's headers, read through the files' access handles, opened for the while. */
async function readModel(volume: GgufVolume, source: (name: string) => GgufSource, names: readonly string[]): Promise<GgufModel> {
  const files: VolumeFile[] = [];
  try {
    for (const n of names) files.push(await volume.open(n, 'r'));
    return names.length === 1 && !splitPartName(names[0]) ? ggufModelOf(source(names[0])) : ggufSplitModel(names.length, (no) => source(names[no - 1]), volume.describe(names[0]));
  } finally {
    for (const f of files) await f.close();
  }
}

/** The model id record beside the model (`<first>.ndiff-model.json`, as on disk). */
function modelIdRecords(volume: GgufVolume, first: string, sequences: SequenceStore | undefined) {
  const name = first + MODEL_ID_SUFFIX;
  return {
    modelIdWhere: volume.describe(name),
    sequences,
    async modelId(): Promise<string | undefined> {
      const text = await volume.readText(name);
      return text === undefined ? undefined : parseModelIdRecord(text, volume.describe(name), 'neural-diff-model');
    },
    async setModelId(id: string): Promise<void> {
      const f = await volume.open(`${name}.tmp`, 'w');
      try {
        await f.write(new TextEncoder().encode(modelIdRecordText('neural-diff-model', id)), 0);
        await f.sync();
      } finally {
        await f.close();
      }
      await volume.rename(`${name}.tmp`, name);
    },
  };
}

/** What {@link applyGgufInOpfs} and {@link applyGgufInPlace} take. */
export interface GgufDeviceApplyOptions extends SignaturePolicy {
  /** Refuse payloads for another model id (default: the id recorded by the model's first apply). */
  expectedModelId?: string;
  /** Where the applied sequence is kept; null for none. Default: the browser's persistent store (`browserSequenceStore()`). */
  sequences?: SequenceStore | null;
  /** Check the base and decode every chunk; write nothing (no recovery, no records). */
  dryRun?: boolean;
  /** Runs once the new bytes are in place and checked (`pending`: on an update an earlier apply switched in and never confirmed); a throw or `false` rolls back. */
  healthCheck?: (info: { file: string; pending?: true }) => boolean | void | Promise<boolean | void>;
  /** The clock for expiry checks (default `Date.now`). */
  now?: () => number;
  hasher?: Hasher;
}

/** A payload as the device takes it: its bytes, a Blob (a File of OPFS, a download), or a reader of its ranges. */
export type GgufDevicePayload = Uint8Array | Blob | GgufPayloadReader;

/** Open `payload` (module doc of payload-open.ts), its bytes read as the checks need them. */
export async function openGgufDevicePayload(payload: GgufDevicePayload, policy: SignaturePolicy = {}): Promise<OpenedGgufPayload> {
  let read: (position: number, length: number) => Promise<Uint8Array>;
  let size: number;
  let bytesRead = 0;
  if (payload instanceof Uint8Array) {
    size = payload.length;
    read = async (p, n) => payload.subarray(p, p + n);
  } else if (typeof Blob !== 'undefined' && payload instanceof Blob) {
    size = payload.size;
    read = async (p, n) => new Uint8Array(await payload.slice(p, p + n).arrayBuffer());
  } else {
    const reader = payload as GgufPayloadReader;
    size = reader.size;
    read = (p, n) => reader.read(p, n);
  }
  const counted = async (p: number, n: number) => {
    bytesRead += n;
    const b = await read(p, n);
    if (b.length !== n) throw new ModelFormatError(`GGUF payload: ${n} bytes were asked for at ${p}, the source gave ${b.length}: it changed meanwhile or is damaged; fetch it again`, { position: p, length: n });
    return b;
  };
  return openGgufPayloadFrom(counted, size, policy, !(payload instanceof Uint8Array), PURE_PAYLOAD_DIGESTS, () => bytesRead, async () => {});
}

/** What {@link applyGgufInOpfs} returns: the apply's result and the model's files. */
export interface GgufDeviceApplyResult extends InPlaceResult {
  files: string[];
}

/**
 * Verify a GGUF block payload and apply it in place to the model named `name` (one file, or any
 * part of a split model) in `volume`, crash-safely (module doc). On any refusal the files hold
 * the bytes they held before (or, after the recovery of an interrupted update, the old
 * version), and a typed error says what to do. The caller keeps other writers of the folder away
 * (in a browser: {@link applyGgufInOpfs} takes a Web Lock).
 */
export async function applyGgufInPlace(volume: GgufVolume, name: string, payload: GgufDevicePayload, options: GgufDeviceApplyOptions = {}): Promise<GgufDeviceApplyResult> {
  const hasher = options.hasher ?? (await getHasher());
  const opened = await openGgufDevicePayload(payload, options);
  const names = ggufPartNames(name);
  const sequences = options.sequences === null ? undefined : (options.sequences ?? browserSequenceStore());
  const healthCheck = options.healthCheck;
  const first = volume.describe(names[0]);
  try {
    const source = headerSources.get(volume);
    const result = await applyInPlace(volume, names, async () => (source ? readModel(volume, source, names) : readModelVia(volume, names)), opened, hasher, modelIdRecords(volume, names[0], sequences), {
      expectedModelId: options.expectedModelId,
      dryRun: options.dryRun,
      now: options.now,
      healthCheck: healthCheck && ((pending) => healthCheck(pending ? { file: first, pending } : { file: first })),
    });
    return { ...result, files: names.map((n) => volume.describe(n)) };
  } finally {
    await opened.close();
  }
}

/** The headers of a model in a volume without synchronous reads: each header read into memory first (a GGUF header is at most a few MB). */
async function readModelVia(volume: GgufVolume, names: readonly string[]): Promise<GgufModel> {
  const sources: GgufSource[] = [];
  for (const n of names) {
    const f = await volume.open(n, 'r');
    try {
      const size = await f.size();
      // Enough for the header: grown until it reads (a header names its own length only as it is parsed).
      let take = Math.min(size, 1 << 20);
      for (;;) {
        const head = await f.read(0, take);
        const source: GgufSource = { name: volume.describe(n), size, read: (offset, length) => {
          if (offset + length > head.length) throw new HeaderPastWindow();
          return head.subarray(offset, offset + length);
        } };
        try {
          readGgufHeader(source);
          sources.push(source);
          break;
        } catch (e) {
          if (!(e instanceof HeaderPastWindow) || take === size) throw e;
          take = Math.min(size, take * 4);
        }
      }
    } finally {
      await f.close();
    }
  }
  return names.length === 1 && !splitPartName(names[0]) ? ggufModelOf(sources[0]) : ggufSplitModel(names.length, (no) => sources[no - 1], volume.describe(names[0]));
}

class HeaderPastWindow extends Error {}

/**
 * The name of the Web Lock {@link applyGgufInOpfs} and {@link recoverGgufInOpfs} hold while they
 * change the model named `name`. A page that loads the model takes it too
 * (`navigator.locks.request(ggufOpfsLockName(name), () => wllama.loadModel([file]))`): a File
 * of OPFS is read as it is at each read, not as it was when it was taken, and a runtime that reads
 * the model in slices while it loads (wllama does) would otherwise load a mix of both versions.
 */
export function ggufOpfsLockName(name: string): string {
  return `neural-diff:gguf:${ggufPartNames(name)[0]}`;
}

/** Hold the model's Web Lock where the runtime has Web Locks (a browser, a worker); else run as is. */
async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const locks = (globalThis as { navigator?: { locks?: { request(name: string, cb: () => Promise<T>): Promise<T> } } }).navigator?.locks;
  return locks ? locks.request(ggufOpfsLockName(name), fn) : fn();
}

/**
 * {@link applyGgufInPlace} on the model named `name` in the OPFS folder `dir`, in a dedicated
 * Web Worker, under a Web Lock named for the model (two tabs never patch one file at once).
 */
export async function applyGgufInOpfs(dir: OpfsDirectory, name: string, payload: GgufDevicePayload, options: GgufDeviceApplyOptions = {}): Promise<GgufDeviceApplyResult> {
  return withLock(name, () => applyGgufInPlace(opfsVolume(dir), name, payload, options));
}

/**
 * Finish an update of the model named `name` in `volume` that a kill, a closed tab or a crash
 * interrupted (its undo journal): rolled back to the old version, or, switched in and never
 * confirmed, confirmed or rolled back by `healthCheck` (as `recoverGgufFile` does on disk). A
 * no-op without a journal. Apps that load the model at start should call it first.
 */
export async function recoverGgufInPlace(volume: GgufVolume, name: string, options: PendingOptions & { hasher?: Hasher } = {}): Promise<RecoveryReport> {
  const { confirmed: _confirmed, ...report } = await recoverInPlace(volume, ggufPartNames(name)[0], options.hasher ?? (await getHasher()), options);
  return report;
}

/** {@link recoverGgufInPlace} in an OPFS folder, in a dedicated Web Worker, under the model's Web Lock. */
export async function recoverGgufInOpfs(dir: OpfsDirectory, name: string, options: PendingOptions & { hasher?: Hasher } = {}): Promise<RecoveryReport> {
  return withLock(name, () => recoverGgufInPlace(opfsVolume(dir), name, options));
}

/** Whether the model named `name` in `volume` holds an interrupted update (its undo journal). */
export async function ggufUpdatePendingIn(volume: GgufVolume, name: string): Promise<boolean> {
  return (await volume.size(ggufPartNames(name)[0] + GGUF_UNDO_SUFFIX)) !== undefined;
}

/**
 * The stored-bytes digest of the model named `name` in `volume` (what a GGUF payload names its
 * base and target by; `ndiff fingerprint` prints it), read a slice at a time; undefined when a
 * file of it is missing.
 */
export async function ggufFingerprintIn(volume: GgufVolume, name: string, hasher?: Hasher): Promise<string | undefined> {
  const h = hasher ?? (await getHasher());
  const digests: string[] = [];
  for (const n of ggufPartNames(name)) {
    if ((await volume.size(n)) === undefined) return undefined;
    const f = await volume.open(n, 'r');
    try {
      digests.push(await volumeFileDigest(h, f, await f.size()));
    } finally {
      await f.close();
    }
  }
  return ggufModelDigest(h, digests);
}

/**
 * The model named `name` in `volume` as a target of `neural-diff/updater`'s `Updater`, as
 * `ggufFileTarget` is on disk: versions named by their stored-bytes digest, payloads applied in
 * place behind the undo journal, which stays the rollback until the health check passes (a failed
 * check writes the old bytes back; a tab closed during it leaves the switch for
 * {@link ModelTarget.settlePending} of the next run). A full install is refused (`installs`
 * false): the updater plans payloads only and says what to do when none starts from the model held.
 * The caller keeps other writers of the volume away ({@link ggufOpfsTarget} takes the Web Lock).
 */
export function ggufVolumeTarget(volume: GgufVolume, name: string, lock: <T>(fn: () => Promise<T>) => Promise<T> = (fn) => fn()): ModelTarget {
  const first = volume.describe(ggufPartNames(name)[0]);
  return {
    kind: 'gguf',
    rebuilds: false,
    installs: false,
    hasPending: () => ggufUpdatePendingIn(volume, name),
    settlePending: (check) => lock(async (): Promise<PendingUpdateOutcome | undefined> => {
      if (!(await ggufUpdatePendingIn(volume, name))) return undefined;
      const report = await recoverGgufInPlace(volume, name, {
        healthCheck: check && (async () => check({ kind: 'payload', fingerprint: (await ggufFingerprintIn(volume, name)) as string })),
      });
      return report.pending && { ...report.pending, actions: report.actions };
    }),
    fingerprint: (options) => lock(async () => {
      // An update stopped before its new version was whole in place is rolled back first.
      if (options?.recover !== false && (await ggufUpdatePendingIn(volume, name))) await recoverGgufInPlace(volume, name);
      return ggufFingerprintIn(volume, name);
    }),
    applyPayload: (bytes, o) => lock(async () => {
      checkGgufTargetPayload(bytes, first);
      const check = o.healthCheck;
      await applyGgufInPlace(volume, name, bytes, {
        trustedKeys: o.trustedKeys, expectedModelId: o.expectedModelId, sequences: o.sequenceStore, now: o.now,
        ...(check ? { healthCheck: () => check() } : {}),
      });
    }),
    async installPackage() {
      // The updater plans no full install for this target (installs: false); a caller that asks anyway is told why.
      throw new ModelFormatError(`${first} is a GGUF model, which the updater never installs whole (it would hold the model in memory and write a second copy beside it): nothing was changed; download the full model into the folder yourself while no page uses it, then update it by payloads`, { path: first });
    },
  };
}

/**
 * The model named `name` in the OPFS folder `dir` as a target of `neural-diff/updater`'s
 * `Updater` ({@link ggufVolumeTarget}), in a dedicated Web Worker, each step under the model's
 * Web Lock ({@link ggufOpfsLockName}).
 */
export function ggufOpfsTarget(dir: OpfsDirectory, name: string): ModelTarget {
  return ggufVolumeTarget(opfsVolume(dir), name, (fn) => withLock(name, fn));
}

/**
 * A GGUF block payload (format v8, `payload.ts`) applied to a GGUF model on disk in place
 * (Node): the protocol of `in-place-core.ts` (recovery, base check, the undo journal, the
 * overwrite, the read-back, the switch marker, the health check, the commit) over the model's
 * folder on disk (`node-volume.ts`), under the folder's lock (src/io/durable/lock.ts), with the
 * model id and the applied sequence recorded in files beside the model. A payload file is read a
 * window and a chunk at a time (`payload-file.ts`). A kill or a power cut anywhere leaves the old
 * version or the new one (the crash and power-loss harnesses: test/gguf-crash.test.ts). Memory:
 * one chunk (at most 16 MiB of ranges) at a time, and a 1 MiB window of the payload, whatever the
 * payload's size.
 */
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import type { SignatureCheck, SignaturePolicy } from '../../apply/signature.ts';
import { lockModelDir, type RecoveryReport } from '../durable/lock.ts';
import { FileSequenceStore } from '../durable/sequence-file.ts';
import { readModelIdRecord, writeModelIdRecord, MODEL_ID_SUFFIX } from '../durable/model-id-file.ts';
import { weightsFileSequenceStore } from '../durable/weights-file-update.ts';
import type { PendingOptions } from '../durable/pending-update.ts';
import { openGgufModel } from './files.ts';
import { applyInPlace, recoverInPlace, volumeFileDigest, type InPlaceRecords } from './in-place-core.ts';
import { splitPartName, splitPartPath } from './model.ts';
import { nodeVolume, nodeVolumeFile } from './node-volume.ts';
import { ggufModelDigest, type GgufPayloadHeader } from './payload.ts';
import { openGgufPayload, type GgufPayloadInput } from './payload-file.ts';
import { GGUF_UNDO_SUFFIX } from './undo-journal.ts';

/** What {@link applyToGgufFile} takes. */
export interface GgufApplyOptions extends SignaturePolicy {
  /** When set, refuse payloads for another model id (default: the id recorded by the file's first apply). */
  expectedModelId?: string;
  /** Where the applied sequence is kept: a state file, a store, or null for none. Default `<first file>.ndiff-state.json`. */
  state?: string | SequenceStore | null;
  /** Check the base and decode every chunk; write nothing (no recovery, no state). */
  dryRun?: boolean;
  /**
   * Runs once the new bytes are in place and checked; a throw or `false` rolls back. Also run
   * (with `pending: true`) on an update an earlier apply switched in and never confirmed, to
   * finish it first (confirmed if it passes, rolled back if not).
   */
  healthCheck?: (info: { file: string; files: string[]; pending?: true }) => boolean | void | Promise<boolean | void>;
  /** The clock for expiry checks (default `Date.now`). */
  now?: () => number;
  hasher?: Hasher;
  /**
   * The model's files as {@link ggufFileDigests} hashed them: where every file is still the one
   * hashed and unchanged since (the same device, inode, size, modification and change times, read
   * again once the folder is locked and any interrupted update recovered), the base check takes
   * these digests instead of reading the model again; otherwise it hashes the files. The updater
   * passes the digests it took to learn which version the model is, so an update reads a
   * multi-GB model twice, not three times.
   */
  knownDigests?: GgufFileDigests;
}

/** Each file of a GGUF model with its stored-bytes digest and what identified the file when it was hashed. */
export interface GgufFileDigests {
  /** The model's digest (what payloads name their base by). */
  digest: string;
  files: { path: string; digest: string; identity: string }[];
}

/** What {@link applyToGgufFile} returns. */
export interface GgufApplyResult {
  status: 'applied' | 'already-applied';
  header: GgufPayloadHeader;
  signature: SignatureCheck;
  /** The stored-bytes digests of the base and of the target. */
  baseFingerprint: string;
  targetFingerprint: string;
  /** The model's files, in split order. */
  files: string[];
  /** Bytes and ranges overwritten (0 when nothing was written). */
  writtenBytes: number;
  writtenRanges: number;
  /** The tensors with a changed range, in file order. */
  changedTensors: string[];
  sequenceRecorded: boolean;
  recovery: RecoveryReport;
}

/** The files of the GGUF model named by `file`: itself, or every part of a split model (`-0000K-of-0000N.gguf`). */
export function ggufModelFiles(file: string): string[] {
  const split = splitPartName(file);
  if (!split) return [path.resolve(file)];
  return Array.from({ length: split.count }, (_, i) => path.resolve(splitPartPath(split.prefix, i + 1, split.count)));
}

/** The undo journal of the GGUF model named by `file` (beside its first file). */
export function ggufUndoJournal(file: string): string {
  return ggufModelFiles(file)[0] + GGUF_UNDO_SUFFIX;
}

/**
 * Finish an update of the GGUF model named by `file` that a kill or a power cut interrupted (its
 * undo journal): stopped before the new version was whole in place, it is rolled back (the old
 * version byte for byte); switched in and never confirmed (killed during its health check), it is
 * finished as every unconfirmed switch is (src/io/durable/pending-update.ts): `healthCheck`
 * passes, confirmed (the new version stays, the journal goes); fails, rolled back; absent,
 * refused (`PendingUpdateError`, nothing changed) when that update awaited a health check, else
 * rolled back. The report's `pending` says which. Takes the folder's lock. A no-op without a
 * journal. Apps that load the model at start should call it first.
 */
export async function recoverGgufFile(file: string, options: PendingOptions & { hasher?: Hasher } = {}): Promise<RecoveryReport> {
  const files = ggufModelFiles(await realFile(file));
  const unlock = await lockModelDir(path.dirname(files[0]));
  try {
    const { confirmed: _confirmed, ...report } = await recoverInPlace(nodeVolume(path.dirname(files[0])), path.basename(files[0]), options.hasher ?? (await getHasher()), options);
    return report;
  } finally {
    await unlock();
  }
}

/** Whether the GGUF model named by `file` holds an interrupted update (its undo journal), read only. */
export async function ggufUpdatePending(file: string): Promise<boolean> {
  const journal = ggufUndoJournal(await realFile(file));
  return (await stat(journal).catch(() => undefined)) !== undefined;
}

/** A symbolic link to the model followed once (the real file is patched, its journal beside it); the path as given when there is no such file (opening it then says so). */
async function realFile(file: string): Promise<string> {
  return realpath(file).catch(() => file);
}

/**
 * The stored-bytes digest of the GGUF model named by `file` (docs/format/gguf.md, 18.4: what a
 * GGUF payload names its base and target by), a slice of each file at a time; undefined when a
 * file of it is missing. Reads the files as they are (no recovery).
 */
export async function ggufStoredDigest(file: string, hasher?: Hasher): Promise<string | undefined> {
  return ggufPartsDigest(ggufModelFiles(await realFile(file)), hasher);
}

/**
 * The stored-bytes digest of a GGUF model whose files (a split model's parts in split order) are
 * `files`, by those paths whatever they are named (a build server's blobs); undefined when one is
 * missing.
 */
export async function ggufPartsDigest(files: readonly string[], hasher?: Hasher): Promise<string | undefined> {
  return (await filesDigests(files, hasher ?? (await getHasher())))?.digest;
}

/** What identifies a file's bytes without reading them: any write or metadata change moves its change time. */
function identityOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/**
 * The stored-bytes digest of the GGUF model named by `file` and of each of its files, with what
 * identified each file as it was hashed (for {@link GgufApplyOptions.knownDigests}); undefined when
 * a file is missing, and no identity (an empty string) for a file that changed while it was hashed.
 * Reads the files as they are (no recovery).
 */
export async function ggufFileDigests(file: string, hasher?: Hasher): Promise<GgufFileDigests | undefined> {
  return filesDigests(ggufModelFiles(await realFile(file)), hasher ?? (await getHasher()));
}

/** Each of `files` hashed a slice at a time, with its identity before and after (empty when it changed meanwhile); undefined when one is missing. */
async function filesDigests(paths: readonly string[], h: Hasher): Promise<GgufFileDigests | undefined> {
  const files: GgufFileDigests['files'] = [];
  for (const f of paths) {
    let fh: FileHandle;
    try {
      fh = await open(f, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const st = await fh.stat({ bigint: true });
      const digest = await volumeFileDigest(h, nodeVolumeFile(fh, f), Number(st.size));
      const before = identityOf(st);
      files.push({ path: f, digest, identity: identityOf(await fh.stat({ bigint: true })) === before ? before : '' });
    } finally {
      await fh.close();
    }
  }
  return { digest: ggufModelDigest(h, files.map((x) => x.digest)), files };
}

/** The digests of `known` where every one of `files` is the file hashed there and unchanged since; undefined otherwise. */
async function stillKnown(files: readonly string[], known: GgufFileDigests | undefined): Promise<string[] | undefined> {
  if (!known || known.files.length !== files.length) return undefined;
  for (const [i, f] of files.entries()) {
    const k = known.files[i];
    if (k.path !== f || !k.identity) return undefined;
    const st = await stat(f, { bigint: true }).catch(() => undefined);
    if (!st || identityOf(st) !== k.identity) return undefined;
  }
  return known.files.map((k) => k.digest);
}

/**
 * Verify a GGUF block payload (its file's path, or its bytes; bare or in a signed envelope) and
 * apply it in place to the GGUF model named by `file` (one file, or any part of a split model),
 * crash-safely (module doc). A payload file is read a window and a chunk at a time, never whole
 * (`payload-file.ts`): its signature is checked as it streams past, and each chunk read again is
 * checked against what that pass saw. On any refusal the files hold the bytes they held before
 * this call (or, after the recovery of an interrupted update, the old version), and a typed
 * error says what to do.
 */
export async function applyToGgufFile(file: string, payloadSource: GgufPayloadInput, options: GgufApplyOptions = {}): Promise<GgufApplyResult> {
  const hasher = options.hasher ?? (await getHasher());
  const payload = await openGgufPayload(payloadSource, options);
  try {
    return await applyOpened(file, payload, hasher, options);
  } finally {
    await payload.close();
  }
}

async function applyOpened(file: string, payload: Awaited<ReturnType<typeof openGgufPayload>>, hasher: Hasher, options: GgufApplyOptions): Promise<GgufApplyResult> {
  file = await realFile(file);
  const files = ggufModelFiles(file);
  const first = files[0];
  const dir = path.dirname(first);
  const state = options.state;
  const sequences: SequenceStore | undefined = state === null ? undefined : state === undefined ? weightsFileSequenceStore(first) : typeof state === 'string' ? new FileSequenceStore(state) : state;
  const records: InPlaceRecords = {
    modelId: () => readModelIdRecord(first),
    setModelId: (id) => writeModelIdRecord(first, id),
    modelIdWhere: first + MODEL_ID_SUFFIX,
    sequences,
  };
  const healthCheck = options.healthCheck;
  const unlock = options.dryRun ? undefined : await lockModelDir(dir);
  try {
    const result = await applyInPlace(nodeVolume(dir), files.map((f) => path.basename(f)), () => {
      const onDisk = openGgufModel(file);
      onDisk.close();
      return onDisk.model;
    }, payload, hasher, records, {
      expectedModelId: options.expectedModelId,
      dryRun: options.dryRun,
      now: options.now,
      healthCheck: healthCheck && ((pending) => healthCheck(pending ? { file: first, files, pending } : { file: first, files })),
      ...(options.knownDigests ? { knownDigests: () => stillKnown(files, options.knownDigests) } : {}),
    });
    const { status, header, signature, baseFingerprint, targetFingerprint, ...rest } = result;
    return { status, header, signature, baseFingerprint, targetFingerprint, files, ...rest };
  } finally {
    await unlock?.();
  }
}

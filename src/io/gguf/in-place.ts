/**
 * A GGUF block payload (format v8, `payload.ts`) applied to a GGUF model on disk in place
 * (Node): no second copy of a file of gigabytes, the changed ranges overwritten behind an undo
 * journal (`undo-journal.ts`). In order, under the folder's lock:
 *
 * 1. recovery: a journal an earlier apply left is rolled back (the model is the old version),
 *    unless its switch marker says the new version was whole in place: that update is finished
 *    as every unconfirmed switch is (src/io/durable/pending-update.ts: this apply's health check
 *    confirms it or rolls it back; without one, refused if it awaited one, else rolled back);
 * 2. the payload, read once a window at a time (`payload-file.ts`): signature, document, model
 *    id, a stale sequence; the parts' count and lengths; each chunk's place and SHA-256 kept;
 * 3. the base: every file's XXH64 against the payload's (already the target: `already-applied`;
 *    a replayed or expired payload, or another base: refused, nothing written);
 * 4. every chunk read from the payload again (its SHA-256 as in 2, or refused), its ranges checked
 *    against the file's bytes (its base digest), and the bytes they hold appended to
 *    `<journal>.tmp`; a failure deletes it, nothing written;
 * 5. the journal fsynced, renamed into place, the folder fsynced (the journal is durable);
 * 6. each chunk read again (its SHA-256 checked), decoded (its base and target digests checked) and
 *    its target bytes written over its ranges; the files fsynced (a failure rolls back: a chunk
 *    that does not decode leaves the model as it was, through the journal);
 * 7. every range read back and checked against the target digests, then every file hashed
 *    again against the payload's target digests (a mismatch rolls back);
 * 8. the switch marker written durably (undo-journal.ts: the new version is whole in place),
 *    then the health check, if any (a failure rolls back);
 * 9. the journal deleted and the folder fsynced: the commit point; then the marker, and the model
 *    id and the sequence are recorded beside the model.
 *
 * A kill or a power cut anywhere leaves the old version (before 6, or by the rollback of the next
 * apply) or the new one (after 9, or after 8 once the next run's health check confirms it).
 * Memory: one chunk (at most 16 MiB of ranges) at a time, and a 1 MiB window of the payload,
 * whatever the payload's size.
 */
import { open, realpath, stat, unlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { BaseMismatchError, HealthCheckError, ModelFormatError, ModelMismatchError, NeuralDiffError, TargetMismatchError } from '../../core/errors.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import { toHex } from '../../core/hex.ts';
import type { PayloadHeader } from '../../core/format.ts';
import { checkNotExpired, checkNotReplayed, checkNotStale, readRecordedSequence, type SequenceStore } from '../../apply/freshness.ts';
import type { SignatureCheck, SignaturePolicy } from '../../apply/signature.ts';
import { syncDir } from '../durable/durable.ts';
import { lockModelDir, type RecoveryReport } from '../durable/lock.ts';
import { FileSequenceStore } from '../durable/sequence-file.ts';
import { readModelIdRecord, writeModelIdRecord, MODEL_ID_SUFFIX } from '../durable/model-id-file.ts';
import { weightsFileSequenceStore } from '../durable/weights-file-update.ts';
import { openGgufModel } from './files.ts';
import { splitPartName, splitPartPath, type GgufModel } from './model.ts';
import { bytes8, checkGgufChunkBase, decodeGgufChunk, ggufModelDigest, ggufPayloadMisfit, type GgufChunk, type GgufPayloadHeader } from './payload.ts';
import { openGgufPayload, type GgufPayloadInput, type OpenedGgufPayload } from './payload-file.ts';
import { settlePendingSwitch, type PendingHealthCheck, type PendingOptions } from '../durable/pending-update.ts';
import { clearSwitchMarker, readFully, readSwitchMarker, rollBackGguf, undoJournalPending, UndoJournalWriter, writeFully, writeSwitchMarker, GGUF_UNDO_SUFFIX, type SwitchMarker } from './undo-journal.ts';

/** Bytes hashed per read when a file's digest is taken. */
const HASH_SLICE = 4 << 20;

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
    const { confirmed: _confirmed, ...report } = await recoverLocked(files[0], options.hasher ?? (await getHasher()), options);
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

/** A recovery's report, and the switch marker of an update it confirmed. */
type Recovered = RecoveryReport & { confirmed?: SwitchMarker };

async function recoverLocked(first: string, hasher: Hasher, pending: PendingOptions): Promise<Recovered> {
  const report: Recovered = { actions: [], rolledBack: false, removed: [] };
  const marker = await readSwitchMarker(first);
  const journal = first + GGUF_UNDO_SUFFIX;
  const rollBack = async () => {
    const n = await rollBackGguf(first, hasher);
    report.removed.push(journal);
    return n;
  };
  if (await undoJournalPending(first)) {
    if (marker) {
      await settlePendingSwitch({
        model: first,
        what: `the GGUF update to ${marker.target} journalled in ${path.basename(journal)}`,
        awaitsHealthCheck: marker.awaitsHealthCheck,
        // The commit point of the confirmation, as an apply's: the journal goes, then the marker.
        confirm: async () => {
          await unlink(journal);
          await syncDir(path.dirname(first));
          report.removed.push(journal);
          await clearSwitchMarker(first);
          report.confirmed = marker;
        },
        rollBack: async () => {
          await rollBack();
        },
      }, pending, report);
    } else {
      const n = await rollBack();
      report.actions.push(`rolled back an interrupted GGUF update of ${first} from its undo journal (${n} ranges written back)`);
      report.rolledBack = true;
    }
  } else if (marker) {
    // The journal went (the confirmation's commit point) before the marker: the new version stays.
    await clearSwitchMarker(first);
  }
  return report;
}

/** A symbolic link to the model followed once (the real file is patched, its journal beside it); the path as given when there is no such file (opening it then says so). */
async function realFile(file: string): Promise<string> {
  return realpath(file).catch(() => file);
}

/** The XXH64 (16 hex) of a whole file, a slice at a time through one buffer. */
async function fileDigest(hasher: Hasher, fh: FileHandle, size: number, name: string): Promise<string> {
  const h = hasher.create64();
  const slice = new Uint8Array(Math.min(HASH_SLICE, size));
  for (let at = 0; at < size; at += HASH_SLICE) {
    const n = Math.min(HASH_SLICE, size - at);
    await readInto(fh, slice.subarray(0, n), at, name);
    h.update(slice.subarray(0, n));
  }
  return toHex(bytes8(h.digest()));
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
  const h = hasher ?? (await getHasher());
  const digests: string[] = [];
  for (const f of files) {
    let fh: FileHandle;
    try {
      fh = await open(f, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      digests.push(await fileDigest(h, fh, (await fh.stat()).size, f));
    } finally {
      await fh.close();
    }
  }
  return ggufModelDigest(h, digests);
}

/** Fill `into` from `position` of the file, or throw. */
async function readInto(fh: FileHandle, into: Uint8Array, position: number, name: string): Promise<void> {
  let at = 0;
  while (at < into.length) {
    const { bytesRead } = await fh.read(into, at, into.length - at, position + at);
    if (bytesRead === 0) throw new ModelFormatError(`${name} ended at ${position + at} bytes while ${into.length} bytes from ${position} were read: it changed meanwhile or is damaged`, { what: name });
    at += bytesRead;
  }
}

/** Ranges of one file closer than this are read in one read, the bytes between them dropped (a read's round trip costs more than copying them). */
const READ_GAP = 64 << 10;
/** The most bytes one such read spans. */
const READ_SPAN = 4 << 20;

/** The bytes a chunk's ranges hold now, one after the other; nearby ranges read together (a chunk's ranges are in file order). */
async function rangesBytes(handles: readonly FileHandle[], chunk: GgufChunk, files: readonly string[]): Promise<Uint8Array> {
  const out = new Uint8Array(chunk.bytes);
  const runs = chunk.runs;
  let at = 0;
  for (let i = 0; i < runs.length; ) {
    const { part, offset: from } = runs[i];
    let to = from + runs[i].length;
    let j = i + 1;
    while (j < runs.length && runs[j].part === part && runs[j].offset - to <= READ_GAP && runs[j].offset + runs[j].length - from <= READ_SPAN) {
      to = runs[j].offset + runs[j].length;
      j++;
    }
    const span = await readFully(handles[part], to - from, from, files[part]);
    for (; i < j; i++) {
      out.set(span.subarray(runs[i].offset - from, runs[i].offset - from + runs[i].length), at);
      at += runs[i].length;
    }
  }
  return out;
}

/** The tensors a payload's ranges overlap, by the model's headers, collected a chunk at a time. */
class ChangedTensors {
  private readonly hit = new Set<string>();
  /** Per part, its tensors by their start in the file. */
  private readonly byStart: { from: number; to: number; name: string }[][];
  constructor(private readonly model: GgufModel) {
    this.byStart = model.parts.map((p) => p.header.tensors.map((t) => ({ from: p.header.dataStart + t.offset, to: p.header.dataStart + t.offset + t.bytes, name: t.name })).sort((a, b) => a.from - b.from));
  }
  add(chunk: GgufChunk): void {
    for (const r of chunk.runs) {
      const ts = this.byStart[r.part];
      // The last tensor starting before the range's end, and those before it that reach into it (tensors never overlap).
      let lo = 0;
      let hi = ts.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (ts[mid].from < r.offset + r.length) lo = mid + 1;
        else hi = mid;
      }
      for (let k = lo - 1; k >= 0 && ts[k].to > r.offset; k--) this.hit.add(ts[k].name);
    }
  }
  names(): string[] {
    return this.model.tensors.map((t) => t.info.name).filter((n) => this.hit.has(n));
  }
}

/** Freshness and base checks take a value payload's header; these fields are the ones they read. */
const asHeader = (h: GgufPayloadHeader) => h as unknown as PayloadHeader;

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

async function applyOpened(file: string, payload: OpenedGgufPayload, hasher: Hasher, options: GgufApplyOptions): Promise<GgufApplyResult> {
  const opened = { signature: payload.signature };
  const { header } = payload;
  file = await realFile(file);
  const files = ggufModelFiles(file);
  const first = files[0];
  const state = options.state;
  const sequences: SequenceStore | undefined = state === null ? undefined : state === undefined ? weightsFileSequenceStore(first) : typeof state === 'string' ? new FileSequenceStore(state) : state;
  const empty: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  const unlock = options.dryRun ? undefined : await lockModelDir(path.dirname(first));
  let recovery = empty;
  try {
    const healthCheck = options.healthCheck;
    const pendingCheck: PendingHealthCheck | undefined = healthCheck && (() => healthCheck({ file: first, files, pending: true }));
    if (!options.dryRun) {
      const { confirmed, ...report } = await recoverLocked(first, hasher, { healthCheck: pendingCheck });
      recovery = report;
      // An update an earlier apply switched in, confirmed now: its model id and sequence recorded as its own commit would have.
      if (confirmed?.modelId !== undefined && confirmed.sequence !== undefined) {
        if ((await readModelIdRecord(first)) === undefined) await writeModelIdRecord(first, confirmed.modelId);
        const before = sequences ? await readRecordedSequence(sequences, confirmed.modelId) : undefined;
        if (sequences && (before === undefined || confirmed.sequence > before)) await sequences.set(confirmed.modelId, confirmed.sequence, { fingerprint: confirmed.target });
      }
    }
    const recorded = await readModelIdRecord(first);
    const expected = options.expectedModelId ?? recorded;
    if (options.expectedModelId !== undefined && recorded !== undefined && options.expectedModelId !== recorded) {
      throw new ModelMismatchError(`${first} holds model ${JSON.stringify(recorded)} (recorded in ${first + MODEL_ID_SUFFIX} by its first apply), but expectedModelId is ${JSON.stringify(options.expectedModelId)}: expected them to agree; check which model this file is, and pass its id`, { file: first, expected: options.expectedModelId, found: recorded });
    }
    if (expected !== undefined && header.modelId !== expected) {
      throw new ModelMismatchError(`payload is for model ${JSON.stringify(header.modelId)}, ${first} holds ${JSON.stringify(expected)}: nothing was written; fetch the payload published for ${JSON.stringify(expected)}`, { expected, found: header.modelId });
    }
    const previous = sequences ? await readRecordedSequence(sequences, header.modelId) : undefined;
    checkNotStale(asHeader(header), previous);
    // The headers only, for the parts' lengths and the changed tensors' names.
    const onDisk = openGgufModel(file);
    const model: GgufModel = onDisk.model;
    onDisk.close();
    const misfit = ggufPayloadMisfit(payload, model.parts.map((p) => p.header.fileSize));
    if (misfit) throw new BaseMismatchError(`${misfit}: this model is not the payload's base; nothing was written: fetch the full model, or the update made for this one`, { misfit });
    const changed = new ChangedTensors(model);
    const result = (status: GgufApplyResult['status'], written: number, ranges: number, sequenceRecorded: boolean): GgufApplyResult => ({
      status, header, signature: opened.signature, baseFingerprint: header.baseFingerprint, targetFingerprint: header.targetFingerprint, files,
      writtenBytes: written, writtenRanges: ranges, changedTensors: status === 'applied' ? changed.names() : [], sequenceRecorded, recovery,
    });
    const handles: FileHandle[] = [];
    try {
      for (const f of files) handles.push(await open(f, 'r'));
      const digests: string[] = [];
      for (let i = 0; i < files.length; i++) digests.push(await fileDigest(hasher, handles[i], payload.parts[i].length, files[i]));
      const now = ggufModelDigest(hasher, digests);
      if (now === header.targetFingerprint) return result('already-applied', 0, 0, false);
      checkNotReplayed(asHeader(header), previous, now);
      checkNotExpired(asHeader(header), (options.now ?? Date.now)());
      const wrong = digests.findIndex((d, i) => d !== payload.parts[i].base);
      if (now !== header.baseFingerprint || wrong >= 0) {
        throw new BaseMismatchError(`payload targets base ${header.baseFingerprint} (the digest of its stored bytes), this model is ${now}${wrong >= 0 ? ` (${files[wrong]} differs)` : ''}: nothing was written; fetch the full model, or the update made for base ${now}`, { expected: header.baseFingerprint, found: now });
      }
      let ranges = 0;
      let bytes = 0;
      if (options.dryRun) {
        let i = 0;
        for await (const chunk of payload.chunks()) {
          decodeGgufChunk(hasher, chunk, await rangesBytes(handles, chunk, files), `chunk ${i++}`);
          changed.add(chunk);
        }
        return result('applied', 0, 0, false);
      }
      // Every chunk decoded and checked, and the old bytes journaled, before the model is written.
      const journal = await UndoJournalWriter.start(first + GGUF_UNDO_SUFFIX, files.map((f, i) => ({ file: f, length: payload.parts[i].length })), hasher);
      try {
        let i = 0;
        for await (const chunk of payload.chunks()) {
          // The base bytes checked here; the target bytes are decoded once, by the overwrite (step 6).
          const old = await rangesBytes(handles, chunk, files);
          checkGgufChunkBase(hasher, chunk, old, `chunk ${i++}`);
          changed.add(chunk);
          ranges += chunk.runs.length;
          bytes += chunk.bytes;
          let at = 0;
          for (const r of chunk.runs) {
            await journal.range(r.part, r.offset, old.subarray(at, at + r.length));
            at += r.length;
          }
        }
      } catch (e) {
        await journal.abandon();
        throw e;
      }
      await journal.commit();
      let failed: number | undefined;
      try {
        await overwrite(hasher, files, handles, payload);
        failed = await firstMismatch(hasher, handles, payload, files);
      } catch (e) {
        // An I/O error, or a chunk that does not decode or was altered, amid the overwrite: the
        // old bytes go back before the error is reported.
        await rollBackGguf(first, hasher);
        if (e instanceof NeuralDiffError) {
          (e.details as Record<string, unknown>).rolledBack = true;
          e.message = e.message.replace(/nothing (of this chunk )?was written/, 'the model was rolled back to its old version');
        }
        throw e;
      }
      if (failed !== undefined) {
        await rollBackGguf(first, hasher);
        throw new TargetMismatchError(`after the overwrite, chunk ${failed} of ${first} does not read back as the payload's target: the storage did not keep what was written; the model was rolled back to its old version; check the storage, then retry`, { chunk: failed });
      }
      // The whole files once more: the payload's ranges may not be all that tells the two versions
      // apart (an inconsistent payload), and the device must hold the target's bytes exactly.
      const after: string[] = [];
      for (let i = 0; i < files.length; i++) after.push(await fileDigest(hasher, handles[i], payload.parts[i].length, files[i]));
      const reached = ggufModelDigest(hasher, after);
      const off = after.findIndex((d, i) => d !== payload.parts[i].target);
      if (reached !== header.targetFingerprint || off >= 0) {
        await rollBackGguf(first, hasher);
        throw new TargetMismatchError(`after the overwrite ${first} is ${reached} (the digest of its stored bytes), the payload's target is ${header.targetFingerprint}${off >= 0 ? ` (${files[off]} differs)` : ''}: the payload does not carry every change between its base and its target; the model was rolled back to its old version; fetch the payload again or the full model`, { expected: header.targetFingerprint, found: reached, stage: 'target' });
      }
      // The new version is whole in place: a kill from here on leaves a switch to finish (recovery).
      await writeSwitchMarker(first, { target: header.targetFingerprint, awaitsHealthCheck: options.healthCheck !== undefined, modelId: header.modelId, sequence: header.sequence });
      if (options.healthCheck) {
        let passed: boolean | void;
        let why = 'it returned false';
        try {
          passed = await options.healthCheck({ file: first, files });
        } catch (e) {
          passed = false;
          why = `it threw: ${(e as Error).message}`;
        }
        if (passed === false) {
          await rollBackGguf(first, hasher);
          throw new HealthCheckError(`the health check of ${first} failed after the update (${why}): the model was rolled back to its old version ${header.baseFingerprint}; nothing was recorded`, { rolledBack: true });
        }
      }
      // The commit point: the journal goes, and with it the way back.
      await unlink(first + GGUF_UNDO_SUFFIX);
      await syncDir(path.dirname(first));
      await clearSwitchMarker(first);
      if (recorded === undefined) await writeModelIdRecord(first, header.modelId);
      let sequenceRecorded = false;
      if (sequences && (previous === undefined || header.sequence > previous)) {
        await sequences.set(header.modelId, header.sequence, { fingerprint: header.targetFingerprint });
        sequenceRecorded = true;
      }
      return result('applied', bytes, ranges, sequenceRecorded);
    } finally {
      for (const h of handles) await h.close();
    }
  } catch (e) {
    if (e instanceof NeuralDiffError && recovery.actions.length > 0) (e.details as Record<string, unknown>).recovery = recovery;
    throw e;
  } finally {
    await unlock?.();
  }
}

/** Step 6: each chunk decoded again from the file's bytes and written over its ranges; every file fsynced. */
async function overwrite(hasher: Hasher, files: readonly string[], readers: readonly FileHandle[], payload: OpenedGgufPayload): Promise<void> {
  const writers = new Map<number, FileHandle>();
  try {
    let i = 0;
    for await (const chunk of payload.chunks()) {
      const target = decodeGgufChunk(hasher, chunk, await rangesBytes(readers, chunk, files), `chunk ${i++}`);
      let at = 0;
      for (const r of chunk.runs) {
        let w = writers.get(r.part);
        if (!w) writers.set(r.part, (w = await open(files[r.part], 'r+')));
        await writeFully(w, target.subarray(at, at + r.length), r.offset);
        at += r.length;
      }
    }
    for (const w of writers.values()) await w.sync();
  } finally {
    for (const w of writers.values()) await w.close();
  }
}

/** Step 7: the index of the first chunk whose ranges do not read back as its target bytes, or undefined. */
async function firstMismatch(hasher: Hasher, handles: readonly FileHandle[], payload: OpenedGgufPayload, files: readonly string[]): Promise<number | undefined> {
  let i = 0;
  for await (const chunk of payload.chunks()) {
    const now = toHex(bytes8(hasher.h64(await rangesBytes(handles, chunk, files))));
    if (now !== chunk.targetDigest) return i;
    i++;
  }
  return undefined;
}

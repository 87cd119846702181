/**
 * A GGUF block payload (format v8, `payload.ts`) applied in place to a GGUF model in a folder of
 * any store (a {@link GgufVolume}: a folder on disk, `in-place.ts`; a folder of the browser's
 * Origin Private File System, `opfs.ts`): no second copy of a file of gigabytes, the changed
 * ranges overwritten behind an undo journal (`undo-journal.ts`). No node modules. In order,
 * under the caller's lock of the folder:
 *
 * 1. recovery: a journal an earlier apply left is rolled back (the model is the old version),
 *    unless its switch marker says the new version was whole in place: that update is finished
 *    as every unconfirmed switch is (src/io/durable/pending-update.ts: this apply's health check
 *    confirms it or rolls it back; without one, refused if it awaited one, else rolled back);
 * 2. the payload, opened by the caller (`payload-open.ts`): signature, document, model id, a
 *    stale sequence; the parts' count and lengths; each chunk's place and digest kept;
 * 3. the base: every file's XXH64 against the payload's (already the target: `already-applied`;
 *    a replayed or expired payload, or another base: refused, nothing written);
 * 4. every chunk read from the payload again (its digest as in 2, or refused), its ranges checked
 *    against the file's bytes (its base digest), and the bytes they hold appended to
 *    `<journal>.tmp`; a failure deletes it, nothing written;
 * 5. the journal synced, renamed into place, the folder synced (the journal is durable);
 * 6. each chunk read again (its digest checked), decoded (its base and target digests checked) and
 *    its target bytes written over its ranges; the files synced (a failure rolls back: a chunk
 *    that does not decode leaves the model as it was, through the journal);
 * 7. every range read back and checked against the target digests, then every file hashed
 *    again against the payload's target digests (a mismatch rolls back);
 * 8. the switch marker written durably (undo-journal.ts: the new version is whole in place),
 *    then the health check, if any (a failure rolls back);
 * 9. the journal deleted and the folder synced: the commit point; then the marker, and the model
 *    id and the sequence are recorded.
 *
 * A kill or a power cut anywhere leaves the old version (before 6, or by the rollback of the next
 * apply) or the new one (after 9, or after 8 once the next run's health check confirms it).
 * Memory: one chunk (at most 16 MiB of ranges) at a time, and what the payload's reader holds.
 */
import { BaseMismatchError, HealthCheckError, ModelMismatchError, NeuralDiffError, TargetMismatchError } from '../../core/errors.ts';
import type { Hasher } from '../../core/hash-types.ts';
import { toHex } from '../../core/hex.ts';
import type { PayloadHeader } from '../../core/format.ts';
import { checkNotExpired, checkNotReplayed, checkNotStale, readRecordedSequence, type SequenceStore } from '../../apply/freshness.ts';
import type { SignatureCheck } from '../../apply/signature.ts';
import type { RecoveryReport } from '../durable/pending-update.ts';
import { settlePendingSwitch, type PendingHealthCheck, type PendingOptions } from '../durable/pending-update.ts';
import type { GgufModel } from './model.ts';
import { bytes8, checkGgufChunkBase, copyGgufRuns, decodeGgufChunk, ggufModelDigest, ggufPayloadMisfit, ggufRunSpans, type GgufChunk, type GgufPayloadHeader } from './payload.ts';
import type { OpenedGgufPayload } from './payload-open.ts';
import { clearSwitchMarker, readSwitchMarker, rollBackGguf, undoJournalPending, UndoJournalWriter, writeSwitchMarker, GGUF_UNDO_SUFFIX, type SwitchMarker } from './undo-journal.ts';
import type { GgufVolume, VolumeFile } from './volume.ts';

/** Bytes hashed per read when a file's digest is taken. */
const HASH_SLICE = 4 << 20;

/** Where the model id and the applied sequence are kept (beside the model on disk; an OPFS file or a store in the browser). */
export interface InPlaceRecords {
  /** The model id the model's first apply recorded, if any. */
  modelId(): Promise<string | undefined>;
  setModelId(id: string): Promise<void>;
  /** How messages name where the model id is kept. */
  modelIdWhere: string;
  /** The applied sequences, or undefined for none. */
  sequences?: SequenceStore;
}

/** What `applyInPlace` takes besides the folder and the payload. */
export interface InPlaceOptions {
  expectedModelId?: string;
  dryRun?: boolean;
  /** Run once the new bytes are in place and checked (`pending`: on an update an earlier apply switched in); a throw or `false` rolls back. */
  healthCheck?: (pending?: true) => boolean | void | Promise<boolean | void>;
  now?: () => number;
  /**
   * Each file's digest where the caller can vouch that it describes the bytes the file holds now
   * (asked once any interrupted update is recovered, the files open); undefined to hash them. The
   * base check then reads no file: a digest that was wrong still cannot break the model, since
   * every chunk's base ranges are checked before the overwrite and the whole target after it
   * (a mismatch rolls back).
   */
  knownDigests?: () => Promise<string[] | undefined>;
}

/** What `applyInPlace` returns (`applyToGgufFile` and `applyGgufInOpfs` add the files). */
export interface InPlaceResult {
  status: 'applied' | 'already-applied';
  header: GgufPayloadHeader;
  signature: SignatureCheck;
  /** The stored-bytes digests of the base and of the target. */
  baseFingerprint: string;
  targetFingerprint: string;
  /** Bytes and ranges overwritten (0 when nothing was written). */
  writtenBytes: number;
  writtenRanges: number;
  /** The tensors with a changed range, in file order. */
  changedTensors: string[];
  sequenceRecorded: boolean;
  recovery: RecoveryReport;
}

/** A recovery's report, and the switch marker of an update it confirmed. */
export type Recovered = RecoveryReport & { confirmed?: SwitchMarker };

/**
 * Step 1: finish an update of the model whose first file is `first` that a kill or a power cut
 * interrupted (module doc); a no-op without a journal. The caller holds the folder's lock.
 */
export async function recoverInPlace(volume: GgufVolume, first: string, hasher: Hasher, pending: PendingOptions): Promise<Recovered> {
  const report: Recovered = { actions: [], rolledBack: false, removed: [] };
  const marker = await readSwitchMarker(volume, first);
  const journal = first + GGUF_UNDO_SUFFIX;
  const rollBack = async () => {
    const n = await rollBackGguf(volume, first, hasher);
    report.removed.push(volume.describe(journal));
    return n;
  };
  if (await undoJournalPending(volume, first)) {
    if (marker) {
      await settlePendingSwitch({
        model: volume.describe(first),
        what: `the GGUF update to ${marker.target} journalled in ${journal}`,
        awaitsHealthCheck: marker.awaitsHealthCheck,
        // The commit point of the confirmation, as an apply's: the journal goes, then the marker.
        confirm: async () => {
          await volume.remove(journal);
          await volume.syncFolder();
          report.removed.push(volume.describe(journal));
          await clearSwitchMarker(volume, first);
          report.confirmed = marker;
        },
        rollBack: async () => {
          await rollBack();
        },
      }, pending, report);
    } else {
      const n = await rollBack();
      report.actions.push(`rolled back an interrupted GGUF update of ${volume.describe(first)} from its undo journal (${n} ranges written back)`);
      report.rolledBack = true;
    }
  } else if (marker) {
    // The journal went (the confirmation's commit point) before the marker: the new version stays.
    await clearSwitchMarker(volume, first);
  }
  return report;
}

/** The XXH64 (16 hex) of a whole file, a slice at a time. */
export async function volumeFileDigest(hasher: Hasher, file: VolumeFile, size: number): Promise<string> {
  const h = hasher.create64();
  // One buffer for every slice where the store reads into one (a multi-GB file is hashed twice an apply).
  const slice = file.readInto ? new Uint8Array(Math.min(HASH_SLICE, size)) : undefined;
  for (let at = 0; at < size; at += HASH_SLICE) {
    const n = Math.min(HASH_SLICE, size - at);
    if (slice && file.readInto) {
      await file.readInto(slice.subarray(0, n), at);
      h.update(slice.subarray(0, n));
    } else h.update(await file.read(at, n));
  }
  return toHex(bytes8(h.digest()));
}

/** The bytes a chunk's ranges hold now, one after the other; nearby ranges read together (a chunk's ranges are in file order). */
async function rangesBytes(handles: readonly VolumeFile[], chunk: GgufChunk): Promise<Uint8Array> {
  const out = new Uint8Array(chunk.bytes);
  let at = 0;
  // One span held at a time: the memory of a chunk, not of the file around it.
  for (const sp of ggufRunSpans(chunk.runs)) at = copyGgufRuns(out, at, chunk.runs, sp, await handles[sp.part].read(sp.from, sp.to - sp.from));
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
 * Steps 1 and 3 to 9 (module doc) for the model whose files, in split order, are `names` in
 * `volume`, with `payload` opened (step 2). `readModel` reads the model's headers, after the
 * recovery. The caller holds the folder's lock (none for a dry run). On any refusal the files
 * hold the bytes they held before this call (or, after the recovery of an interrupted update,
 * the old version), and a typed error says what to do.
 */
export async function applyInPlace(volume: GgufVolume, names: readonly string[], readModel: () => GgufModel | Promise<GgufModel>, payload: OpenedGgufPayload, hasher: Hasher, records: InPlaceRecords, options: InPlaceOptions): Promise<InPlaceResult> {
  const { header } = payload;
  const first = names[0];
  const where = volume.describe(first);
  const sequences = records.sequences;
  let recovery: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  try {
    const healthCheck = options.healthCheck;
    const pendingCheck: PendingHealthCheck | undefined = healthCheck && (() => healthCheck(true));
    if (!options.dryRun) {
      const { confirmed, ...report } = await recoverInPlace(volume, first, hasher, { healthCheck: pendingCheck });
      recovery = report;
      // An update an earlier apply switched in, confirmed now: its model id and sequence recorded as its own commit would have.
      if (confirmed?.modelId !== undefined && confirmed.sequence !== undefined) {
        if ((await records.modelId()) === undefined) await records.setModelId(confirmed.modelId);
        const before = sequences ? await readRecordedSequence(sequences, confirmed.modelId) : undefined;
        if (sequences && (before === undefined || confirmed.sequence > before)) await sequences.set(confirmed.modelId, confirmed.sequence, { fingerprint: confirmed.target });
      }
    }
    const recorded = await records.modelId();
    const expected = options.expectedModelId ?? recorded;
    if (options.expectedModelId !== undefined && recorded !== undefined && options.expectedModelId !== recorded) {
      throw new ModelMismatchError(`${where} holds model ${JSON.stringify(recorded)} (recorded in ${records.modelIdWhere} by its first apply), but expectedModelId is ${JSON.stringify(options.expectedModelId)}: expected them to agree; check which model this file is, and pass its id`, { file: where, expected: options.expectedModelId, found: recorded });
    }
    if (expected !== undefined && header.modelId !== expected) {
      throw new ModelMismatchError(`payload is for model ${JSON.stringify(header.modelId)}, ${where} holds ${JSON.stringify(expected)}: nothing was written; fetch the payload published for ${JSON.stringify(expected)}`, { expected, found: header.modelId });
    }
    const previous = sequences ? await readRecordedSequence(sequences, header.modelId) : undefined;
    checkNotStale(asHeader(header), previous);
    // The headers only, for the parts' lengths and the changed tensors' names.
    const model = await readModel();
    const misfit = ggufPayloadMisfit(payload, model.parts.map((p) => p.header.fileSize));
    if (misfit) throw new BaseMismatchError(`${misfit}: this model is not the payload's base; nothing was written: fetch the full model, or the update made for this one`, { misfit });
    const changed = new ChangedTensors(model);
    const result = (status: InPlaceResult['status'], written: number, ranges: number, sequenceRecorded: boolean): InPlaceResult => ({
      status, header, signature: payload.signature, baseFingerprint: header.baseFingerprint, targetFingerprint: header.targetFingerprint,
      writtenBytes: written, writtenRanges: ranges, changedTensors: status === 'applied' ? changed.names() : [], sequenceRecorded, recovery,
    });
    const handles: VolumeFile[] = [];
    try {
      for (const f of names) handles.push(await volume.open(f, 'r'));
      const known = await options.knownDigests?.();
      const digests: string[] = known?.length === names.length ? [...known] : [];
      for (let i = digests.length; i < names.length; i++) digests.push(await volumeFileDigest(hasher, handles[i], payload.parts[i].length));
      const now = ggufModelDigest(hasher, digests);
      if (now === header.targetFingerprint) return result('already-applied', 0, 0, false);
      checkNotReplayed(asHeader(header), previous, now);
      checkNotExpired(asHeader(header), (options.now ?? Date.now)());
      const wrong = digests.findIndex((d, i) => d !== payload.parts[i].base);
      if (now !== header.baseFingerprint || wrong >= 0) {
        throw new BaseMismatchError(`payload targets base ${header.baseFingerprint} (the digest of its stored bytes), this model is ${now}${wrong >= 0 ? ` (${volume.describe(names[wrong])} differs)` : ''}: nothing was written; fetch the full model, or the update made for base ${now}`, { expected: header.baseFingerprint, found: now });
      }
      let ranges = 0;
      let bytes = 0;
      if (options.dryRun) {
        let i = 0;
        for await (const chunk of payload.chunks()) {
          decodeGgufChunk(hasher, chunk, await rangesBytes(handles, chunk), `chunk ${i++}`);
          changed.add(chunk);
        }
        return result('applied', 0, 0, false);
      }
      // Every chunk decoded and checked, and the old bytes journaled, before the model is written.
      const journal = await UndoJournalWriter.start(volume, first + GGUF_UNDO_SUFFIX, names.map((name, i) => ({ name, length: payload.parts[i].length })), hasher);
      try {
        let i = 0;
        for await (const chunk of payload.chunks()) {
          // The base bytes checked here; the target bytes are decoded once, by the overwrite (step 6).
          const old = await rangesBytes(handles, chunk);
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
        await overwrite(volume, hasher, names, handles, payload);
        failed = await firstMismatch(hasher, handles, payload);
      } catch (e) {
        // An I/O error, or a chunk that does not decode or was altered, amid the overwrite: the
        // old bytes go back before the error is reported.
        await rollBackGguf(volume, first, hasher);
        if (e instanceof NeuralDiffError) {
          (e.details as Record<string, unknown>).rolledBack = true;
          e.message = e.message.replace(/nothing (of this chunk )?was written/, 'the model was rolled back to its old version');
        }
        throw e;
      }
      if (failed !== undefined) {
        await rollBackGguf(volume, first, hasher);
        throw new TargetMismatchError(`after the overwrite, chunk ${failed} of ${where} does not read back as the payload's target: the storage did not keep what was written; the model was rolled back to its old version; check the storage, then retry`, { chunk: failed });
      }
      // The whole files once more: the payload's ranges may not be all that tells the two versions
      // apart (an inconsistent payload), and the device must hold the target's bytes exactly.
      const after: string[] = [];
      for (let i = 0; i < names.length; i++) after.push(await volumeFileDigest(hasher, handles[i], payload.parts[i].length));
      const reached = ggufModelDigest(hasher, after);
      const off = after.findIndex((d, i) => d !== payload.parts[i].target);
      if (reached !== header.targetFingerprint || off >= 0) {
        await rollBackGguf(volume, first, hasher);
        throw new TargetMismatchError(`after the overwrite ${where} is ${reached} (the digest of its stored bytes), the payload's target is ${header.targetFingerprint}${off >= 0 ? ` (${volume.describe(names[off])} differs)` : ''}: the payload does not carry every change between its base and its target; the model was rolled back to its old version; fetch the payload again or the full model`, { expected: header.targetFingerprint, found: reached, stage: 'target' });
      }
      // The new version is whole in place: a kill from here on leaves a switch to finish (recovery).
      await writeSwitchMarker(volume, first, { target: header.targetFingerprint, awaitsHealthCheck: options.healthCheck !== undefined, modelId: header.modelId, sequence: header.sequence });
      if (options.healthCheck) {
        let passed: boolean | void;
        let why = 'it returned false';
        try {
          passed = await options.healthCheck();
        } catch (e) {
          passed = false;
          why = `it threw: ${(e as Error).message}`;
        }
        if (passed === false) {
          await rollBackGguf(volume, first, hasher);
          throw new HealthCheckError(`the health check of ${where} failed after the update (${why}): the model was rolled back to its old version ${header.baseFingerprint}; nothing was recorded`, { rolledBack: true });
        }
      }
      // The commit point: the journal goes, and with it the way back.
      await volume.remove(first + GGUF_UNDO_SUFFIX);
      await volume.syncFolder();
      await clearSwitchMarker(volume, first);
      if (recorded === undefined) await records.setModelId(header.modelId);
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
  }
}

/** Step 6: each chunk decoded again from the file's bytes and written over its ranges; every file synced. */
async function overwrite(volume: GgufVolume, hasher: Hasher, names: readonly string[], readers: readonly VolumeFile[], payload: OpenedGgufPayload): Promise<void> {
  const writers = new Map<number, VolumeFile>();
  try {
    let i = 0;
    for await (const chunk of payload.chunks()) {
      const target = decodeGgufChunk(hasher, chunk, await rangesBytes(readers, chunk), `chunk ${i++}`);
      let at = 0;
      for (const r of chunk.runs) {
        let w = writers.get(r.part);
        if (!w) writers.set(r.part, (w = await volume.open(names[r.part], 'r+')));
        await w.write(target.subarray(at, at + r.length), r.offset);
        at += r.length;
      }
    }
    for (const w of writers.values()) await w.sync();
  } finally {
    for (const w of writers.values()) await w.close();
  }
}

/** Step 7: the index of the first chunk whose ranges do not read back as its target bytes, or undefined. */
async function firstMismatch(hasher: Hasher, handles: readonly VolumeFile[], payload: OpenedGgufPayload): Promise<number | undefined> {
  let i = 0;
  for await (const chunk of payload.chunks()) {
    const now = toHex(bytes8(hasher.h64(await rangesBytes(handles, chunk))));
    if (now !== chunk.targetDigest) return i;
    i++;
  }
  return undefined;
}

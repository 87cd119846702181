/**
 * What a device keeps between update runs, behind two small interfaces an app implements for
 * its platform (a JSON file on Node and Electron: src/io/updater/state-files.ts; IndexedDB in a
 * browser: indexeddb.ts; AsyncStorage or the app's database on React Native: docs/PUBLISHING.md):
 *
 * - {@link UpdaterStateStore}: per model id, the highest manifest release accepted (rollback and
 *   freeze protection of the manifest itself), the highest model sequence applied (replay
 *   protection of payloads), and the files that failed a health check (never tried again);
 * - {@link DownloadStore}: files being downloaded, by SHA-256, so a dropped connection or a
 *   restarted app resumes where it stopped.
 */
import type { SequenceStore } from '../apply/freshness.ts';
import { concatBytes } from '../core/bytes.ts';

/** The updater's record for one model id. */
export interface UpdaterRecord {
  /** The highest manifest `release` accepted. */
  release?: number;
  /** SHA-256 of that manifest's signed part: the same release number with other content is refused. */
  manifestSha256?: string;
  /** The highest model sequence applied (what payload replay protection keys on). */
  sequence?: number;
  /** The model fingerprint after that sequence. */
  fingerprint?: string;
  /** SHA-256 of payloads, and `package:<fingerprint>` of full packages, that failed a health check. */
  failed: string[];
  /**
   * How many times `failed` was cleared ({@link Updater.forgetFailed}). A store several writers
   * share (IndexedDB, across tabs) keeps the union of the failures two writers save, unless the
   * later save cleared the list after what is stored.
   */
  failedCleared?: number;
}

/** Where the updater's records live. `save` must be durable when it resolves. */
export interface UpdaterStateStore {
  load(modelId: string): UpdaterRecord | undefined | Promise<UpdaterRecord | undefined>;
  save(modelId: string, record: UpdaterRecord): void | Promise<void>;
}

/** Partial and complete downloads, keyed by the file's SHA-256. */
export interface DownloadStore {
  /** Bytes held for `key` (0 when none). */
  size(key: string): Promise<number>;
  /** Add `bytes` after those held; durable when it resolves (a crash loses at most the call in progress). */
  append(key: string, bytes: Uint8Array): Promise<void>;
  /** Every byte held for `key`. */
  read(key: string): Promise<Uint8Array>;
  /** Forget `key` (no error when absent). */
  remove(key: string): Promise<void>;
}

/** An {@link UpdaterStateStore} in memory (tests; apps that persist the record themselves). */
export class MemoryUpdaterState implements UpdaterStateStore {
  readonly records = new Map<string, UpdaterRecord>();
  load(modelId: string): UpdaterRecord | undefined {
    const r = this.records.get(modelId);
    return r && { ...r, failed: [...r.failed] };
  }
  save(modelId: string, record: UpdaterRecord): void {
    this.records.set(modelId, { ...record, failed: [...record.failed] });
  }
}

/** A {@link DownloadStore} in memory: resumes within one run, not across restarts. */
export class MemoryDownloadStore implements DownloadStore {
  readonly files = new Map<string, Uint8Array[]>();
  async size(key: string): Promise<number> {
    return (this.files.get(key) ?? []).reduce((n, b) => n + b.length, 0);
  }
  async append(key: string, bytes: Uint8Array): Promise<void> {
    const parts = this.files.get(key) ?? [];
    parts.push(bytes.slice());
    this.files.set(key, parts);
  }
  async read(key: string): Promise<Uint8Array> {
    return concatBytes(this.files.get(key) ?? []);
  }
  async remove(key: string): Promise<void> {
    this.files.delete(key);
  }
}

export { concatBytes };

/** Load a record, normalized (an absent one is empty). */
export async function loadRecord(store: UpdaterStateStore, modelId: string): Promise<UpdaterRecord> {
  const r = await store.load(modelId);
  return { ...(r ?? {}), failed: [...(r?.failed ?? [])] };
}

/**
 * The applier's {@link SequenceStore} over the updater's record, so the payload appliers record
 * the applied sequence in the same place as the rest of the updater's state.
 */
export function sequenceStoreOf(store: UpdaterStateStore): SequenceStore {
  return {
    async get(modelId) {
      return (await store.load(modelId))?.sequence;
    },
    async set(modelId, sequence, record) {
      const r = await loadRecord(store, modelId);
      await store.save(modelId, { ...r, sequence, fingerprint: record.fingerprint });
    },
  };
}

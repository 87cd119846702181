/**
 * The updater's state and downloads in a browser's IndexedDB, so that replay protection, the
 * list of failed payloads and half-finished downloads survive a reload (in memory they would
 * not). One database (default `neural-diff-updater`) with two object stores: `records` (one
 * {@link UpdaterRecord} per model id) and `chunks` (downloaded bytes, one entry per stored chunk,
 * keyed `[sha256, index]`). IndexedDB commits a transaction durably before `oncomplete` fires
 * (Chromium and Firefox default to "relaxed" durability: survives a tab crash, perhaps not an OS
 * crash; pass `durability: 'strict'` where that matters).
 */
import type { DownloadStore, UpdaterRecord, UpdaterStateStore } from './state.ts';
import { concatBytes } from './state.ts';

const RECORDS = 'records';
const CHUNKS = 'chunks';

/** IndexedDB transaction durability (Chromium and Firefox; others ignore it). */
export type Durability = 'default' | 'strict' | 'relaxed';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

/** Open (and create on first use) the updater's database. */
function openDatabase(name: string, factory: IDBFactory): Promise<IDBDatabase> {
  const req = factory.open(name, 1);
  req.onupgradeneeded = () => {
    const db = req.result;
    if (!db.objectStoreNames.contains(RECORDS)) db.createObjectStore(RECORDS);
    if (!db.objectStoreNames.contains(CHUNKS)) db.createObjectStore(CHUNKS);
  };
  return request(req);
}

/** Options of the IndexedDB adapters. */
export interface IndexedDbOptions {
  /** Database name (default `neural-diff-updater`). */
  name?: string;
  /** Default: `globalThis.indexedDB`. */
  indexedDB?: IDBFactory;
  /** Transaction durability for writes (default `strict`). */
  durability?: Durability;
}

abstract class IndexedDbBase {
  private db?: Promise<IDBDatabase>;
  constructor(protected readonly options: IndexedDbOptions = {}) {}
  protected database(): Promise<IDBDatabase> {
    const factory = this.options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (!factory) return Promise.reject(new Error('no IndexedDB in this runtime: use another UpdaterStateStore'));
    return (this.db ??= openDatabase(this.options.name ?? 'neural-diff-updater', factory));
  }
  protected async write(store: string, work: (s: IDBObjectStore) => void): Promise<void> {
    const db = await this.database();
    const tx = db.transaction(store, 'readwrite', { durability: this.options.durability ?? 'strict' } as IDBTransactionOptions);
    work(tx.objectStore(store));
    await done(tx);
  }
}

/** The updater's records in IndexedDB. */
export class IndexedDbUpdaterState extends IndexedDbBase implements UpdaterStateStore {
  async load(modelId: string): Promise<UpdaterRecord | undefined> {
    const db = await this.database();
    const r = (await request(db.transaction(RECORDS, 'readonly').objectStore(RECORDS).get(modelId))) as UpdaterRecord | undefined;
    return r && { ...r, failed: [...(r.failed ?? [])] };
  }
  /**
   * Save `record`, never lowering the sequence or the manifest release recorded, nor dropping a
   * failed payload another tab recorded: two tabs updating at once each read, then write, so the
   * second write would otherwise put back the lower numbers it read (replay protection lowered)
   * and the failed list it read (a payload that failed its health check in the other tab tried
   * again). The failed list saved is the union of the stored one and `record`'s, unless `record`
   * cleared it ({@link UpdaterRecord.failedCleared}) after the stored one. The read and the write
   * are one transaction, so no other tab's write falls between them.
   */
  async save(modelId: string, record: UpdaterRecord): Promise<void> {
    await this.write(RECORDS, (s) => {
      const get = s.get(modelId);
      get.onsuccess = () => s.put(keepHighest(get.result as UpdaterRecord | undefined, { ...record, failed: [...record.failed] }), modelId);
    });
  }
}

/**
 * `next`, with the higher sequence (and its fingerprint) and release (and its manifest hash) of
 * `stored` kept, and the failures `stored` holds, unless `next` cleared them after it.
 */
function keepHighest(stored: UpdaterRecord | undefined, next: UpdaterRecord): UpdaterRecord {
  const out = { ...next };
  const cleared = { stored: stored?.failedCleared ?? 0, next: next.failedCleared ?? 0 };
  if (cleared.next <= cleared.stored) {
    // A writer that read before another's forgetFailed puts back what it had read: it cannot
    // tell those failures from one it recorded since (documented in docs/PUBLISHING.md).
    out.failed = [...new Set([...(stored?.failed ?? []), ...next.failed])];
    if (cleared.stored > 0) out.failedCleared = cleared.stored;
  }
  if (typeof stored?.sequence === 'number' && (out.sequence === undefined || stored.sequence > out.sequence)) {
    out.sequence = stored.sequence;
    if (stored.fingerprint === undefined) delete out.fingerprint;
    else out.fingerprint = stored.fingerprint;
  }
  if (typeof stored?.release === 'number' && (out.release === undefined || stored.release > out.release)) {
    out.release = stored.release;
    if (stored.manifestSha256 === undefined) delete out.manifestSha256;
    else out.manifestSha256 = stored.manifestSha256;
  }
  return out;
}

/** Downloads in IndexedDB: one entry per stored chunk, so a resume appends without rewriting. */
export class IndexedDbDownloadStore extends IndexedDbBase implements DownloadStore {
  private async chunks(key: string): Promise<Uint8Array[]> {
    const db = await this.database();
    const range = IDBKeyRange.bound([key, 0], [key, Number.MAX_SAFE_INTEGER]);
    const values = (await request(db.transaction(CHUNKS, 'readonly').objectStore(CHUNKS).getAll(range))) as ArrayBuffer[];
    return values.map((v) => new Uint8Array(v));
  }
  async size(key: string): Promise<number> {
    return (await this.chunks(key)).reduce((n, c) => n + c.length, 0);
  }
  async append(key: string, bytes: Uint8Array): Promise<void> {
    // The next index is the number of chunks held (counted, not read: appends stay cheap).
    const db = await this.database();
    const index = await request(db.transaction(CHUNKS, 'readonly').objectStore(CHUNKS).count(IDBKeyRange.bound([key, 0], [key, Number.MAX_SAFE_INTEGER])));
    await this.write(CHUNKS, (s) => s.put(bytes.slice().buffer, [key, index]));
  }
  async read(key: string): Promise<Uint8Array> {
    return concatBytes(await this.chunks(key));
  }
  async remove(key: string): Promise<void> {
    await this.write(CHUNKS, (s) => s.delete(IDBKeyRange.bound([key, 0], [key, Number.MAX_SAFE_INTEGER])));
  }
}

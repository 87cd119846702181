/**
 * `neural-diff/sequence-stores`: persistent {@link SequenceStore}s for devices without a file
 * system: IndexedDB in browsers and webviews, and any string key-value storage with `getItem` / `setItem` (the browser's
 * `localStorage`, React Native's AsyncStorage, MMKV through a two-line adapter). Node and
 * Electron main processes keep the sequence in a state file instead (`neural-diff/node`).
 *
 * Each model id's record is `{"sequence": N, "fingerprint": "..."}` under the key
 * `<prefix><model id>`. A record that is not that shape is handed to the applier as found, which
 * refuses it (StateStoreError) instead of treating the device as new: deleting a record drops
 * the rollback protection, so that is left to the app, on purpose.
 *
 * Its own entry (pure, like the applier: no tfjs, no Node), so the applier's bundle carries it
 * only for the apps that import it.
 *
 * @module neural-diff/sequence-stores
 */
import { StateStoreError, UsageError } from '../core/errors.ts';
import type { SequenceRecord, SequenceStore } from './freshness.ts';

/** The record kept per model id. */
interface StoredSequence {
  sequence: unknown;
  fingerprint?: unknown;
}

/**
 * The sequence of a stored record; anything that is not a record with a `sequence` is returned
 * as found, so the applier refuses it (StateStoreError) instead of taking the device for new.
 */
function sequenceOf(record: unknown): number {
  const isRecord = typeof record === 'object' && record !== null && !Array.isArray(record) && 'sequence' in record;
  return (isRecord ? (record as StoredSequence).sequence : record) as number;
}

/** The default key prefix (IndexedDB database name, or storage key prefix). */
export const DEFAULT_SEQUENCE_PREFIX = 'neural-diff:sequence:';

/**
 * String key-value storage, as React Native's AsyncStorage and the browser's `localStorage`
 * provide it (either may be passed as it is). `setItem` must be durable when it resolves.
 */
export interface KeyValueStorage {
  /** The value stored under `key`, or null when there is none. */
  getItem(key: string): string | null | undefined | Promise<string | null | undefined>;
  /** Store `value` under `key`. */
  setItem(key: string, value: string): void | Promise<void>;
}

/** Options of {@link KeyValueSequenceStore}. */
export interface KeyValueSequenceStoreOptions {
  /** Prefix of every key (default {@link DEFAULT_SEQUENCE_PREFIX}); the model id follows it. */
  prefix?: string;
}

/**
 * A {@link SequenceStore} over string key-value storage: `new KeyValueSequenceStore(AsyncStorage)`
 * in React Native, `new KeyValueSequenceStore(localStorage)` in a browser without IndexedDB.
 */
export class KeyValueSequenceStore implements SequenceStore {
  private readonly storage: KeyValueStorage;
  private readonly prefix: string;

  /**
   * @param storage - anything with `getItem` / `setItem` over strings
   * @param options - the key prefix
   */
  constructor(storage: KeyValueStorage, options: KeyValueSequenceStoreOptions = {}) {
    if (!storage || typeof storage.getItem !== 'function' || typeof storage.setItem !== 'function') {
      throw new UsageError('KeyValueSequenceStore needs a storage with getItem(key) and setItem(key, value) (AsyncStorage, localStorage): found none');
    }
    this.storage = storage;
    this.prefix = options.prefix ?? DEFAULT_SEQUENCE_PREFIX;
  }

  /** The highest sequence recorded for `modelId` (a malformed record is returned as found, for the applier to refuse). */
  async get(modelId: string): Promise<number | undefined> {
    const text = await this.storage.getItem(this.prefix + modelId);
    if (text === null || text === undefined) return undefined;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch {
      throw new StateStoreError(`the sequence record of model ${JSON.stringify(modelId)} (key ${JSON.stringify(this.prefix + modelId)}) is not JSON: expected {"sequence": N, ...}`, { modelId, found: text.slice(0, 100), applied: false });
    }
    return sequenceOf(record);
  }

  /** Record `sequence` for `modelId`; resolves once the storage has accepted it. */
  async set(modelId: string, sequence: number, record: SequenceRecord): Promise<void> {
    await this.storage.setItem(this.prefix + modelId, JSON.stringify({ sequence, fingerprint: record.fingerprint }));
  }
}

/** The subset of the IndexedDB API the store uses (a browser's `indexedDB`). */
export type IndexedDbFactory = Pick<IDBFactory, 'open'>;

/** Options of {@link IndexedDbSequenceStore}. */
export interface IndexedDbSequenceStoreOptions {
  /** Database name (default `'neural-diff'`); the object store is `'sequences'`. */
  databaseName?: string;
  /** The IndexedDB factory (default: `globalThis.indexedDB`). */
  indexedDB?: IndexedDbFactory;
}

const OBJECT_STORE = 'sequences';

/** Resolve an IDBRequest. */
function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error('IndexedDB request failed'));
  });
}

/**
 * A {@link SequenceStore} in IndexedDB, for browsers and webviews: one record per model id in
 * the object store `sequences` of the database `neural-diff`. A write resolves when its
 * transaction completes (`durability: 'strict'` where the browser supports it), so the record
 * survives a reload or a crash once `applyPayload` returns.
 */
export class IndexedDbSequenceStore implements SequenceStore {
  private readonly factory: IndexedDbFactory;
  private readonly name: string;
  private db: Promise<IDBDatabase> | undefined;

  /** @param options - database name and factory */
  constructor(options: IndexedDbSequenceStoreOptions = {}) {
    const factory = options.indexedDB ?? (globalThis as { indexedDB?: IndexedDbFactory }).indexedDB;
    if (!factory || typeof factory.open !== 'function') {
      throw new UsageError('IndexedDbSequenceStore: this runtime has no indexedDB (React Native, a locked-down webview): use new KeyValueSequenceStore(AsyncStorage or localStorage), or browserSequenceStore() to pick what exists');
    }
    this.factory = factory;
    this.name = options.databaseName ?? 'neural-diff';
  }

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const request = this.factory.open(this.name, 1);
      request.onupgradeneeded = () => {
        if (!request.result.objectStoreNames.contains(OBJECT_STORE)) request.result.createObjectStore(OBJECT_STORE);
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error ?? new Error(`cannot open IndexedDB database ${this.name}`));
      request.onblocked = () => reject(new Error(`IndexedDB database ${this.name} is blocked by another tab holding an older version open`));
    }).catch((e: unknown) => {
      this.db = undefined; // the next call tries again
      throw e;
    });
    return this.db;
  }

  /** The highest sequence recorded for `modelId` (a malformed record is returned as found, for the applier to refuse). */
  async get(modelId: string): Promise<number | undefined> {
    const db = await this.open();
    const record = await done(db.transaction(OBJECT_STORE, 'readonly').objectStore(OBJECT_STORE).get(modelId)) as unknown;
    if (record === undefined) return undefined;
    return sequenceOf(record);
  }

  /**
   * Record `sequence` for `modelId`, unless a higher one is recorded (another tab applied a later
   * payload meanwhile: the record is never lowered); the read and the write are one transaction.
   * Resolves when the transaction has completed.
   */
  async set(modelId: string, sequence: number, record: SequenceRecord): Promise<void> {
    const db = await this.open();
    // `durability` is a Chromium and Firefox option; others ignore the third argument.
    const tx = (db.transaction as (names: string, mode: IDBTransactionMode, options?: { durability: string }) => IDBTransaction)
      .call(db, OBJECT_STORE, 'readwrite', { durability: 'strict' });
    const store = tx.objectStore(OBJECT_STORE);
    const get = store.get(modelId);
    get.onsuccess = () => {
      const held = (get.result as { sequence?: unknown } | undefined)?.sequence;
      if (!(typeof held === 'number' && held > sequence)) store.put({ sequence, fingerprint: record.fingerprint }, modelId);
    };
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted (storage full?)'));
    });
  }

  /** Close the database (a later call opens it again). */
  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    if (db) (await db).close();
  }
}

/**
 * The persistent sequence store a browser offers: IndexedDB where it exists, else
 * `localStorage`; throws a UsageError naming the alternatives where neither does (React
 * Native: pass `new KeyValueSequenceStore(AsyncStorage)`).
 */
export function browserSequenceStore(options: { prefix?: string; databaseName?: string } = {}): SequenceStore {
  const g = globalThis as { indexedDB?: IndexedDbFactory; localStorage?: KeyValueStorage };
  if (g.indexedDB) return new IndexedDbSequenceStore({ ...(options.databaseName !== undefined ? { databaseName: options.databaseName } : {}) });
  if (g.localStorage) return new KeyValueSequenceStore(g.localStorage, { ...(options.prefix !== undefined ? { prefix: options.prefix } : {}) });
  throw new UsageError('no persistent storage here (neither indexedDB nor localStorage): pass a SequenceStore, e.g. new KeyValueSequenceStore(AsyncStorage) in React Native or a file store in Node (neural-diff/node)');
}

/**
 * The device updater's state and downloads on disk, for Node and Electron (the app's main
 * process): {@link FileUpdaterState}, one small JSON file replaced atomically, and
 * {@link FileDownloadStore}, a folder of partial downloads named by their SHA-256, each grown
 * by appends that are fsynced before they count.
 *
 * ```json
 * {"format": "neural-diff-updater-state", "version": 1,
 *  "models": {"kws": {"release": 7, "manifestSha256": "…", "sequence": 4, "fingerprint": "…", "failed": []}}}
 * ```
 */
import { open, readdir, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { StateStoreError } from '../../core/errors.ts';
import type { DownloadStore, UpdaterRecord, UpdaterStateStore } from '../../updater/state.ts';
import { makeDirs, readRegularFile, syncDir, writeFileAtomically } from '../durable/durable.ts';

const MAX_STATE_BYTES = 16 * 1024 * 1024;

/** The updater's records in a JSON file (fail closed: a damaged file is refused, never reset). */
export class FileUpdaterState implements UpdaterStateStore {
  constructor(readonly file: string) {}

  async load(modelId: string): Promise<UpdaterRecord | undefined> {
    return (await this.read())[modelId];
  }

  async save(modelId: string, record: UpdaterRecord): Promise<void> {
    const models = await this.read();
    models[modelId] = { ...record, failed: [...record.failed] };
    await makeDirs(path.dirname(this.file));
    await writeFileAtomically(this.file, new TextEncoder().encode(JSON.stringify({ format: 'neural-diff-updater-state', version: 1, models }, null, 2) + '\n'));
  }

  /** Every model's record. */
  async read(): Promise<Record<string, UpdaterRecord>> {
    let bytes: Uint8Array | null;
    try {
      bytes = await readRegularFile(this.file, { maxBytes: MAX_STATE_BYTES });
    } catch (e) {
      throw new StateStoreError(`cannot read the updater state ${this.file} (${(e as Error).message}): expected a regular file this user can read; nothing was changed: check the path and its permissions`, { file: this.file });
    }
    if (bytes === null) return {};
    const bad = (): never => {
      throw new StateStoreError(
        `updater state ${this.file} is damaged: expected {"format": "neural-diff-updater-state", "version": 1, "models": {...}}; nothing was changed. Restore it from a backup; deleting it drops the device's protection against replayed manifests and forgets which payloads failed`,
        { file: this.file },
      );
    };
    let doc: { format?: unknown; version?: unknown; models?: unknown };
    try {
      doc = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return bad();
    }
    if (doc?.format !== 'neural-diff-updater-state' || doc.version !== 1 || typeof doc.models !== 'object' || doc.models === null) bad();
    const models = doc.models as Record<string, UpdaterRecord>;
    for (const r of Object.values(models)) {
      if (typeof r !== 'object' || r === null || !Array.isArray(r.failed) || (r.release !== undefined && !Number.isSafeInteger(r.release)) || (r.sequence !== undefined && !Number.isSafeInteger(r.sequence))) bad();
    }
    return models;
  }
}

/** Partial downloads in a folder: `<sha256>.part`, appended to and fsynced a chunk at a time. */
export class FileDownloadStore implements DownloadStore {
  constructor(readonly dir: string) {}

  private fileOf(key: string): string {
    if (!/^[0-9a-f]{64}$/.test(key)) throw new StateStoreError(`download key ${JSON.stringify(key)} is not a SHA-256`);
    return path.join(this.dir, `${key}.part`);
  }

  async size(key: string): Promise<number> {
    return (await stat(this.fileOf(key)).catch(() => undefined))?.size ?? 0;
  }

  async append(key: string, bytes: Uint8Array): Promise<void> {
    const file = this.fileOf(key);
    const existed = (await stat(file).catch(() => undefined)) !== undefined;
    if (!existed) await makeDirs(this.dir);
    const fh = await open(file, 'a');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (!existed) await syncDir(this.dir);
  }

  async read(key: string): Promise<Uint8Array> {
    return (await readRegularFile(this.fileOf(key))) ?? new Uint8Array();
  }

  async remove(key: string): Promise<void> {
    await rm(this.fileOf(key), { force: true });
  }

  /** Remove every partial download (e.g. after the app changed release URL). */
  async clear(): Promise<void> {
    for (const f of await readdir(this.dir).catch(() => [] as string[])) if (f.endsWith('.part')) await rm(path.join(this.dir, f), { force: true });
  }
}

/**
 * A {@link SequenceStore} in a small JSON file, for devices that run Node (and the CLI). It is
 * replaced atomically on every write (temp file, fsync, rename, fsync of the folder), so after
 * a crash it holds the old or the new record, never half of one.
 *
 * ```json
 * { "format": "neural-diff-state", "version": 1,
 *   "models": { "kws-en": { "sequence": 7, "fingerprint": "3f2a…", "updatedAt": "2026-…" } } }
 * ```
 *
 * A missing file means nothing was applied yet. A file that is not this JSON is refused
 * (fail closed): deleting it would silently drop rollback protection.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { StateStoreError } from '../core/errors.ts';
import type { SequenceRecord, SequenceStore } from '../apply/freshness.ts';
import { syncDir } from './durable.ts';

export { syncDir };

/** The state file's default name inside a model folder (`ndiff apply` default). */
export const DEFAULT_STATE_FILE = '.ndiff-state.json';

interface ModelState {
  sequence: number;
  fingerprint?: string;
  updatedAt?: string;
}

export class FileSequenceStore implements SequenceStore {
  constructor(readonly file: string) {}

  async get(modelId: string): Promise<number | undefined> {
    return (await this.read()).get(modelId)?.sequence;
  }

  async set(modelId: string, sequence: number, record: SequenceRecord): Promise<void> {
    const models = await this.read();
    models.set(modelId, { sequence, fingerprint: record.fingerprint, updatedAt: new Date().toISOString() });
    const doc = { format: 'neural-diff-state', version: 1, models: Object.fromEntries(models) };
    await writeFileAtomically(this.file, new TextEncoder().encode(JSON.stringify(doc, null, 2) + '\n'));
  }

  /** Every model's record (empty when the file does not exist). */
  async read(): Promise<Map<string, ModelState>> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw new StateStoreError(`cannot read the state file ${this.file} (${(e as Error).message}): check its permissions`, { file: this.file });
    }
    const bad = (why: string): never => {
      throw new StateStoreError(
        `state file ${this.file} is damaged (${why}): expected {"format": "neural-diff-state", "version": 1, "models": {...}}; nothing was applied. Restore it from a backup; deleting it drops the device's protection against replayed older updates`,
        { file: this.file },
      );
    };
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      return bad(`not JSON: ${(e as Error).message}`);
    }
    const d = doc as { format?: unknown; version?: unknown; models?: unknown };
    if (typeof doc !== 'object' || doc === null || d.format !== 'neural-diff-state') return bad('not a neural-diff state file');
    if (d.version !== 1) return bad(`version ${JSON.stringify(d.version)}, this code reads version 1`);
    if (typeof d.models !== 'object' || d.models === null || Array.isArray(d.models)) return bad('"models" is not an object');
    const out = new Map<string, ModelState>();
    for (const [id, v] of Object.entries(d.models as Record<string, unknown>)) {
      const seq = (v as { sequence?: unknown } | null)?.sequence;
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return bad(`model ${JSON.stringify(id)} has sequence ${JSON.stringify(seq)}`);
      out.set(id, v as ModelState);
    }
    return out;
  }
}

/**
 * Write `file` so that it holds the old or the new bytes at every instant, durably (unless
 * `durable: false`: then neither the file nor the folder is fsynced).
 */
export async function writeFileAtomically(file: string, bytes: Uint8Array, options: { durable?: boolean } = {}): Promise<void> {
  const durable = options.durable !== false;
  const dir = path.dirname(file);
  const base = path.basename(file);
  // Leftovers of an earlier interrupted write of this same file.
  try {
    for (const name of await readdir(dir)) {
      if (name.startsWith(`${base}.tmp-`) && /\.tmp-\d+-[0-9a-f]+$/.test(name)) await unlink(path.join(dir, name)).catch(() => {});
    }
  } catch {
    /* the folder is checked by the write below */
  }
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(bytes);
      if (durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  if (durable) await syncDir(dir);
}


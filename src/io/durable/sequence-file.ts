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
import { StateStoreError } from '../../core/errors.ts';
import type { SequenceRecord, SequenceStore } from '../../apply/freshness.ts';
import { readRegularFile, syncDir, writeFileAtomically, type FileOps } from './durable.ts';
import { DEFAULT_STATE_FILE } from './control-files.ts';

export { syncDir, writeFileAtomically, DEFAULT_STATE_FILE };

/** The largest state file read (a few hundred bytes per model id). */
const MAX_STATE_BYTES = 16 * 1024 * 1024;

export interface ModelState {
  sequence: number;
  fingerprint?: string;
  updatedAt?: string;
}

export class FileSequenceStore implements SequenceStore {
  /** @param options.fileOps the file operations that write it (default node:fs; tests record them). */
  constructor(readonly file: string, private readonly options: { fileOps?: FileOps } = {}) {}

  async get(modelId: string): Promise<number | undefined> {
    return (await this.read()).get(modelId)?.sequence;
  }

  async set(modelId: string, sequence: number, record: SequenceRecord): Promise<void> {
    const models = await this.read();
    models.set(modelId, { sequence, fingerprint: record.fingerprint, updatedAt: new Date().toISOString() });
    const doc = { format: 'neural-diff-state', version: 1, models: Object.fromEntries(models) };
    await writeFileAtomically(this.file, new TextEncoder().encode(JSON.stringify(doc, null, 2) + '\n'), { fileOps: this.options.fileOps });
  }

  /** Every model's record (empty when the file does not exist). */
  async read(): Promise<Map<string, ModelState>> {
    let text: string;
    try {
      // A FIFO, device or folder in its place is refused at once, never waited on.
      const bytes = await readRegularFile(this.file, { maxBytes: MAX_STATE_BYTES });
      if (bytes === null) return new Map();
      text = new TextDecoder().decode(bytes);
    } catch (e) {
      throw new StateStoreError(`cannot read the state file ${this.file} (${(e as Error).message}): expected a regular file this user can read; nothing was applied. Check the path and its permissions`, { file: this.file, applied: false });
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

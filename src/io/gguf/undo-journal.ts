/**
 * The undo journal of a GGUF model patched in place, in its folder (a {@link GgufVolume}: a folder
 * on disk or in the browser's Origin Private File System): beside the model's first file,
 * `<model>.gguf.ndiff-undo`, the bytes every range of an update held before it, written to
 * `<journal>.tmp`, fsynced, renamed into place and made durable by a folder fsync before the
 * first byte of the model is overwritten. While it exists the model may hold a mix of both
 * versions; {@link rollBackGguf} writes the old bytes back over every range, fsyncs the files,
 * then deletes the journal: the model is the old version byte for byte, whatever the overwrites
 * had reached (a write torn by a power cut included). Idempotent: a rollback cut short is done
 * again by the next one.
 *
 * Layout, little-endian: `NDGGUFU1`; u32 part count, per part a u16 name length, the file's base
 * name (UTF-8) and its u64 length; then per range a u32 part, a u64 offset, a u32 length and the
 * range's old bytes; then the u32 0xFFFFFFFF and the XXH64 (seed 0) of every byte before it. A
 * journal whose end or digest is wrong is refused, never half applied (it cannot be: it is
 * renamed into place only once fsynced).
 *
 * The switch marker, `<model>.gguf.ndiff-undo.switched` (JSON: the target's stored-bytes digest,
 * whether a health check is to confirm it), is written durably once every byte of the new version
 * is in place and checked, before the health check: a journal with the marker is an update
 * switched in and not yet confirmed (the model is the new version, byte for byte, and the journal
 * its way back), which recovery finishes as every format's unconfirmed switch
 * (src/io/durable/pending-update.ts); a journal without it may hold a mix, and is rolled back. A
 * rollback deletes the marker (durably) before it writes a byte; the confirmation deletes the
 * journal first (its commit point), then the marker.
 */
import { ModelFormatError } from '../../core/errors.ts';
import type { Hash64Stream, Hasher } from '../../core/hash-types.ts';
import { GGUF_MAX_CHUNK_BYTES, GGUF_MAX_PARTS } from './payload.ts';
import type { GgufVolume, VolumeFile } from './volume.ts';

/** Suffix of the undo journal, beside the model's (first) file. */
export const GGUF_UNDO_SUFFIX = '.ndiff-undo';
/** Suffix of the switch marker, beside the model's (first) file (module doc). */
export const GGUF_SWITCHED_SUFFIX = '.ndiff-undo.switched';
const MAGIC = new TextEncoder().encode('NDGGUFU1');
const END = 0xffffffff;
/** Bytes of journal gathered per write (a range's 16-byte head and its bytes would otherwise be two writes each). */
const JOURNAL_WRITE = 1 << 20;

/** One of the model's files, as the journal names it: its name in the folder and its length. */
export interface JournalPart {
  name: string;
  length: number;
}

/** A journal being written: ranges appended one at a time, then {@link UndoJournalWriter.commit}. */
export class UndoJournalWriter {
  private at = 0;
  /** Appended bytes not yet written: ranges are gathered into writes of about {@link JOURNAL_WRITE} bytes. */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private readonly hash: Hash64Stream;
  private constructor(private readonly volume: GgufVolume, private readonly file: VolumeFile, readonly name: string, hasher: Hasher) {
    this.hash = hasher.create64();
  }

  /** Start the journal `name` of `parts` at `<name>.tmp` (a leftover one is replaced). */
  static async start(volume: GgufVolume, name: string, parts: readonly JournalPart[], hasher: Hasher): Promise<UndoJournalWriter> {
    const tmp = `${name}.tmp`;
    await volume.remove(tmp);
    const w = new UndoJournalWriter(volume, await volume.open(tmp, 'wx'), name, hasher);
    const names = parts.map((p) => new TextEncoder().encode(p.name));
    const head = new Uint8Array(8 + 4 + names.reduce((n, b) => n + 2 + b.length + 8, 0));
    const dv = new DataView(head.buffer);
    head.set(MAGIC);
    dv.setUint32(8, parts.length, true);
    let at = 12;
    parts.forEach((p, i) => {
      dv.setUint16(at, names[i].length, true);
      head.set(names[i], at + 2);
      at += 2 + names[i].length;
      dv.setBigUint64(at, BigInt(p.length), true);
      at += 8;
    });
    await w.append(head);
    return w;
  }

  private async append(bytes: Uint8Array): Promise<void> {
    this.hash.update(bytes);
    this.pending.push(bytes.slice());
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= JOURNAL_WRITE) await this.flush();
  }

  private async flush(): Promise<void> {
    if (!this.pendingBytes) return;
    const out = new Uint8Array(this.pendingBytes);
    let at = 0;
    for (const b of this.pending) {
      out.set(b, at);
      at += b.length;
    }
    this.pending = [];
    this.pendingBytes = 0;
    await this.file.write(out, this.at);
    this.at += out.length;
  }

  /** Add a range's old bytes. */
  async range(part: number, offset: number, old: Uint8Array): Promise<void> {
    const head = new Uint8Array(16);
    const dv = new DataView(head.buffer);
    dv.setUint32(0, part, true);
    dv.setBigUint64(4, BigInt(offset), true);
    dv.setUint32(12, old.length, true);
    await this.append(head);
    await this.append(old);
  }

  /** End it, fsync it, rename it into place and fsync the folder: from here the model may be overwritten. */
  async commit(): Promise<void> {
    const end = new Uint8Array(12);
    const dv = new DataView(end.buffer);
    dv.setUint32(0, END, true);
    dv.setBigUint64(4, this.hash.digest(), true);
    await this.flush();
    await this.file.write(end, this.at);
    await this.file.sync();
    await this.file.close();
    await this.volume.rename(`${this.name}.tmp`, this.name);
    await this.volume.syncFolder();
  }

  /** Drop an unfinished journal (nothing of the model was written). */
  async abandon(): Promise<void> {
    await this.file.close().catch(() => {});
    await this.volume.remove(`${this.name}.tmp`).catch(() => {});
  }
}

/** What the switch marker says of the update switched in. */
export interface SwitchMarker {
  /** The stored-bytes digest of the version in place. */
  target: string;
  /** True when a health check was to confirm it. */
  awaitsHealthCheck: boolean;
  /** The payload's model id and sequence, recorded when a later run confirms the update (as the apply's commit records them). */
  modelId?: string;
  sequence?: number;
}

/** Record, durably, that every byte of the new version is in place and checked (module doc). */
export async function writeSwitchMarker(volume: GgufVolume, first: string, marker: SwitchMarker): Promise<void> {
  const name = first + GGUF_SWITCHED_SUFFIX;
  const file = await volume.open(`${name}.tmp`, 'w');
  try {
    await file.write(new TextEncoder().encode(JSON.stringify(marker) + '\n'), 0);
    await file.sync();
  } finally {
    await file.close();
  }
  await volume.rename(`${name}.tmp`, name);
  await volume.syncFolder();
}

/**
 * The switch marker beside `first`, or undefined when there is none or it cannot be read (then
 * the journal is rolled back, which is always safe); a leftover temp file of one is deleted.
 */
export async function readSwitchMarker(volume: GgufVolume, first: string): Promise<SwitchMarker | undefined> {
  const name = first + GGUF_SWITCHED_SUFFIX;
  await volume.remove(`${name}.tmp`);
  const text = await volume.readText(name);
  if (text === undefined) return undefined;
  try {
    const m = JSON.parse(text) as Partial<SwitchMarker>;
    if (typeof m.target !== 'string' || typeof m.awaitsHealthCheck !== 'boolean') return undefined;
    const named = typeof m.modelId === 'string' && Number.isSafeInteger(m.sequence) ? { modelId: m.modelId, sequence: m.sequence as number } : {};
    return { target: m.target, awaitsHealthCheck: m.awaitsHealthCheck, ...named };
  } catch {
    return undefined;
  }
}

/** Delete the switch marker beside `first`, durably (a no-op without one). */
export async function clearSwitchMarker(volume: GgufVolume, first: string): Promise<void> {
  if (await volume.remove(first + GGUF_SWITCHED_SUFFIX)) await volume.syncFolder();
}

function damaged(journal: string, what: string): ModelFormatError {
  return new ModelFormatError(`the undo journal ${journal} is damaged (${what}): the GGUF model beside it may hold part of an interrupted update, and it was left as it is; install the model again from a full download, then delete the journal`, { journal });
}

/**
 * Whether an update left a journal beside `first` (the model's first file); a leftover
 * `<journal>.tmp` (an update killed before it wrote anything to the model) is deleted.
 */
export async function undoJournalPending(volume: GgufVolume, first: string): Promise<boolean> {
  const journal = first + GGUF_UNDO_SUFFIX;
  await volume.remove(`${journal}.tmp`);
  return (await volume.size(journal)) !== undefined;
}

/** A view of `b`'s own bytes. */
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** Whether `name` names a file of the folder itself (no folder part, not `.` or `..`). */
const plainName = (name: string) => name !== '' && name !== '.' && name !== '..' && !/[/\\]/.test(name);

/**
 * Roll the model whose first file is `first` back from its undo journal: check the journal whole
 * (its digest, names and lengths), write every range's old bytes back, fsync the files, delete
 * the journal and fsync the folder. Memory: one range at a time.
 * @returns the number of ranges written back
 * @throws ModelFormatError a damaged journal, or a journal naming other files (nothing written)
 */
export async function rollBackGguf(volume: GgufVolume, first: string, hasher: Hasher): Promise<number> {
  const name = first + GGUF_UNDO_SUFFIX;
  const journal = volume.describe(name);
  const fh = await volume.open(name, 'r');
  const parts: JournalPart[] = [];
  const ranges: { part: number; offset: number; length: number; at: number }[] = [];
  try {
    const size = await fh.size();
    if (size < 24) throw damaged(journal, `${size} bytes`);
    // The digest of everything before the end mark, read a slice at a time.
    const h = hasher.create64();
    for (let at = 0; at < size - 12; at += GGUF_MAX_CHUNK_BYTES) h.update(await fh.read(at, Math.min(GGUF_MAX_CHUNK_BYTES, size - 12 - at)));
    const end = view(await fh.read(size - 12, 12));
    if (end.getUint32(0, true) !== END || end.getBigUint64(4, true) !== h.digest()) throw damaged(journal, 'its digest does not match its bytes');
    const head = await fh.read(0, 12);
    if (new TextDecoder().decode(head.subarray(0, 8)) !== 'NDGGUFU1') throw damaged(journal, 'not an undo journal');
    const count = view(head).getUint32(8, true);
    if (count < 1 || count > GGUF_MAX_PARTS) throw damaged(journal, `${count} parts`);
    let at = 12;
    for (let i = 0; i < count; i++) {
      const n = view(await fh.read(at, 2)).getUint16(0, true);
      const partName = new TextDecoder().decode(await fh.read(at + 2, n));
      const length = Number(view(await fh.read(at + 2 + n, 8)).getBigUint64(0, true));
      if (!plainName(partName)) throw damaged(journal, `a part named ${JSON.stringify(partName)}`);
      parts.push({ name: partName, length });
      at += 2 + n + 8;
    }
    if (parts[0].name !== first) throw damaged(journal, `it names ${volume.describe(parts[0].name)} first, not ${volume.describe(first)}`);
    while (at < size - 12) {
      if (at + 16 > size - 12) throw damaged(journal, 'a range cut short');
      const dv = view(await fh.read(at, 16));
      const part = dv.getUint32(0, true);
      const offset = Number(dv.getBigUint64(4, true));
      const length = dv.getUint32(12, true);
      if (part >= parts.length || length > GGUF_MAX_CHUNK_BYTES || offset + length > parts[part].length || at + 16 + length > size - 12) throw damaged(journal, `a range [${offset}, ${offset + length}) of part ${part + 1}`);
      ranges.push({ part, offset, length, at: at + 16 });
      at += 16 + length;
    }
    // Every file must still have the length the journal names before anything is written.
    for (const p of parts) {
      const now = await volume.size(p.name);
      if (now !== p.length) throw damaged(journal, `${volume.describe(p.name)} is ${now !== undefined ? `${now} bytes` : 'missing'}, the journal was written for ${p.length}`);
    }
    // No longer the new version once a byte goes back: the marker goes first, durably.
    await clearSwitchMarker(volume, first);
    const handles = new Map<number, VolumeFile>();
    try {
      for (const r of ranges) {
        let out = handles.get(r.part);
        if (!out) handles.set(r.part, (out = await volume.open(parts[r.part].name, 'r+')));
        await out.write(await fh.read(r.at, r.length), r.offset);
      }
      for (const out of handles.values()) await out.sync();
    } finally {
      for (const out of handles.values()) await out.close();
    }
  } finally {
    await fh.close();
  }
  await volume.remove(name);
  await volume.syncFolder();
  return ranges.length;
}

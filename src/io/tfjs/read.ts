/**
 * Reading a TF.js model folder: model.json, its shards (whole or by range, checked against
 * the manifest) and the checks that keep control files out of the manifest.
 */
import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { constants, open, readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError } from '../../core/errors.ts';
import { computeGroupLayout, concatBytes, entryByteLength, parseModelJson, type GroupLayout, type TfjsModelJson } from './manifest.ts';
import { errCode, readRegularFile } from '../durable/durable.ts';
import { MODEL_JSON, controlFileProblem } from '../durable/control-files.ts';

/** One shard file of a weight group, as found when the folder was opened. */
export interface Shard {
  /** The path model.json lists (relative to the folder). */
  path: string;
  /** Byte offset of the shard within its group's concatenated data. */
  start: number;
  size: number;
  /**
   * The file's identity when opened (device, inode, size, mtime and ctime in ns): a later read
   * checks the file is still that file, and recorded digests are tied to it.
   */
  ident: string;
  /** Its bytes, once read. */
  bytes?: Uint8Array;
}

/** The shards of one weight group. */
export interface GroupSource {
  shards: Shard[];
  /** Sum of the shard sizes. */
  total: number;
}

export interface LoadedModel {
  dir: string;
  /** Exact bytes of model.json as read. */
  jsonBytes: Uint8Array;
  /** model.json decoded as UTF-8 (BOM kept). */
  jsonText: string;
  modelJson: TfjsModelJson;
  /** Each group's shard files (read at open, or on first use when opened `lazy`). */
  groups: GroupSource[];
  layouts: GroupLayout[];
}

export function fileIdent(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

async function folderListing(dir: string): Promise<string> {
  try {
    const names = (await readdir(dir)).sort();
    if (names.length === 0) return 'the folder is empty';
    return `the folder holds ${names.slice(0, 8).join(', ')}${names.length > 8 ? `, ... (${names.length} entries)` : ''}`;
  } catch {
    return 'the folder cannot be listed';
  }
}

export async function readModelJsonFile(dir: string, name = MODEL_JSON): Promise<{ bytes: Uint8Array; text: string; modelJson: TfjsModelJson }> {
  const file = path.join(dir, name);
  let bytes: Uint8Array;
  try {
    // A FIFO or device named model.json is refused, never waited on.
    const read = await readRegularFile(file);
    if (read === null) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    bytes = read;
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      let dirExists = false;
      try { dirExists = (await stat(dir)).isDirectory(); } catch { /* reported below */ }
      const found = dirExists ? `${await folderListing(dir)}, but no ${name}` : 'no such folder';
      throw new ModelFormatError(
        name === MODEL_JSON
          ? `no ${MODEL_JSON} in ${dir}: expected a TF.js model folder (model.json plus the .bin shard files it lists), found ${found}. Point to the folder that holds model.json, or save the model there first (model.save(fileSystemIO(dir)))`
          : `no ${name} in ${dir}: expected a TF.js model JSON file with the .bin shard files it lists beside it, found ${found}. Check the path`,
        { dir, expected: name, found },
      );
    }
    throw new ModelFormatError(`cannot read ${file}: ${(err as Error).message}: check the path and its permissions`, { dir, code });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ModelFormatError(
      `${file}: expected UTF-8 JSON, found bytes that are not UTF-8: the file is corrupt or not a model.json; copy the model folder again`,
      { dir },
    );
  }
  return { bytes, text, modelJson: parseModelJson(text, file) };
}

/** Shard stats asked for at once when a folder is opened lazily. */
const STAT_AHEAD = 8;

async function readGroupSources(dir: string, modelJson: TfjsModelJson, lazy: boolean): Promise<{ groups: GroupSource[]; layouts: GroupLayout[] }> {
  const groups: GroupSource[] = [];
  const layouts: GroupLayout[] = [];
  for (const [g, group] of modelJson.weightsManifest.entries()) {
    // A string tensor's length is in its data, so such a group is read whole even when lazy.
    const hasStrings = group.weights.some((w) => w.dtype === 'string' && !w.quantization);
    const readNow = !lazy || hasStrings;
    const shards: Shard[] = [];
    let total = 0;
    // Lazily, only each shard's size and identity, asked for up to STAT_AHEAD shards ahead
    // (each stat is a round trip to the thread pool) and used in order, so the first failure
    // reported is the same.
    const ahead: Promise<BigIntStats>[] = [];
    const statAhead = (k: number): Promise<BigIntStats> => {
      for (let j = ahead.length; j < Math.min(group.paths.length, k + STAT_AHEAD); j++) {
        const pending = stat(path.join(dir, group.paths[j]), { bigint: true });
        pending.catch(() => {}); // awaited in order below, or not at all after an earlier failure
        ahead.push(pending);
      }
      return ahead[k];
    };
    for (const [i, p] of group.paths.entries()) {
      const file = path.join(dir, p);
      try {
        if (readNow) {
          // Non-blocking, so a FIFO is refused by the check below instead of hanging the open.
          const fh = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
          try {
            const st = await fh.stat({ bigint: true });
            if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EFTYPE' });
            const buf = await fh.readFile();
            // A plain Uint8Array view: Buffer's slice() would not copy.
            const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
            shards.push({ path: p, start: total, size: bytes.length, ident: fileIdent(st), bytes });
            total += bytes.length;
          } finally {
            await fh.close();
          }
        } else {
          const st = await statAhead(i);
          if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
          shards.push({ path: p, start: total, size: Number(st.size), ident: fileIdent(st) });
          total += Number(st.size);
        }
      } catch (err) {
        const code = errCode(err);
        const missing = code === 'ENOENT';
        const found = missing ? 'no such file' : `${(err as Error).message}`;
        throw new ModelFormatError(
          `model.json names ${p}, which is ${missing ? 'missing' : 'unreadable'} in ${dir}: expected shard ${i + 1} of ${group.paths.length} of weight group ${g + 1}, found ${found} (${await folderListing(dir)}). Copy the complete model folder again (model.json together with every file it lists), or restore ${p} from the source of the model`,
          { dir, path: p, group: g, shard: i, code },
        );
      }
    }
    const sizes = shards.map((s) => s.size);
    let needed: number | undefined;
    if (!hasStrings) needed = group.weights.reduce((n, w) => n + entryByteLength(w), 0);
    if (needed !== undefined && total < needed) throw shortShards(dir, g, group.paths, sizes, needed);
    let layout: GroupLayout;
    try {
      layout = computeGroupLayout(group.weights, hasStrings ? concatBytes(shards.map((s) => s.bytes as Uint8Array)) : undefined, g);
    } catch (err) {
      if (err instanceof ModelFormatError) throw shortShards(dir, g, group.paths, sizes, undefined, err.message);
      throw err;
    }
    if (layout.totalBytes !== total) {
      throw new ModelFormatError(
        `weight group ${g + 1} in ${dir}: the shards (${group.paths.join(', ')}) hold ${total} bytes but model.json describes ${layout.totalBytes} bytes of weights: expected them to match exactly; found ${total - layout.totalBytes} extra bytes, so model.json and the shards come from different models. Copy the model folder again from one source`,
        { dir, group: g, expected: layout.totalBytes, found: total },
      );
    }
    groups.push({ shards, total });
    layouts.push(layout);
  }
  return { groups, layouts };
}

/**
 * Bytes `[from, to)` of a shard file, read now (synchronously: the store's `values` is
 * synchronous). Refuses a file that is no longer the one the folder was opened with.
 */
export function readShardRange(dir: string, shard: Shard, from: number, to: number, into?: Uint8Array): Uint8Array {
  return readFileRange(dir, path.join(dir, shard.path), shard.path, shard.ident, shard.size, from, to, into);
}

/** Bytes `[from, to)` of `file` (of `size` bytes, identity `ident`), into `into` when given (its length must be `to - from`). */
export function readFileRange(dir: string, file: string, name: string, ident: string, size: number, from: number, to: number, into?: Uint8Array): Uint8Array {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new ModelFormatError(`${file} disappeared after the model folder was opened: expected the shard model.json names, found ${errCode(err) ?? (err as Error).message}. Another program changed the folder; reopen it and retry (one writer per model folder)`, { dir, path: name });
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    if (fileIdent(st) !== ident) {
      throw new ModelFormatError(`${file} changed after the model folder was opened (expected file ${ident}, found ${fileIdent(st)}): another program writes to the folder; reopen it and retry (one writer per model folder)`, { dir, path: name });
    }
    const bytes = into ?? new Uint8Array(to - from);
    for (let at = 0; at < bytes.length;) {
      const n = readSync(fd, bytes, at, bytes.length - at, from + at);
      if (n === 0) throw new ModelFormatError(`${file} ended after ${from + at} of its ${size} bytes while being read: it was truncated after the folder was opened; reopen it and retry`, { dir, path: name });
      at += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** The bytes of a shard, read and kept the first time they are needed. */
export function shardBytes(dir: string, shard: Shard): Uint8Array {
  shard.bytes ??= readShardRange(dir, shard, 0, shard.size);
  return shard.bytes;
}

/** The stored bytes of `shard` at group offsets `[from, to)` (within the shard). */
export function storedRange(dir: string, shard: Shard, from: number, to: number): Uint8Array {
  return shardBytes(dir, shard).subarray(from - shard.start, to - shard.start);
}

/** Whether `file` exists (a failure other than ENOENT is thrown). */
export async function fileExists(file: string): Promise<boolean> {
  return (await stat(file).catch((e) => (errCode(e) === 'ENOENT' ? null : Promise.reject(e)))) !== null;
}

/**
 * Where bytes `[offset, offset + length)` of a group lie: each shard holding some of them, with
 * the range `[from, to)` within that shard (none for an empty range).
 */
export function shardRanges(src: GroupSource, offset: number, length: number): { shard: Shard; from: number; to: number }[] {
  const end = offset + length;
  return src.shards
    .filter((s) => s.size > 0 && s.start < end && s.start + s.size > offset)
    .map((shard) => ({ shard, from: Math.max(offset, shard.start) - shard.start, to: Math.min(end, shard.start + shard.size) - shard.start }));
}

/**
 * Bytes `[offset, offset + length)` of a group's data (a view when they lie in one shard). With
 * `keep` false, shards not read yet are read for this range only and not kept (hashing a tensor
 * never holds its whole shard).
 */
export function groupRange(dir: string, src: GroupSource, offset: number, length: number, keep = true): Uint8Array {
  const parts = shardRanges(src, offset, length).map(({ shard, from, to }) =>
    shard.bytes || keep ? shardBytes(dir, shard).subarray(from, to) : readShardRange(dir, shard, from, to));
  return parts.length === 1 ? parts[0] : concatBytes(parts);
}

function shortShards(dir: string, g: number, paths: readonly string[], sizes: readonly number[], needed?: number, detail?: string): ModelFormatError {
  const total = sizes.reduce((a, b) => a + b, 0);
  // tfjs and the converter write equal shards and a shorter last one; a shorter shard before
  // the last one is the likely truncated file, else the last one.
  const full = Math.max(0, ...sizes.slice(0, -1));
  let suspect = sizes.findIndex((s, i) => i < sizes.length - 1 && s < full);
  if (suspect < 0) suspect = sizes.length - 1;
  const who = suspect >= 0 ? `${paths[suspect]} (${sizes[suspect]} bytes) is likely short` : 'the group lists no shard files';
  const need = needed !== undefined ? `${needed} bytes` : 'more bytes';
  return new ModelFormatError(
    `weight group ${g + 1} in ${dir} is short: expected ${need} of weights, found ${total} bytes in ${paths.length} shard file(s); ${who}${detail ? ` (${detail})` : ''}. The copy was interrupted or the file was truncated: copy the complete model folder again`,
    { dir, group: g, expected: needed, found: total, sizes, suspect: suspect >= 0 ? paths[suspect] : undefined },
  );
}

export async function loadModel(dir: string, modelJsonName = MODEL_JSON, lazy = false, reserved: readonly string[] = []): Promise<LoadedModel> {
  const { bytes, text, modelJson } = await readModelJsonFile(dir, modelJsonName);
  checkNoControlFiles(dir, modelJson, reserved, modelJsonName);
  const { groups, layouts } = await readGroupSources(dir, modelJson, lazy);
  return { dir, jsonBytes: bytes, jsonText: text, modelJson, groups, layouts };
}

/**
 * Refuse a manifest that names a file the applier owns (model.json, the kept previous version,
 * the journal, the lock, the state file, ...) as a weight shard: an update would rewrite it as a
 * shard and delete it with the old shards. See src/io/durable/control-files.ts.
 */
function checkNoControlFiles(dir: string, modelJson: TfjsModelJson, reserved: readonly string[], modelJsonName: string): void {
  // A model file of another name shares its folder with other models: their files are reserved too.
  const shared = modelJsonName !== MODEL_JSON;
  for (const [g, group] of modelJson.weightsManifest.entries()) {
    for (const p of group.paths) {
      const problem = controlFileProblem(dir, p, reserved, shared);
      if (problem) {
        throw new ModelFormatError(
          `${path.join(dir, modelJsonName)} names ${JSON.stringify(p)} as a weight shard of group ${g + 1}, which is ${problem}: expected weight files only (an update rewrites and deletes shards, and would destroy it). Nothing was read or written; fix the weights manifest (tensorflowjs_converter names shards group<g>-shard<i>of<n>.bin), or copy the model folder again from its source`,
          { dir, path: p, group: g, problem },
        );
      }
    }
  }
}

/**
 * Refuse (ModelFormatError) a folder whose model.json (or model file `modelJsonName`) names a
 * file the applier owns as a weight shard (see src/io/durable/control-files.ts), reading it only: an apply checks this before it
 * takes its lock or recovers anything, since both delete files of the applier's (stale locks,
 * temporary files). A missing or unreadable model.json is left for {@link openTfjsModelDir} to
 * report.
 */
export async function checkManifestNamesNoControlFiles(dir: string, reservedFiles: readonly string[] = [], modelJsonName = MODEL_JSON): Promise<void> {
  let modelJson: TfjsModelJson;
  try {
    modelJson = (await readModelJsonFile(dir, modelJsonName)).modelJson;
  } catch {
    return;
  }
  checkNoControlFiles(dir, modelJson, reservedFiles, modelJsonName);
}

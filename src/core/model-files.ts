/**
 * A model kept in several files (a TF.js folder: `model.json` and its weight shards), as a
 * structural payload (format v7, docs/FORMAT.md §17) rebuilds it: the files in a defined order,
 * their concatenation (the byte delta's base and output), and the hard checks a device makes on
 * the file list a payload names (`fl`) before anything is written.
 *
 * Pure code (no node, no tfjs): part of the device entry `neural-diff/rebuild`.
 */
import { PayloadFormatError } from './errors.ts';
import { manifestWithoutPaths } from './json-top-level.ts';
import type { ByteDeltaBase } from './byte-delta.ts';

/** One file of a model: its path relative to the model's folder (`/`-separated) and its bytes. */
export interface ModelFile {
  path: string;
  bytes: Uint8Array;
}

/** The most files a file list names. */
export const MAX_MODEL_FILES = 4096;
/** The longest path, in UTF-16 code units. */
export const MAX_MODEL_PATH = 255;
/** The most code units of all paths together. */
export const MAX_MODEL_PATHS_TOTAL = 65536;

/**
 * Why `p` cannot be a model file's relative path, or undefined: empty, longer than
 * {@link MAX_MODEL_PATH}, absolute, a `\` or `:` or control character in it, an empty, `.` or
 * `..` segment, or a name of the updater's own files (journal, lock, state, kept previous
 * version, temporary files: `.ndiff-*`, `*.ndiff-*`, `model.json.*`, `*.tmp-*`).
 */
export function modelPathProblem(p: string): string | undefined {
  if (p.length === 0) return 'an empty path';
  if (p.length > MAX_MODEL_PATH) return `a path of ${p.length} characters (at most ${MAX_MODEL_PATH})`;
  if (p.startsWith('/')) return 'an absolute path';
  if (p.includes('\\')) return 'a path with a backslash (only "/" separates folders)';
  if (p.includes(':')) return 'a path with a colon (a drive letter or stream name)';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'a path with a control character';
  const segments = p.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return 'a path with an empty, "." or ".." segment (it must stay inside the model\'s folder)';
  const name = segments[segments.length - 1].toLowerCase();
  if (segments.some((s) => s.toLowerCase().startsWith('.ndiff-') || s.toLowerCase().includes('.ndiff-'))) return 'a name of the updater\'s files (.ndiff-: journal, lock, state, digests, model id, kept version)';
  if (name.startsWith('model.json.')) return 'a name of the updater\'s files (a kept or temporary model.json)';
  if (/\.tmp-/.test(name)) return 'a name of a writer\'s temporary file (.tmp-)';
  return undefined;
}

/**
 * Check a file list a payload names: at most {@link MAX_MODEL_FILES} files, every path sound
 * ({@link modelPathProblem}), no two the same (compared without case, as a case-insensitive file
 * system would), the paths together at most {@link MAX_MODEL_PATHS_TOTAL} code units.
 * @throws PayloadFormatError saying which entry and why
 */
export function checkModelFileList(list: readonly { path: string; length: number }[], what = 'the payload\'s file list "fl"'): void {
  const refuse = (found: string): never => {
    throw new PayloadFormatError(`${what}: expected relative paths inside the model's folder, found ${found}; the payload is corrupt or hostile: nothing was written; fetch it again or the full model`, { found });
  };
  if (list.length === 0) refuse('no files');
  if (list.length > MAX_MODEL_FILES) refuse(`${list.length} files (at most ${MAX_MODEL_FILES})`);
  const seen = new Set<string>();
  let total = 0;
  list.forEach(({ path: p }, i) => {
    const problem = modelPathProblem(p);
    if (problem) refuse(`${problem} at entry ${i} (${JSON.stringify(p.slice(0, 80))})`);
    total += p.length;
    if (total > MAX_MODEL_PATHS_TOTAL) refuse(`paths of more than ${MAX_MODEL_PATHS_TOTAL} characters in all`);
    const key = p.toLowerCase();
    if (seen.has(key)) refuse(`${JSON.stringify(p)} twice (entry ${i}; names are compared without case)`);
    seen.add(key);
  });
}

/** The files' bytes one after the other (the byte delta's base or output). */
export function concatModelFiles(files: readonly ModelFile[]): Uint8Array {
  let n = 0;
  for (const f of files) n += f.bytes.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const f of files) {
    out.set(f.bytes, at);
    at += f.bytes.length;
  }
  return out;
}

/** Cut `bytes` into the listed files, in order (views of `bytes`); their lengths must sum to its length. */
export function splitModelFiles(bytes: Uint8Array, list: readonly { path: string; length: number }[]): ModelFile[] {
  const out: ModelFile[] = [];
  let at = 0;
  for (const { path, length } of list) {
    out.push({ path, bytes: bytes.subarray(at, at + length) });
    at += length;
  }
  if (at !== bytes.length) throw new PayloadFormatError(`the file list names ${at} bytes, the rebuilt bytes are ${bytes.length}: the payload is corrupt; nothing was written`, { expected: at, found: bytes.length });
  return out;
}

/**
 * The bytes a structural payload's byte delta reads as its base (FORMAT.md §16-17): a single
 * file as it is; a model of several files one after the other, a TF.js model's JSON (the first)
 * with its manifest's shard paths emptied ({@link manifestWithoutPaths}), so the base is the same
 * whatever the device named its shards.
 */
export function deltaBaseBytes(kind: string, files: readonly ModelFile[]): Uint8Array {
  if (files.length === 1 && kind !== 'tfjs') return files[0].bytes;
  if (kind !== 'tfjs') return adjacentView(files) ?? concatModelFiles(files);
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(files[0].bytes);
  return concatModelFiles([{ path: files[0].path, bytes: new TextEncoder().encode(manifestWithoutPaths(text)) }, ...files.slice(1)]);
}

/** The files as one view when they already lie one after the other in one buffer (read so: no copy), else undefined. */
function adjacentView(files: readonly ModelFile[]): Uint8Array | undefined {
  const first = files[0].bytes;
  let end = first.byteOffset;
  for (const f of files) {
    if (f.bytes.buffer !== first.buffer || f.bytes.byteOffset !== end) return undefined;
    end += f.bytes.length;
  }
  return new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset);
}

/**
 * A model's files read a range at a time, for files too big to hold whole (an ONNX model's
 * gigabytes of external data): their paths and lengths in the format's order, and a reader.
 */
export interface ModelFilesReader {
  /** Each file's path (as in {@link ModelFile}) and length in bytes, in the format's order. */
  readonly files: readonly { path: string; length: number }[];
  /** Fill `into` with file `index`'s bytes from `offset` (`offset + into.length` is at most its length). */
  read(index: number, offset: number, into: Uint8Array): void;
}

/**
 * {@link deltaBaseBytes} of a model whose files are read through `reader`, for a format whose
 * base is its files as they are (not TF.js: its model JSON is rewritten): the files one after
 * the other, read only where the byte delta copies from.
 */
export function deltaBaseOf(reader: ModelFilesReader): ByteDeltaBase {
  const starts: number[] = [];
  let length = 0;
  for (const f of reader.files) {
    starts.push(length);
    length += f.length;
  }
  return {
    length,
    copy(from, into) {
      // The last file starting at or before `from` (a binary search: a delta may copy millions of
      // times), then each file after it until the range is filled.
      let [i, hi] = [0, starts.length - 1];
      while (i < hi) {
        const mid = (i + hi + 1) >>> 1;
        if (starts[mid] <= from) i = mid;
        else hi = mid - 1;
      }
      for (let done = 0; done < into.length; i++) {
        const at = from + done - starts[i];
        const n = Math.min(reader.files[i].length - at, into.length - done);
        if (n > 0) reader.read(i, at, into.subarray(done, done + n));
        done += Math.max(n, 0);
      }
    },
  };
}

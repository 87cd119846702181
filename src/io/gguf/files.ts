/**
 * GGUF files on disk (Node): a {@link GgufSource} over an open file that reads only the ranges
 * asked for (a model of many gigabytes is never loaded whole), and {@link openGgufModel}, which
 * opens one file or every part of a split model (`name-00001-of-00003.gguf`) by the path of any
 * of its parts. The format itself is in the pure `header.ts`, `model.ts` and `blocks.ts`.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelFormatError } from '../../core/errors.ts';
import type { GgufSource } from './header.ts';
import { ggufModelOf, ggufSplitModel, splitPartName, splitPartPath, type GgufModel } from './model.ts';

/** An open GGUF file: its source and how to close it. */
interface OpenFile {
  source: GgufSource;
  close(): void;
}

/** Open `file` for range reads: regular files only. Undefined when there is no such file and `missingOk`. */
function openFile(file: string, missingOk = false): OpenFile | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && missingOk) return undefined;
    throw new ModelFormatError(code === 'ENOENT' ? `no file at ${file}: expected a .gguf model; check the path` : `cannot open ${file}: ${(err as Error).message}; check the path and its permissions`, { file, code });
  }
  const stats = fstatSync(fd);
  if (!stats.isFile()) {
    closeSync(fd);
    throw new ModelFormatError(`${file} is not a regular file: expected a .gguf model file`, { file });
  }
  const size = stats.size;
  const source: GgufSource = {
    name: file,
    size,
    read(offset, length) {
      const out = new Uint8Array(length);
      let at = 0;
      while (at < length) {
        const n = readSync(fd, out, at, length - at, offset + at);
        if (n === 0) throw new ModelFormatError(`${file} ended at ${offset + at} bytes while it was read (it was ${size}); another process is writing it: retry when it is done`, { file });
        at += n;
      }
      return out;
    },
  };
  return { source, close: () => closeSync(fd) };
}

/** A GGUF model open on disk: the model, and `close()` to close its files. */
export interface GgufModelFiles {
  readonly model: GgufModel;
  close(): void;
}

/**
 * Open a GGUF model by its path: one file, or, for a split part's name
 * (`<prefix>-0000K-of-0000N.gguf`), all N parts beside it read as one model. Only the headers are
 * read here; tensor bytes are read when asked for.
 * @throws ModelFormatError a missing file or part, a malformed header, parts that disagree
 */
export function openGgufModel(path: string): GgufModelFiles {
  const split = splitPartName(path);
  const opened: OpenFile[] = [];
  const closeAll = () => {
    for (const f of opened) f.close();
  };
  try {
    if (!split) {
      const f = openFile(path) as OpenFile;
      opened.push(f);
      return { model: ggufModelOf(f.source), close: closeAll };
    }
    const model = ggufSplitModel(split.count, (no) => {
      const f = openFile(splitPartPath(split.prefix, no, split.count), true);
      if (f) opened.push(f);
      return f?.source;
    }, path);
    return { model, close: closeAll };
  } catch (err) {
    closeAll();
    throw err;
  }
}

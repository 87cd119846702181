/**
 * A GGUF model: one file, or the parts of a split model (`name-00001-of-00003.gguf`, as
 * llama.cpp's `gguf-split` and gguf-py's writer name them, each part with `split.no` (UINT16,
 * from 0), `split.count` (UINT16) and `split.tensors.count` (INT32)) read as one: the tensors of
 * every part by name, the metadata of the first part (the others carry only the split keys), and
 * each tensor's bytes from its own part. A missing part, a part out of place or of another
 * split, or tensor counts that disagree are refused before any tensor is read.
 *
 * Pure code (no node, no tfjs): the parts' sources are given by the caller (`files.ts` on Node).
 */
import { ModelFormatError } from '../../core/errors.ts';
import { metadataValue, readGgufHeader, type GgufHeader, type GgufMetadataEntry, type GgufSource, type GgufTensorInfo } from './header.ts';

/** One part of a model: its source and its header. */
export interface GgufPart {
  readonly source: GgufSource;
  readonly header: GgufHeader;
}

/** A tensor of a model and the part that holds it. */
export interface GgufModelTensor {
  readonly info: GgufTensorInfo;
  /** Index into {@link GgufModel.parts}. */
  readonly part: number;
}

/** A GGUF model read as one, whatever the number of its files. */
export interface GgufModel {
  /** The files, in split order (one for an unsplit model). */
  readonly parts: readonly GgufPart[];
  /** The model's metadata: the first part's. */
  readonly metadata: readonly GgufMetadataEntry[];
  /** Every tensor of every part, in part order then file order. */
  readonly tensors: readonly GgufModelTensor[];
}

/** The file name pattern of a split part: `<prefix>-00001-of-00003.gguf`. */
const SPLIT_NAME = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/** For a split part's path, its prefix, 1-based number and part count; undefined for any other name. */
export function splitPartName(path: string): { prefix: string; no: number; count: number } | undefined {
  const m = SPLIT_NAME.exec(path);
  if (!m) return undefined;
  return { prefix: m[1], no: Number(m[2]), count: Number(m[3]) };
}

/** The path of part `no` (1-based) of `count` (llama.cpp's `llama_split_path`: `%s-%05d-of-%05d.gguf`). */
export function splitPartPath(prefix: string, no: number, count: number): string {
  return `${prefix}-${String(no).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.gguf`;
}

function splitError(source: string, what: string, details: Record<string, unknown> = {}): ModelFormatError {
  return new ModelFormatError(`${source}: ${what}; keep every part of a split model together, as gguf-split wrote them (or merge them with llama-gguf-split --merge)`, { source, ...details });
}

/** A small integer metadata value, or undefined when absent. */
function intValue(header: GgufHeader, key: string, source: string, type: 'UINT16' | 'INT32'): number | undefined {
  const v = metadataValue(header, key);
  if (v === undefined) return undefined;
  if (v.type !== type) throw splitError(source, `expected ${key} to be a ${type}, found a ${v.type}`, { key, expected: type, found: v.type });
  return v.value;
}

/** One file, unsplit, as a model (a file with `split.count` above 1 is refused: it is one part of several). */
export function ggufModelOf(source: GgufSource): GgufModel {
  const header = readGgufHeader(source);
  const count = intValue(header, 'split.count', source.name, 'UINT16');
  if (count !== undefined && count > 1) throw splitError(source.name, `expected a whole model, found part ${(intValue(header, 'split.no', source.name, 'UINT16') ?? 0) + 1} of a model split in ${count} files (split.count ${count}); open it by its split name (<name>-0000N-of-0000M.gguf) with its parts beside it`, { count });
  return { parts: [{ source, header }], metadata: header.metadata, tensors: header.tensors.map((info) => ({ info, part: 0 })) };
}

/**
 * The parts of a split model as one model. `openPart(no)` gives part `no` (1-based) of `count`,
 * or undefined when there is no such file. Every part must say `split.no` = its place - 1,
 * `split.count` = `count`, the same `split.tensors.count`, which must equal the tensors of all
 * parts together, and no tensor name may be in two parts.
 * @throws ModelFormatError naming the part at fault and what was expected
 */
export function ggufSplitModel(count: number, openPart: (no: number) => GgufSource | undefined, name: string): GgufModel {
  if (!Number.isInteger(count) || count < 1 || count > 65535) throw splitError(name, `expected a part count from 1 to 65535 in the name, found ${count}`);
  const parts: GgufPart[] = [];
  let tensorsCount: number | undefined;
  for (let no = 1; no <= count; no++) {
    const source = openPart(no);
    if (!source) throw splitError(name, `expected part ${no} of ${count} beside it, found no such file`, { part: no, count });
    const header = readGgufHeader(source);
    const splitNo = intValue(header, 'split.no', source.name, 'UINT16');
    const splitCount = intValue(header, 'split.count', source.name, 'UINT16');
    const total = intValue(header, 'split.tensors.count', source.name, 'INT32');
    if (splitNo !== no - 1 || splitCount !== count) {
      throw splitError(source.name, `expected split.no ${no - 1} and split.count ${count} (part ${no} of ${count}), found ${splitNo === undefined ? 'no split.no' : `split.no ${splitNo}`} and ${splitCount === undefined ? 'no split.count' : `split.count ${splitCount}`}: the file is from another split or renamed`, { part: no, count, splitNo, splitCount });
    }
    if (total === undefined) throw splitError(source.name, 'expected split.tensors.count, found none', { part: no });
    if (tensorsCount !== undefined && total !== tensorsCount) throw splitError(source.name, `expected split.tensors.count ${tensorsCount} as in part 1, found ${total}: the parts are from different splits`, { part: no, expected: tensorsCount, found: total });
    tensorsCount = total;
    parts.push({ source, header });
  }
  const tensors: GgufModelTensor[] = [];
  const where = new Map<string, number>();
  parts.forEach((p, i) => {
    for (const info of p.header.tensors) {
      const seen = where.get(info.name);
      if (seen !== undefined) throw splitError(p.source.name, `expected each tensor in one part, found ${JSON.stringify(info.name)} in parts ${seen + 1} and ${i + 1}`, { tensor: info.name });
      where.set(info.name, i);
      tensors.push({ info, part: i });
    }
  });
  if (tensors.length !== tensorsCount) throw splitError(name, `expected ${tensorsCount} tensors in all (split.tensors.count), found ${tensors.length} in the ${count} parts: a part is from another split`, { expected: tensorsCount, found: tensors.length });
  return { parts, metadata: parts[0].header.metadata, tensors };
}

/** The stored bytes of `[from, from + length)` of a tensor's data (a view or a copy from its part's source). */
export function tensorBytes(model: GgufModel, t: GgufModelTensor, from = 0, length = t.info.bytes - from): Uint8Array {
  const { source, header } = model.parts[t.part];
  return source.read(header.dataStart + t.info.offset + from, length);
}

/**
 * What `ndiff inspect model.gguf` shows of a GGUF model, as plain data (JSON-ready: 64-bit
 * integers as decimal strings): the parts, the metadata in file order with each value shortened,
 * the architecture, name and tokenizer size, and every tensor's type, dimensions and size.
 *
 * Pure code (no node, no tfjs).
 */
import { ggufText, metadataValue, type GgufArray, type GgufValue } from './header.ts';
import type { GgufModel } from './model.ts';

/** A metadata entry as shown: its key, its type (`ARRAY[STRING]` for arrays) and its value, arrays as their length and first items. */
export interface GgufMetadataSummary {
  key: string;
  type: string;
  /** A number, a decimal string for 64-bit integers, the text of a string, a boolean. Absent for arrays. */
  value?: number | string | boolean;
  /** Arrays: the number of items. */
  length?: number;
  /** Arrays: the first items (at most 8), shown as scalar values are (nested arrays as `[n items]`). */
  first?: (number | string | boolean)[];
}

/** One tensor as shown. */
export interface GgufTensorSummary {
  name: string;
  /** ggml's type name. */
  type: string;
  /** Row-major shape (ggml's dimensions, outermost first). */
  shape: number[];
  elements: number;
  bytes: number;
  /** The part holding it, from 1 (split models). */
  part: number;
}

/** A GGUF model as `ndiff inspect model.gguf --json` prints it (with `file` and `format`). */
export interface GgufSummary {
  /** The GGUF version of the (first) file. */
  version: number;
  /** The files, in split order, with their sizes. */
  parts: { file: string; bytes: number; tensors: number; alignment: number }[];
  /** `general.architecture`, `general.name`, when present. */
  architecture?: string;
  name?: string;
  /** The items of `tokenizer.ggml.tokens`, when present. */
  tokenizerTokens?: number;
  /** `tokenizer.ggml.model` (`llama`, `gpt2`), when present. */
  tokenizerModel?: string;
  tensorCount: number;
  /** Weights in all tensors. */
  elements: number;
  /** Bytes of all tensors' data. */
  tensorBytes: number;
  /** Tensors and bytes per ggml type, largest first. */
  types: { type: string; tensors: number; bytes: number }[];
  metadata: GgufMetadataSummary[];
  tensors: GgufTensorSummary[];
}

/** The longest string shown in full; longer ones are cut with an ellipsis. */
const SHOWN_CHARS = 120;

function shortText(bytes: Uint8Array): string {
  const s = ggufText(bytes);
  return s.length > SHOWN_CHARS ? `${s.slice(0, SHOWN_CHARS)}…` : s;
}

/** The shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612). */
function shortFloat32(x: number): number {
  for (let p = 1; p < 9; p++) if (Math.fround(Number(x.toPrecision(p))) === x) return Number(x.toPrecision(p));
  return x;
}

function shown(type: string, v: unknown): number | string | boolean {
  if (type === 'STRING') return shortText(v as Uint8Array);
  if (type === 'FLOAT32' && Number.isFinite(v)) return shortFloat32(v as number);
  if (typeof v === 'bigint') return v.toString();
  if (type === 'ARRAY') return `[${(v as GgufArray).items.length} items]`;
  return v as number | boolean;
}

/** `ARRAY[STRING]`, `ARRAY[ARRAY[INT32]]` (a nested array named by its first item). */
function arrayTypeName(a: GgufArray): string {
  if (a.itemType !== 'ARRAY') return `ARRAY[${a.itemType}]`;
  return a.items.length > 0 ? `ARRAY[${arrayTypeName(a.items[0] as GgufArray)}]` : 'ARRAY[ARRAY]';
}

function summarizeValue(key: string, v: GgufValue): GgufMetadataSummary {
  if (v.type !== 'ARRAY') return { key, type: v.type, value: shown(v.type, v.value) };
  const first = Array.from({ length: Math.min(8, v.items.length) }, (_, i) => shown(v.itemType, (v.items as ArrayLike<unknown>)[i]));
  return { key, type: arrayTypeName(v), length: v.items.length, first };
}

function stringValue(model: GgufModel, key: string): string | undefined {
  const v = metadataValue(model, key);
  return v?.type === 'STRING' ? ggufText(v.value) : undefined;
}

/** The summary of a model (see {@link GgufSummary}); reads nothing past the headers. */
export function summarizeGguf(model: GgufModel): GgufSummary {
  const tokens = metadataValue(model, 'tokenizer.ggml.tokens');
  const tensors = model.tensors.map((t): GgufTensorSummary => ({ name: t.info.name, type: t.info.type.name, shape: [...t.info.ne].reverse(), elements: t.info.elements, bytes: t.info.bytes, part: t.part + 1 }));
  const byType = new Map<string, { type: string; tensors: number; bytes: number }>();
  for (const t of tensors) {
    const row = byType.get(t.type) ?? { type: t.type, tensors: 0, bytes: 0 };
    row.tensors++;
    row.bytes += t.bytes;
    byType.set(t.type, row);
  }
  const architecture = stringValue(model, 'general.architecture');
  const name = stringValue(model, 'general.name');
  const tokenizerModel = stringValue(model, 'tokenizer.ggml.model');
  return {
    version: model.parts[0].header.version,
    parts: model.parts.map((p) => ({ file: p.source.name, bytes: p.header.fileSize, tensors: p.header.tensors.length, alignment: p.header.alignment })),
    ...(architecture !== undefined ? { architecture } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(tokens?.type === 'ARRAY' ? { tokenizerTokens: tokens.items.length } : {}),
    ...(tokenizerModel !== undefined ? { tokenizerModel } : {}),
    tensorCount: tensors.length,
    elements: tensors.reduce((n, t) => n + t.elements, 0),
    tensorBytes: tensors.reduce((n, t) => n + t.bytes, 0),
    types: [...byType.values()].sort((a, b) => b.bytes - a.bytes || a.type.localeCompare(b.type)),
    metadata: model.metadata.map((e) => summarizeValue(e.key, e.value)),
    tensors,
  };
}

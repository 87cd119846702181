/**
 * A second reading of the structural payload (format version 7), written from docs/FORMAT.md §17
 * alone, with §14 for what a TF.js model's tensors and frame are: it shares no code with src/
 * but the XXH hasher. It reads the document with the strict msgpack reader of spec-payload.ts,
 * checks every field and the file list `fl`, rebuilds the intermediate files from the base's
 * (a TF.js base as spec-tfjs-base.ts builds it) through the byte delta `rb` (spec-byte-delta.ts), reads them as a model and fingerprints them,
 * applies the inner value payload `pv` with the independent applier of versions 1 to 6, writes
 * the patched weights back into the files and fingerprints the target. A device maker porting
 * the rebuild to another language should get exactly these verdicts from the document alone;
 * test/format-vectors-structural.test.ts holds the reference device code to them.
 *
 * Scope: the model formats whose rebuild the vectors exercise. TF.js models are read whole
 * (float32 weights stored as float32 or quantized to uint8, uint16 or float16; int32, bool and
 * string entries in the frame); ONNX and LiteRT files are outside this reading and raise a plain
 * Error (never a verdict), so a vector that needs them cannot pass unnoticed.
 */
import type { Hasher } from '../../src/core/hasher.ts';
import { SpecError, bad, binOf, halfToFloatRef, hex, isInt, readMsgpack, specApply, specDecode, specDigest, specFingerprint, specHeader, strOf, type SpecHeader, type SpecModel } from './spec-payload.ts';
import { specByteDelta } from './spec-byte-delta.ts';
import { specTfjsDeltaBase } from './spec-tfjs-base.ts';

/** One file of a model: its path relative to the model's folder, and its bytes. */
export interface SpecFile { path: string; bytes: Uint8Array }
export type SpecFileKind = 'onnx' | 'tflite' | 'tfjs';

/** A structural payload's document, as §17 reads it. */
export interface SpecStructural extends SpecHeader {
  if: string;
  fk: SpecFileKind;
  /** The target's files, [path, length], when the payload carries `fl`. */
  fl?: [string, number][];
  rb: Uint8Array;
  pv: Uint8Array;
}

const utf8 = new TextEncoder();
const FILE_KINDS: readonly string[] = ['onnx', 'tflite', 'tfjs'];

/**
 * §17 "The file list's rules", in the section's order: the reason a list is refused, in the
 * section's words, or undefined for a sound one. `fl` is the decoded value (any msgpack value).
 */
export function specFileListProblem(fk: SpecFileKind, fl: unknown): string | undefined {
  if (fk === 'tflite') return 'fl with tflite';
  if (!Array.isArray(fl)) return 'an entry is not [string, integer 0 to 2^31 - 1]';
  if (fl.length < 1 || fl.length > 4096) return 'none or more than 4096 entries';
  let lengths = 0;
  let pathUnits = 0;
  for (const e of fl) {
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !isInt(e[1], 2 ** 31 - 1)) return 'an entry is not [string, integer 0 to 2^31 - 1]';
    lengths += e[1];
    if (lengths > 2 ** 32 - 1) return 'the lengths sum past 2^32 - 1';
  }
  const seen = new Set<string>();
  for (const [path] of fl as [string, number][]) {
    pathUnits += path.length;
    if (path.length === 0 || path.length > 255) return 'a path is empty or longer than 255 UTF-16 code units';
    if (pathUnits > 65536) return 'the paths together are longer than 65536';
    if (path.startsWith('/')) return 'a path starts with /';
    if (/[\\:\x00-\x1f\x7f]/.test(path)) return 'a path holds \\, : or a control character';
    const segments = path.split('/');
    if (segments.some((s) => s === '' || s === '.' || s === '..')) return 'an empty, . or .. segment';
    // compared without case, as every name and suffix in these rules
    const folded = segments.map((s) => s.toLowerCase());
    const last = folded[folded.length - 1];
    if (folded.some((s) => s.includes('.ndiff-')) || last.startsWith('model.json.') || last.includes('.tmp-')) return "a file of the updater's";
    // "compared without case": the list is refused when two paths are equal once case is folded.
    const key = path.toLowerCase();
    if (seen.has(key)) return 'two paths are equal compared without case';
    seen.add(key);
  }
  const paths = (fl as [string, number][]).map((e) => e[0].toLowerCase());
  if (fk === 'tfjs') {
    if (!paths[0].endsWith('.json')) return 'tfjs: the first path does not end in .json';
    if (paths.slice(1).some((p) => p.endsWith('.json'))) return 'tfjs: another path ends in .json';
  } else if (!paths[0].endsWith('.onnx')) return 'onnx: the first path does not end in .onnx';
  return undefined;
}

/**
 * §17 step 1 after the size cap: the document decoded and validated whole, `pv` with it, and
 * `pv`'s header against the document's. Refusals are SpecErrors with §7.2's classes.
 */
export function specReadStructural(bytes: Uint8Array, maxBytes = 256 * 1024 * 1024): SpecStructural {
  if (bytes.length > maxBytes) throw new SpecError('too-large', `${bytes.length} > ${maxBytes}`);
  const doc = readMsgpack(bytes);
  if (!(doc instanceof Map)) return bad('not a map');
  if (!doc.has('nd')) bad('no "nd"');
  // The version 7 entry reads only 7 (§8: decided from nd alone, before any other key).
  if (doc.get('nd') !== 7) throw new SpecError('version', String(doc.get('nd')));
  const header = specHeader(doc);
  const intermediate = hex(binOf(doc, 'if', 8));
  const fk = strOf(doc, 'fk', 256);
  if (!FILE_KINDS.includes(fk)) bad('"fk" is not onnx, tflite or tfjs');
  const kind = fk as SpecFileKind;
  let fl: [string, number][] | undefined;
  if (doc.has('fl') || kind === 'tfjs') {
    if (!doc.has('fl')) bad('"fl" is required with tfjs');
    const problem = specFileListProblem(kind, doc.get('fl'));
    if (problem) bad(`"fl": ${problem}`);
    fl = doc.get('fl') as [string, number][];
  }
  const rb = binOf(doc, 'rb');
  const pv = binOf(doc, 'pv');
  // pv is validated whole here (§7.1 step 2), as its own document: its verdicts are its own.
  const inner = specDecode(pv).header;
  if (inner.id !== header.id || inner.sq !== header.sq) bad('"pv" has another "id" or "sq"');
  if (inner.bf !== intermediate || inner.tf !== header.tf) bad('"pv" does not go from "if" to "tf"');
  // "m" is informative (2.2): the builder copies pv's into the document; a device compares nothing.
  return { ...header, if: intermediate, fk: kind, ...(fl ? { fl } : {}), rb, pv };
}

// ---------------------------------------------------------------------------------------------
// §14: a TF.js model's tensors, read from its files (the model JSON first, then its shards).

/**
 * Where a float32 weight's values lie: its group, its byte offset in the group's shards one after
 * the other, and how they are stored (float32, or §5.1's TF.js quantization: uint8 or uint16
 * codes q for fround(q × scale + min), or float16 bits).
 */
interface SpecWeightPlace { group: number; offset: number; count: number; stored: 'f32' | 'u8' | 'u16' | 'f16'; scale: number; min: number }

/** A TF.js model as §14 reads it: its tensors (float32 weights and `tfjs:frame`) and where each weight's bytes lie. */
export interface SpecTfjsModel { tensors: SpecModel; places: Map<string, SpecWeightPlace>; groupPaths: string[][] }

/** RFC 8785 canonical JSON: no whitespace, keys sorted by UTF-16 code units, strings and numbers as JSON.stringify writes them. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort(); // the default sort compares UTF-16 code units
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Bytes a manifest entry holds in its shards (-1: a dtype TF.js does not store); `data` reads the group's bytes for string entries (length-prefixed elements). */
function entryBytes(entry: Record<string, unknown>, count: number, data: Uint8Array, at: number): number {
  const q = entry.quantization as Record<string, unknown> | undefined;
  if (q !== undefined) {
    if (q.dtype === 'uint8') return count;
    if (q.dtype === 'uint16' || q.dtype === 'float16') return 2 * count;
    return -1;
  }
  if (entry.dtype === 'float32' || entry.dtype === 'int32') return 4 * count;
  if (entry.dtype === 'bool') return count;
  if (entry.dtype === 'string') {
    let n = 0;
    for (let k = 0; k < count; k++) {
      if (at + n + 4 > data.length) return data.length + 1; // past its shards
      n += 4 + (data[at + n] | (data[at + n + 1] << 8) | (data[at + n + 2] << 16)) + data[at + n + 3] * 2 ** 24;
    }
    return n;
  }
  return -1;
}

/**
 * §14 and §17's file order: reads `files` (the model JSON, then each manifest path once, in
 * manifest order) as a TF.js model. A model that cannot be read is a SpecError of class
 * `unreadable` ('target' for the intermediate; the caller picks the class for the base).
 */
export function specReadTfjs(hasher: Hasher, files: readonly SpecFile[], unreadable: 'target' | 'model'): SpecTfjsModel {
  const fault = (message: string): never => {
    throw new SpecError(unreadable, `not a TF.js model: ${message}`);
  };
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(files[0].bytes)) as Record<string, unknown>;
  } catch {
    return fault('the model JSON does not parse');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fault('the model JSON is not an object');
  const manifest = (json.weightsManifest ?? []) as { paths: unknown; weights: unknown }[];
  if (!Array.isArray(manifest)) fault('weightsManifest is not a list');
  // The files after the first are the manifest's paths, each once, in manifest order.
  const order: string[] = [];
  for (const g of manifest) {
    if (!g || !Array.isArray(g.paths) || !Array.isArray(g.weights) || !g.paths.every((p) => typeof p === 'string')) fault('a manifest group without paths or weights');
    for (const p of g.paths as string[]) if (!order.includes(p)) order.push(p);
  }
  const named = files.slice(1).map((f) => f.path);
  if (order.length !== named.length || order.some((p, i) => p !== named[i])) fault(`the model JSON names ${JSON.stringify(order)}, the files are ${JSON.stringify(named)}`);
  const byPath = new Map(files.slice(1).map((f) => [f.path, f.bytes]));
  const tensors: SpecModel = new Map();
  const places = new Map<string, SpecWeightPlace>();
  const frameEntries: { entry: Record<string, unknown>; bytes: Uint8Array }[] = [];
  manifest.forEach((g, group) => {
    const parts = (g.paths as string[]).map((p) => byPath.get(p) as Uint8Array);
    const data = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
    parts.reduce((at, b) => (data.set(b, at), at + b.length), 0);
    let at = 0;
    for (const entry of g.weights as Record<string, unknown>[]) {
      if (!entry || typeof entry.name !== 'string' || !Array.isArray(entry.shape) || !entry.shape.every((d) => isInt(d, 2 ** 32 - 1))) fault('a manifest entry without name or shape');
      const name = entry.name as string;
      const shape = entry.shape as number[];
      if (name === 'tfjs:frame') fault('an entry named tfjs:frame');
      const count = shape.reduce((x, y) => x * y, 1);
      const length = entryBytes(entry, count, data, at);
      if (length < 0) fault(`${name}: dtype ${JSON.stringify(entry.dtype)}, quantization ${JSON.stringify(entry.quantization)}`);
      if (at + length > data.length) fault(`${name} runs past its shards`);
      const bytes = data.subarray(at, at + length);
      if (entry.dtype === 'float32') {
        if (tensors.has(name)) fault(`${name} listed twice`);
        const q = entry.quantization as { dtype: string; scale?: unknown; min?: unknown } | undefined;
        const stored = q === undefined ? 'f32' : q.dtype === 'uint8' ? 'u8' : q.dtype === 'uint16' ? 'u16' : 'f16';
        const scale = q?.scale as number;
        const min = q?.min as number;
        if ((stored === 'u8' || stored === 'u16') && !(Number.isFinite(scale) && scale > 0 && Number.isFinite(min))) fault(`${name}: quantization without a positive scale and a min`);
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const value = (k: number): number =>
          stored === 'f32' ? dv.getFloat32(4 * k, true)
          : stored === 'u8' ? Math.fround(dv.getUint8(k) * scale + min)
          : stored === 'u16' ? Math.fround(dv.getUint16(2 * k, true) * scale + min)
          : halfToFloatRef(dv.getUint16(2 * k, true));
        tensors.set(name, { shape, data: Float32Array.from({ length: count }, (_, k) => value(k)) });
        places.set(name, { group, offset: at, count, stored, scale, min });
      } else frameEntries.push({ entry, bytes });
      at += length;
    }
  });
  // tfjs:frame: XXH64 of the canonical JSON with the manifest replaced by its non-float entries
  // (sorted by name in UTF-16 order), then their stored bytes; each digest byte a float32 value.
  frameEntries.sort((x, y) => ((x.entry.name as string) < (y.entry.name as string) ? -1 : (x.entry.name as string) > (y.entry.name as string) ? 1 : 0));
  const head = utf8.encode(canonicalJson({ ...json, weightsManifest: frameEntries.map((e) => e.entry) }));
  const input = new Uint8Array(head.length + frameEntries.reduce((n, e) => n + e.bytes.length, 0));
  input.set(head);
  frameEntries.reduce((at, e) => (input.set(e.bytes, at), at + e.bytes.length), head.length);
  const frame = hasher.h64(input, 0n).toString(16).padStart(16, '0');
  tensors.set('tfjs:frame', { shape: [8], data: Float32Array.from({ length: 8 }, (_, k) => parseInt(frame.slice(2 * k, 2 * k + 2), 16)) });
  return { tensors, places, groupPaths: manifest.map((g) => g.paths as string[]) };
}

/** §6.2 over a model's tensors. */
export function specModelFingerprint(hasher: Hasher, model: SpecModel): string {
  return specFingerprint(hasher, new Map([...model].map(([n, t]) => [n, specDigest(hasher, n, t.shape, t.data)])));
}

/**
 * The stored code of a patched value: the q of 0..`top` with fround(q × scale + min) = `x` (the
 * value payload's grid put it there); a value the grid cannot hold is not the target's.
 */
function gridCode(name: string, x: number, scale: number, min: number, top: number): number {
  const near = Math.round((x - min) / scale);
  for (let q = Math.max(0, near - 2); q <= Math.min(top, near + 2); q++) if (Object.is(Math.fround(q * scale + min), x)) return q;
  for (let q = 0; q <= top; q++) if (Object.is(Math.fround(q * scale + min), x)) return q;
  throw new SpecError('target', `${name}: ${x} is not a value its stored grid holds`);
}
/** Every float16 bit pattern but the NaNs, by the float32 bits of its value (so −0 and +0 differ). */
let halves: Map<number, number> | undefined;
const f32bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];
/** The float16 bits of a patched value that must be a half exactly. */
function halfCode(name: string, x: number): number {
  halves ??= new Map(Array.from({ length: 0x10000 }, (_, h) => [f32bits(halfToFloatRef(h)), h] as [number, number]).filter(([, h]) => (h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0));
  const h = halves.get(f32bits(x));
  if (h === undefined) throw new SpecError('target', `${name}: ${x} is not a float16 value`);
  return h;
}

/**
 * §17 step 7's "patched file's bytes" for TF.js: every weight's float32 values written,
 * little-endian, where §14's reading found them (a group's entries one after the other over its
 * paths' bytes); every other byte as the intermediate's.
 */
function specWriteTfjs(files: readonly SpecFile[], read: SpecTfjsModel, values: SpecModel): SpecFile[] {
  const out = files.map((f) => ({ path: f.path, bytes: f.bytes.slice() }));
  const byPath = new Map(out.slice(1).map((f) => [f.path, f.bytes]));
  for (const [name, place] of read.places) {
    const data = (values.get(name) as { data: Float32Array }).data;
    const width = place.stored === 'f32' ? 4 : place.stored === 'u8' ? 1 : 2;
    const bytes = new Uint8Array(width * data.length);
    const dv = new DataView(bytes.buffer);
    data.forEach((x, k) => {
      if (place.stored === 'f32') dv.setFloat32(4 * k, x, true);
      else if (place.stored === 'f16') dv.setUint16(2 * k, halfCode(name, x), true);
      else {
        const code = gridCode(name, x, place.scale, place.min, place.stored === 'u8' ? 255 : 65535);
        if (width === 1) dv.setUint8(k, code);
        else dv.setUint16(2 * k, code, true);
      }
    });
    // the group's byte `place.offset + j`, found in whichever of its paths holds it
    let at = place.offset;
    for (let j = 0; j < bytes.length; j++, at++) {
      let skip = at;
      for (const p of read.groupPaths[place.group]) {
        const shard = byPath.get(p) as Uint8Array;
        if (skip < shard.length) {
          shard[skip] = bytes[j];
          break;
        }
        skip -= shard.length;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// §17 "The device's checks, in order".

export interface SpecDevice {
  /** The model's format, and its files (one for ONNX and LiteRT; TF.js: the model JSON first). */
  format: SpecFileKind;
  files: readonly SpecFile[];
  /** §7.3 policy: the expected model id, the sequence recorded for it, the clock in seconds. */
  modelId?: string;
  recordedSequence?: number;
  nowSeconds?: number;
  maxPayloadBytes?: number;
}

export interface SpecRebuild {
  status: 'applied' | 'already-applied';
  /** The target's files (the device's when already applied); the first keeps the device's name. */
  files: SpecFile[];
  /** The intermediate's files, cut by `fl` (absent when already applied). */
  intermediate?: SpecFile[];
  doc: SpecStructural;
}

/** Reads the device's model as its format says, for the base check (step 3). */
function readModel(hasher: Hasher, format: SpecFileKind, files: readonly SpecFile[], unreadable: 'target' | 'model'): SpecTfjsModel {
  if (format !== 'tfjs') throw new Error(`${format} models are outside this second reading`);
  return specReadTfjs(hasher, files, unreadable);
}

/** §17's steps 1 to 7 on a device holding `device.files`; the input files are only read. */
export function specRebuild(hasher: Hasher, device: SpecDevice, payload: Uint8Array): SpecRebuild {
  // 1. size cap (signatures are outside the format), the document and pv decoded and validated whole.
  const doc = specReadStructural(payload, device.maxPayloadBytes);
  // 2. model id, a sequence below the recorded one, fk against the model's format; a payload
  // with fl for a device given a single file.
  if (device.modelId !== undefined && doc.id !== device.modelId) throw new SpecError('model', `id ${doc.id}`);
  if (device.recordedSequence !== undefined && doc.sq < device.recordedSequence) throw new SpecError('freshness', `sq ${doc.sq} below ${device.recordedSequence}`);
  if (doc.fk !== device.format) throw new SpecError('model', `fk ${doc.fk} for a ${device.format} model`);
  if (doc.fl && device.files.length === 1 && device.format !== 'tfjs') throw new SpecError('model', 'fl for a single file');
  // 3. the base: already applied, then replay and expiry, then bf.
  const base = readModel(hasher, device.format, device.files, 'model');
  const baseFingerprint = specModelFingerprint(hasher, base.tensors);
  if (baseFingerprint === doc.tf) return { status: 'already-applied', files: device.files.map((f) => ({ path: f.path, bytes: f.bytes })), doc };
  if (device.recordedSequence !== undefined && doc.sq === device.recordedSequence) throw new SpecError('freshness', `sq ${doc.sq} replayed`);
  if (doc.ex !== undefined && device.nowSeconds !== undefined && device.nowSeconds >= doc.ex) throw new SpecError('freshness', 'expired');
  if (baseFingerprint !== doc.bf) throw new SpecError('base', `${baseFingerprint} != ${doc.bf}`);
  // 4. the byte delta over the base's files one after the other (for TF.js, the model JSON's
  // manifest with its shard paths left out: spec-tfjs-base.ts); its output length L (the delta's
  // first varint) against fl before the output exists; the device's cap.
  let baseBytes: Uint8Array;
  if (device.format === 'tfjs') baseBytes = specTfjsDeltaBase(device.files);
  else {
    baseBytes = new Uint8Array(device.files.reduce((n, f) => n + f.bytes.length, 0));
    device.files.reduce((at, f) => (baseBytes.set(f.bytes, at), at + f.bytes.length), 0);
  }
  if (doc.fl) {
    let L = 0;
    for (let j = 0, b = 0x80; b >= 0x80; j++) {
      if (j === 5 || j >= doc.rb.length) bad('byte delta: truncated output length');
      b = doc.rb[j];
      L += (b & 0x7f) * 2 ** (7 * j);
    }
    if (L !== doc.fl.reduce((n, e) => n + e[1], 0)) bad('the delta\'s output length is not the sum of the "fl" lengths');
  }
  const cap = Math.min(4 * baseBytes.length + 64 * 2 ** 20, 2 ** 31 - 1);
  const rebuilt = specByteDelta(baseBytes, doc.rb, cap);
  // 5. the intermediate: cut by fl (the first file keeps the device's name), read as a model of
  // format fk and fingerprinted.
  let at = 0;
  const intermediate: SpecFile[] = doc.fl
    ? doc.fl.map(([path, length], i) => ({ path: i === 0 ? device.files[0].path : path, bytes: rebuilt.subarray(at, (at += length)) }))
    : [{ path: device.files[0].path, bytes: rebuilt }];
  const inter = readModel(hasher, doc.fk, intermediate, 'target');
  if (specModelFingerprint(hasher, inter.tensors) !== doc.if) throw new SpecError('target', 'the intermediate is not "if"');
  // 6. pv on the intermediate's tensors (its base is if; a and tf checked); tfjs:frame is read-only.
  if (specDecode(doc.pv).patches.some((p) => p.t === 'tfjs:frame')) throw new SpecError('model', 'a patch of tfjs:frame');
  const patched = specApply(hasher, inter.tensors, doc.pv).model;
  // 7. the target: the patched values written into the intermediate's files, read back and fingerprinted.
  const files = specWriteTfjs(intermediate, inter, patched);
  if (specModelFingerprint(hasher, readModel(hasher, doc.fk, files, 'target').tensors) !== doc.tf) throw new SpecError('target', 'the rebuilt files are not "tf"');
  return { status: 'applied', files, intermediate, doc };
}

/**
 * Payload test vectors for docs/FORMAT.md: tiny base models, `.ndiff` payloads built with
 * src/diff/build.ts, the exact target models and fingerprints, and invalid payloads with the error
 * an applier must raise. Regenerate (the output is deterministic; the files are committed):
 *
 *   node --import tsx test/vectors/payloads/generate.ts
 *
 * test/format-vectors.test.ts checks that this script reproduces the committed files byte for
 * byte with both hasher kinds, and that the committed vectors apply as described.
 *
 * Its parts: valid-cases.ts (the valid cases), invalid-cases.ts (one defect each),
 * model-json.ts (the model files), wide-msgpack.ts (the non-canonical writer); byte-delta.ts and
 * structural-files.ts write their own vector files.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildPayload } from '../../../src/diff/build.ts';
import { type Payload, type TensorPatch } from '../../../src/core/format.ts';
import { wireDocument } from '../../../src/core/encode.ts';
import { getHasher, type Hasher } from '../../../src/core/hasher.ts';
import { generateByteDeltaVectors } from './byte-delta.ts';
import { generateStructuralFilesVectors } from './structural-files.ts';
import { invalidPayloads, wiresOf, type BuiltCase } from './invalid-cases.ts';
import { f32Hex, hexOf, modelJson } from './model-json.ts';
import { VALID, makeBase } from './valid-cases.ts';
import { writeWideMsgpack } from './wide-msgpack.ts';

// The folder's parts, for the tests that read the vectors.
export { fromHex, f32Hex, hexF32, hexOf, modelJson, storeOf, type ModelJson } from './model-json.ts';
export type { InvalidVector } from './invalid-cases.ts';
export { writeWideMsgpack } from './wide-msgpack.ts';

// ---------------------------------------------------------------------------------------------
// Output

/** Indented JSON with arrays of numbers or strings kept on one line. */
function formatJson(v: unknown): string {
  return JSON.stringify(v, null, 1).replace(/\[\s+((?:-?[\d.e+-]+|"[^"]*")(?:,\s+(?:-?[\d.e+-]+|"[^"]*"))*)\s+\]/g, (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`) + '\n';
}

function le32(p: number): Uint8Array {
  return new Uint8Array([p & 255, (p >>> 8) & 255, (p >>> 16) & 255, p >>> 24]);
}

/** Describe a built patch for the index: what a decoder must find in it. */
function patchInfo(hasher: Hasher, p: TensorPatch): Record<string, unknown> {
  const info: Record<string, unknown> = { t: p.name, kind: p.kind, shape: p.shape, codec: p.codec };
  if (p.scale !== undefined) info.scale = p.scale;
  if (p.grid) info.grid = p.grid;
  info.baseDigest = p.baseDigest;
  info.targetDigest = p.targetDigest;
  // Codec x: the values are XOR masks, listed as their bits (read as floats, NaN bits could change).
  const masksHex = (v: Float32Array) => hexOf(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  if (p.kind === 'sparse') {
    info.coding = p.positionCoding;
    info.positions = [...p.positions];
    if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') info.masks = masksHex(p.values);
    else info.values = f32Hex(p.values);
  } else if (p.kind === 'hash') {
    info.seed = p.seed;
    info.signed = p.signed;
    info.buckets = f32Hex(p.buckets);
    const size = p.shape.reduce((a, b) => a * b, 1);
    info.firstPositions = {
      columns: ['position', 'hash', 'bucket', 'sign'],
      rows: Array.from({ length: Math.min(8, size) }, (_, i) => {
        const h = hasher.h32(le32(i), p.seed);
        return [i, h, (h >>> 1) % p.buckets.length, p.signed && h & 1 ? -1 : 1];
      }),
    };
  } else if (p.kind === 'lowrank') {
    info.rank = p.rank;
    info.u = f32Hex(p.u);
    info.v = f32Hex(p.v);
  } else if (p.kind === 'composite') {
    info.rank = p.rank;
    info.u = f32Hex(p.u);
    info.v = f32Hex(p.v);
    info.coding = p.positionCoding;
    info.positions = [...p.positions];
    info.sparseCodec = p.sparseCodec;
    if (p.sparseScale !== undefined) info.sparseScale = p.sparseScale;
    info.values = f32Hex(p.values);
  } else if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') info.masks = masksHex(p.values);
  else info.values = f32Hex(p.values);
  if (p.kind === 'composite' && p.dense) {
    delete info.u;
    delete info.v;
    info.rank = 0;
    info.dense = f32Hex(p.dense);
  }
  if ((p.kind === 'lowrank' || p.kind === 'composite') && p.lowbitFactors) info.lowbitFactors = { widths: [...p.lowbitFactors.widths], exponent: p.lowbitFactors.exponent, scales: [...p.lowbitFactors.scales].map((h) => h.toString(16).padStart(4, '0')) };
  if (p.kind === 'dense' && p.replace) info.replace = true;
  if (p.lowbit) info.lowbit = { bits: p.lowbit.bits, group: p.lowbit.group, exponent: p.lowbit.exponent, scales: [...p.lowbit.scales].map((h) => h.toString(16).padStart(4, '0')) };
  return info;
}

/**
 * Every file of the folder (name -> bytes), built from src/diff/build.ts with `hasher`.
 * Deterministic: the same bytes on every run and with either hasher kind.
 */
export function generatePayloadVectors(hasher: Hasher): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const utf8 = new TextEncoder();
  const json = (name: string, v: unknown) => files.set(name, utf8.encode(formatJson(v)));
  const built = new Map<string, BuiltCase>();
  const valid: Record<string, unknown>[] = [];

  VALID.forEach((c, index) => {
    const base = makeBase(index + 1, c.tensors);
    const b = buildPayload(hasher, base, c.specs, c.header);
    const target = base.clone();
    for (const [n, v] of b.targetValues) target.values(n).set(v);
    built.set(c.name, { bytes: b.bytes, payload: b.payload, base });
    files.set(`${c.name}.ndiff`, b.bytes);
    json(`${c.name}.base.json`, modelJson(hasher, base));
    json(`${c.name}.target.json`, modelJson(hasher, target));
    const h = b.payload.header;
    valid.push({
      name: c.name,
      description: c.description,
      base: `${c.name}.base.json`,
      payload: `${c.name}.ndiff`,
      target: `${c.name}.target.json`,
      bytes: b.bytes.length,
      header: {
        nd: h.version, m: h.method, id: h.modelId, bf: h.baseFingerprint, tf: h.targetFingerprint, sq: h.sequence, bb: h.budgetBytes, cb: h.createdBy,
        ...(h.createdAt !== undefined ? { ct: h.createdAt } : {}),
        ...(h.expiresAt !== undefined ? { ex: h.expiresAt } : {}),
        ...(h.meta !== undefined ? { x: h.meta } : {}),
      },
      patches: b.payload.patches.map((p) => patchInfo(hasher, p)),
    });
  });

  // The i8 case again, in the widest msgpack encodings, reversed key order and unknown keys.
  {
    const c = built.get('sparse-i8') as { payload: Payload };
    const wires = wiresOf(c.payload).map((w) => ({ ...w, zq: 'ignored: unknown patch key' }));
    const doc = { ...wireDocument(c.payload.header, wires), zz: { future: [1, 2.5, null, true], note: 'unknown keys are ignored' } };
    const bytes = writeWideMsgpack(doc);
    files.set('alt-encoding.ndiff', bytes);
    valid.push({
      name: 'alt-encoding',
      description:
        'The sparse-i8 payload written with the widest msgpack encodings (map16, str8 keys, str16 strings, uint64 integers, float64 scale, bin32, array16), keys in reverse order, and unknown keys "zz" (top level) and "zq" (in the patch). It must decode to the same payload as sparse-i8 and apply to the same target; the reference encoder re-encodes it to exactly sparse-i8.ndiff.',
      base: 'sparse-i8.base.json',
      payload: 'alt-encoding.ndiff',
      target: 'sparse-i8.target.json',
      bytes: bytes.length,
      sameAs: 'sparse-i8',
    });
  }

  // A version 1 document that carries a "g" key: v1 ignores unknown keys, so no rounding happens.
  {
    const c = built.get('sparse-gaps-f32') as { payload: Payload };
    const wires = wiresOf(c.payload).map((w) => ({ ...w, g: { d: 'u8', sc: new Uint8Array(8).fill(0x3f), mn: new Uint8Array(8) } }));
    // wireDocument refuses a grid under a v1 header (the encoder never writes one): add the key after.
    const doc = { ...wireDocument(c.payload.header, []), p: wires };
    const withKey = writeWideMsgpack(doc);
    files.set('v1-grid-ignored.ndiff', withKey);
    valid.push({
      name: 'v1-grid-ignored',
      description:
        'The sparse-gaps-f32 payload (version 1) with a "g" key added to its patch (written with wide msgpack encodings): a version 1 document ignores unknown keys, "g" included, so it decodes to the sparse-gaps-f32 payload and applies to exactly its target, unrounded.',
      base: 'sparse-gaps-f32.base.json',
      payload: 'v1-grid-ignored.ndiff',
      target: 'sparse-gaps-f32.target.json',
      bytes: withKey.length,
      sameAs: 'sparse-gaps-f32',
    });
  }

  // Invalid payloads: one defect each.
  const { files: invalidFiles, invalid } = invalidPayloads(hasher, built);
  for (const [name, bytes] of invalidFiles) files.set(name, bytes);

  json('vectors.json', {
    description:
      'Payload format v1 to v6 test vectors (docs/FORMAT.md; v2 adds storage grids, the "grid-*" cases, and codec x; v3 codec xr; v4 codec xs, exact stored bits; v5 the composite patch kind c, the "composite-*" cases; v6 codec l, low-bit codes with scales per group, the "lowbit-*" cases, whose patches list "lowbit": bits, group, exponent and the scales as float16 hex, and on low-rank factors "lowbitFactors": a width a direction, exponent and scales). Models: { fingerprint, tensors: { name: { shape, digest, values } } } with values the hex of the little-endian float32 bytes. Fingerprints and digests are 16 lowercase hex digits of the xxh64 value. For every valid case, applying payload to base gives exactly target (status "applied"), and applying it to target gives "already-applied". Patch "values"/"buckets" are the decoded float32 values (hex, little-endian); codec x, xr and xs patches list "masks" instead, the XOR masks as little-endian uint32 hex (for xs, masks of the stored codes). Invalid cases: "stage" decode means the decoder refuses the bytes alone; apply means it decodes and applying it to base is refused, leaving base unchanged. Regenerate with: node --import tsx test/vectors/payloads/generate.ts',
    valid,
    invalid,
  });
  for (const [name, bytes] of generateByteDeltaVectors()) files.set(name, bytes);
  for (const [name, bytes] of generateStructuralFilesVectors(hasher)) files.set(name, bytes);
  return files;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const hasher = await getHasher();
  const files = generatePayloadVectors(hasher);
  const dir = new URL('./', import.meta.url);
  for (const [name, bytes] of files) writeFileSync(new URL(name, dir), bytes);
  console.log(`wrote ${files.size} files with the ${hasher.kind} hasher`);
}

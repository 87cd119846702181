/**
 * Pairs of GGUF models of one layout for the GGUF payload tests and figures, made at test time
 * from the committed fixtures (test/vectors/gguf/): a seeded share of each tensor's ggml blocks
 * with some bytes changed (as a fine-tune re-quantized changes some blocks and keeps the rest),
 * and metadata values changed where the header keeps its length (`llama.context_length`, a
 * float), written back with src/io/gguf/write.ts. Deterministic: the same seed, the same bytes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../../src/core/random.ts';
import { bytesSource, readGgufHeader, type GgufHeader, type GgufMetadataEntry } from '../../src/io/gguf/header.ts';
import { ggufFileChunks } from '../../src/io/gguf/write.ts';

/** The committed GGUF fixtures' folder. */
export const GGUF_VECTORS = join(import.meta.dirname, '..', 'vectors', 'gguf');

/** A fixture's bytes. */
export function ggufFixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(GGUF_VECTORS, name)));
}

/** How a pair's target differs from its base. */
export interface PerturbOptions {
  /** Share of each tensor's blocks changed (0 to 1). */
  blockShare?: number;
  /** Bytes changed in a changed block (at most its size). */
  bytesPerBlock?: number;
  /** Change `llama.context_length` and `llama.attention.layer_norm_rms_epsilon` (the header keeps its length). */
  metadata?: boolean;
  seed?: number;
}

/** `header` with two fixed-size metadata values changed (same length, so the same layout). */
function withMetadataChanged(header: GgufHeader): GgufHeader {
  const metadata: GgufMetadataEntry[] = header.metadata.map((e) => {
    if (e.key === 'llama.context_length' && e.value.type === 'UINT32') return { key: e.key, value: { type: 'UINT32', value: e.value.value * 2 } };
    if (e.key === 'llama.attention.layer_norm_rms_epsilon' && e.value.type === 'FLOAT32') return { key: e.key, value: { type: 'FLOAT32', value: Math.fround(e.value.value * 10) } };
    return e;
  });
  return { ...header, metadata };
}

/**
 * The target of a pair: `base` with a seeded share of each tensor's blocks perturbed (some of
 * their bytes XORed with nonzero values) and, with `metadata`, two metadata values changed.
 */
export function perturbGguf(base: Uint8Array, o: PerturbOptions = {}): Uint8Array {
  const random = seededRandom(o.seed ?? 1);
  const header = readGgufHeader(bytesSource(base));
  const out = new Uint8Array(base.length);
  let at = 0;
  for (const chunk of ggufFileChunks(o.metadata ? withMetadataChanged(header) : header, bytesSource(base))) {
    out.set(chunk, at);
    at += chunk.length;
  }
  if (at !== base.length) throw new Error(`the rewritten file is ${at} bytes, the base ${base.length}: the metadata change moved the data`);
  const share = o.blockShare ?? 0.1;
  for (const t of header.tensors) {
    const size = t.type.typeSize;
    for (let b = 0; b < t.bytes / size; b++) {
      if (random() >= share) continue;
      const n = Math.min(size, o.bytesPerBlock ?? 4);
      for (let k = 0; k < n; k++) {
        const i = header.dataStart + t.offset + b * size + Math.floor(random() * size);
        out[i] ^= 1 + Math.floor(random() * 255);
      }
    }
  }
  return out;
}

/**
 * A generated pair of large GGUF models for the apply and diff benchmarks: v1 a Q8_0 model of
 * about `mib` MiB in tensors of 64 MiB whose data section is left as holes (a sparse file: it
 * costs no disk and reads as zeros), v2 a sparse copy with `share` of its blocks changed in runs
 * of 64 blocks, spread evenly with a seeded jitter: each changed block rewritten with random bytes
 * (`bytesPerBlock` absent: a block re-quantized) or with that many of its bytes changed (a
 * fine-tune that moved a few codes). Every float16 scale written stays small and finite.
 * Deterministic: the same options give the same files.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { seededRandom } from '../src/core/random.ts';
import { GGUF_DEFAULT_ALIGNMENT, padTo } from '../src/io/gguf/header.ts';
import { ggmlTypeByName } from '../src/io/gguf/types.ts';
import { encodeGgufHeader } from '../src/io/gguf/write.ts';

/** What to generate. */
export interface GeneratedPairOptions {
  mib: number;
  /** Share of all blocks changed in v2 (0 to 1). */
  share: number;
  /** Bytes changed in each changed block (absent: the whole block rewritten). */
  bytesPerBlock?: number;
  seed?: number;
}

/** The two files written and what they hold. */
export interface GeneratedPair {
  v1: string;
  v2: string;
  /** v1's size in bytes (v2's too). */
  size: number;
  tensors: number;
  blocks: number;
  changedBlocks: number;
  /** One line saying what the pair is. */
  description: string;
}

/** Write `v1.gguf` and `v2.gguf` into `dir` (module doc). */
export function writeGeneratedQ8Pair(dir: string, o: GeneratedPairOptions): GeneratedPair {
  const q8 = ggmlTypeByName('Q8_0')!;
  const perTensor = Math.floor((64 << 20) / q8.typeSize);
  const tensorBytes = perTensor * q8.typeSize;
  const count = Math.max(1, Math.round((o.mib * 2 ** 20) / tensorBytes));
  const tensors = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    tensors.push({ name: `blk.${i}.weight`, ne: [q8.blockSize * perTensor], type: q8, offset });
    offset = padTo(offset + tensorBytes, GGUF_DEFAULT_ALIGNMENT);
  }
  const header = encodeGgufHeader({ version: 3, metadata: [], tensors });
  const dataStart = padTo(header.length, GGUF_DEFAULT_ALIGNMENT);
  const size = dataStart + offset;
  const v1 = path.join(dir, 'v1.gguf');
  let fd = openSync(v1, 'w');
  writeSync(fd, header);
  ftruncateSync(fd, size);
  closeSync(fd);
  const v2 = path.join(dir, 'v2.gguf');
  execFileSync('cp', ['--sparse=always', v1, v2]);
  const random = seededRandom(o.seed ?? 7);
  const blocks = (offset / q8.typeSize) | 0;
  const runBlocks = 64;
  const runsWanted = Math.max(1, Math.round((blocks * o.share) / runBlocks));
  const stride = Math.floor(blocks / runsWanted);
  const run = new Uint8Array(runBlocks * q8.typeSize);
  fd = openSync(v2, 'r+');
  for (let k = 0; k < runsWanted; k++) {
    run.fill(0);
    for (let b = 0; b < runBlocks; b++) {
      const at = b * q8.typeSize;
      if (o.bytesPerBlock === undefined) for (let i = 0; i < q8.typeSize; i++) run[at + i] = Math.floor(random() * 256);
      else for (let c = 0; c < o.bytesPerBlock; c++) run[at + Math.floor(random() * q8.typeSize)] = 1 + Math.floor(random() * 255);
      // The block's float16 scale finite and small.
      run[at + 1] = 0x2c + (run[at + 1] & 7);
    }
    const first = k * stride + Math.floor(random() * Math.max(1, stride - runBlocks));
    writeSync(fd, run, 0, run.length, dataStart + first * q8.typeSize);
  }
  closeSync(fd);
  const changed = runsWanted * runBlocks;
  const how = o.bytesPerBlock === undefined ? 'rewritten' : `each with its scale and ${o.bytesPerBlock} other bytes changed`;
  return {
    v1, v2, size, tensors: count, blocks, changedBlocks: changed,
    description: `${(size / 2 ** 20).toFixed(0)} MiB Q8_0 (${count} tensors), ${runsWanted} runs of ${runBlocks} blocks ${how} (${((100 * changed) / blocks).toFixed(1)}% of ${blocks} blocks)`,
  };
}

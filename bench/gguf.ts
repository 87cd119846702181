/**
 * GGUF block payloads (format v8) against general binary diff tools: for each pair of GGUF
 * models of one layout, the payload's bytes (each chunk coded the smaller way), the payload with
 * every chunk a byte delta (§16) and with every chunk the XOR of the base and target bytes
 * range-coded (one adaptive byte model, codec `xr`'s coder), and the patches of `zstd -19 --long=27 --patch-from=v1 v2` and `bsdiff v1 v2 patch`
 * (the Debian packages). Pairs: the committed fixtures with a seeded share of their blocks and two
 * metadata values changed (test/helpers/gguf-pairs.ts), the one real pair the fixtures hold
 * (tiny-llama-q8_0.gguf written as GGUF v3 and as v2 by gguf-py: one header byte), and a
 * generated Q8_0 and Q4_K model of at least `--mib` MiB (whole tensors of 4 MiB) with 1% of their
 * blocks changed; and the real fine-tunes `bench/llm/make-pairs.sh` makes (llama.cpp's converter
 * and quantizer; `--pairs DIR`, default `~/.cache/neural-diff/llm-pairs/gguf` when it exists): v1
 * to v2, v2 to v3 and v1 to v3 at every type made, and v1 to the merged LoRA (a pair laid out
 * differently is listed with the reason, its new file shipped whole).
 *
 *   npm run bench:gguf -- [--mib 16] [--pairs DIR]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { seededRandom } from '../src/core/random.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { diffGgufModels, ggufLayoutDifference } from '../src/io/gguf/diff.ts';
import type { GgufChunkCoding } from '../src/io/gguf/payload.ts';
import { ggmlTypeByName } from '../src/io/gguf/types.ts';
import { buildGguf } from '../src/io/gguf/write.ts';
import { ggufFixture, perturbGguf } from '../test/helpers/gguf-pairs.ts';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const mib = Number(arg('--mib') ?? 16);
const hasher = await getHasher();
const work = mkdtempSync(path.join(tmpdir(), 'ndiff-bench-gguf-'));

/** A generated model of about `bytes` bytes of one type, random blocks (a finite float16 scale each), in tensors of 4 MiB. */
function generated(typeName: string, bytes: number, seed: number): Uint8Array {
  const type = ggmlTypeByName(typeName)!;
  const random = seededRandom(seed);
  const tensors = [];
  const perTensor = Math.floor((4 << 20) / type.typeSize);
  for (let i = 0; i * perTensor * type.typeSize < bytes; i++) {
    const data = new Uint8Array(perTensor * type.typeSize);
    for (let k = 0; k < data.length; k++) data[k] = Math.floor(random() * 256);
    // Each block's float16 scales kept finite and small (exponent bits 0x2c..0x33).
    for (let b = 0; b < perTensor; b++) {
      const at = b * type.typeSize;
      data[at + 1] = 0x2c + (data[at + 1] & 7);
      if (typeName === 'Q4_K') data[at + 3] = 0x2c + (data[at + 3] & 7);
    }
    tensors.push({ name: `blk.${i}.weight`, ne: [type.blockSize * perTensor], type, data });
  }
  return buildGguf({ metadata: [], tensors });
}

function tool(cmd: string, args: string[], out: string): number {
  execFileSync(cmd, args, { stdio: 'ignore', maxBuffer: 1 << 30 });
  return statSync(out).size;
}

interface Row {
  pair: string;
  modelBytes: number;
  changed: number;
  payload: number;
  byteDelta: number;
  xor: number;
  zstd: number;
  bsdiff: number;
}

function measure(name: string, v1: Uint8Array, v2: Uint8Array): Row {
  const a = path.join(work, 'v1.gguf');
  const b = path.join(work, 'v2.gguf');
  writeFileSync(a, v1);
  writeFileSync(b, v2);
  const made = (chunkCoding: GgufChunkCoding) => diffGgufModels(hasher, ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'bench', sequence: 1, createdBy: 'bench', chunkCoding });
  const r = made('smaller');
  const z = path.join(work, 'p.zst');
  const zstd = tool('zstd', ['-q', '-f', '-19', '--long=27', `--patch-from=${a}`, b, '-o', z], z);
  const bs = path.join(work, 'p.bsdiff');
  const bsdiff = tool('bsdiff', [a, b, bs], bs);
  return { pair: name, modelBytes: v1.length, changed: r.changedBytes, payload: r.payload.length, byteDelta: made('byte-delta').payload.length, xor: made('xor').payload.length, zstd, bsdiff };
}

const rows: Row[] = [];
for (const f of ['tiny-llama-f32.gguf', 'tiny-llama-f16.gguf', 'tiny-llama-q8_0.gguf', 'tiny-llama-q4_0.gguf', 'tiny-llama-q4_k_m.gguf', 'tiny-llama-q6_k.gguf']) {
  const v1 = ggufFixture(f);
  rows.push(measure(`${f}, 5% of blocks + 2 metadata values`, v1, perturbGguf(v1, { blockShare: 0.05, metadata: true, seed: 1 })));
}
rows.push(measure('tiny-llama-q8_0.gguf -> tiny-llama-q8_0-v2.gguf (real: gguf-py, version 3 -> 2)', ggufFixture('tiny-llama-q8_0.gguf'), ggufFixture('tiny-llama-q8_0-v2.gguf')));
for (const t of ['Q8_0', 'Q4_K']) {
  const v1 = generated(t, mib << 20, 5);
  rows.push(measure(`generated ${t}, ${v1.length >> 20} MiB, 1% of blocks (4 bytes each)`, v1, perturbGguf(v1, { blockShare: 0.01, bytesPerBlock: 4, seed: 9 })));
  rows.push(measure(`generated ${t}, ${v1.length >> 20} MiB, 1% of blocks (whole block)`, v1, perturbGguf(v1, { blockShare: 0.01, bytesPerBlock: 10_000, seed: 9 })));
}
// The real fine-tunes, when made.
const pairs = arg('--pairs') ?? path.join(homedir(), '.cache/neural-diff/llm-pairs/gguf');
const refused: string[] = [];
if (existsSync(pairs)) {
  for (const t of ['q8_0', 'q4_0', 'q4_k_m', 'f16']) {
    const file = (v: string) => path.join(pairs, `${v}-${t}.gguf`);
    for (const [from, to] of [['v1', 'v2'], ['v2', 'v3'], ['v1', 'v3'], ['v1', 'lora']]) {
      if (!existsSync(file(from)) || !existsSync(file(to))) continue;
      const v1 = new Uint8Array(readFileSync(file(from)));
      const v2 = new Uint8Array(readFileSync(file(to)));
      const name = `real ${t.toUpperCase()}: ${from} -> ${to}`;
      const differs = ggufLayoutDifference(ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)));
      if (differs) refused.push(`${name}: laid out differently (${differs}), shipped whole`);
      else rows.push(measure(name, v1, v2));
    }
  }
} else console.error(`no real pairs in ${pairs}: make them with bench/llm/make-pairs.sh (or give --pairs DIR)`);
rmSync(work, { recursive: true, force: true });
console.log('| pair | model bytes | changed range bytes | payload (each chunk the smaller) | chunks as byte deltas | chunks as XOR, range-coded | zstd -19 --long=27 --patch-from | bsdiff |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.pair} | ${r.modelBytes} | ${r.changed} | **${r.payload}** | ${r.byteDelta} | ${r.xor} | ${r.zstd} | ${r.bsdiff} |`);
for (const r of refused) console.log(`- ${r}`);

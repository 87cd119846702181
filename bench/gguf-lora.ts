/**
 * The merged LoRA fine-tune of the real LLM pairs (`bench/llm/make-pairs.sh`) shipped two ways:
 * its LoRA adapter (convert_lora_to_gguf.py's F16 GGUF, which llama.cpp applies at run time on
 * the base), or neural-diff's exact payload from v1 to the merged model (which turns v1's file
 * into the merged file byte for byte, so a runtime that cannot load adapters, wllama's, runs it).
 * For each type made (F16, Q8_0, Q4_0, Q4_K_M): the bytes sent (the adapter, the adapter after
 * `zstd -19`, the payload, the whole merged file), and, through llama.cpp (node-llama-cpp, one
 * thread) on held-out text, the quality of each against the merged model of that type: v1 alone,
 * v1 with the adapter applied at run time, and v1 patched by the payload (with
 * `applyToGgufFile`, checked equal to the merged file) - mean KL(merged || x), greedy next-token
 * agreement, perplexity. The adapter on a quantized base is not the merged-then-quantized model;
 * the payload is. For the quantized types, both are also measured against the merged F16 model
 * (the fine-tune before quantization).
 *
 *   npm run bench:gguf-lora -- [--pairs DIR] [--texts fortunes,bible] [--max-tokens 4096] [--quick]
 *
 * `--quick`: Q8_0 and Q4_0 only, fortunes only, 1024 tokens. node-llama-cpp is looked for as
 * `ndiff measure` looks for it (`NEURAL_DIFF_LLAMA_DIR`, docs/cli/measure.md).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { applyToGgufFile } from '../src/io/gguf/in-place.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { measureGguf, type GgufModelMeasure } from '../src/front/measure/gguf-runtime.ts';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const quick = process.argv.includes('--quick');
const root = arg('--pairs') ?? path.join(homedir(), '.cache/neural-diff/llm-pairs');
const gguf = path.join(root, 'gguf');
const adapter = path.join(gguf, 'lora-adapter-f16.gguf');
const types = quick ? ['q8_0', 'q4_0'] : ['f16', 'q8_0', 'q4_0', 'q4_k_m'];
const texts = (arg('--texts') ?? (quick ? 'fortunes' : 'fortunes,bible')).split(',');
const maxTokens = Number(arg('--max-tokens') ?? (quick ? 1024 : 4096));

if (!existsSync(adapter)) {
  console.error(`no LoRA adapter at ${adapter}: make the pairs and the adapter with bench/llm/make-pairs.sh (or give --pairs DIR, the folder holding gguf/ and held-out/)`);
  process.exit(2);
}
const hasher = await getHasher();
const work = mkdtempSync(path.join(tmpdir(), 'ndiff-bench-gguf-lora-'));
const zstd = (file: string) => {
  const out = path.join(work, 'z.zst');
  execFileSync('zstd', ['-q', '-f', '-19', file, '-o', out], { stdio: 'ignore' });
  return statSync(out).size;
};

interface Sizes {
  type: string;
  adapter: number;
  adapterZstd: number;
  payload: number;
  whole: number;
  wholeZstd: number;
}
interface Quality {
  type: string;
  text: string;
  positions: number;
  merged: GgufModelMeasure;
  base: GgufModelMeasure;
  withAdapter: GgufModelMeasure;
  patched: GgufModelMeasure;
  /** Quantized types: the payload's model (the merged file) and v1 + adapter against the merged F16 model. */
  vsF16?: { patched: GgufModelMeasure; withAdapter: GgufModelMeasure };
}
const sizes: Sizes[] = [];
const quality: Quality[] = [];
const adapterBytes = statSync(adapter).size;
const adapterZstd = zstd(adapter);
try {
  for (const type of types) {
    const v1 = path.join(gguf, `v1-${type}.gguf`);
    const merged = path.join(gguf, `lora-${type}.gguf`);
    if (!existsSync(v1) || !existsSync(merged)) {
      console.error(`skipping ${type.toUpperCase()}: ${v1} or ${merged} is missing`);
      continue;
    }
    const v1Bytes = new Uint8Array(readFileSync(v1));
    const mergedBytes = new Uint8Array(readFileSync(merged));
    const r = diffGgufModels(hasher, ggufModelOf(bytesSource(v1Bytes)), ggufModelOf(bytesSource(mergedBytes)), { modelId: 'neural-diff-pairs', sequence: 2, createdBy: 'bench', chunkCoding: 'smaller' });
    // v1 patched by the device's own applier, in place, then checked against the merged file.
    const patched = path.join(work, `v1-${type}-patched.gguf`);
    copyFileSync(v1, patched);
    const payloadFile = path.join(work, `v1-lora-${type}.ndiff`);
    writeFileSync(payloadFile, r.payload);
    await applyToGgufFile(patched, payloadFile, { state: null, hasher });
    if (!Buffer.from(readFileSync(patched)).equals(Buffer.from(mergedBytes))) throw new Error(`${patched}: the payload applied to v1-${type}.gguf does not give lora-${type}.gguf byte for byte`);
    sizes.push({ type: type.toUpperCase(), adapter: adapterBytes, adapterZstd, payload: r.payload.length, whole: mergedBytes.length, wholeZstd: zstd(merged) });
    for (const text of texts) {
      const evalText = path.join(root, 'held-out', `${text}.txt`);
      console.error(`${type.toUpperCase()}, ${text}: measuring v1, v1 + adapter and v1 patched against lora-${type}.gguf on ${maxTokens} tokens`);
      const m = await measureGguf({ target: merged, base: v1, models: [{ file: v1, lora: adapter }, patched], eval: evalText, maxTokens, threads: 1 });
      const [mergedRow, baseRow, adapterRow, patchedRow] = m.models;
      const row: Quality = { type: type.toUpperCase(), text, positions: m.positions, merged: mergedRow, base: baseRow, withAdapter: adapterRow, patched: patchedRow };
      const mergedF16 = path.join(gguf, 'lora-f16.gguf');
      if (type !== 'f16' && existsSync(mergedF16)) {
        // Which is nearer the unquantized fine-tune: the fine-tune quantized (what the payload gives) or the quantized base with the F16 adapter?
        const f16 = await measureGguf({ target: mergedF16, models: [patched, { file: v1, lora: adapter }], eval: evalText, maxTokens, threads: 1 });
        row.vsF16 = { patched: f16.models[1], withAdapter: f16.models[2] };
      }
      quality.push(row);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const f = (x: number, d: number) => x.toFixed(d);
console.log(`Bytes sent to turn v1 into the LoRA fine-tune (adapter: ${path.basename(adapter)}, convert_lora_to_gguf.py --outtype f16, one file for every base type):\n`);
console.log('| type | LoRA adapter (F16 GGUF) | adapter, zstd -19 | neural-diff payload v1 -> merged | whole merged file | whole file, zstd -19 |');
console.log('|---|---|---|---|---|---|');
for (const s of sizes) console.log(`| ${s.type} | ${s.adapter} | ${s.adapterZstd} | **${s.payload}** | ${s.whole} | ${s.wholeZstd} |`);
console.log(`\nQuality against the merged model of the same type, through llama.cpp (node-llama-cpp, 1 thread), up to ${maxTokens} tokens of held-out text (KL = mean KL(merged || x), nats a token; agreement = share of greedy next tokens equal to the merged model's):\n`);
console.log('| type | text | positions | merged ppl | v1: KL / agreement / ppl | v1 + adapter at run time: KL / agreement / ppl | v1 patched by the payload: KL / agreement / ppl |');
console.log('|---|---|---|---|---|---|---|');
const cell = (r: GgufModelMeasure) => `${r.meanKl === 0 ? 0 : r.meanKl.toExponential(2)} / ${f(r.agreement * 100, 1)}% / ${f(r.perplexity, 2)}`;
for (const q of quality) console.log(`| ${q.type} | ${q.text} | ${q.positions} | ${f(q.merged.perplexity, 2)} | ${cell(q.base)} | ${cell(q.withAdapter)} | **${cell(q.patched)}** |`);
console.log('\nThe same two against the merged F16 model (the fine-tune before quantization):\n');
console.log('| type | text | merged TYPE (v1 patched by the payload): KL / agreement | v1-TYPE + F16 adapter at run time: KL / agreement |');
console.log('|---|---|---|---|');
const near = (r: GgufModelMeasure) => `${r.meanKl.toExponential(2)} / ${f(r.agreement * 100, 1)}%`;
for (const q of quality) if (q.vsF16) console.log(`| ${q.type} | ${q.text} | ${near(q.vsF16.patched)} | ${near(q.vsF16.withAdapter)} |`);

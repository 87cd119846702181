/**
 * A LoRA adapter beside its merged fine-tune: bench/llm/train_pairs.py writes the adapter in the
 * PEFT layout llama.cpp's convert_lora_to_gguf.py reads (checked on a small random LLaMA: the names,
 * the shapes, and that merging adds exactly alpha / r * B A of the saved tensors), the converter's
 * output is a LoRA adapter GGUF, and measureGguf applies one at run time (the real LLM pairs of
 * bench/llm/make-pairs.sh) and refuses a file that is not one. The parts that need the Python
 * virtualenv, llama.cpp's source, the pairs or node-llama-cpp skip, saying which, when absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ModelFormatError } from '../src/core/errors.ts';
import { openGgufModel } from '../src/io/gguf/files.ts';
import { ggufText, metadataValue } from '../src/io/gguf/header.ts';
import { measureGguf } from '../src/front/measure/gguf-runtime.ts';
import { tempDir } from './helpers/dirs.ts';
import { llamaForTests } from './helpers/llama.ts';

const root = join(import.meta.dirname, '..');
const cache = process.env.NEURAL_DIFF_CACHE ?? join(homedir(), '.cache', 'neural-diff');
const python = join(cache, 'py', 'bin', 'python');
const converter = join(cache, 'llama.cpp-src', 'convert_lora_to_gguf.py');
const pairs = join(cache, 'llm-pairs');
const stories = join(root, 'test', 'vectors', 'gguf', 'stories');

const venvSkip = (() => {
  if (!existsSync(python)) return `no Python virtualenv at ${python}: bench/llm/make-pairs.sh makes it`;
  const r = spawnSync(python, ['-c', 'import torch, transformers, safetensors'], { encoding: 'utf8' });
  return r.status === 0 ? false : `the virtualenv ${python} lacks torch, transformers or safetensors: bench/llm/make-pairs.sh installs them`;
})();

// A small random LLaMA, a LoRA of every target with B set nonzero (training starts it at 0), the
// adapter saved by train_pairs.save_adapter, then merged; prints what the test checks.
const PEFT_SCRIPT = `
import json, os, sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM
import train_pairs as tp
out = sys.argv[2]
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False))
model.save_pretrained(os.path.join(out, 'hf', 'v1'))
g = torch.Generator().manual_seed(1)
adapters = [(m, tp.LoraLinear(lin, tp.LORA_RANK, tp.LORA_ALPHA, g)) for m, lin in tp.lora_targets(model)]
with torch.no_grad():
    for _, ad in adapters:
        ad.b.normal_(generator=g)
before = {k: v.clone() for k, v in model.state_dict().items()}
tp.save_adapter(adapters, out, 'v1', 'a test adapter')
for _, ad in adapters:
    ad.merge()
after = model.state_dict()
folder = os.path.join(out, 'hf', 'lora-adapter')
config = json.load(open(os.path.join(folder, 'adapter_config.json')))
saved = load_file(os.path.join(folder, 'adapter_model.safetensors'))
worst, changed = 0.0, 0.0
for name, a in saved.items():
    if '.lora_A.' in name:
        b = saved[name.replace('.lora_A.', '.lora_B.')]
        w = name.replace('base_model.model.', '').replace('.lora_A.weight', '.weight')
        delta = after[w] - before[w]
        changed = max(changed, delta.abs().max().item())
        worst = max(worst, (delta - config['lora_alpha'] / config['r'] * (b @ a)).abs().max().item())
print(json.dumps({'config': config, 'shapes': {k: list(v.shape) for k, v in saved.items()}, 'worst': worst, 'changed': changed}))
`;

test('train_pairs.py writes the LoRA as a PEFT adapter: its names, shapes and scale give the merged weights; convert_lora_to_gguf.py makes a LoRA adapter GGUF of it', { skip: venvSkip }, async (t) => {
  const dir = await tempDir('ndiff-lora-adapter-');
  try {
    // No __pycache__ left in bench/llm by the import.
    const r = spawnSync(python, ['-c', PEFT_SCRIPT, join(root, 'bench', 'llm'), dir], { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { config: Record<string, unknown>; shapes: Record<string, number[]>; worst: number; changed: number };
    assert.equal(got.config.r, 8);
    assert.equal(got.config.lora_alpha, 16);
    assert.equal(got.config.peft_type, 'LORA');
    assert.equal(got.config.base_model_name_or_path, join(dir, 'hf', 'v1'));
    assert.deepEqual(got.config.target_modules, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    // PEFT's names and shapes: lora_A is r x in, lora_B is out x r (hidden 32, intermediate 48).
    const expected: Record<string, number[]> = {};
    for (let layer = 0; layer < 2; layer++) {
      for (const [part, name, inF, outF] of [['self_attn', 'q_proj', 32, 32], ['self_attn', 'k_proj', 32, 32], ['self_attn', 'v_proj', 32, 32], ['self_attn', 'o_proj', 32, 32], ['mlp', 'gate_proj', 32, 48], ['mlp', 'up_proj', 32, 48], ['mlp', 'down_proj', 48, 32]] as const) {
        expected[`base_model.model.model.layers.${layer}.${part}.${name}.lora_A.weight`] = [8, inF];
        expected[`base_model.model.model.layers.${layer}.${part}.${name}.lora_B.weight`] = [outF, 8];
      }
    }
    assert.deepEqual(got.shapes, expected);
    // Merging added alpha / r * B A of the saved tensors (and something was added).
    assert.ok(got.changed > 0.01, `the merge changed the weights by at most ${got.changed}`);
    assert.ok(got.worst < 1e-5, `merged minus base differs from 2 * B A by up to ${got.worst}`);

    if (!existsSync(converter)) {
      t.diagnostic(`convert_lora_to_gguf.py not checked: no llama.cpp source at ${converter} (bench/llm/make-pairs.sh clones it from node-llama-cpp's bundle)`);
      return;
    }
    const out = join(dir, 'lora-adapter-f16.gguf');
    const c = spawnSync(python, [converter, join(dir, 'hf', 'lora-adapter'), '--base', join(dir, 'hf', 'v1'), '--outtype', 'f16', '--outfile', out], { encoding: 'utf8', maxBuffer: 1 << 26 });
    assert.equal(c.status, 0, c.stderr.split('\n').slice(-10).join('\n'));
    const files = openGgufModel(out);
    try {
      const text = (key: string) => {
        const v = metadataValue(files.model, key);
        return v?.type === 'STRING' ? ggufText(v.value) : undefined;
      };
      assert.equal(text('general.type'), 'adapter');
      assert.equal(text('adapter.type'), 'lora');
      const alpha = metadataValue(files.model, 'adapter.lora.alpha');
      assert.ok(alpha?.type === 'FLOAT32' && alpha.value === 16, JSON.stringify(alpha));
      const tensors = new Map(files.model.tensors.map((x) => [x.info.name, x.info]));
      assert.equal(tensors.size, 28);
      // ggml's dimensions are innermost first: lora_a (r x in) is [in, r], lora_b (out x r) is [r, out].
      assert.deepEqual(tensors.get('blk.1.attn_q.weight.lora_a')?.ne.map(Number), [32, 8]);
      assert.deepEqual(tensors.get('blk.1.ffn_down.weight.lora_a')?.ne.map(Number), [48, 8]);
      assert.deepEqual(tensors.get('blk.0.ffn_up.weight.lora_b')?.ne.map(Number), [8, 48]);
      assert.ok([...tensors.values()].every((x) => x.type.name === 'F16'), 'every tensor F16');
    } finally {
      files.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('measureGguf refuses, from its header, a LoRA adapter that is a model, before llama.cpp is loaded', async () => {
  const e = await measureGguf({ target: join(stories, 'v2.gguf'), models: [{ file: join(stories, 'v1.gguf'), lora: join(stories, 'near.gguf') }], eval: join(stories, 'held-out.txt'), env: { NEURAL_DIFF_LLAMA_DIR: '/nonexistent' } }).then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof ModelFormatError, String(e));
  assert.match(e.message, /expected a LoRA adapter GGUF .*found general.type/);
});

const gguf = join(pairs, 'gguf');
const pairFiles = ['lora-adapter-f16.gguf', 'v1-q8_0.gguf', 'lora-q8_0.gguf'].map((f) => join(gguf, f));
const llama = pairFiles.every(existsSync) ? await llamaForTests() : { skip: `the LLM pairs and their LoRA adapter are not made in ${gguf} (bench/llm/make-pairs.sh)` };

test('llama.cpp applies the real LoRA adapter to v1 at run time: far closer to the merged model than v1 alone', { skip: llama.skip }, async () => {
  const [adapter, v1, merged] = pairFiles;
  const r = await measureGguf({ target: merged, base: v1, models: [{ file: v1, lora: adapter }], eval: join(pairs, 'held-out', 'fortunes.txt'), contextSize: 64, maxTokens: 192 });
  const [, base, withAdapter] = r.models;
  assert.equal(withAdapter.lora, adapter);
  assert.equal(base.lora, undefined);
  assert.ok(base.meanKl > 1e-3, `v1 alone: KL ${base.meanKl}`);
  assert.ok(withAdapter.meanKl < base.meanKl / 10, `v1 + adapter: KL ${withAdapter.meanKl}, v1: ${base.meanKl}`);
  assert.equal(withAdapter.closerThanBase, true);
});

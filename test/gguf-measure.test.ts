/**
 * `ndiff measure` / measureGguf: GGUF models run through llama.cpp (node-llama-cpp) on held-out
 * text beside a target. The fixtures are Karpathy's stories260K and seeded variations of it
 * (test/vectors/gguf/stories/make.py). The figures are checked against a recomputation from the
 * probabilities this test reads from node-llama-cpp itself, and the runtime's output against a
 * NumPy forward pass of the checkpoint.
 */
import { after, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';
import { MissingDependencyError, ModelFormatError, ModelMismatchError, UsageError } from '../src/core/errors.ts';
import { argmax, ClosenessTally, klDivergence, notCloserThanBase, PerplexityTally } from '../src/front/measure/gguf-closeness.ts';
import { keptLlama, measureGguf } from '../src/front/measure/gguf-runtime.ts';
import { LLAMA_VERSION, loadLlamaRuntime, type Llama, type LlamaModel } from '../src/front/measure/llama-runtime.ts';
import { buildGguf } from '../src/io/gguf/write.ts';
import { ggmlTypeByName } from '../src/io/gguf/types.ts';
import { tempDir } from './helpers/dirs.ts';
import { llamaForTests } from './helpers/llama.ts';

const dir = join(import.meta.dirname, 'vectors', 'gguf', 'stories');
const at = (f: string) => join(dir, f);
const TEXT = at('held-out.txt');

function cli(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  return main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), progress: () => {} }).then((code) => ({ code, out, err }));
}

describe('the figures, position by position', () => {
  test('KL of a distribution with itself is 0 and grows as another moves away; argmax takes the lowest id of equals', () => {
    const p = Float32Array.from([0.5, 0.25, 0.25]);
    assert.equal(klDivergence(p, p), 0);
    const near = klDivergence(p, Float32Array.from([0.45, 0.3, 0.25]));
    const far = klDivergence(p, Float32Array.from([0.2, 0.5, 0.3]));
    assert.ok(near > 0 && far > near, `${near} ${far}`);
    assert.ok(Math.abs(near - (0.5 * Math.log(0.5 / 0.45) + 0.25 * Math.log(0.25 / 0.3))) < 1e-7);
    assert.equal(argmax([0.2, 0.4, 0.4]), 1);
    // A candidate probability that underflowed to 0 gives a large, finite KL.
    assert.ok(Number.isFinite(klDivergence(p, Float32Array.from([1, 0, 0]))));
  });

  test('the tallies: agreement counts equal argmaxes, perplexity is exp(mean NLL)', () => {
    const c = new ClosenessTally();
    c.add([0.6, 0.4], [0.7, 0.3]);
    c.add([0.6, 0.4], [0.3, 0.7]);
    assert.equal(c.agreement, 0.5);
    const ppl = new PerplexityTally();
    ppl.add([0.25, 0.75], 0);
    ppl.add([0.5, 0.5], 1);
    assert.ok(Math.abs(ppl.perplexity - Math.exp((Math.log(4) + Math.log(2)) / 2)) < 1e-12);
  });

  test('a patched model is no closer than the base when its KL is not lower, or its agreement drops beyond noise', () => {
    assert.equal(notCloserThanBase({ agreement: 0.9, meanKl: 0.3 }, { agreement: 0.5, meanKl: 0.3 }, 1000), true);
    assert.equal(notCloserThanBase({ agreement: 0.5, meanKl: 0.1 }, { agreement: 0.5, meanKl: 0.3 }, 1000), false);
    assert.equal(notCloserThanBase({ agreement: 0.4, meanKl: 0.1 }, { agreement: 0.6, meanKl: 0.3 }, 1000), true);
    assert.equal(notCloserThanBase({ agreement: 0.59, meanKl: 0.1 }, { agreement: 0.6, meanKl: 0.3 }, 1000), false);
  });
});

describe('without llama.cpp', () => {
  test('a missing node-llama-cpp is a MissingDependencyError naming the pinned install command, and ndiff measure exits 9', async () => {
    const empty = await tempDir();
    try {
      const env = { ...process.env, NEURAL_DIFF_LLAMA_DIR: empty };
      const e = await loadLlamaRuntime(env).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof MissingDependencyError, String(e));
      assert.match(e.message, new RegExp(`npm install --omit=optional node-llama-cpp@${LLAMA_VERSION.replace(/\./g, '\\.')} @node-llama-cpp/\\S+@${LLAMA_VERSION.replace(/\./g, '\\.')}`));
      assert.match(e.message, /sh scripts\/install-llama\.sh/);
      const m = await measureGguf({ target: at('v2.gguf'), models: [at('v1.gguf')], eval: TEXT, env }).then(() => undefined, (x: unknown) => x);
      assert.ok(m instanceof MissingDependencyError, String(m));
      const before = process.env.NEURAL_DIFF_LLAMA_DIR;
      process.env.NEURAL_DIFF_LLAMA_DIR = empty;
      try {
        const r = await cli(['measure', '--target', at('v2.gguf'), at('v1.gguf'), '--eval', TEXT]);
        assert.equal(r.code, 9, r.err.join('\n'));
        assert.match(r.err.join('\n'), /node-llama-cpp@3\.21\.1/);
      } finally {
        if (before === undefined) delete process.env.NEURAL_DIFF_LLAMA_DIR;
        else process.env.NEURAL_DIFF_LLAMA_DIR = before;
      }
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  test('a truncated GGUF file is refused by neural-diff\'s reader, never handed to llama.cpp', async () => {
    const tmp = await tempDir();
    try {
      const cut = join(tmp, 'cut.gguf');
      await writeFile(cut, (await readFile(at('v1.gguf'))).subarray(0, 4000));
      // No llama.cpp where NEURAL_DIFF_LLAMA_DIR points: a refusal from the runtime would be a MissingDependencyError.
      const e = await measureGguf({ target: at('v2.gguf'), models: [cut], eval: TEXT, env: { NEURAL_DIFF_LLAMA_DIR: '/nonexistent' } }).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof ModelFormatError, String(e));
      const r = await cli(['measure', '--target', cut, at('v1.gguf'), '--eval', TEXT]);
      assert.equal(r.code, 7, r.err.join('\n'));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  test('a model of another tokenizer is refused from its header, before anything runs', async () => {
    const e = await measureGguf({ target: at('v2.gguf'), models: [join(dir, '..', 'tiny-llama-q8_0.gguf')], eval: TEXT, env: { NEURAL_DIFF_LLAMA_DIR: '/nonexistent' } }).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof ModelMismatchError, String(e));
    assert.match(e.message, /another tokenizer/);
    const u = await measureGguf({ target: at('v2.gguf'), models: [TEXT], eval: TEXT }).then(() => undefined, (x: unknown) => x);
    assert.ok(u instanceof UsageError, String(u));
    const none = await cli(['measure', '--target', at('v2.gguf'), '--eval', TEXT]);
    assert.equal(none.code, 2);
    assert.match(none.err.join('\n'), /at least one model/);
    const missing = await cli(['measure', '--target', at('v2.gguf'), at('v1.gguf'), '--eval', join(dir, 'no-such.txt')]);
    assert.equal(missing.code, 8, missing.err.join('\n'));
  });
});

const llama = await llamaForTests();

describe('through llama.cpp', { skip: llama.skip }, () => {
  test('llama.cpp runs the stories260K file as llama2.c\'s model.py does (a NumPy forward pass of the checkpoint)', async () => {
    const ref = JSON.parse(await readFile(at('logits.json'), 'utf8')) as { tokens: number[]; logits: number[][] };
    const rows = await probabilitiesOf(at('v1.gguf'), ref.tokens);
    let worst = 0;
    ref.logits.forEach((row, i) => {
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      rows[i].forEach((p, t) => { worst = Math.max(worst, Math.abs(Math.log(p) - (row[t] - lse))); });
      // The runtime's most likely token is NumPy's, or one within the tolerance of it (near-equal tokens of a flat distribution).
      assert.ok(row[argmax(rows[i])] > m - 0.1, `position ${i}: the runtime's most likely token ${argmax(rows[i])}, NumPy's ${row.indexOf(m)}`);
    });
    assert.ok(worst < 0.1, `largest |log p| difference ${worst}`);
  });

  test('a copy of the target agrees on every position with KL 0; the perturbed v1 agrees less, KL > 0; both equal a recomputation from the runtime\'s probabilities', async () => {
    const tmp = await tempDir();
    try {
      const copy = join(tmp, 'v2-copy.gguf');
      await copyFile(at('v2.gguf'), copy);
      const context = 48;
      const r = await measureGguf({ target: at('v2.gguf'), models: [copy, at('v1.gguf')], eval: TEXT, contextSize: context, maxTokens: 200 });
      assert.equal(r.tokens, 200);
      assert.equal(r.truncated, true);
      assert.equal(r.positions, 200);
      assert.equal(r.windows, Math.ceil(200 / (context - 1)));
      const [target, self, v1] = r.models;
      assert.deepEqual([self.agreement, self.meanKl, self.perplexity], [1, 0, target.perplexity]);
      assert.ok(v1.agreement < 1 && v1.meanKl > 0.01, JSON.stringify(v1));

      // The same figures, straightforwardly: every window's probabilities held at once, read from node-llama-cpp here.
      const tokens = (await modelOf(at('v2.gguf'))).tokenize(await readFile(TEXT, 'utf8')).slice(0, 200);
      const bos = 1;
      let agree = 0;
      let kl = 0;
      let nllT = 0;
      let nllV = 0;
      let positions = 0;
      for (let i = 0; i < tokens.length; i += context - 1) {
        const w = [bos, ...tokens.slice(i, i + context - 1)];
        const pT = await probabilitiesOf(at('v2.gguf'), w);
        const pV = await probabilitiesOf(at('v1.gguf'), w);
        // Input k predicts input k + 1; the window's last input predicts nothing of the text.
        for (let k = 0; k + 1 < w.length; k++) {
          const t = pT[k];
          const v = pV[k];
          if (t.indexOf(Math.max(...t)) === v.indexOf(Math.max(...v))) agree++;
          t.forEach((p, j) => { if (p > 0) kl += p * Math.log(p / Math.max(v[j], 1.401298464324817e-45)); });
          nllT -= Math.log(t[w[k + 1]]);
          nllV -= Math.log(v[w[k + 1]]);
          positions++;
        }
      }
      assert.equal(positions, 200);
      assert.equal(v1.agreement, agree / 200);
      assert.ok(Math.abs(v1.meanKl - kl / 200) < 1e-6 * kl, `${v1.meanKl} ${kl / 200}`);
      assert.ok(Math.abs(target.perplexity / Math.exp(nllT / 200) - 1) < 1e-9, `${target.perplexity} ${Math.exp(nllT / 200)}`);
      assert.ok(Math.abs(v1.perplexity / Math.exp(nllV / 200) - 1) < 1e-9, `${v1.perplexity} ${Math.exp(nllV / 200)}`);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  test('an app\'s own node-llama-cpp (its node_modules in the current folder) is used before neural-diff\'s cache', async () => {
    const { spawnSync } = await import('node:child_process');
    const { realpath, symlink } = await import('node:fs/promises');
    const app = await tempDir();
    try {
      await mkdir(join(app, 'node_modules'));
      await symlink(await realpath(llama.runtime!.from), join(app, 'node_modules', 'node-llama-cpp'));
      const loader = join(import.meta.dirname, '..', 'src', 'front', 'measure', 'llama-runtime.ts');
      const code = `const { loadLlamaRuntime } = await import(${JSON.stringify(loader)}); const r = await loadLlamaRuntime({}); console.log(JSON.stringify({ from: r.from, version: r.version, getLlama: typeof r.module.getLlama }));`;
      const run = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', import.meta.resolve('tsx'), '--input-type=module', '-e', code], { cwd: app, encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(JSON.parse(run.stdout), { from: join(app, 'node_modules', 'node-llama-cpp'), version: LLAMA_VERSION, getLlama: 'function' });
    } finally {
      await rm(app, { recursive: true, force: true });
    }
  });

  test('a file llama.cpp will not load is a ModelFormatError quoting llama.cpp\'s reason', async () => {
    // The tiny-llama fixtures are read by neural-diff's reader but have no output norm for llama.cpp.
    const tiny = join(dir, '..', 'tiny-llama-q4_k_m.gguf');
    const e = await measureGguf({ target: tiny, models: [tiny], eval: TEXT }).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof ModelFormatError, String(e));
    assert.match(e.message, /tiny-llama-q4_k_m\.gguf: llama\.cpp \(node-llama-cpp 3\.21\.1\) cannot load it: missing tensor 'output_norm\.weight'/);
  });

  test('a LoRA adapter llama.cpp refuses is a ModelFormatError quoting its reason, on the llama.cpp kept from an earlier measurement', async () => {
    await measureGguf({ target: at('v2.gguf'), models: [at('near.gguf')], eval: TEXT, contextSize: 16, maxTokens: 20 });
    const work = await tempDir('ndiff-measure-lora-');
    const adapter = join(work, 'wrong-shape-lora.gguf');
    const text = (v: string) => ({ type: 'STRING' as const, value: new TextEncoder().encode(v) });
    const f32 = ggmlTypeByName('F32')!;
    // An adapter for a model of another width: lora_a [in 7, r 2], lora_b [r 2, out 7] on blk.0.attn_q.
    await writeFile(adapter, buildGguf({
      metadata: [
        { key: 'general.architecture', value: text('llama') }, { key: 'general.type', value: text('adapter') },
        { key: 'adapter.type', value: text('lora') }, { key: 'adapter.lora.alpha', value: { type: 'FLOAT32', value: 2 } },
      ],
      tensors: [
        { name: 'blk.0.attn_q.weight.lora_a', ne: [7, 2], type: f32, data: new Uint8Array(7 * 2 * 4) },
        { name: 'blk.0.attn_q.weight.lora_b', ne: [2, 7], type: f32, data: new Uint8Array(2 * 7 * 4) },
      ],
    }));
    const e = await measureGguf({ target: at('v2.gguf'), models: [{ file: at('v1.gguf'), lora: adapter }], eval: TEXT, contextSize: 16, maxTokens: 20 }).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof ModelFormatError, String(e));
    assert.match(e.message, /wrong-shape-lora\.gguf: llama\.cpp \(node-llama-cpp 3\.21\.1\) cannot apply this LoRA adapter to .*v1\.gguf: .*(shape|dim)/i);
    // And a model it will not load, on the same kept llama.cpp: llama.cpp's reason, not only that it failed.
    const tiny = join(dir, '..', 'tiny-llama-q4_k_m.gguf');
    const f = await measureGguf({ target: tiny, models: [tiny], eval: TEXT }).then(() => undefined, (x: unknown) => x);
    assert.ok(f instanceof ModelFormatError, String(f));
    assert.match(f.message, /cannot load it: missing tensor 'output_norm\.weight'/);
  });

  test('ndiff measure: a model no closer to --target than --base exits 10 naming it (its figures in --json); a closer one exits 0', async () => {
    const args = ['measure', '--target', at('v2.gguf'), '--base', at('v1.gguf'), '--eval', TEXT, '--context', '64', '--max-tokens', '300'];
    const long = await cli(['measure', '--target', at('v2.gguf'), at('near.gguf'), '--eval', TEXT, '--context', '513']);
    assert.equal(long.code, 2, long.err.join('\n'));
    assert.match(long.err.join('\n'), /trained on at most 512 tokens/);
    const ok = await cli([...args, at('near.gguf')]);
    assert.equal(ok.code, 0, ok.err.join('\n'));
    assert.match(ok.out.join('\n'), /near\.gguf +\S+ +\S+ +\S+ +yes/);
    const worse = await cli([...args, at('near.gguf'), at('away.gguf'), '--json']);
    assert.equal(worse.code, 10, worse.err.join('\n'));
    const doc = JSON.parse(worse.out.join('\n')) as { error: { exitCode: number; message: string; details: { measurement: { notCloser: string[]; models: { model: string; meanKl: number; closerThanBase?: boolean }[] } } } };
    assert.equal(doc.error.exitCode, 10);
    assert.match(doc.error.message, /away\.gguf .* no closer to .*v2\.gguf than the base/);
    assert.deepEqual(doc.error.details.measurement.notCloser, [at('away.gguf')]);
    const [, base, near, away] = doc.error.details.measurement.models;
    assert.ok(near.meanKl < base.meanKl && away.meanKl > base.meanKl, JSON.stringify(doc.error.details.measurement.models));
  });

  test('the figures are the same run to run at one thread, and at two', async () => {
    const spec = { target: at('v2.gguf'), models: [at('near.gguf')], eval: TEXT, contextSize: 64, maxTokens: 150 };
    const a = await measureGguf({ ...spec, threads: 1 });
    const b = await measureGguf({ ...spec, threads: 1 });
    const c = await measureGguf({ ...spec, threads: 2 });
    assert.deepEqual(b.models, a.models);
    assert.deepEqual(c.models, a.models);
  });
});

/** The test's own reads on the process's llama.cpp (a second one would take llama.cpp's log from measuring), each model loaded once. */
let shared: Promise<{ l: Llama; models: Map<string, Promise<LlamaModel>> }> | undefined;

/** `file` loaded for the test's own reads (once). */
async function modelOf(file: string): Promise<LlamaModel> {
  shared ??= keptLlama(llama.runtime!).then((l) => ({ l, models: new Map() }));
  const { l, models } = await shared;
  if (!models.has(file)) models.set(file, l.loadModel({ modelPath: file }));
  return models.get(file) as Promise<LlamaModel>;
}

/** Next-token probabilities (dense, by token id) after each of `tokens`, one evaluation from an empty context. */
async function probabilitiesOf(file: string, tokens: number[]): Promise<Float32Array[]> {
  const model = await modelOf(file);
  const ctx = await model.createContext({ contextSize: Math.max(16, tokens.length), batchSize: Math.max(16, tokens.length), threads: 1 });
  try {
    const out = await ctx.getSequence().controlledEvaluate(tokens.map((t) => [t, { generateNext: { probabilities: true } }]));
    return out.map((o) => {
      const dense = new Float32Array(o!.next.probabilities!.size);
      for (const [t, p] of o!.next.probabilities!) dense[t] = p;
      return dense;
    });
  } finally {
    await ctx.dispose();
  }
}

after(async () => {
  if (shared) await (await shared).l.dispose();
});

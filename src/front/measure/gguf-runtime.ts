/**
 * `ndiff measure`: GGUF models run through llama.cpp (node-llama-cpp), the runtime devices run
 * them with, on held-out text, each beside the target version: greedy next-token agreement, mean
 * KL(target || model) and each model's perplexity (gguf-closeness.ts). The text is read with the
 * target's own tokenizer, cut into windows of a fixed context, and every model is loaded once and
 * run a few positions at a time in step with the target, so memory holds two models' probabilities
 * for those positions only, whatever the text's length; `maxTokens` bounds the time. Given the
 * base a patch started from, a patched model no closer to the target than the base is named.
 */
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { DataError, ModelFormatError, ModelMismatchError, UsageError } from '../../core/errors.ts';
import { openGgufModel } from '../../io/gguf/files.ts';
import { ggufText, metadataValue } from '../../io/gguf/header.ts';
import { summarizeGguf } from '../../io/gguf/summary.ts';
import { NO_PROGRESS, type Progress } from '../progress.ts';
import { argmax, ClosenessTally, notCloserThanBase, PerplexityTally } from './gguf-closeness.ts';
import { loadLlamaRuntime, type Llama, type LlamaContextSequence, type LlamaModel, type LoadedLlama } from './llama-runtime.ts';

/** A model measured with a LoRA adapter (a GGUF of convert_lora_to_gguf.py) that llama.cpp applies at run time, at scale 1. */
export interface GgufModelWithLora {
  file: string;
  lora: string;
}

/** What {@link measureGguf} measures. */
export interface GgufMeasureOptions {
  /** The version the others are measured against (v2). */
  target: string;
  /** The models measured beside it: patched models, other quantizations, a base with a LoRA adapter applied at run time. */
  models: (string | GgufModelWithLora)[];
  /** The version the patched models started from (v1): measured too, and the bar each of `models` must pass. */
  base?: string;
  /** A UTF-8 text file of held-out text (`--eval`). */
  eval: string;
  /** Tokens per window, the beginning-of-text token included (`--context`; default 256, at most the model's training context). */
  contextSize?: number;
  /** Tokens of the text measured at most (`--max-tokens`; default 4096): the bound on time. */
  maxTokens?: number;
  /** llama.cpp's CPU threads (`--threads`; default 1: the same figures every run, see docs/guides/llm.md). */
  threads?: number;
  /** Positions evaluated per step and compared before the next (default 32, fewer for a vocabulary over 32,768 tokens: 2^20 / tokens): the bound on memory. */
  stepPositions?: number;
  onProgress?: Progress;
  /** Also return {@link GgufTokenStats} (the calibration of an on-grid payload reads them). */
  tokenStats?: boolean;
  /** Where node-llama-cpp is looked for (default: process.env; `NEURAL_DIFF_LLAMA_DIR`). */
  env?: NodeJS.ProcessEnv;
}

/** One model's row of {@link GgufMeasureReport}. */
export interface GgufModelMeasure {
  model: string;
  /** The LoRA adapter llama.cpp applied to it at run time, if any. */
  lora?: string;
  role: 'target' | 'base' | 'model';
  /** Share of positions whose most likely next token is the target's (1 for the target). */
  agreement: number;
  /** Mean KL(target || model) over next-token distributions, nats per position (0 for the target). */
  meanKl: number;
  /** The largest KL at one position. */
  maxKl: number;
  /** Mean negative log-likelihood of the text's next tokens, nats. */
  meanNll: number;
  /** exp(meanNll). */
  perplexity: number;
  /** With a base: whether this model is closer to the target than the base (models only). */
  closerThanBase?: boolean;
}

/** How the text uses each token of the vocabulary: as the target predicts it, and as input. */
export interface GgufTokenStats {
  /** The target's next-token probability of each token, averaged over the positions. */
  targetMeanProbability: Float64Array;
  /** Times each token is read as input (every position's input token). */
  inputCounts: Float64Array;
}

/** What {@link measureGguf} returns (`ndiff measure --json`). */
export interface GgufMeasureReport {
  kind: 'ndiff-gguf-measure';
  target: string;
  eval: string;
  /** Tokens of the text measured (after `maxTokens`), and whether the text had more. */
  tokens: number;
  truncated: boolean;
  /** Positions compared: each predicts a token of the text. */
  positions: number;
  windows: number;
  contextSize: number;
  threads: number;
  runtime: { package: 'node-llama-cpp'; version: string };
  models: GgufModelMeasure[];
  /** With a base: the models no closer to the target than it. */
  notCloser: string[];
  /** With `tokenStats`. */
  tokenStats?: GgufTokenStats;
}

/** One loaded model and what is summed for it. */
interface Runner {
  file: string;
  lora?: string;
  role: GgufModelMeasure['role'];
  model: LlamaModel;
  sequence: LlamaContextSequence;
  closeness: ClosenessTally;
  perplexity: PerplexityTally;
}

const int = (name: string, flag: string | undefined, v: number | undefined, dflt: number, min: number): number => {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${name}${flag ? ` (${flag})` : ''} ${v}: expected a whole number, at least ${min}`);
  return n;
};

/** The first bytes of the text that can hold `maxTokens` tokens, cut after the last whole line or word. */
async function readText(file: string, maxTokens: number): Promise<{ text: string; cut: boolean }> {
  const cap = Math.max(65536, maxTokens * 32);
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(cap + 1);
    const { bytesRead } = await fh.read(buf, 0, cap + 1, 0);
    const cut = bytesRead > cap;
    let text = buf.subarray(0, Math.min(bytesRead, cap)).toString('utf8');
    if (cut) text = text.slice(0, Math.max(text.lastIndexOf('\n'), text.lastIndexOf(' '), 1));
    return { text, cut };
  } finally {
    await fh.close();
  }
}

/** Check the file is a GGUF model our reader accepts (llama.cpp is handed nothing malformed), and summarize it. */
function checkGguf(file: string): { architecture?: string; tokenizerTokens?: number; tokenizerModel?: string } {
  if (!/\.gguf$/i.test(file)) throw new UsageError(`${file}: expected a .gguf model file (ndiff measure runs GGUF models through llama.cpp)`);
  const files = openGgufModel(file);
  try {
    const s = summarizeGguf(files.model);
    return { architecture: s.architecture, tokenizerTokens: s.tokenizerTokens, tokenizerModel: s.tokenizerModel };
  } finally {
    files.close();
  }
}

/** Check the file is a LoRA adapter GGUF (general.type "adapter", adapter.type "lora") before llama.cpp is handed it. */
function checkLoraAdapter(file: string): void {
  if (!/\.gguf$/i.test(file)) throw new UsageError(`${file}: expected a LoRA adapter .gguf file (convert_lora_to_gguf.py's output)`);
  const files = openGgufModel(file);
  try {
    const text = (key: string) => {
      const v = metadataValue(files.model, key);
      return v?.type === 'STRING' ? ggufText(v.value) : undefined;
    };
    const kind = text('general.type');
    const adapter = text('adapter.type');
    if (kind !== 'adapter' || adapter !== 'lora') throw new ModelFormatError(`${file}: expected a LoRA adapter GGUF (general.type "adapter", adapter.type "lora", as convert_lora_to_gguf.py writes), found general.type ${JSON.stringify(kind ?? null)}, adapter.type ${JSON.stringify(adapter ?? null)}: convert the PEFT adapter with convert_lora_to_gguf.py`, { lora: file });
  } finally {
    files.close();
  }
}

/** Dense next-token probabilities from node-llama-cpp's map (sorted by probability; every token of the vocabulary under greedy sampling). */
function dense(map: Map<number, number> | undefined, vocab: number, file: string): Float32Array {
  if (!map) throw new ModelFormatError(`${file}: llama.cpp returned no next-token probabilities (a model without an output head?)`);
  const out = new Float32Array(vocab);
  for (const [token, p] of map) if (token < vocab) out[token] = p;
  return out;
}

/**
 * Measure GGUF models beside a target on held-out text, through llama.cpp.
 * @throws MissingDependencyError node-llama-cpp is not installed (the message names the command)
 * @throws ModelFormatError a file that is no GGUF model our reader accepts, or that llama.cpp cannot load
 * @throws ModelMismatchError models of another tokenizer or vocabulary than the target's
 * @throws DataError a text that gives fewer than two tokens
 */
export async function measureGguf(o: GgufMeasureOptions): Promise<GgufMeasureReport> {
  const progress = o.onProgress ?? NO_PROGRESS;
  const maxTokens = int('maxTokens', '--max-tokens', o.maxTokens, 4096, 2);
  const threads = int('threads', '--threads', o.threads, 1, 1);
  if (o.models.length === 0 && o.base === undefined) throw new UsageError('name at least one model to measure beside the target (or --base)');
  const files: [string, GgufModelMeasure['role'], string?][] = [[o.target, 'target'], ...(o.base !== undefined ? [[o.base, 'base'] as [string, 'base']] : []), ...o.models.map((m) => (typeof m === 'string' ? [m, 'model'] : [m.file, 'model', m.lora]) as [string, 'model', string?])];
  const target = checkGguf(o.target);
  // node-llama-cpp gives each position's probabilities as a Map over the vocabulary: about 2^20 entries a step at most.
  const step = int('stepPositions', undefined, o.stepPositions, Math.max(1, Math.min(32, Math.floor(2 ** 20 / Math.max(1, target.tokenizerTokens ?? 1)))), 1);
  for (const [file] of files.slice(1)) {
    const s = checkGguf(file);
    if (s.tokenizerModel !== target.tokenizerModel || s.tokenizerTokens !== target.tokenizerTokens) {
      throw new ModelMismatchError(`${file} has another tokenizer than ${o.target} (${s.tokenizerModel ?? 'none'}, ${s.tokenizerTokens ?? 0} tokens; the target: ${target.tokenizerModel ?? 'none'}, ${target.tokenizerTokens ?? 0}): next-token distributions compare only over one vocabulary`, { model: file, target: o.target });
    }
  }
  for (const [, , lora] of files) if (lora !== undefined) checkLoraAdapter(lora);
  const { text, cut } = await readText(o.eval, maxTokens).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' || e.code === 'EISDIR') throw new DataError(`eval (--eval) ${o.eval}: expected a UTF-8 text file of held-out text, found ${e.code === 'EISDIR' ? 'a folder' : 'nothing there'}`, { eval: o.eval });
    throw e;
  });
  const runtime: LoadedLlama = await loadLlamaRuntime(o.env);
  // llama.cpp's own error lines are kept (the last few) to say why a model did not load, not printed.
  const log: string[] = [];
  logSinks.add(log);
  const runners: Runner[] = [];
  try {
    const llama = await keptLlama(runtime);
    // Loaded once each, in order; a file named twice is loaded twice (a copy measured against itself).
    for (const [file, role, lora] of files) {
      let model: LlamaModel;
      log.length = 0;
      try {
        model = await llama.loadModel({ modelPath: path.resolve(file) });
      } catch (e) {
        await lastLogLines();
        const why = log.filter((l) => l && !/failed to (load model|read key-value pairs)/.test(l)).map((l) => l.replace(/^[\w]+: (error loading model: )?/, ''));
        const last = [...new Set(why)].slice(-2);
        throw new ModelFormatError(`${file}: llama.cpp (node-llama-cpp ${runtime.version}) cannot load it: ${last.length ? last.join('; ') : (e as Error).message.split('\n')[0]}`, { model: file, llama: last });
      }
      runners.push({ file, lora, role, model, sequence: undefined as unknown as LlamaContextSequence, closeness: new ClosenessTally(), perplexity: new PerplexityTally() });
    }
    const head = runners[0].model;
    const train = head.trainContextSize;
    const contextSize = int('contextSize', '--context', o.contextSize, Math.min(256, train), 2);
    if (contextSize > train) throw new UsageError(`contextSize (--context) ${contextSize}: ${o.target} was trained on at most ${train} tokens; give at most ${train}`);
    const all = head.tokenize(text);
    for (const r of runners.slice(1)) {
      const t = r.model.tokenize(text);
      if (t.length !== all.length || t.some((v, i) => v !== all[i])) throw new ModelMismatchError(`${r.file} reads the --eval text as other tokens than ${o.target}: next-token distributions compare only over one tokenizer`, { model: r.file, target: o.target });
    }
    const tokens = all.slice(0, maxTokens);
    if (tokens.length < 2) throw new DataError(`${o.eval}: the text gives ${tokens.length} token(s) to ${o.target}'s tokenizer; at least 2 are needed to predict one`, { eval: o.eval });
    const bos = head.tokens.bos;
    // A window: the beginning-of-text token (when the model has one), then up to `span` tokens of the text.
    const span = bos === null ? contextSize : contextSize - 1;
    for (const r of runners) {
      log.length = 0;
      const context = await r.model.createContext({ contextSize, batchSize: Math.min(contextSize, Math.max(step, 8)), threads, sequences: 1, ...(r.lora !== undefined ? { lora: path.resolve(r.lora) } : {}) }).catch(async (e: Error) => {
        if (r.lora === undefined) throw e;
        await lastLogLines();
        const why = [...new Set(log.filter((l) => l))].slice(-2);
        throw new ModelFormatError(`${r.lora}: llama.cpp (node-llama-cpp ${runtime.version}) cannot apply this LoRA adapter to ${r.file}: ${why.length ? why.join('; ') : e.message.split('\n')[0]}`, { model: r.file, lora: r.lora, llama: why });
      });
      r.sequence = context.getSequence();
    }
    const windows = Math.ceil(tokens.length / span);
    let vocab = 0;
    let meanP: Float64Array | undefined;
    let inputs: Float64Array | undefined;
    progress(`measuring ${runners.length} model(s) on ${tokens.length} tokens of ${o.eval}${cut || all.length > tokens.length ? ' (cut at --max-tokens)' : ''}: ${windows} window(s) of ${contextSize}, ${threads} thread(s), node-llama-cpp ${runtime.version}`);
    for (let w = 0; w < windows; w++) {
      const win = tokens.slice(w * span, (w + 1) * span);
      const input = bos === null ? win : [bos, ...win];
      // Input i predicts input i+1: every input but the last predicts a token of the text.
      for (const r of runners) await r.sequence.clearHistory();
      for (let at = 0; at < input.length; at += step) {
        const chunk = input.slice(at, at + step).map((t, k) => (at + k < input.length - 1 ? [t, { generateNext: { probabilities: true } }] as [number, { generateNext: { probabilities: boolean } }] : t));
        let targetRows: Float32Array[] = [];
        for (const r of runners) {
          const out = await r.sequence.controlledEvaluate(chunk);
          const rows: Float32Array[] = [];
          for (let k = 0; k < chunk.length && at + k < input.length - 1; k++) {
            const map = out[k]?.next.probabilities;
            if (vocab === 0) vocab = map?.size ?? 0;
            else if (map && map.size !== vocab) throw new ModelMismatchError(`${r.file} gives probabilities over ${map.size} tokens, ${o.target} over ${vocab}: another vocabulary`, { model: r.file, target: o.target });
            rows.push(dense(map, vocab, r.file));
          }
          for (let k = 0; k < rows.length; k++) r.perplexity.add(rows[k], input[at + k + 1]);
          if (r.role === 'target' && o.tokenStats && rows.length > 0) {
            meanP ??= new Float64Array(vocab);
            inputs ??= new Float64Array(vocab);
            for (let k = 0; k < rows.length; k++) {
              const row = rows[k];
              for (let v = 0; v < vocab; v++) meanP[v] += row[v];
              const token = input[at + k];
              if (token < vocab) inputs[token]++;
            }
          }
          if (r.role === 'target') targetRows = rows;
          else for (let k = 0; k < rows.length; k++) r.closeness.add(targetRows[k], rows[k], argmax(targetRows[k]));
        }
      }
      if ((w + 1) % 8 === 0 || w + 1 === windows) progress(`  ${w + 1}/${windows} window(s)`);
    }
    const baseRunner = runners.find((r) => r.role === 'base');
    const positions = runners[0].perplexity.tokens;
    const rows: GgufModelMeasure[] = runners.map((r) => {
      const isTarget = r.role === 'target';
      const row: GgufModelMeasure = {
        model: r.file, ...(r.lora !== undefined ? { lora: r.lora } : {}), role: r.role,
        agreement: isTarget ? 1 : r.closeness.agreement, meanKl: isTarget ? 0 : r.closeness.meanKl, maxKl: isTarget ? 0 : r.closeness.klMax,
        meanNll: r.perplexity.meanNll, perplexity: r.perplexity.perplexity,
      };
      if (baseRunner && r.role === 'model') row.closerThanBase = !notCloserThanBase(r.closeness, baseRunner.closeness, positions);
      return row;
    });
    return {
      kind: 'ndiff-gguf-measure', target: o.target, eval: o.eval, tokens: tokens.length, truncated: cut || all.length > tokens.length,
      positions, windows, contextSize, threads, runtime: { package: 'node-llama-cpp', version: runtime.version },
      models: rows, notCloser: rows.filter((r) => r.closerThanBase === false).map((r) => r.model),
      ...(o.tokenStats && meanP && inputs ? { tokenStats: { targetMeanProbability: meanP.map((x) => x / positions), inputCounts: inputs } } : {}),
    };
  } finally {
    for (const r of runners) await r.model.dispose().catch(() => {});
    logSinks.delete(log);
  }
}

/** The measurements running now: each keeps llama.cpp's last log lines, to say why a model did not load. */
const logSinks = new Set<string[]>();
/** The llama.cpp of each runtime, for the life of the process (see {@link keptLlama}). */
const llamas = new Map<string, Promise<Llama>>();

/** llama.cpp's last lines about a failure can come after the failure itself: they are in by the next turn of the event loop. */
const lastLogLines = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The process's llama.cpp of `runtime`, loaded at its first use and kept (each measurement sets its
 * threads per context). node-llama-cpp tests a prebuilt binary in a child process each time it is
 * loaded on Linux (about 0.6 s, and 2 s of CPU, here), which a calibration measuring tensor after
 * tensor, or a release measuring payload after payload, paid at every measurement. Models are
 * loaded and disposed per measurement; the kept llama.cpp holds no model and does not keep the
 * process alive. node-llama-cpp's binding has one logger, which a llama.cpp loaded later in the
 * process takes (the second one loaded prints to stdout instead), so code in this process that runs
 * llama.cpp itself (the tests' own reads) uses this one, or measuring's refusals lose llama.cpp's
 * reasons.
 */
export function keptLlama(runtime: LoadedLlama): Promise<Llama> {
  let llama = llamas.get(runtime.from);
  if (llama === undefined) {
    const { getLlama, LlamaLogLevel } = runtime.module;
    const logger = (_level: unknown, message: string) => {
      for (const log of logSinks) {
        log.push(String(message).trim());
        if (log.length > 32) log.shift();
      }
    };
    const loading = getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error, logger, maxThreads: availableParallelism() });
    loading.catch(() => llamas.delete(runtime.from));
    llamas.set(runtime.from, (llama = loading));
  }
  return llama;
}

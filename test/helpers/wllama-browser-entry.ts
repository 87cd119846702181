/**
 * What the wllama test page loads (bundled for the browser by test/helpers/wllama.ts): greedy generation by wllama (llama.cpp built
 * for WebAssembly) from a GGUF file read out of OPFS, as a device would run a model it patched in
 * place there. The wasm is served beside the page (`wllama.wasm`), never fetched from a CDN.
 */
import { Wllama, type RawCompletionChunk, type RawCompletionParams } from '@wllama/wllama';

/**
 * One greedy run: a GGUF file in OPFS, a prompt and the number of tokens to generate.
 *
 * The prompt is text: wllama 3 runs llama-server's completion code, which takes the prompt as a
 * string only (a list of token ids fails inside the wasm with `[json.exception.type_error.302]
 * type must be string, but is array`, and wllama then throws `Invalid typed array length`); and
 * wllama 3 has no tokenize or decode call. The text is tokenized by the model's own vocabulary
 * (BOS first, special-token text such as `<s>` read as that token), as llama.cpp's `tokenize`
 * does with the same flags.
 */
export interface GreedyArgs {
  /** The file's name in the OPFS root directory. */
  file: string;
  /** The prompt text. */
  prompt: string;
  /** How many tokens to generate. */
  n: number;
  /** The context size (default 256). */
  nCtx?: number;
  /** Generate all `n` tokens even where the model would end the text (its end-of-generation tokens masked). Default false: a run may end early, with `finish: 'stop'`. */
  ignoreEos?: boolean;
  /** Pass wllama's and llama.cpp's log lines to the page's console (default: kept, and quoted in an error). */
  log?: boolean;
}

/**
 * What a greedy run generated. wllama 3.13 reports tokens through llama-server's text answers, so
 * a run whose text is not valid UTF-8 cannot be reported: a token that leaves the text inside a
 * UTF-8 sequence (a byte token of a multi-byte character) is held back until the sequence is
 * whole, and a sequence that never becomes valid fails inside the wasm (`[json.exception.
 * type_error.316] invalid UTF-8 byte`). {@link greedy} then throws, saying which; real
 * vocabularies rarely leave a sequence open, byte-only ones (the stories fixtures) often do.
 */
export interface GreedyRun {
  /** The ids of the tokens generated, in order (an end-of-generation token included when one ended the run). */
  tokens: number[];
  /** Their text pieces, as the model's vocabulary spells them. */
  pieces: string[];
  /** The text generated. */
  text: string;
  /** How many tokens the prompt was (BOS included). */
  promptTokens: number;
  /** `length`: `n` tokens generated; `stop`: the model ended the text first. */
  finish: string | null;
  /** The bytes of the file the model was read from. */
  fileBytes: number;
  /** The model's vocabulary size and end-of-generation tokens. */
  nVocab: number;
  eog: number[];
  /** Whether wllama ran with threads (the test expects false: one thread, no cross-origin isolation). */
  multithread: boolean;
}

const wasmUrl = new URL('./wllama.wasm', import.meta.url).href;

/** The OPFS root directory of this origin. */
const opfs = () => navigator.storage.getDirectory();

/**
 * Load the GGUF file `args.file` from OPFS into wllama (the File itself, read in slices as the
 * model loads: no copy of the whole file is made in JavaScript) and generate `args.n` tokens
 * greedily on one thread (temperature 0 and top-k 1, no repetition penalty, a fixed seed, no
 * prompt cache: the same file and prompt give the same tokens). The model is unloaded after.
 */
export async function greedy(args: GreedyArgs): Promise<GreedyRun> {
  const file = await (await (await opfs()).getFileHandle(args.file)).getFile();
  // llama.cpp's log lines are kept (not printed unless args.log): a failure inside the wasm
  // reaches JavaScript only as a RangeError, and its reason is the last error line logged.
  const logged: string[] = [];
  const keep = (...a: unknown[]) => {
    logged.push(a.map(String).join(' '));
    if (logged.length > 50) logged.shift();
  };
  const logger = { debug: keep, log: keep, warn: keep, error: keep };
  const wllama = new Wllama({ default: wasmUrl }, { logger: args.log ? console : logger });
  // Compat mode would fetch another build from a CDN: off (this Chromium has JSPI and 64-bit memory).
  wllama.setCompat(null);
  const tokens: number[] = [];
  const pieces: string[] = [];
  let text = '';
  let last: RawCompletionChunk | undefined;
  try {
    await wllama.loadModel([file], { n_ctx: args.nCtx ?? 256, n_threads: 1, n_gpu_layers: 0, n_parallel: 1, seed: 0, warmup: false });
    const info = wllama.getLoadedContextInfo();
    // Streamed: one chunk per token, its id in the chunk's `logprobs.content` (llama-server's
    // list, asked for with n_probs). Not streamed, the one answer carries the whole text, and
    // fails as a whole when any of it is not valid UTF-8 (see GreedyRun).
    await wllama.createCompletion({
      prompt: args.prompt,
      stream: true,
      onData: (chunk: RawCompletionChunk) => {
        last = chunk;
        const choice = chunk.choices[0];
        if (!choice) return;
        text += choice.text;
        for (const t of (choice.logprobs as unknown as { content?: { id: number; token: string }[] } | null)?.content ?? []) {
          tokens.push(t.id);
          pieces.push(t.token);
        }
      },
      max_tokens: args.n,
      temperature: 0,
      top_k: 1,
      top_p: 1,
      min_p: 0,
      penalty_repeat: 1,
      penalty_last_n: 0,
      seed: 0,
      ignore_eos: args.ignoreEos ?? false,
      cache_prompt: false,
      n_probs: 1,
    } as RawCompletionParams & { stream: true; onData: (chunk: RawCompletionChunk) => void; cache_prompt: boolean });
    const generated = last?.usage?.completion_tokens;
    if (generated !== tokens.length) {
      throw new Error(`wllama generated ${generated} token(s) but reported ${tokens.length} [${tokens.join(',')}]: the text ends inside a UTF-8 sequence (a byte token), and llama-server reports no token until its text is whole`);
    }
    return {
      tokens,
      pieces,
      text,
      promptTokens: last?.usage?.prompt_tokens ?? -1,
      finish: last?.choices[0]?.finish_reason ?? null,
      fileBytes: file.size,
      nVocab: info.n_vocab,
      eog: [...info.list_tokens_eog],
      multithread: wllama.isMultithread(),
    };
  } catch (e) {
    const why = logged.filter((l) => /json\.exception|type_error|what\(\)|abort/i.test(l)).slice(-2).join(' | ');
    throw new Error(`wllama failed on ${args.file} after ${tokens.length} token(s) [${tokens.join(',')}]: ${(e as Error).message}${why ? `; llama.cpp said: ${why}` : ''}`);
  } finally {
    await wllama.exit();
  }
}

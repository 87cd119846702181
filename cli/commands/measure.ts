/** `ndiff measure`: GGUF models beside their target on held-out text, run through llama.cpp. */
import type { Argv } from 'yargs';
import { NoImprovementError } from '../../src/core/errors.ts';
import type { GgufMeasureReport } from '../../src/front/measure/gguf-runtime.ts';
import { printable } from '../../src/front/text.ts';
import { table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';

export interface MeasureArgs {
  models: string[];
  target: string;
  base?: string;
  eval: string;
  context?: number;
  'max-tokens': number;
  threads: number;
}

export function measureCommand(y: Argv): Argv<MeasureArgs> {
  return y
    .usage(`ndiff measure --target v2.gguf [--base v1.gguf] <models...> --eval TEXT [options]

Run GGUF models through llama.cpp (node-llama-cpp, installed apart: see the docs page) on held-out
text and print, beside --target, each one's greedy next-token agreement, mean KL(target || model)
and perplexity. With --base (the version a patch started from), a model no closer to --target
than the base exits 10.`)
    .positional('models', { type: 'string', array: true, default: [], describe: 'GGUF models measured beside --target (patched, requantized)' })
    .option('target', { type: 'string', demandOption: true, describe: 'the GGUF model the others are measured against (v2)' })
    .option('base', { type: 'string', describe: 'the version the models were patched from (v1): the bar to pass' })
    .option('eval', { type: 'string', demandOption: true, describe: 'UTF-8 text file of held-out text' })
    .option('context', { type: 'number', describe: 'tokens per window (default: 256, or less: the training context)' })
    .option('max-tokens', { type: 'number', default: 4096, describe: 'tokens of the text measured at most' })
    .option('threads', { type: 'number', default: 1, describe: 'llama.cpp CPU threads (1: the same figures every run)' })
    .example('$0 measure --target v2.gguf --base v1.gguf new.gguf --eval t.txt', 'is new.gguf closer to v2 than v1?')
    .epilogue(seeDocs('measure')) as unknown as Argv<MeasureArgs>;
}

/** The table `ndiff measure` prints: one row per model. */
export function measureTable(r: GgufMeasureReport): string {
  const rows = r.models.map((m) => [
    printable(m.model), m.role === 'model' ? '' : m.role, `${(100 * m.agreement).toFixed(2)}%`, m.meanKl.toPrecision(4), m.perplexity.toPrecision(5),
    m.closerThanBase === undefined ? '' : m.closerThanBase ? 'yes' : 'no',
  ]);
  return table(rows, ['model', 'role', 'agreement', 'mean KL (nats)', 'perplexity', 'closer than base']);
}

/** `ndiff measure`: one call of {@link measureGguf}, its table printed; exit 10 when a model is no closer than --base. */
export async function runMeasure(a: MeasureArgs, io: CliIO): Promise<number> {
  const { measureGguf } = await import('../../src/front/measure/gguf-runtime.ts');
  const r = await measureGguf({
    target: a.target, models: a.models, base: a.base, eval: a.eval, contextSize: a.context, maxTokens: a['max-tokens'], threads: a.threads,
    onProgress: (l) => io.progress(l),
  });
  io.out(`on ${r.positions} next tokens of ${printable(r.eval)}${r.truncated ? ' (cut at --max-tokens)' : ''}, ${r.windows} window(s) of ${r.contextSize}, beside ${printable(r.target)} (node-llama-cpp ${r.runtime.version}, ${r.threads} thread(s)):`);
  io.out(measureTable(r));
  if (r.notCloser.length) {
    const base = r.models.find((m) => m.role === 'base') as GgufModelRow;
    const named = r.models.filter((m) => r.notCloser.includes(m.model)).map((m) => `${printable(m.model)} (agreement ${(100 * m.agreement).toFixed(2)}%, mean KL ${m.meanKl.toPrecision(4)})`);
    throw new NoImprovementError(
      `${named.join(', ')} ${named.length > 1 ? 'are' : 'is'} no closer to ${printable(r.target)} than the base ${printable(base.model)} (agreement ${(100 * base.agreement).toFixed(2)}%, mean KL ${base.meanKl.toPrecision(4)}): shipping it would take devices further from the new version than not updating`,
      { measurement: r },
    );
  }
  io.result?.(r);
  return 0;
}

type GgufModelRow = GgufMeasureReport['models'][number];

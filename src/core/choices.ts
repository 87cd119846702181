/**
 * Options that take one of a few words, checked where a library call reads them as `ndiff` checks
 * its flags' choices: a misspelt word (`method: 'low-bit'`, `store: 'f32'`) is refused before any
 * work instead of falling back to a default without a word.
 */
import { UsageError } from './errors.ts';

/** How a model's output reads (`outputKind`, `--output-kind` of diff, train and release add). */
export const OUTPUT_KINDS: readonly string[] = ['probability', 'logit', 'probabilities', 'logits', 'values'];

/** One option's name in the library, its flag on the command line, and its choices. */
export type Choice = readonly [name: string, flag: string, choices: readonly string[]];

/**
 * Refuse the first option of `options` whose value is given and is not one of its choices. `null`
 * counts as not given, as the calls' `??` defaults read it (options built from JSON carry it).
 * @throws UsageError naming the option, its flag, its choices and what was found.
 */
export function checkChoices(options: object, table: readonly Choice[]): void {
  const o = options as Record<string, unknown>;
  for (const [name, flag, choices] of table) {
    const v = o[name];
    if (v === undefined || v === null || (typeof v === 'string' && choices.includes(v))) continue;
    throw new UsageError(`${name} (${flag}) must be one of ${choices.join(', ')}, found ${typeof v === 'string' ? JSON.stringify(v) : String(v)}: pick one of them, or leave ${name} out for its default`, { option: name, found: v, choices });
  }
}

/** The choices of option `name` in `table` (what `ndiff` lists for its flag). */
export function choicesOf(table: readonly Choice[], name: string): string[] {
  const row = table.find(([n]) => n === name);
  if (!row) throw new Error(`no option ${name} among the choices`);
  return [...row[2]];
}

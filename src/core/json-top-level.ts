/**
 * The top-level values of a JSON object's text, edited without touching the rest: a TF.js
 * model JSON's `weightsManifest` is rewritten when its shards change, and read with its shard
 * paths emptied as a structural payload's byte delta reads it (docs/FORMAT.md §17), while the
 * model's topology keeps its bytes.
 *
 * Pure code (no node, no tfjs): part of the device entry `neural-diff/rebuild`.
 */
import { UsageError } from './errors.ts';

/**
 * Replace the value of one top-level key of a JSON object text, leaving every other byte
 * (key order, spacing, number spelling) exactly as it was. If the key occurs more than once
 * the last occurrence (the one `JSON.parse` keeps) is replaced; if it is absent it is
 * appended. The input must be valid JSON (parse it first); a leading BOM is kept.
 */
export function replaceTopLevelValue(text: string, key: string, valueJson: string): string {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const ws = (): void => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const skipString = (): void => {
    i++; // opening quote
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++; // closing quote
  };
  const skipValue = (): void => {
    const c = text[i];
    if (c === '"') return skipString();
    if (c === '{' || c === '[') {
      let depth = 0;
      do {
        const d = text[i];
        if (d === '"') { skipString(); continue; }
        if (d === '{' || d === '[') depth++;
        else if (d === '}' || d === ']') depth--;
        i++;
      } while (depth > 0 && i < text.length);
      return;
    }
    while (i < text.length && !',}] \t\n\r'.includes(text[i])) i++;
  };
  ws();
  if (text[i] !== '{') throw new UsageError('replaceTopLevelValue: the text is not a JSON object');
  i++;
  let span: [number, number] | undefined;
  let lastValueEnd = -1;
  for (;;) {
    ws();
    if (text[i] === '}') break;
    const keyStart = i;
    skipString();
    const k = JSON.parse(text.slice(keyStart, i)) as string;
    ws();
    i++; // colon
    ws();
    const start = i;
    skipValue();
    if (k === key) span = [start, i];
    lastValueEnd = i;
    ws();
    if (text[i] === ',') { i++; continue; }
    if (text[i] === '}') break;
    throw new UsageError(`replaceTopLevelValue: unexpected ${JSON.stringify(text[i] ?? 'end of text')} at ${i}`);
  }
  if (span) return text.slice(0, span[0]) + valueJson + text.slice(span[1]);
  const insert = `${lastValueEnd < 0 ? '' : ','}${JSON.stringify(key)}:${valueJson}`;
  const at = lastValueEnd < 0 ? i : lastValueEnd;
  return text.slice(0, at) + insert + text.slice(at);
}

/**
 * A TF.js model JSON as a structural payload's byte delta reads it as its base (FORMAT.md §17):
 * its `weightsManifest` written again by `JSON.stringify` with every group's `paths` empty, the
 * rest of the text byte for byte. So the base does not depend on what the device named its
 * shards (an earlier update of the folder wrote them under names of its own) or on how its
 * manifest was spaced: a device that reached a version by a payload and one that installed it
 * whole read the same base.
 * @param text the model JSON's text, already parsed once (a valid JSON object with a `weightsManifest` array of objects)
 */
export function manifestWithoutPaths(text: string): string {
  const parsed = JSON.parse(text) as { weightsManifest?: unknown };
  const manifest = parsed.weightsManifest;
  if (!Array.isArray(manifest)) throw new UsageError('manifestWithoutPaths: the model JSON has no weightsManifest array');
  const stripped = manifest.map((g: Record<string, unknown>) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(g)) out[k] = k === 'paths' ? [] : v;
    return out;
  });
  return replaceTopLevelValue(text, 'weightsManifest', JSON.stringify(stripped));
}

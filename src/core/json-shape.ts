/**
 * How deep a JSON text nests and how many values it holds, measured in one pass over the text
 * before it is parsed. `JSON.parse` itself copes with any depth, but what walks the parsed value
 * afterwards recurses (a TF.js model's frame written as canonical JSON: a model JSON 5 million
 * levels deep overflowed the stack), and a parsed value costs some 100 bytes a container
 * whatever its text costs (a 60 MB model JSON of 20 million `{}` took 3 GB to parse). Bounding
 * both before `JSON.parse` keeps a hostile model JSON to a typed refusal in bounded memory.
 *
 * Pure code (no node, no tfjs): part of the device entries that read model JSON.
 */

/** What {@link measureJson} found: the deepest nesting and the values counted (keys included). */
export interface JsonShape {
  depth: number;
  values: number;
  /** Set when a limit was passed: measuring stopped there, so `depth`/`values` are where it stopped. */
  over?: 'depth' | 'values';
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Whether `c` can start a JSON number or literal (`true`, `false`, `null`). */
function startsScalar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x74 || c === 0x66 || c === 0x6e;
}
/** Whether `c` can continue a number or literal. */
function inScalar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x2d || c === 0x2b || c === 0x2e;
}

/**
 * Measure a JSON text's nesting depth and number of values (each object, array, string, key,
 * number and literal counts one), stopping as soon as `maxDepth` or `maxValues` is passed.
 * Linear in the text, no recursion, no allocation. Text that is not JSON gets a measure of
 * some sort: parse it afterwards for its errors.
 */
export function measureJson(text: string, maxDepth: number, maxValues: number): JsonShape {
  let depth = 0;
  let deepest = 0;
  let values = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < n; i++) {
        const s = text.charCodeAt(i);
        if (s === BACKSLASH) i++;
        else if (s === QUOTE) break;
      }
      values++;
    } else if (c === 0x7b || c === 0x5b) {
      values++;
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > maxDepth) return { depth: deepest, values, over: 'depth' };
      }
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (startsScalar(c)) {
      values++;
      while (i + 1 < n && inScalar(text.charCodeAt(i + 1))) i++;
    } else continue;
    if (values > maxValues) return { depth: deepest, values, over: 'values' };
  }
  return { depth: deepest, values };
}

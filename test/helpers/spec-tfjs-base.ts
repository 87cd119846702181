/**
 * FORMAT.md §17's base of a TF.js model's byte delta, written from the document alone for the
 * vector tests (no code shared with src/core/json-top-level.ts): the model JSON with the value of
 * its top-level `weightsManifest` key (the last, if it occurs twice) replaced by
 * `JSON.stringify` of that manifest with every group's `paths` made `[]` (keys kept in their
 * order), every other byte as it was, then the shards one after the other.
 */
export function specTfjsDeltaBase(files: readonly { bytes: Uint8Array }[]): Uint8Array {
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(files[0].bytes);
  // Where each value of the text ends, from where it starts (strings, nesting, literals).
  const end = (i: number): number => {
    if (text[i] === '"') {
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      return i + 1;
    }
    if (text[i] === '{' || text[i] === '[') {
      let depth = 0;
      for (;;) {
        if (text[i] === '"') {
          i = end(i);
          continue;
        }
        if (text[i] === '{' || text[i] === '[') depth++;
        if (text[i] === '}' || text[i] === ']') depth--;
        i++;
        if (depth === 0) return i;
      }
    }
    while (i < text.length && !/[\s,}\]]/.test(text[i])) i++;
    return i;
  };
  const space = (i: number): number => {
    while (/\s/.test(text[i] ?? '')) i++;
    return i;
  };
  let span: [number, number] | undefined;
  let i = space(text.charCodeAt(0) === 0xfeff ? 1 : 0) + 1;
  for (;;) {
    i = space(i);
    if (text[i] === '}') break;
    const keyEnd = end(i);
    const key = JSON.parse(text.slice(i, keyEnd));
    const valueStart = space(space(keyEnd) + 1);
    const valueEnd = end(valueStart);
    if (key === 'weightsManifest') span = [valueStart, valueEnd];
    i = space(valueEnd);
    if (text[i] === ',') i++;
  }
  if (!span) throw new Error('no weightsManifest');
  const manifest = JSON.parse(text.slice(span[0], span[1])) as Record<string, unknown>[];
  const stripped = manifest.map((g) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, k === 'paths' ? [] : v])));
  const json = new TextEncoder().encode(text.slice(0, span[0]) + JSON.stringify(stripped) + text.slice(span[1]));
  const parts = [json, ...files.slice(1).map((f) => f.bytes)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

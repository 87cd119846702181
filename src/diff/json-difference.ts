/**
 * Where two parsed JSON documents first differ, for messages: a TF.js model's frame (its
 * model.json, less the float weights) differs between a base and a target, and the user needs to
 * see what (`modelTopology.config.name: "sequential_1" -> "sequential_3"`) to know whether it is a
 * real graph change or a name their build made up.
 *
 * Pure code (no node, no tfjs).
 */

/** A path and the two values there, or undefined when the documents are equal. */
export interface JsonDifference {
  /** `a.b[3].c`; keys that are not identifiers are quoted (`node["x.y"]`). */
  path: string;
  /** The base's value there (JSON, cut to 80 characters), or `(absent)`. */
  base: string;
  target: string;
}

function show(v: unknown): string {
  if (v === undefined) return '(absent)';
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function step(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]`;
}

/** The first difference of `a` and `b` in document order (object keys sorted), depth first. */
export function firstJsonDifference(a: unknown, b: unknown, path = ''): JsonDifference | undefined {
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const d = firstJsonDifference(a[i], b[i], step(path, i));
      if (d) return d;
    }
    return undefined;
  }
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (isObject(a) && isObject(b)) {
    for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const d = firstJsonDifference(a[key], b[key], step(path, key));
      if (d) return d;
    }
    return undefined;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? undefined : { path: path || '(the whole document)', base: show(a), target: show(b) };
}

/**
 * A structural pre-scan of one msgpack document, run over hostile bytes before msgpackr sees
 * them. msgpackr has no limits of its own (measured with msgpackr 1.11):
 *
 * - an array header allocates `new Array(declaredLength)` before reading any element: 5 bytes
 *   declaring 30M elements cost 240 MB;
 * - bytes after the document make it `JSON.stringify` the whole decoded value for its error
 *   message: 20 MB of payload plus one stray byte took 20 s and 1.7 GB;
 * - extension types build BigInts, RegExps, Errors, Sets and cyclic structured clones;
 * - nesting recurses, so a deep document is a stack overflow;
 * - every value becomes a JS value: 1 MB of empty maps became 64 MB of objects, 2 MB of empty
 *   binaries 104 MB of Uint8Array views (so a 256 MiB input could ask for 16 GB).
 *
 * The scan walks the bytes once with an explicit stack (no recursion, no allocation beyond the
 * stack of open containers) and refuses all of that: every declared length must fit in the
 * bytes that remain, every container may hold at most `maxContainerLength` entries and nest at
 * most `maxDepth` deep, the document may hold at most `maxValues` values in all, map keys must
 * be scalars, extension types and the reserved 0xc1 byte are not allowed, and the document must
 * end exactly at the end of the input. What passes can be handed to msgpackr: its JS values
 * then cost at most `maxValues` small objects (tens of MB), plus strings of at most twice their
 * bytes; binaries are views into the input, not copies.
 *
 * Pure (no node, no tfjs): part of the device applier.
 */

export interface MsgpackLimits {
  /** Deepest nesting of maps and arrays (the top-level map is depth 1). */
  maxDepth: number;
  /** Most elements in one array, or entries in one map. */
  maxContainerLength: number;
  /** Most values in the whole document (every key, value and element counts). */
  maxValues: number;
}

/**
 * Limits for payload documents: v1 nests 4 deep (document, patch list, patch, shape) and holds
 * about 30 values per patched tensor, so 262,144 values allow ~8,000 patched tensors.
 */
export const PAYLOAD_MSGPACK_LIMITS: MsgpackLimits = { maxDepth: 8, maxContainerLength: 1 << 20, maxValues: 1 << 18 };

/**
 * Check that `bytes` hold exactly one well-formed msgpack document within `limits`.
 * Returns null when it does, else a sentence saying what is wrong and at which byte.
 */
export function msgpackStructureProblem(bytes: Uint8Array, limits: MsgpackLimits = PAYLOAD_MSGPACK_LIMITS): string | null {
  const end = bytes.length;
  // The open maps/arrays, innermost last: values still to read (a map counts keys and values).
  const remaining = new Float64Array(limits.maxDepth + 1);
  const isMap = new Uint8Array(limits.maxDepth + 1);
  let depth = 0;
  let pos = 0;
  let values = 0;
  /** A big-endian length of `size` bytes at `pos` (advancing it), or null past the end. */
  const readLength = (size: 1 | 2 | 4): number | null => {
    if (pos + size > end) return null;
    let v = 0;
    for (let i = 0; i < size; i++) v = v * 256 + bytes[pos + i];
    pos += size;
    return v;
  };

  do {
    const start = pos;
    if (++values > limits.maxValues) return `the document holds more than ${limits.maxValues} values (at byte ${start}); a payload holds about 30 per patched tensor`;
    if (pos >= end) return `the document ends at byte ${end} inside ${depth} unfinished map(s)/array(s)`;
    const isKey = depth > 0 && isMap[depth] === 1 && remaining[depth] % 2 === 0;
    const token = bytes[pos++];
    let skip = 0;
    /** -1: a scalar; else the entry count of the map/array that starts here. */
    let entries = -1;
    let opensMap = false;

    if (token <= 0x7f || token >= 0xe0 || token === 0xc0 || token === 0xc2 || token === 0xc3) {
      // positive/negative fixint, nil, false, true: one byte
    } else if (token <= 0x8f) {
      entries = token & 0x0f;
      opensMap = true;
    } else if (token <= 0x9f) {
      entries = token & 0x0f;
    } else if (token <= 0xbf) {
      skip = token & 0x1f; // fixstr
    } else {
      switch (token) {
        case 0xc4: case 0xc5: case 0xc6: // bin 8/16/32
        case 0xd9: case 0xda: case 0xdb: { // str 8/16/32
          const size = (token === 0xc4 || token === 0xd9 ? 1 : token === 0xc5 || token === 0xda ? 2 : 4) as 1 | 2 | 4;
          const n = readLength(size);
          if (n === null) return `the length of the ${token <= 0xc6 ? 'binary' : 'string'} at byte ${start} is cut off by the end of the input`;
          skip = n;
          break;
        }
        case 0xca: skip = 4; break; // float 32
        case 0xcb: skip = 8; break; // float 64
        case 0xcc: case 0xd0: skip = 1; break; // (u)int 8
        case 0xcd: case 0xd1: skip = 2; break; // (u)int 16
        case 0xce: case 0xd2: skip = 4; break; // (u)int 32
        case 0xcf: case 0xd3: skip = 8; break; // (u)int 64
        case 0xdc: case 0xdd: case 0xde: case 0xdf: { // array 16/32, map 16/32
          const n = readLength(token === 0xdc || token === 0xde ? 2 : 4);
          if (n === null) return `the length of the ${token <= 0xdd ? 'array' : 'map'} at byte ${start} is cut off by the end of the input`;
          entries = n;
          opensMap = token >= 0xde;
          break;
        }
        case 0xc1:
          return `byte ${start} is 0xc1, which msgpack reserves and never uses`;
        default: // 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext
          return `byte ${start} starts a msgpack extension type (0x${token.toString(16)}), which payloads never contain`;
      }
    }

    const kind = opensMap ? 'map' : 'array';
    if (isKey && (entries >= 0 || token === 0xc4 || token === 0xc5 || token === 0xc6)) {
      return `the map key at byte ${start} is ${entries >= 0 ? `a${opensMap ? '' : 'n'} ${kind}` : 'binary'}; keys must be strings or numbers`;
    }
    if (entries >= 0) {
      if (entries > limits.maxContainerLength) return `the ${kind} at byte ${start} declares ${entries} entries, more than the limit of ${limits.maxContainerLength}`;
      // Every element takes at least one byte: a count beyond the remaining bytes is a lie.
      const children = opensMap ? 2 * entries : entries;
      if (children > end - pos) return `the ${kind} at byte ${start} declares ${entries} entries but only ${end - pos} bytes remain`;
      if (depth + 1 > limits.maxDepth) return `maps/arrays nest deeper than ${limits.maxDepth} levels at byte ${start}`;
      if (depth > 0) remaining[depth]--;
      if (children > 0) {
        depth++;
        remaining[depth] = children;
        isMap[depth] = opensMap ? 1 : 0;
        continue;
      }
    } else {
      if (skip > end - pos) return `the value at byte ${start} declares ${skip} bytes but only ${end - pos} remain`;
      pos += skip;
      if (depth > 0) remaining[depth]--;
    }
    // One value is complete: close the containers it finished.
    while (depth > 0 && remaining[depth] === 0) depth--;
  } while (depth > 0);
  if (pos !== end) return `${end - pos} byte(s) follow the end of the document at byte ${pos}`;
  return null;
}

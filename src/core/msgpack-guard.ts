/**
 * A structural pre-scan of one msgpack document, run over hostile bytes before msgpackr sees
 * them. msgpackr has no limits of its own (measured with msgpackr 1.11):
 *
 * - an array header allocates `new Array(declaredLength)` before reading any element: 5 bytes
 *   declaring 30M elements cost 240 MB;
 * - bytes after the document make it `JSON.stringify` the whole decoded value for its error
 *   message: 20 MB of payload plus one stray byte took 20 s and 1.7 GB;
 * - extension types build BigInts, RegExps, Errors, Sets and cyclic structured clones;
 * - nesting recurses, so a deep document is a stack overflow.
 *
 * The scan walks the bytes once with an explicit stack (no recursion, no allocation beyond the
 * stack of open containers) and refuses all of that: every declared length must fit in the
 * bytes that remain, every container may hold at most `maxContainerLength` entries and nest at
 * most `maxDepth` deep, map keys must be scalars, extension types and the reserved 0xc1 byte are
 * not allowed, and the document must end exactly at the end of the input. What passes can be
 * handed to msgpackr: its allocations are then bounded by a small multiple of the input size.
 *
 * Pure (no node, no tfjs): part of the device applier.
 */

export interface MsgpackLimits {
  /** Deepest nesting of maps and arrays (the top-level map is depth 1). */
  maxDepth: number;
  /** Most elements in one array, or entries in one map. */
  maxContainerLength: number;
}

/** Limits for payload documents: v1 nests 4 deep (document, patch list, patch, shape). */
export const PAYLOAD_MSGPACK_LIMITS: MsgpackLimits = { maxDepth: 8, maxContainerLength: 1 << 20 };

interface OpenContainer {
  /** Values still to read (a map counts keys and values). */
  remaining: number;
  isMap: boolean;
}

/**
 * Check that `bytes` hold exactly one well-formed msgpack document within `limits`.
 * Returns null when it does, else a sentence saying what is wrong and at which byte.
 */
export function msgpackStructureProblem(bytes: Uint8Array, limits: MsgpackLimits = PAYLOAD_MSGPACK_LIMITS): string | null {
  const end = bytes.length;
  const stack: OpenContainer[] = [];
  let pos = 0;
  let first = true;

  while (first || stack.length > 0) {
    first = false;
    const start = pos;
    if (pos >= end) return `the document ends at byte ${end} inside ${stack.length} unfinished map(s)/array(s)`;
    const top = stack[stack.length - 1];
    const isKey = top !== undefined && top.isMap && top.remaining % 2 === 0;
    const token = bytes[pos++];
    let skip = 0;
    let container: OpenContainer | null = null;
    let containerLength = 0;

    const readLength = (size: 1 | 2 | 4): number | null => {
      if (pos + size > end) return null;
      let v = 0;
      for (let i = 0; i < size; i++) v = v * 256 + bytes[pos + i];
      pos += size;
      return v;
    };

    if (token <= 0x7f || token >= 0xe0 || token === 0xc0 || token === 0xc2 || token === 0xc3) {
      // positive/negative fixint, nil, false, true: one byte
    } else if (token <= 0x8f) {
      containerLength = token & 0x0f;
      container = { remaining: 2 * containerLength, isMap: true };
    } else if (token <= 0x9f) {
      containerLength = token & 0x0f;
      container = { remaining: containerLength, isMap: false };
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
          const isMap = token >= 0xde;
          containerLength = n;
          container = { remaining: isMap ? 2 * n : n, isMap };
          break;
        }
        case 0xc1:
          return `byte ${start} is 0xc1, which msgpack reserves and never uses`;
        default: // 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext
          return `byte ${start} starts a msgpack extension type (0x${token.toString(16)}), which payloads never contain`;
      }
    }

    if (isKey && (container !== null || token === 0xc4 || token === 0xc5 || token === 0xc6)) {
      return `the map key at byte ${start} is ${container ? (container.isMap ? 'a map' : 'an array') : 'binary'}; keys must be strings or numbers`;
    }
    if (container) {
      if (containerLength > limits.maxContainerLength) {
        return `the ${container.isMap ? 'map' : 'array'} at byte ${start} declares ${containerLength} entries, more than the limit of ${limits.maxContainerLength}`;
      }
      // Every element takes at least one byte: a count beyond the remaining bytes is a lie.
      if (container.remaining > end - pos) {
        return `the ${container.isMap ? 'map' : 'array'} at byte ${start} declares ${containerLength} entries but only ${end - pos} bytes remain`;
      }
      if (stack.length + 1 > limits.maxDepth) return `maps/arrays nest deeper than ${limits.maxDepth} levels at byte ${start}`;
    } else if (skip > end - pos) {
      return `the value at byte ${start} declares ${skip} bytes but only ${end - pos} remain`;
    }
    pos += skip;

    // One value is complete: count it against its container, then close finished containers.
    if (top) top.remaining--;
    if (container && container.remaining > 0) {
      stack.push(container);
    } else {
      while (stack.length > 0 && stack[stack.length - 1].remaining === 0) stack.pop();
    }
  }
  if (pos !== end) return `${end - pos} byte(s) follow the end of the document at byte ${pos}`;
  return null;
}

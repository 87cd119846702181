/**
 * A deliberately non-canonical msgpack writer, for the "alt-encoding" vector and the invalid
 * payloads the reference encoder refuses to write: every map a map16, every key a str8, strings
 * str16, integers uint64/int64, non-integers float64, binaries bin32, arrays array16, keys in
 * reverse order.
 */

export function writeWideMsgpack(value: unknown): Uint8Array {
  const out: number[] = [];
  const be = (v: bigint, bytes: number) => {
    for (let s = BigInt(8 * (bytes - 1)); s >= 0n; s -= 8n) out.push(Number((v >> s) & 0xffn));
  };
  const str = (s: string, key: boolean) => {
    const b = new TextEncoder().encode(s);
    if (key) out.push(0xd9, b.length);
    else {
      out.push(0xda);
      be(BigInt(b.length), 2);
    }
    out.push(...b);
  };
  const write = (v: unknown): void => {
    if (v === null) out.push(0xc0);
    else if (typeof v === 'boolean') out.push(v ? 0xc3 : 0xc2);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && !Object.is(v, -0)) {
        out.push(v >= 0 ? 0xcf : 0xd3);
        be(BigInt.asUintN(64, BigInt(v)), 8);
      } else {
        out.push(0xcb);
        const b = new Uint8Array(8);
        new DataView(b.buffer).setFloat64(0, v);
        out.push(...b);
      }
    } else if (typeof v === 'string') str(v, false);
    else if (v instanceof Uint8Array) {
      out.push(0xc6);
      be(BigInt(v.length), 4);
      out.push(...v);
    } else if (Array.isArray(v)) {
      out.push(0xdc);
      be(BigInt(v.length), 2);
      v.forEach(write);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).reverse();
      out.push(0xde);
      be(BigInt(entries.length), 2);
      for (const [k, x] of entries) {
        str(k, true);
        write(x);
      }
    } else throw new TypeError(`cannot write ${typeof v}`);
  };
  write(value);
  return Uint8Array.from(out);
}

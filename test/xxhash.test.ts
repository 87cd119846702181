import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import xxhash from 'xxhash-wasm';
import { xxh32, xxh64, Xxh64 } from '../src/core/xxhash-pure.ts';
import { getHasher, hex64, bytes64LE, fromBytes64LE, type Hasher } from '../src/core/hasher.ts';

interface XxhashVectors {
  cases: { input: string; xxh32: Record<string, string>; xxh64: Record<string, string> }[];
}
const vectors = JSON.parse(readFileSync(new URL('./vectors/xxhash.json', import.meta.url), 'utf8')) as XxhashVectors;
const fromHex = (h: string): Uint8Array => new Uint8Array(h.match(/../g)?.map((x) => parseInt(x, 16)) ?? []);
const wasm = await xxhash();
const utf8 = new TextEncoder();

/** `bytes` copied into a bigger buffer at `offset`, so the view has a non-zero byteOffset. */
function atOffset(bytes: Uint8Array, offset: number): Uint8Array {
  const buf = new Uint8Array(offset + bytes.length + 3).fill(0xa5);
  buf.set(bytes, offset);
  return buf.subarray(offset, offset + bytes.length);
}

/** Split `bytes` at the given (unsorted, possibly repeated) cut points. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    parts.push(bytes.subarray(prev, c));
    prev = c;
  }
  return parts;
}

const seed64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

test('published xxHash reference values (independent of xxhash-wasm)', () => {
  assert.equal(xxh32(new Uint8Array()), 0x02cc5d05);
  assert.equal(xxh64(new Uint8Array()), 0xef46db3751d8e999n);
  assert.equal(xxh32(utf8.encode('abc')), 0x32d153ff);
  assert.equal(xxh64(utf8.encode('abc')), 0x44bc2cf5ad770999n);
});

test('pure xxh32 / xxh64 match every vector (one-shot, byte-by-byte streaming, offset views)', () => {
  assert.ok(vectors.cases.length >= 46);
  for (const c of vectors.cases) {
    const input = fromHex(c.input);
    for (const [seed, want] of Object.entries(c.xxh32)) {
      assert.equal(xxh32(input, Number(seed)).toString(16).padStart(8, '0'), want, `xxh32 len ${input.length} seed ${seed}`);
      assert.equal(xxh32(atOffset(input, 1), Number(seed)).toString(16).padStart(8, '0'), want);
    }
    for (const [seed, want] of Object.entries(c.xxh64)) {
      assert.equal(hex64(xxh64(input, BigInt(seed))), want, `xxh64 len ${input.length} seed ${seed}`);
      const s = new Xxh64(BigInt(seed));
      for (let i = 0; i < input.length; i++) s.update(atOffset(input.subarray(i, i + 1), i % 7));
      assert.equal(hex64(s.digest()), want, `streamed xxh64 len ${input.length} seed ${seed}`);
    }
  }
});

test('pure xxh32 equals xxhash-wasm on random inputs, seeds and byteOffsets', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 15 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (bytes, off, seed) => {
      assert.equal(xxh32(atOffset(bytes, off), seed), wasm.h32Raw(bytes, seed));
    }),
    { numRuns: 500 },
  );
});

test('pure xxh64 equals xxhash-wasm on random inputs, 64-bit seeds, offsets and chunk splits', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.nat({ max: 15 }),
      seed64,
      fc.array(fc.nat(), { maxLength: 12 }),
      (bytes, off, seed, cuts) => {
        const want = wasm.h64Raw(bytes, seed);
        const view = atOffset(bytes, off);
        assert.equal(xxh64(view, seed), want);
        const s = new Xxh64(seed);
        for (const part of split(view, cuts)) s.update(part);
        assert.equal(s.digest(), want);
      },
    ),
    { numRuns: 500 },
  );
});

test('seeds are taken modulo 2^32 / 2^64 like xxhash-wasm', () => {
  const bytes = fromHex('00112233445566778899aabbccddeeff0102030405');
  assert.equal(xxh32(bytes, 2 ** 32 + 5), wasm.h32Raw(bytes, 5));
  assert.equal(xxh32(bytes, -1), wasm.h32Raw(bytes, 2 ** 32 - 1));
  assert.equal(xxh64(bytes, (1n << 64n) + 9n), wasm.h64Raw(bytes, 9n));
  assert.equal(xxh64(bytes, -1n), wasm.h64Raw(bytes, (1n << 64n) - 1n));
});

test('Xxh64.digest leaves the state usable: more updates continue the same stream', () => {
  const bytes = fromHex(vectors.cases[vectors.cases.length - 1].input);
  const s = new Xxh64(7n).update(bytes.subarray(0, 40));
  assert.equal(s.digest(), wasm.h64Raw(bytes.subarray(0, 40), 7n));
  s.update(bytes.subarray(40));
  assert.equal(s.digest(), wasm.h64Raw(bytes, 7n));
  assert.equal(s.digest(), wasm.h64Raw(bytes, 7n));
});

test('pure hashes agree with xxhash-wasm on a multi-megabyte input', () => {
  const big = new Uint8Array((3 << 20) + 13);
  for (let i = 0; i < big.length; i++) big[i] = Math.imul(i, 2654435761) >>> 24;
  assert.equal(xxh32(big, 3), wasm.h32Raw(big, 3));
  assert.equal(xxh64(big, 3n), wasm.h64Raw(big, 3n));
});

test('hasher facade: wasm and pure kinds agree, including chunked inputs over 1 MiB', async () => {
  const w = await getHasher();
  const p = await getHasher({ prefer: 'pure' });
  assert.equal(w.kind, 'wasm');
  assert.equal(p.kind, 'pure');
  assert.equal(await getHasher(), w, 'wasm hasher is cached');
  assert.equal(await getHasher({ prefer: 'pure' }), p, 'pure hasher is cached');
  assert.equal(await getHasher({ prefer: 'wasm' }), w);

  const big = new Uint8Array((2 << 20) + (1 << 19) + 5);
  for (let i = 0; i < big.length; i++) big[i] = Math.imul(i + 11, 0x9e3779b1) >>> 24;
  const view = big.subarray(3);
  const want64 = wasm.h64Raw(view, 99n);
  const want32 = wasm.h32Raw(view, 99);
  for (const h of [w, p]) {
    assert.equal(h.h64(view, 99n), want64, `${h.kind} h64`);
    assert.equal(h.h32(view, 99), want32, `${h.kind} h32`);
    const s = h.create64(99n);
    s.update(view.subarray(0, 1000)).update(view.subarray(1000));
    assert.equal(s.digest(), want64, `${h.kind} create64`);
    assert.equal(h.h64(new Uint8Array()), 0xef46db3751d8e999n);
    assert.equal(h.h32(new Uint8Array()), 0x02cc5d05);
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), seed64, (bytes, s32, s64) => {
      const hashes = (h: Hasher) => [h.h32(bytes, s32), h.h64(bytes, s64), h.create64(s64).update(bytes).digest()];
      assert.deepEqual(hashes(w), hashes(p));
    }),
    { numRuns: 200 },
  );
});

test('hex64, bytes64LE and fromBytes64LE', () => {
  assert.equal(hex64(0n), '0000000000000000');
  assert.equal(hex64(0xef46db3751d8e999n), 'ef46db3751d8e999');
  assert.equal(hex64(0xabcn), '0000000000000abc');
  assert.deepEqual([...bytes64LE(0x0102030405060708n)], [8, 7, 6, 5, 4, 3, 2, 1]);
  assert.deepEqual([...bytes64LE((1n << 64n) - 1n)], [255, 255, 255, 255, 255, 255, 255, 255]);
  assert.equal(fromBytes64LE(new Uint8Array([8, 7, 6, 5, 4, 3, 2, 0x81])), 0x8102030405060708n);
  for (const bad of [-1n, 1n << 64n]) {
    assert.throws(() => hex64(bad), RangeError);
    assert.throws(() => bytes64LE(bad), RangeError);
  }
  assert.throws(() => fromBytes64LE(new Uint8Array(7)), RangeError);
  fc.assert(
    fc.property(seed64, (h) => {
      assert.equal(fromBytes64LE(bytes64LE(h)), h);
      assert.equal(BigInt('0x' + hex64(h)), h);
      assert.equal(hex64(h).length, 16);
    }),
  );
});

const root = new URL('../', import.meta.url);

/**
 * Runs `body` (an ESM snippet with top-level await, `$` = file URL of the repo root) in a fresh
 * Node process with tsx, after `setup` changed the global WebAssembly. One .ts module is imported
 * before `setup` because tsx itself uses WebAssembly the first time it parses a module.
 */
function runChild(setup: string, body: string): unknown {
  const code = `const $ = ${JSON.stringify(root.href)};
await import($ + 'src/core/xxhash-pure.ts');
${setup}
${body}`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root,
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

test('getHasher() works without WebAssembly (Hermes-like runtime), in a child process', () => {
  const c = vectors.cases[vectors.cases.length - 1];
  const result = runChild(
    'delete globalThis.WebAssembly;',
    `const { getHasher } = await import($ + 'src/core/hasher.ts');
const { tensorSeed } = await import($ + 'src/core/bucket.ts');
const h = await getHasher();
const input = new Uint8Array(${JSON.stringify([...fromHex(c.input)])});
console.log(JSON.stringify({
  wasm: typeof WebAssembly,
  kind: h.kind,
  h32: h.h32(input, 1),
  h64: h.create64(1n).update(input.subarray(0, 333)).update(input.subarray(333)).digest().toString(16),
  seed: tensorSeed('dense/kernel', 42),
}));`,
  );
  assert.deepEqual(result, {
    wasm: 'undefined',
    kind: 'pure',
    h32: parseInt(c.xxh32['1'], 16),
    h64: c.xxh64['1'].replace(/^0+/, ''),
    seed: wasm.h32Raw(utf8.encode('dense/kernel'), 42),
  });
});

test('getHasher() falls back to pure when the WebAssembly module is refused (a CSP that forbids compiling it), in a child process', () => {
  const result = runChild(
    "WebAssembly.Module = function () { throw new WebAssembly.CompileError('blocked'); };",
    `const { getHasher } = await import($ + 'src/core/hasher.ts');
const h = await getHasher();
console.log(JSON.stringify({ kind: h.kind, again: (await getHasher()) === h, empty: h.h64(new Uint8Array()).toString(16) }));`,
  );
  assert.deepEqual(result, { kind: 'pure', again: true, empty: 'ef46db3751d8e999' });
});

test('the pure core imports nothing from node, tfjs or Buffer; its XXH64 in WebAssembly is its own module (no xxhash-wasm)', () => {
  // source without comments
  const read = (p: string) =>
    readFileSync(new URL(p, root), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  for (const file of ['src/core/xxhash-pure.ts', 'src/core/bucket.ts', 'src/core/hasher.ts', 'src/core/region-kernel.ts']) {
    const src = read(file);
    const specifiers = [...src.matchAll(/^\s*import\s[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1]);
    for (const s of specifiers) assert.match(s, /^\.\/[\w-]+\.ts$/, `${file} statically imports ${s}`);
    assert.doesNotMatch(src, /\bBuffer\b|node:|tfjs|require\(|xxhash-wasm|import\(/, file);
  }
  assert.doesNotMatch(read('src/core/xxhash-pure.ts') + read('src/core/bucket.ts'), /WebAssembly/);
});

test('the WebAssembly XXH64 equals the pure one on every vector and on random inputs, seeds, offsets and splits', async () => {
  const w = await getHasher();
  assert.equal(w.kind, 'wasm');
  for (const c of vectors.cases) {
    const input = fromHex(c.input);
    for (const [seed, want] of Object.entries(c.xxh64)) {
      assert.equal(hex64(w.h64(atOffset(input, 3), BigInt(seed))), want, `xxh64 len ${input.length} seed ${seed}`);
      const s = w.create64(BigInt(seed));
      for (let i = 0; i < input.length; i += 7) s.update(input.subarray(i, i + 7));
      assert.equal(hex64(s.digest()), want, `streamed by 7, len ${input.length} seed ${seed}`);
    }
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 15 }), seed64, fc.array(fc.nat(), { maxLength: 12 }), (bytes, off, seed, cuts) => {
      const want = wasm.h64Raw(bytes, seed);
      const s = w.create64(seed);
      for (const part of split(atOffset(bytes, off), cuts)) s.update(part);
      assert.equal(s.digest(), want);
      assert.equal(s.digest(), want, 'digest leaves the stream as it was');
    }),
    { numRuns: 500 },
  );
  // Streams longer than the module's region, interleaved with each other.
  const big = new Uint8Array((1 << 18) + 77);
  for (let i = 0; i < big.length; i++) big[i] = Math.imul(i, 2246822519) >>> 25;
  const a = w.create64(5n);
  const b = w.create64(6n);
  for (let i = 0; i < big.length; i += 40_000) {
    a.update(big.subarray(i, i + 40_000));
    b.update(big.subarray(i, i + 40_000));
  }
  assert.equal(a.digest(), wasm.h64Raw(big, 5n));
  assert.equal(b.digest(), wasm.h64Raw(big, 6n));
});

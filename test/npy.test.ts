import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DataError, ModelFormatError, UsageError } from '../src/core/errors.ts';
import { loadXY, saveNpy, loadNpy } from '../src/io/npy/files.ts';
import { parseNpy, writeNpy } from '../src/io/npy/npy.ts';

/**
 * Builds a .npy file by hand: magic, version, header length, the header text padded with spaces
 * to a multiple of 64 bytes and ended by '\n', then the given data bytes.
 */
function npy(header: string, data: number[], major = 1): Uint8Array {
  const pre = major === 1 ? 10 : 12;
  const total = Math.ceil((pre + header.length + 1) / 64) * 64;
  const hlen = total - pre;
  const text = header.padEnd(hlen - 1, ' ') + '\n';
  const out = new Uint8Array(total + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  if (major === 1) out.set([hlen & 0xff, hlen >> 8], 8);
  else out.set([hlen & 0xff, (hlen >> 8) & 0xff, (hlen >> 16) & 0xff, hlen >>> 24], 8);
  for (let i = 0; i < text.length; i++) out[pre + i] = text.charCodeAt(i);
  out.set(data, total);
  return out;
}

const hdr = (descr: string, shape: string, fortran = 'False') =>
  `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((h) => parseInt(h, 16)));
}

describe('parseNpy on hand-written files', () => {
  it('reads little-endian float32 with a 2-D shape', () => {
    // 1.5, -2, 0.25 as <f4
    const a = parseNpy(npy(hdr('<f4', '(1, 3)'), [0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0x80, 0x3e]));
    assert.equal(a.dtype, '<f4');
    assert.deepEqual(a.shape, [1, 3]);
    assert.ok(a.data instanceof Float32Array);
    assert.deepEqual(Array.from(a.data), [1.5, -2, 0.25]);
    assert.equal(a.fortranOrder, false);
  });

  it('reads big-endian float32, int32 and float64', () => {
    const f = parseNpy(npy(hdr('>f4', '(2,)'), [0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0]));
    assert.ok(f.data instanceof Float32Array);
    assert.deepEqual(Array.from(f.data), [1.5, -2]);
    const i = parseNpy(npy(hdr('>i4', '(3,)'), [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 1, 0x86, 0xa0]));
    assert.ok(i.data instanceof Int32Array);
    assert.deepEqual(Array.from(i.data), [1, -2, 100000]);
    const d = parseNpy(npy(hdr('>f8', '(1,)'), [0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18]));
    assert.ok(d.data instanceof Float64Array);
    assert.equal(d.data[0], Math.PI);
  });

  it('reads 1- and 2-byte integer and bool dtypes', () => {
    const u1 = parseNpy(npy(hdr('|u1', '(3,)'), [0, 255, 7]));
    assert.ok(u1.data instanceof Uint8Array);
    assert.deepEqual(Array.from(u1.data), [0, 255, 7]);
    const i1 = parseNpy(npy(hdr('|i1', '(3,)'), [0x80, 0x7f, 0]));
    assert.ok(i1.data instanceof Int8Array);
    assert.deepEqual(Array.from(i1.data), [-128, 127, 0]);
    const i2 = parseNpy(npy(hdr('<i2', '(2, 1)'), [0x00, 0x80, 0xff, 0x7f]));
    assert.ok(i2.data instanceof Int16Array);
    assert.deepEqual(i2.shape, [2, 1]);
    assert.deepEqual(Array.from(i2.data), [-32768, 32767]);
    const b1 = parseNpy(npy(hdr('|b1', '(3,)'), [1, 0, 1]));
    assert.ok(b1.data instanceof Uint8Array);
    assert.deepEqual(Array.from(b1.data), [1, 0, 1]);
  });

  it('narrows int64 to Int32Array when every value fits, and refuses otherwise', () => {
    const ok = parseNpy(
      npy(hdr('<i8', '(4,)'), [
        0, 0, 0, 0, 0, 0, 0, 0, // 0
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // -1
        0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, // 2147483647
        0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff, // -2147483648
      ]),
    );
    assert.ok(ok.data instanceof Int32Array);
    assert.deepEqual(Array.from(ok.data), [0, -1, 2147483647, -2147483648]);
    const big = npy(hdr('<i8', '(1,)'), [0, 0, 0, 0x80, 0, 0, 0, 0]); // 2^31
    assert.throws(() => parseNpy(big), (e: unknown) => e instanceof ModelFormatError && /2147483648.*does not fit in int32/.test(e.message));
    const be = parseNpy(npy(hdr('>i8', '(1,)'), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]));
    assert.deepEqual(Array.from(be.data), [-5]);
  });

  it('reads a version 2 header', () => {
    const a = parseNpy(npy(hdr('<f4', '(2,)'), [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40], 2));
    assert.deepEqual(a.shape, [2]);
    assert.deepEqual(Array.from(a.data), [1, 2]);
  });

  it('reads scalars, empty arrays and double-quoted headers', () => {
    const s = parseNpy(npy(hdr('<i4', '()'), [7, 0, 0, 0]));
    assert.deepEqual(s.shape, []);
    assert.deepEqual(Array.from(s.data), [7]);
    const e = parseNpy(npy(hdr('<f4', '(0, 5)'), []));
    assert.deepEqual(e.shape, [0, 5]);
    assert.equal(e.data.length, 0);
    const q = parseNpy(npy(`{"descr": "<i4", "fortran_order": False, "shape": (1,)}`, [2, 0, 0, 0]));
    assert.deepEqual(Array.from(q.data), [2]);
  });

  it('reads the bytes numpy.save wrote (numpy 2.x, 128-byte header)', () => {
    // numpy.save(f, numpy.array([[1.5, -2], [0.25, 3e38]], dtype='<f4'))
    const bytes = hex(
      '934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2032292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0000c03f000000c00000803ee6b1617f',
    );
    const a = parseNpy(bytes);
    assert.deepEqual(a.shape, [2, 2]);
    assert.deepEqual(Array.from(a.data), [1.5, -2, 0.25, Math.fround(3e38)]);
  });

  it('rejects Fortran order unless asked, then returns the raw column-major data', () => {
    const bytes = npy(hdr('<f4', '(2, 2)', 'True'), [0, 0, 0, 0, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x3f, 0, 0, 0x80, 0x40]);
    assert.throws(() => parseNpy(bytes), (e: unknown) => e instanceof ModelFormatError && /Fortran \(column-major\) order, expected C \(row-major\)/.test(e.message));
    const a = parseNpy(bytes, { allowFortranOrder: true });
    assert.equal(a.fortranOrder, true);
    assert.deepEqual(Array.from(a.data), [0, 3, 1, 4]);
  });

  it('rejects unsupported dtypes with the list of supported ones', () => {
    for (const d of ['<c8', '<U3', '<f16', '|O', '<M8']) {
      assert.throws(
        () => parseNpy(npy(hdr(d, '(1,)'), new Array(16).fill(0))),
        (e: unknown) => e instanceof ModelFormatError && e.message.includes(`'${d}' is not supported`) && e.message.includes('expected one of'),
        d,
      );
    }
    const structured = npy(`{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }`, [0, 0, 0, 0]);
    assert.throws(() => parseNpy(structured), /structured dtypes are not supported/);
  });

  it('reports truncated data, truncated headers, bad magic and malformed headers', () => {
    const full = npy(hdr('<f4', '(3,)'), new Array(12).fill(0));
    assert.throws(
      () => parseNpy(full.subarray(0, full.length - 1)),
      (e: unknown) => e instanceof ModelFormatError && /needs 12 bytes, found 11/.test(e.message),
    );
    assert.throws(() => parseNpy(full.subarray(0, 40)), (e: unknown) => e instanceof ModelFormatError && /truncated .npy file/.test(e.message));
    assert.throws(() => parseNpy(new Uint8Array(0)), (e: unknown) => e instanceof ModelFormatError && /not a .npy file.*empty input/.test(e.message));
    assert.throws(() => parseNpy(new TextEncoder().encode('PK\x03\x04 this is a zip')), /not a .npy file/);
    const v9 = full.slice();
    v9[6] = 9;
    assert.throws(() => parseNpy(v9), /format version 9.0 is not supported/);
    assert.throws(() => parseNpy(npy(`{'descr': '<f4', 'fortran_order': False, 'shape': (3,`, [])), /header is malformed/);
    assert.throws(() => parseNpy(npy(`{'descr': '<f4', 'shape': (3,), }`, [])), /'fortran_order' is null: expected True or False/);
    assert.throws(() => parseNpy(npy(hdr('<f4', '(-1,)'), [])), /'shape'.*non-negative integers/);
    assert.throws(() => parseNpy(npy(`[1, 2]`, [])), /header is not a dict/);
  });
});

describe('writeNpy', () => {
  it('round-trips float32, int32 and uint8 through parseNpy', () => {
    const f = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 0.5 - 3);
    const a = parseNpy(writeNpy(f, [2, 3, 4]));
    assert.equal(a.dtype, '<f4');
    assert.deepEqual(a.shape, [2, 3, 4]);
    assert.deepEqual(a.data, f);
    const i = Int32Array.from([-2147483648, -1, 0, 2147483647]);
    const b = parseNpy(writeNpy(i, [4]));
    assert.equal(b.dtype, '<i4');
    assert.deepEqual(b.data, i);
    const u = Uint8Array.from([0, 1, 254, 255]);
    const c = parseNpy(writeNpy(u, [2, 2]));
    assert.equal(c.dtype, '|u1');
    assert.deepEqual(c.data, u);
    const s = parseNpy(writeNpy(Int32Array.of(5), []));
    assert.deepEqual(s.shape, []);
    const z = parseNpy(writeNpy(new Float32Array(0), [0, 49, 40, 1]));
    assert.deepEqual(z.shape, [0, 49, 40, 1]);
  });

  it('writes a v1 header NumPy reads: 64-byte aligned, newline-terminated, 1-tuples with a comma', () => {
    const bytes = writeNpy(Float32Array.of(1, 2), [2]);
    assert.deepEqual(Array.from(bytes.subarray(0, 8)), [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const hlen = bytes[8] | (bytes[9] << 8);
    assert.equal((10 + hlen) % 64, 0);
    const header = new TextDecoder().decode(bytes.subarray(10, 10 + hlen));
    assert.match(header, /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2,\), \} *\n$/);
    assert.equal(bytes.length, 10 + hlen + 8);
  });

  it('keeps only the viewed part of a subarray', () => {
    const big = Float32Array.from([9, 1, 2, 9]);
    const a = parseNpy(writeNpy(big.subarray(1, 3), [2]));
    assert.deepEqual(Array.from(a.data), [1, 2]);
  });

  it('refuses mismatched shapes and unsupported arrays with UsageError', () => {
    assert.throws(() => writeNpy(new Float32Array(6), [2, 2]), (e: unknown) => e instanceof UsageError && /holds 4 elements but the data has 6/.test(e.message));
    assert.throws(() => writeNpy(new Float64Array(2) as unknown as Float32Array, [2]), (e: unknown) => e instanceof UsageError && /Float64Array/.test(e.message));
    assert.throws(() => writeNpy(new Float32Array(2), [2.5]), UsageError);
  });
});

describe('loadXY / saveNpy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'npy-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes int64 from a BigInt64Array (Silero\'s 0-d sr.npy) and reads it back with loadNpy', () => {
    const path = join(dir, 'sr', 'sr.npy');
    saveNpy(path, BigInt64Array.of(16000n), []);
    const sr = loadNpy(path);
    assert.equal(sr.dtype, '<i8');
    assert.deepEqual(sr.shape, []);
    assert.deepEqual([...sr.data], [16000]);
    const many = BigInt64Array.of(-3n, 0n, 2147483647n, -2147483648n);
    saveNpy(join(dir, 'sr', 'many.npy'), many, [2, 2]);
    const back = loadNpy(join(dir, 'sr', 'many.npy'));
    assert.deepEqual([back.dtype, back.shape, [...back.data]], ['<i8', [2, 2], [-3, 0, 2147483647, -2147483648]]);
    // The bytes are numpy's: 8 little-endian bytes a value after the 64-byte-aligned header.
    const bytes = writeNpy(BigInt64Array.of(16000n), []);
    assert.equal(new DataView(bytes.buffer, bytes.length - 8).getBigInt64(0, true), 16000n);
  });

  it('loads a folder holding x.npy and y.npy with class indices', () => {
    const d = join(dir, 'idx');
    const x = Float32Array.from({ length: 3 * 2 * 2 }, (_, i) => i);
    saveNpy(join(d, 'x.npy'), x, [3, 2, 2]);
    saveNpy(join(d, 'y.npy'), Int32Array.of(2, 0, 1), [3]);
    const r = loadXY(d);
    assert.deepEqual(r.x, x);
    assert.deepEqual(r.xShape, [3, 2, 2]);
    assert.deepEqual(Array.from(r.y), [2, 0, 1]);
    assert.equal(r.n, 3);
    assert.equal(r.numClasses, 3);
    assert.equal(r.yFormat, 'indices');
    assert.equal(loadXY(d, { numClasses: 38 }).numClasses, 38);
    assert.throws(() => loadXY(d, { numClasses: 2 }), (e: unknown) => e instanceof DataError && /label 2 is out of range for 2 classes/.test(e.message));
  });

  it('turns one-hot y into class indices and the class count', () => {
    const d = join(dir, 'onehot');
    saveNpy(join(d, 'x.npy'), new Float32Array(3 * 4), [3, 4]);
    // float one-hot, written by hand as <f4 with 4 classes
    const f = (v: number) => Array.from(new Uint8Array(Float32Array.of(v).buffer));
    const rows = [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]];
    writeFileSync(join(d, 'y.npy'), npy(hdr('<f4', '(3, 4)'), rows.flat().flatMap(f)));
    const r = loadXY(d);
    assert.equal(r.yFormat, 'one-hot');
    assert.equal(r.numClasses, 4);
    assert.deepEqual(Array.from(r.y), [2, 0, 3]);
    // a row with two ones is not one-hot
    writeFileSync(join(d, 'y.npy'), npy(hdr('|u1', '(3, 4)'), [0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1]));
    assert.throws(() => loadXY(d), (e: unknown) => e instanceof DataError && /row 0 is not one-hot/.test(e.message));
  });

  it('accepts [n, 1] int64 labels and the path of a *_x.npy file', () => {
    saveNpy(join(dir, 'train_x.npy'), new Float32Array(2 * 3), [2, 3]);
    writeFileSync(join(dir, 'train_y.npy'), npy(hdr('<i8', '(2, 1)'), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    const r = loadXY(join(dir, 'train_x.npy'));
    assert.deepEqual(Array.from(r.y), [1, 0]);
    assert.equal(r.numClasses, 2);
    assert.ok(r.paths.y.endsWith('train_y.npy'));
  });

  it('converts non-float32 features to float32', () => {
    const d = join(dir, 'u8');
    saveNpy(join(d, 'x.npy'), Uint8Array.of(0, 128, 255, 1), [2, 2]);
    saveNpy(join(d, 'y.npy'), Int32Array.of(0, 1), [2]);
    const r = loadXY(d);
    assert.ok(r.x instanceof Float32Array);
    assert.deepEqual(Array.from(r.x), [0, 128, 255, 1]);
  });

  it('explains mismatched counts, bad labels and missing files', () => {
    const d = join(dir, 'bad');
    saveNpy(join(d, 'x.npy'), new Float32Array(4), [4, 1]);
    saveNpy(join(d, 'y.npy'), Int32Array.of(0, 1, 2), [3]);
    assert.throws(() => loadXY(d), (e: unknown) => e instanceof DataError && /expected 4 labels .* found 3/.test(e.message));
    saveNpy(join(d, 'y.npy'), Int32Array.of(0, -1, 0, 0), [4]);
    assert.throws(() => loadXY(d), (e: unknown) => e instanceof DataError && /label 1 is -1, expected a non-negative integer/.test(e.message));
    writeFileSync(join(d, 'y.npy'), npy(hdr('<f4', '(4,)'), [0, 0, 0, 0, 0, 0, 0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert.throws(() => loadXY(d), /label 1 is 0.5/);
    // Missing data is a data error too (ndiff train's exit 8), saying what it looked for.
    assert.throws(() => loadXY(join(dir, 'nowhere')), (e: unknown) => e instanceof DataError && /nowhere does not exist, so it is neither a folder holding x.npy and y.npy/.test(e.message));
    assert.throws(() => loadXY({ x: join(dir, 'missing_x.npy'), y: join(dir, 'missing_y.npy') }), (e: unknown) => e instanceof DataError && /cannot read .*missing_x\.npy/.test(e.message));
    writeFileSync(join(d, 'y.npy'), 'not numpy');
    assert.throws(() => loadXY(d), (e: unknown) => e instanceof DataError && e.message.includes(join(d, 'y.npy')));
  });

  it('inputs without labels name what is missing and what takes inputs alone (a teacher)', () => {
    const d = join(dir, 'inputs-only');
    saveNpy(join(d, 'x.npy'), new Float32Array(4), [4, 1]);
    // It said "cannot read .../y.npy: ENOENT ...; check the path".
    assert.throws(() => loadXY(d), (e: unknown) => e instanceof DataError && /y\.npy: no labels beside .*x\.npy: .*save y\.npy beside x\.npy, or, with inputs alone, train toward the v2 you trained \(ndiff train --teacher V2/.test(e.message));
  });

  it('saveNpy writes files loadNpy reads back', () => {
    const p = join(dir, 'deep', 'er', 'a.npy');
    saveNpy(p, Int32Array.of(4, 5, 6), [3]);
    assert.deepEqual(Array.from(loadNpy(p).data), [4, 5, 6]);
  });
});

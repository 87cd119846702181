/**
 * The applier's word-at-a-time readers (src/core/varint.ts `wordsOf`, `scanGaps`;
 * src/core/values.ts `firstNonFinite`) on payload bytes that sit past 2 GiB in their buffer (a
 * payload read into a large memory-mapped or pooled buffer): the 4-byte boundary is computed
 * from the view's byteOffset, which must stay unsigned there.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scanGaps, scannedPosition, wordsOf } from '../src/core/varint.ts';
import { firstNonFinite } from '../src/core/values.ts';

/** A view of `values` placed at `offset` in a buffer large enough for it (untouched pages cost no memory). */
function placedAt(values: Uint8Array, offset: number): Uint8Array {
  const view = new Uint8Array(new ArrayBuffer(offset + values.length + 8), offset, values.length);
  view.set(values);
  return view;
}

test('above 2 GiB in their buffer, payload bytes read as they do at the buffer\'s start', () => {
  // Gaps as one-byte varints (whole words summed at once) and a few longer ones.
  const gaps = [3, 1, 0, 7, 2, 2, 9, 4, 1, 0, 5, 6, 200, 3, 1, 1, 0, 2, 8, 4, 4, 1, 70000, 2, 3, 1, 0, 0, 5, 1, 2, 3];
  const encoded: number[] = [];
  for (let g of gaps) {
    while (g >= 0x80) {
      encoded.push((g & 0x7f) | 0x80);
      g = Math.floor(g / 128);
    }
    encoded.push(g);
  }
  const plain = Uint8Array.from(encoded);
  const size = 1e6;
  const want = scanGaps(plain, 0, gaps.length, -1, size);
  const wantLast = scannedPosition;
  assert.ok(want > 0, 'the gaps scan at the buffer\'s start');
  // Half-precision values with an infinity (0x7c00) at value 5.
  const halves = new Uint8Array(new Uint16Array([0x3c00, 0x4000, 0xc000, 0x0001, 0x3555, 0x7c00, 0x1234, 0x0000, 0x3c00, 0x4400, 0x4800]).buffer);
  for (const offset of [2 ** 31, 2 ** 31 + 1, 2 ** 31 + 2, 2 ** 31 + 3, 3 * 2 ** 30 + 1]) {
    const bytes = placedAt(plain, offset);
    assert.equal(scanGaps(bytes, 0, gaps.length, -1, size), want, `scanGaps at byte ${offset}`);
    assert.equal(scannedPosition, wantLast, `the last position at byte ${offset}`);
    const words = wordsOf(bytes);
    const skip = (4 - (offset % 4)) % 4;
    assert.equal(words.byteOffset, offset + skip, `the words start at the first 4-byte boundary past byte ${offset}`);
    assert.equal(words.length, Math.floor((plain.length - skip) / 4));
    assert.equal(firstNonFinite(placedAt(halves, offset), 'f16'), 5, `firstNonFinite at byte ${offset}`);
  }
});

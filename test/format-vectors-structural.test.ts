/**
 * The structural payload vectors over several files (test/vectors/payloads/structural-files.json,
 * docs/FORMAT.md §17, `fk` = `tfjs` and `fl`), checked two ways: by the reference device code
 * (neural-diff/rebuild's rebuildModelFiles with the TF.js files store), and by a second reading
 * written from §17 alone: the document read by msgpackr, the file list checked by the rules as
 * the section states them, the byte delta's output cut by `fl`. Hostile vectors are refused by
 * both, with the base files unchanged.
 */
import { specTfjsDeltaBase } from './helpers/spec-tfjs-base.ts';
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Packr } from 'msgpackr';
import { rebuildModelFiles } from '../src/apply/rebuild.ts';
import { applyByteDelta } from '../src/core/byte-delta.ts';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { PayloadFormatError } from '../src/core/errors.ts';
import { TfjsFilesStore } from '../src/io/tfjs/files-store.ts';
import type { InvalidStructuralFilesVector, StructuralFilesVector } from './vectors/payloads/structural-files.ts';

const dir = new URL('./vectors/payloads/', import.meta.url);
const read = (name: string) => new Uint8Array(readFileSync(new URL(name, dir)));
const index = JSON.parse(new TextDecoder().decode(read('structural-files.json'))) as { valid: StructuralFilesVector[]; invalid: InvalidStructuralFilesVector[] };
const filesOf = (list: { path: string; hex: string }[]) => list.map((f) => ({ path: f.path, bytes: new Uint8Array(Buffer.from(f.hex, 'hex')) }));
const TFJS = { kind: 'tfjs' as const, open: (f: readonly { path: string; bytes: Uint8Array }[]) => new TfjsFilesStore(f) };
const hasher = await getHasher();

/** §17's file list rules, as the section states them; a reason, or undefined for a sound list. */
function specFileListProblem(doc: Record<string, unknown>): string | undefined {
  const fk = doc.fk;
  const fl = doc.fl;
  if (fk === 'tflite' || (fk === 'onnx' && fl === undefined)) return fl === undefined ? undefined : 'fl on a single-file format';
  if (!Array.isArray(fl) || fl.length < 1 || fl.length > 4096) return 'fl must be 1 to 4096 entries';
  const seen = new Set<string>();
  let total = 0;
  for (const e of fl) {
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isInteger(e[1]) || e[1] < 0 || e[1] > 2 ** 31 - 1) return 'entry shape';
    const p = e[0];
    total += p.length;
    if (p.length === 0 || p.length > 255 || total > 65536) return 'length';
    if (p.startsWith('/') || p.includes('\\') || p.includes(':') || /[\x00-\x1f\x7f]/.test(p)) return 'absolute, backslash, colon or control character';
    const segs = p.split('/');
    if (segs.some((s) => s === '' || s === '.' || s === '..')) return 'segment';
    const low = segs.map((s) => s.toLowerCase());
    const name = low[low.length - 1];
    if (low.some((s) => s.includes('.ndiff-')) || name.startsWith('model.json.') || name.includes('.tmp-')) return "updater's file";
    if (seen.has(p.toLowerCase())) return 'duplicate';
    seen.add(p.toLowerCase());
  }
  if (fk === 'onnx') return /\.onnx$/i.test(fl[0][0]) ? undefined : 'the .onnx file first';
  if (!/\.json$/i.test(fl[0][0])) return 'the model JSON first';
  if (fl.slice(1).some((e) => /\.json$/i.test(e[0]))) return 'a shard named .json';
  return undefined;
}

const unpack = (bytes: Uint8Array) => new Packr({ useRecords: false, mapsAsObjects: true }).unpack(bytes) as Record<string, unknown>;

describe('structural payload vectors over several files (FORMAT.md §17)', () => {
  test('the index lists a valid case and the hostile file lists', () => {
    assert.ok(index.valid.length >= 1);
    for (const n of ['fl-traversal', 'fl-absolute', 'fl-backslash', 'fl-journal', 'fl-duplicate', 'fl-missing', 'fl-lengths']) assert.ok(index.invalid.some((v) => v.name === `invalid-structural-${n}`), n);
  });
  for (const v of index.valid) {
    test(`${v.name}: both readings rebuild the target files`, async () => {
      const payload = read(v.payload);
      const base = filesOf(v.base);
      const target = filesOf(v.target);
      // The second reading: fl checked by §17, the delta's output cut by it, then fingerprinted.
      const doc = unpack(payload);
      assert.equal(doc.nd, 7);
      assert.equal(doc.fk, 'tfjs');
      assert.equal(specFileListProblem(doc), undefined);
      const fl = doc.fl as [string, number][];
      assert.deepEqual(fl.map((e) => e[0]), target.map((f) => f.path));
      const inter = applyByteDelta(specTfjsDeltaBase(base), doc.rb as Uint8Array, 1 << 20);
      assert.equal(inter.length, fl.reduce((n, e) => n + e[1], 0));
      let at = 0;
      const interFiles = fl.map(([path, length]) => ({ path, bytes: inter.subarray(at, (at += length)) }));
      assert.equal(fingerprintStore(hasher, TFJS.open(interFiles)).fingerprint, v.intermediateFingerprint);
      assert.equal(Buffer.from(doc.if as Uint8Array).toString('hex'), v.intermediateFingerprint);
      // The reference device code.
      const r = await rebuildModelFiles(base, payload, TFJS);
      assert.equal(r.status, 'applied');
      assert.equal(r.header.targetFingerprint, v.targetFingerprint);
      assert.deepEqual(r.files!.map((f) => f.path), target.map((f) => f.path));
      r.files!.forEach((f, i) => assert.ok(Buffer.from(f.bytes).equals(Buffer.from(target[i].bytes)), f.path));
      assert.equal((await rebuildModelFiles(target, payload, TFJS)).status, 'already-applied');
    });
  }
  for (const v of index.invalid) {
    test(`${v.name}: refused by both readings, the base unchanged`, async () => {
      const payload = read(v.payload);
      const base = filesOf(index.valid.find((x) => x.name === v.base)!.base);
      const before = base.map((f) => f.bytes.slice());
      const doc = unpack(payload);
      const problem = specFileListProblem(doc);
      // fl-lengths is a sound list whose lengths the delta does not write: §17 refuses it at the rebuild.
      if (v.name === 'invalid-structural-fl-lengths') {
        const inter = applyByteDelta(specTfjsDeltaBase(base), doc.rb as Uint8Array, 1 << 20);
        assert.notEqual(inter.length, (doc.fl as [string, number][]).reduce((n, e) => n + e[1], 0));
      } else assert.ok(problem, `${v.name}: the second reading accepts it`);
      await assert.rejects(rebuildModelFiles(base, payload, TFJS), (e: Error) => e instanceof PayloadFormatError && e.code === v.code && e.message.includes(v.message));
      base.forEach((f, i) => assert.ok(Buffer.from(f.bytes).equals(Buffer.from(before[i]))));
    });
  }
});

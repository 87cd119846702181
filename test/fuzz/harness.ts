/**
 * The payload fuzzer: fast-check generates hostile inputs from a corpus of valid payloads and
 * runs each through the device applier. The oracle, for every input:
 *
 * - it resolves, or rejects with a NeuralDiffError (anything else is a crash);
 * - on rejection the weights are byte-identical to before (in memory, or every file of the
 *   model folder for disk cases);
 * - on success the model hashes to the target the payload promised;
 * - a tampered envelope under a require-signature policy never applies;
 * - each case finishes within `slowMs` (a hang watchdog in run.ts catches what never returns).
 *
 * Kinds of input: byte-level mutations of valid payloads (bit flips, interesting bytes and
 * 32-bit lengths, insertions, deletions, truncation, splices of other payloads' fragments);
 * structure-aware mutations (the msgpack document decoded, fields replaced by values of the
 * wrong type, huge counts and lengths, patches duplicated or dropped, then re-encoded); random
 * bytes; tampered signed envelopes; and mutated payloads re-signed with the trusted key (so the
 * decoder is fuzzed behind a valid signature too).
 */
import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyPayload, MemorySequenceStore, NeuralDiffError, type ApplyOptions } from '../../src/apply/index.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { decodePayload } from '../../src/core/format.ts';
import { applyToModelDir } from '../../src/io/tfjs/folder-update.ts';
import { recordModelDirDigests } from '../../src/io/tfjs/recorded-digests.ts';
import { openTfjsModelDir, writeModelDir } from '../../src/io/tfjs/index.ts';
import type { Corpus } from './corpus.ts';
import { folderBytes } from '../helpers/dirs.ts';

export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'int32'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; donor: number; from: number; length: number; at: number; replace: boolean };

export type FieldEdit =
  | { op: 'replace' | 'delete'; where: 'header' | 'patch'; patch: number; key: string; value: unknown }
  | { op: 'duplicate-patch' | 'drop-patch'; patch: number }
  | { op: 'many-patches'; count: number };

export type FuzzCase =
  | { mode: 'bytes' | 'signed-bytes' | 'resigned-bytes'; entry: number; mutations: Mutation[]; policy: Policy; seq: number | null }
  | { mode: 'structure' | 'resigned-structure'; entry: number; edits: FieldEdit[]; policy: Policy; seq: number | null }
  | { mode: 'random'; bytes: Uint8Array; policy: Policy; seq: number | null };

/** none: no keys; require: signed by the trusted key; optional: keys given, unsigned allowed. */
export type Policy = 'none' | 'require' | 'optional';

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcc, 0xce, 0xcf, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff];
const INTERESTING_INTS = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const HEADER_KEYS = ['nd', 'm', 'id', 'bf', 'tf', 'sq', 'bb', 'cb', 'ct', 'ex', 'x', 'p', 'zz'];
const PATCH_KEYS = ['t', 's', 'k', 'b', 'a', 'c', 'q', 'n', 'ic', 'i', 'h', 'nb', 'sg', 'r', 'v', 'zq'];

const position = fc.nat({ max: 0x7fffffff });
export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat({ max: 7 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('set' as const), at: position, value: fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.nat({ max: 255 })) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('int32' as const), at: position, value: fc.oneof(fc.constantFrom(...INTERESTING_INTS), fc.nat()) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 32 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: position }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('splice' as const), donor: fc.nat({ max: 100 }), from: position, length: fc.integer({ min: 1, max: 64 }), at: position, replace: fc.boolean() }) },
);

const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.constantFrom(2 ** 53, 2 ** 53 - 1, 2 ** 32, -1, 0, 1, 0xffffffff, NaN, Infinity, -Infinity, 1.5, -0, 1e300),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('s', 'h', 'd', 'r', 'g', 'm', 'f32', 'f16', 'i8', 'x', 'sparse', 'dense/kernel', 'out/bias', '__proto__', ''),
  fc.uint8Array({ maxLength: 80 }),
  fc.constantFrom(new Uint8Array(8), new Uint8Array(0), new Uint8Array(4096)),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.nat({ max: 200 }), fc.constantFrom(0, 0xffffffff, 65536, -1, 1.5)), { maxLength: 18 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.integer(), fc.string({ maxLength: 4 }), fc.constant(null)), { maxKeys: 4 }),
  fc.array(fc.constant({}), { maxLength: 5 }),
);

export const fieldEditArb: fc.Arbitrary<FieldEdit> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constantFrom('replace' as const, 'delete' as const), where: fc.constantFrom('header' as const, 'patch' as const), patch: fc.nat({ max: 10 }), key: fc.oneof(fc.constantFrom(...HEADER_KEYS), fc.constantFrom(...PATCH_KEYS)), value: hostileValue }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('duplicate-patch' as const, 'drop-patch' as const), patch: fc.nat({ max: 10 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('many-patches' as const), count: fc.integer({ min: 0, max: 400 }) }) },
);

const policyArb = fc.constantFrom<Policy>('none', 'require', 'optional');
const seqArb = fc.option(fc.nat({ max: 9 }), { nil: null });

export function caseArb(entries: number): fc.Arbitrary<FuzzCase> {
  const entry = fc.nat({ max: entries - 1 });
  const mutations = fc.array(mutationArb, { minLength: 1, maxLength: 6 });
  return fc.oneof(
    { weight: 5, arbitrary: fc.record({ mode: fc.constant('bytes' as const), entry, mutations, policy: fc.constantFrom<Policy>('none', 'optional'), seq: seqArb }) },
    { weight: 2, arbitrary: fc.record({ mode: fc.constant('signed-bytes' as const), entry, mutations, policy: policyArb, seq: seqArb }) },
    { weight: 2, arbitrary: fc.record({ mode: fc.constant('resigned-bytes' as const), entry, mutations, policy: fc.constant<Policy>('require'), seq: seqArb }) },
    { weight: 4, arbitrary: fc.record({ mode: fc.constant('structure' as const), entry, edits: fc.array(fieldEditArb, { minLength: 1, maxLength: 4 }), policy: fc.constantFrom<Policy>('none', 'optional'), seq: seqArb }) },
    { weight: 1, arbitrary: fc.record({ mode: fc.constant('resigned-structure' as const), entry, edits: fc.array(fieldEditArb, { minLength: 1, maxLength: 3 }), policy: fc.constant<Policy>('require'), seq: seqArb }) },
    { weight: 1, arbitrary: fc.record({ mode: fc.constant('random' as const), bytes: fc.oneof(fc.uint8Array({ maxLength: 400 }), fc.uint8Array({ minLength: 1, maxLength: 400 }).map((b) => { b[0] = 0x80 | (b[0] & 0x0f); return b; })), policy: policyArb, seq: seqArb }) },
  );
}

export function mutate(bytes: Uint8Array, mutations: readonly Mutation[], donors: readonly Uint8Array[]): Uint8Array {
  let b: Uint8Array = bytes.slice();
  for (const m of mutations) {
    // insertions, truncations and splices may land at the very end; the others on a byte
    const at = m.kind === 'insert' || m.kind === 'truncate' || m.kind === 'splice' ? m.at % (b.length + 1) : b.length ? m.at % b.length : 0;
    switch (m.kind) {
      case 'flip': if (b.length) b[at] ^= 1 << m.bit; break;
      case 'set': if (b.length) b[at] = m.value; break;
      case 'int32': for (let i = 0; i < 4 && at + i < b.length; i++) b[at + i] = (m.value >>> (24 - 8 * i)) & 0xff; break;
      case 'insert': b = concat(b.subarray(0, at), m.bytes, b.subarray(at)); break;
      case 'delete': b = concat(b.subarray(0, at), b.subarray(at + m.length)); break;
      case 'truncate': b = b.slice(0, at); break;
      case 'splice': {
        const donor = donors[m.donor % donors.length];
        const from = m.from % Math.max(1, donor.length);
        const frag = donor.subarray(from, from + m.length);
        b = concat(b.subarray(0, at), frag, b.subarray(m.replace ? at + frag.length : at));
        break;
      }
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const rawUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'bigint' });
const rawPackr = new Packr({ useRecords: false, variableMapSize: true });

export function editStructure(bytes: Uint8Array, edits: readonly FieldEdit[]): Uint8Array {
  const doc = rawUnpackr.unpack(bytes) as Record<string, unknown>;
  const patches = (doc.p as Record<string, unknown>[]).map((p) => ({ ...p }));
  doc.p = patches;
  for (const e of edits) {
    if (e.op === 'replace' || e.op === 'delete') {
      const target = e.where === 'header' ? doc : patches[e.patch % Math.max(1, patches.length)];
      if (!target) continue;
      if (e.op === 'delete') delete target[e.key];
      else target[e.key] = e.value;
    } else if (e.op === 'duplicate-patch') {
      if (patches.length) patches.push({ ...patches[e.patch % patches.length] });
    } else if (e.op === 'drop-patch') {
      if (patches.length) patches.splice(e.patch % patches.length, 1);
    } else if (e.op === 'many-patches') {
      doc.p = Array.from({ length: e.count }, (_, i) => ({ ...(patches[i % Math.max(1, patches.length)] ?? {}), t: `t${i}` }));
    }
  }
  try {
    return rawPackr.pack(doc);
  } catch {
    return rawPackr.pack({ nd: 1, p: [] }); // a value msgpack cannot hold (a bigint out of range)
  }
}

export interface Prepared {
  bytes: Uint8Array;
  options: ApplyOptions;
  /** Whether the bytes are anything but a valid payload under the case's policy (a must-refuse). */
  tamperedSignature: boolean;
  entry: number | null;
}

export function prepare(corpus: Corpus, c: FuzzCase): Prepared {
  const donors = corpus.entries.map((e) => e.bytes);
  let bytes: Uint8Array;
  let tamperedSignature = false;
  if (c.mode === 'random') bytes = c.bytes;
  else {
    const e = corpus.entries[c.entry];
    if ('mutations' in c) {
      if (c.mode === 'bytes') bytes = mutate(e.bytes, c.mutations, donors);
      else if (c.mode === 'signed-bytes') {
        bytes = mutate(e.signed, c.mutations, donors);
        tamperedSignature = !sameArray(bytes, e.signed);
      } else bytes = corpus.signRaw(mutate(e.bytes, c.mutations, donors));
    } else {
      bytes = c.mode === 'structure' ? editStructure(e.bytes, c.edits) : corpus.signRaw(editStructure(e.bytes, c.edits));
    }
  }
  const options: ApplyOptions = { maxPayloadBytes: 1 << 20 };
  if (c.policy !== 'none') options.trustedKeys = [corpus.trustedPublicKeyPem];
  if (c.policy === 'optional') options.requireSignature = false;
  if (c.seq !== null) {
    const s = new MemorySequenceStore();
    s.set('kws', c.seq);
    options.sequenceStore = s;
  }
  return { bytes, options, tamperedSignature: tamperedSignature && c.policy === 'require', entry: c.mode === 'random' ? null : c.entry };
}

function sameArray(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** What happened to one input. The bad ones: crash, modified, wrong-target, forged, slow. */
export type Outcome = 'applied' | 'already-applied' | `refused:${string}` | 'crash' | 'modified' | 'wrong-target' | 'forged' | 'slow';
export const BAD_OUTCOMES: readonly Outcome[] = ['crash', 'modified', 'wrong-target', 'forged', 'slow'];

export interface CaseResult {
  outcome: Outcome;
  ms: number;
  detail?: string;
}

function snapshot(store: { list(): { name: string }[]; values(n: string): Float32Array }): Uint8Array[] {
  return store.list().map((t) => {
    const v = store.values(t.name);
    return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  });
}

/** Run one case against an in-memory copy of its base model. */
export async function runMemoryCase(corpus: Corpus, c: FuzzCase, slowMs: number): Promise<CaseResult> {
  const p = prepare(corpus, c);
  const device = corpus.entries[p.entry ?? 0].base.clone();
  const before = snapshot(device);
  const t0 = performance.now();
  let outcome: Outcome;
  let detail: string | undefined;
  try {
    const res = await applyPayload(device, p.bytes, p.options);
    outcome = res.status;
    if (p.tamperedSignature) outcome = 'forged';
    else if (fingerprintStore(corpus.hasher, device).fingerprint !== res.targetFingerprint) outcome = 'wrong-target';
    else if (res.status === 'already-applied' && !sameSnapshots(before, snapshot(device))) outcome = 'modified';
  } catch (e) {
    if (!(e instanceof NeuralDiffError)) {
      outcome = 'crash';
      detail = (e as Error)?.stack ?? String(e);
    } else if (!sameSnapshots(before, snapshot(device))) {
      outcome = 'modified';
      detail = e.message;
    } else outcome = `refused:${e.code}`;
  }
  const ms = performance.now() - t0;
  if (ms > slowMs && !BAD_OUTCOMES.includes(outcome)) {
    outcome = 'slow';
    detail = `${ms.toFixed(0)} ms`;
  }
  return { outcome, ms, ...(detail ? { detail } : {}) };
}

function sameSnapshots(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((x, i) => sameArray(x, b[i]));
}

/** Model folders of the corpus bases, written once; each disk case works on a fresh copy. */
export async function prepareDiskBases(corpus: Corpus): Promise<{ root: string; dirs: string[] }> {
  const root = await mkdtemp(join(tmpdir(), 'ndiff-fuzz-'));
  const dirs: string[] = [];
  for (const [i, e] of corpus.entries.entries()) {
    const dir = join(root, `base${i}`);
    const tensors = new Map(e.base.list().map((t) => [t.name, { shape: t.shape, data: e.base.values(t.name) }]));
    await writeModelDir(dir, { format: 'graph-model', generatedBy: 'fuzz', modelTopology: {} }, tensors, { shardBytes: 8192 });
    dirs.push(dir);
  }
  return { root, dirs };
}

/** Run one case with the crash-safe folder apply; on refusal every file must be byte-identical. */
export async function runDiskCase(corpus: Corpus, bases: { root: string; dirs: string[] }, c: FuzzCase, n: number, slowMs: number): Promise<CaseResult> {
  const p = prepare(corpus, c);
  const dir = join(bases.root, `case${n}`);
  await cp(bases.dirs[p.entry ?? 0], dir, { recursive: true });
  // Odd cases: digests recorded (so the apply trusts them for unpatched tensors) and the shard
  // boundaries kept (only changed shards written); even cases: everything hashed, shards cut again.
  const recorded = n % 2 === 1;
  if (recorded) await recordModelDirDigests(dir, { hasher: corpus.hasher });
  const before = await folderBytes(dir);
  const t0 = performance.now();
  let outcome: Outcome;
  let detail: string | undefined;
  try {
    // The memory apply's health check sees this apply's result (the folder's also checks an earlier run's unconfirmed update: none here).
    const check = p.options.healthCheck;
    const res = await applyToModelDir(dir, p.bytes, { ...p.options, healthCheck: check && ((i) => (i.result ? check({ store: i.store, result: i.result }) : true)), state: p.options.sequenceStore ?? null, ...(recorded ? {} : { shardBytes: 8192 }) });
    outcome = res.status;
    if (p.tamperedSignature) outcome = 'forged';
    else if (fingerprintStore(corpus.hasher, await openTfjsModelDir(dir)).fingerprint !== res.targetFingerprint) outcome = 'wrong-target';
  } catch (e) {
    if (!(e instanceof NeuralDiffError)) {
      outcome = 'crash';
      detail = (e as Error)?.stack ?? String(e);
    } else {
      const after = await folderBytes(dir);
      const same = after.size === before.size && [...before].every(([f, b]) => after.get(f) === b);
      outcome = same ? `refused:${e.code}` : 'modified';
      if (!same) detail = `${e.message}\nfiles before: ${[...before.keys()].join(', ')}\nfiles after: ${[...after.keys()].join(', ')}`;
    }
  }
  const ms = performance.now() - t0;
  await rm(dir, { recursive: true, force: true });
  if (ms > slowMs && !BAD_OUTCOMES.includes(outcome)) {
    outcome = 'slow';
    detail = `${ms.toFixed(0)} ms`;
  }
  return { outcome, ms, ...(detail ? { detail } : {}) };
}

export interface FuzzSummary {
  cases: number;
  outcomes: Record<string, number>;
  bad: number;
  maxMs: number;
  firstBad?: { case: unknown; result: CaseResult };
}

/**
 * Run `cases` cases (memory, or disk) from `seed` through fast-check. Returns outcome counts; the
 * first bad case (if any) with its input, for reproduction.
 */
export async function fuzz(corpus: Corpus, opts: { cases: number; seed: number; disk?: boolean; slowMs?: number; onCase?: (n: number, c: FuzzCase) => void }): Promise<FuzzSummary> {
  const summary: FuzzSummary = { cases: 0, outcomes: {}, bad: 0, maxMs: 0 };
  const slowMs = opts.slowMs ?? 2000;
  const bases = opts.disk ? await prepareDiskBases(corpus) : null;
  // the payloads themselves must be valid (else the fuzzer tests nothing)
  for (const e of corpus.entries) decodePayload(e.bytes);
  try {
    await fc.assert(
      fc.asyncProperty(caseArb(corpus.entries.length), async (c) => {
        opts.onCase?.(summary.cases, c);
        const r = bases ? await runDiskCase(corpus, bases, c, summary.cases, slowMs) : await runMemoryCase(corpus, c, slowMs);
        summary.cases++;
        summary.outcomes[r.outcome] = (summary.outcomes[r.outcome] ?? 0) + 1;
        summary.maxMs = Math.max(summary.maxMs, r.ms);
        if (BAD_OUTCOMES.includes(r.outcome)) {
          summary.bad++;
          summary.firstBad ??= { case: c, result: r };
        }
      }),
      { numRuns: opts.cases, seed: opts.seed, endOnFailure: true },
    );
  } finally {
    if (bases) await rm(bases.root, { recursive: true, force: true });
  }
  return summary;
}

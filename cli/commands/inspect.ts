import type { Argv } from 'yargs';
import { openPayload, shapeSize, type PayloadHeader, type TensorPatch } from '../../src/core/format.ts';
import type { WireCodec } from '../../src/core/values.ts';
import { readMsgpack } from '../../src/core/msgpack-read.ts';
import { formatBytes } from '../../src/diff/budget.ts';
import { table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { readPayloadFile } from '../models.ts';
import { isSignedEnvelope, parseEnvelope } from '../../src/apply/envelope.ts';
import { printable, terminalSafe } from '../text.ts';
import { inspectStructural } from '../structural-payload.ts';
import { isStructuralPayload } from '../../src/apply/rebuild.ts';

export interface InspectArgs {
  payload: string;
}

export function inspectCommand(y: Argv): Argv<InspectArgs> {
  return y
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file' })
    .example('$0 inspect v1-v2.ndiff', 'header and one row per patched tensor')
    .epilogue(seeDocs('inspect')) as unknown as Argv<InspectArgs>;
}

/** What inspect shows of a patch: its wire fields, read without decoding its values. */
interface PatchSummary {
  name: string;
  kind: TensorPatch['kind'];
  shape: number[];
  codec: WireCodec;
  scale?: number;
  baseDigest: string;
  targetDigest: string;
  /** Sparse: entries and their coding; composite: its sparse entries. */
  count?: number;
  positionCoding?: 'gaps' | 'bitmap';
  buckets?: number;
  seed?: number;
  signed?: boolean;
  rank?: number;
  sparseCodec?: string;
  /** Codec l dense codes (a composite's): bits a code. */
  bits?: number;
}

/**
 * The header and a summary of each patch, every patch checked as a device checks it (openPayload)
 * but none decoded: 1-bit low-rank codes decode to 32 times their bytes, and inspect shows none.
 */
function summarize(bytes: Uint8Array): { header: PayloadHeader; patches: PatchSummary[] } {
  const opened = openPayload(bytes);
  // The document again for the patches' own fields (binaries are views: nothing is copied).
  const raw = (readMsgpack(bytes) as { p: Record<string, unknown>[] }).p;
  const patches = opened.patches.map((src, i): PatchSummary => {
    const r = raw[i];
    const num = (k: string) => (typeof r[k] === 'number' ? (r[k] as number) : undefined);
    return {
      name: src.name, kind: src.kind, shape: src.shape, codec: src.codec, ...(src.scale !== undefined ? { scale: src.scale } : {}),
      baseDigest: src.baseDigest, targetDigest: src.targetDigest,
      ...(src.kind === 'sparse' ? { count: src.written, positionCoding: r.ic === 'm' ? 'bitmap' : 'gaps' } : {}),
      ...(src.kind === 'hash' ? { buckets: num('nb'), seed: num('h'), signed: r.sg === true } : {}),
      ...(src.kind === 'lowrank' || src.kind === 'composite' ? { rank: num('r') ?? 0 } : {}),
      ...(src.kind === 'composite' ? { count: num('n'), sparseCodec: String(r.wc), ...(typeof r.lb === 'number' ? { bits: r.lb } : {}) } : {}),
    };
  });
  return { header: opened.header, patches };
}

/** A JSON-friendly summary of a checked payload. */
function describePayload(payload: { header: PayloadHeader; patches: PatchSummary[] }, bytes: number): Record<string, unknown> {
  return {
    bytes,
    header: payload.header,
    patches: payload.patches.map((p) => ({
      tensor: p.name,
      kind: p.kind,
      shape: p.shape,
      size: shapeSize(p.shape),
      codec: p.codec,
      ...(p.scale !== undefined ? { scale: p.scale } : {}),
      ...(p.kind === 'sparse' ? { count: p.count, positionCoding: p.positionCoding } : {}),
      ...(p.kind === 'hash' ? { buckets: p.buckets, seed: p.seed, signed: p.signed } : {}),
      ...(p.kind === 'lowrank' || p.kind === 'composite' ? { rank: p.rank } : {}),
      ...(p.kind === 'composite' ? { sparseValues: p.count, sparseCodec: p.sparseCodec } : {}),
      baseDigest: p.baseDigest,
      targetDigest: p.targetDigest,
    })),
  };
}

export async function runInspect(a: InspectArgs, io: CliIO): Promise<number> {
  const file = await readPayloadFile(a.payload);
  // A signed envelope: show the payload inside and who signed it (checking is `ndiff verify`'s job).
  const envelope = isSignedEnvelope(file) ? parseEnvelope(file) : null;
  const bytes = envelope ? envelope.payload : file;
  if (isStructuralPayload(bytes)) {
    // Format v7: its own header, then the value payload inside it, as below.
    const structural = await inspectStructural(a.payload, bytes, envelope?.keyId, io);
    const values = summarize(structural.values);
    io.result?.({ file: a.payload, bytes: bytes.length, structural: true, header: structural.header, values: describePayload(values, structural.values.length), ...(envelope ? { signedBy: envelope.keyId, signatureChecked: false } : {}) });
    printPatches(values, io);
    return 0;
  }
  const payload = summarize(bytes);
  io.result?.({ file: a.payload, ...describePayload(payload, bytes.length), ...(envelope ? { signedBy: envelope.keyId, signatureChecked: false } : {}) });
  const h = payload.header;
  const written = payload.patches.reduce((n, p) => n + (p.kind === 'sparse' ? (p.count as number) : shapeSize(p.shape)), 0);
  io.out(`${a.payload}: neural-diff payload v${h.version}, ${formatBytes(bytes.length)} (${bytes.length} bytes)`);
  if (envelope) io.out(`  signed by  key id ${envelope.keyId} (not checked here: ndiff verify --public-key KEY checks it)`);
  io.out(`  method     ${printable(h.method)}`);
  // Strings from the payload are printed escaped: raw control characters could rewrite the terminal.
  io.out(`  model      ${printable(h.modelId)}`);
  io.out(`  base       ${h.baseFingerprint}`);
  io.out(`  target     ${h.targetFingerprint}`);
  io.out(`  sequence   ${h.sequence}`);
  io.out(`  budget     ${h.budgetBytes ? `${h.budgetBytes} bytes (${((100 * bytes.length) / h.budgetBytes).toFixed(1)}% used)` : 'none'}`);
  io.out(`  created by ${printable(h.createdBy)}${h.createdAt ? ` at ${printable(h.createdAt)}` : ''}`);
  if (h.expiresAt !== undefined) io.out(`  expires    ${new Date(h.expiresAt * 1000).toISOString()}`);
  if (h.meta) for (const [k, v] of Object.entries(h.meta)) io.out(`  meta ${printable(k)} = ${printable(v)}`);
  io.out(`  patches    ${payload.patches.length} tensors, ${written} values written`);
  printPatches(payload, io);
  return 0;
}

/** One row per patched tensor. */
function printPatches(payload: { patches: PatchSummary[] }, io: CliIO): void {
  io.out('');
  io.out(table(payload.patches.map((p) => [
    printable(p.name),
    p.kind,
    `[${p.shape.join('x')}]`,
    p.kind === 'sparse' ? `${p.count} (${((100 * (p.count as number)) / Math.max(1, shapeSize(p.shape))).toFixed(2)}%)` : p.kind === 'hash' ? `${p.buckets} buckets${p.signed ? ' ±' : ''}` : p.kind === 'lowrank' ? `all (rank ${p.rank})` : p.kind === 'composite' ? `all (${p.bits !== undefined ? `${p.bits}-bit codes` : `rank ${p.rank}`} + ${p.count} sparse)` : 'all',
    p.codec + (p.scale !== undefined ? ` x${p.scale.toPrecision(3)}` : ''),
    p.kind === 'sparse' ? (p.positionCoding ?? '') : p.kind === 'hash' ? `seed ${p.seed}` : '',
  ]), ['tensor', 'kind', 'shape', 'values', 'codec', 'positions']));
}

import type { Argv } from 'yargs';
import type { PayloadHeader } from '../../src/core/format.ts';
import { formatBytes } from '../../src/diff/budget.ts';
import { inspect, type PatchSummary } from '../../src/front/inspect.ts';
import { table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { printable } from '../../src/front/text.ts';

export interface InspectArgs {
  payload: string;
}

export function inspectCommand(y: Argv): Argv<InspectArgs> {
  return y
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file' })
    .example('$0 inspect v1-v2.ndiff', 'header and one row per patched tensor')
    .epilogue(seeDocs('inspect')) as unknown as Argv<InspectArgs>;
}

/** `ndiff inspect`: one call of the library's {@link inspect}, its result printed. */
export async function runInspect(a: InspectArgs, io: CliIO): Promise<number> {
  const r = await inspect(a.payload);
  io.result?.(r);
  if (r.structural) {
    const h = r.header;
    io.out(`${a.payload}: neural-diff structural payload v7 (${h.fileKind}), ${r.bytes} bytes${withSignature(r.fileBytes)}`);
    if (r.signedBy !== undefined) io.out(`  signed by  key id ${r.signedBy} (not checked here: ndiff verify --public-key KEY checks it)`);
    headerLines(h as unknown as PayloadHeader, io, () => io.out(`  rebuilt    ${String(h.intermediateFingerprint)} (the intermediate file: ${h.rebuildBaseLength} bytes in, ${h.rebuildOutputLength} out, a ${h.rebuildBytes}-byte delta)`), h.budgetBytes ? `${String(h.budgetBytes)} bytes` : 'none');
    if (h.files) for (const f of h.files) io.out(`  file       ${printable(f.path)} (${f.length} bytes)`);
    io.out(`  values     a value payload of ${h.valueBytes} bytes from the intermediate to the target:`);
    printPatches(r.values.patches, io);
    return 0;
  }
  const h = r.header;
  const written = r.patches.reduce((n, p) => n + (p.kind === 'sparse' ? (p.count as number) : p.size), 0);
  io.out(`${a.payload}: neural-diff payload v${h.version}, ${formatBytes(r.bytes)} (${r.bytes} bytes${withSignature(r.fileBytes)})`);
  if (r.signedBy !== undefined) io.out(`  signed by  key id ${r.signedBy} (not checked here: ndiff verify --public-key KEY checks it)`);
  headerLines(h, io, () => {}, h.budgetBytes ? `${h.budgetBytes} bytes (${((100 * r.bytes) / h.budgetBytes).toFixed(1)}% used)` : 'none');
  io.out(`  patches    ${r.patches.length} tensors, ${written} values written`);
  printPatches(r.patches, io);
  return 0;
}

/** A signed file's own length beside the payload's, so that neither reads as the other. */
function withSignature(fileBytes: number | undefined): string {
  return fileBytes === undefined ? '' : `; ${fileBytes} with its signature`;
}

/** The header's lines (strings from the payload printed escaped: raw control characters could rewrite the terminal). */
function headerLines(h: PayloadHeader, io: CliIO, afterBase: () => void, budget: string): void {
  io.out(`  method     ${printable(h.method)}`);
  io.out(`  model      ${printable(h.modelId)}`);
  io.out(`  base       ${h.baseFingerprint}`);
  afterBase();
  io.out(`  target     ${h.targetFingerprint}`);
  io.out(`  sequence   ${h.sequence}`);
  io.out(`  budget     ${budget}`);
  io.out(`  created by ${printable(h.createdBy)}${h.createdAt ? ` at ${printable(h.createdAt)}` : ''}`);
  if (h.expiresAt !== undefined) io.out(`  expires    ${new Date(h.expiresAt * 1000).toISOString()}`);
  if (h.meta) for (const [k, v] of Object.entries(h.meta)) io.out(`  meta ${printable(k)} = ${printable(v)}`);
}

/** One row per patched tensor. */
function printPatches(patches: PatchSummary[], io: CliIO): void {
  io.out('');
  io.out(table(patches.map((p) => [
    printable(p.tensor),
    p.kind,
    `[${p.shape.join('x')}]`,
    p.kind === 'sparse' ? `${p.count} (${((100 * (p.count as number)) / Math.max(1, p.size)).toFixed(2)}%)` : p.kind === 'hash' ? `${p.buckets} buckets${p.signed ? ' ±' : ''}` : p.kind === 'lowrank' ? `all (rank ${p.rank})` : p.kind === 'composite' ? `all (${p.bits !== undefined ? `${p.bits}-bit codes` : `rank ${p.rank}`} + ${p.sparseValues} sparse)` : 'all',
    p.codec + (p.scale !== undefined ? ` x${p.scale.toPrecision(3)}` : ''),
    p.kind === 'sparse' ? (p.positionCoding ?? '') : p.kind === 'hash' ? `seed ${p.seed}` : '',
  ]), ['tensor', 'kind', 'shape', 'values', 'codec', 'positions']));
}

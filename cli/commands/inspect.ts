import type { Argv } from 'yargs';
import type { PayloadHeader } from '../../src/core/format.ts';
import { formatBytes } from '../../src/diff/budget.ts';
import type { PatchSummary } from '../../src/front/inspect.ts';
import type { GgufInspectReport } from '../../src/front/gguf.ts';
import { isGgufPath } from '../../src/io/path-kinds.ts';
import { table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { printable } from '../../src/front/text.ts';

export interface InspectArgs {
  payload: string;
}

export function inspectCommand(y: Argv): Argv<InspectArgs> {
  return y
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file, or a .gguf model' })
    .example('$0 inspect v1-v2.ndiff', 'header and one row per patched tensor')
    .example('$0 inspect model.gguf', 'a GGUF model: metadata summary and one row per tensor')
    .epilogue(seeDocs('inspect')) as unknown as Argv<InspectArgs>;
}

/** `ndiff inspect`: one call of the library's {@link inspect}, its result printed. */
export async function runInspect(a: InspectArgs, io: CliIO): Promise<number> {
  if (isGgufPath(a.payload)) return printGguf(await (await import('../../src/front/gguf.ts')).inspectGguf(a.payload), io);
  const r = await (await import('../../src/front/inspect.ts')).inspect(a.payload);
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
  if (r.gguf) {
    const h = r.header;
    const size = r.parts.reduce((n, part) => n + part.length, 0);
    io.out(`${a.payload}: neural-diff GGUF block payload v${h.version}, ${formatBytes(r.bytes)} (${r.bytes} bytes${withSignature(r.fileBytes)})`);
    if (r.signedBy !== undefined) io.out(`  signed by  key id ${r.signedBy} (not checked here: ndiff verify --public-key KEY checks it)`);
    headerLines(h as unknown as PayloadHeader, io, () => {}, h.budgetBytes ? `${h.budgetBytes} bytes` : 'none (every changed block exactly)');
    io.out(`  model file ${r.parts.length === 1 ? '1 file' : `${r.parts.length} parts`}, ${formatBytes(size)} (${size} bytes)`);
    io.out(`  changes    ${r.changedBytes} bytes in ${r.runs} ranges (${((100 * r.changedBytes) / Math.max(1, size)).toFixed(2)}% of the model), ${r.chunks} chunks: ${r.byteDeltaChunks} byte delta, ${r.xorChunks} XOR range-coded`);
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

/** A GGUF model: its files, what its metadata says of it, its metadata, one row per tensor. */
function printGguf(r: GgufInspectReport, io: CliIO): number {
  io.result?.(r);
  io.out(`${printable(r.file)}: GGUF v${r.version} model, ${r.parts.length === 1 ? '1 file' : `${r.parts.length} parts`}, ${formatBytes(r.parts.reduce((n, p) => n + p.bytes, 0))}`);
  if (r.parts.length > 1) for (const p of r.parts) io.out(`  part       ${printable(p.file)} (${p.bytes} bytes, ${p.tensors} tensors)`);
  io.out(`  arch       ${r.architecture === undefined ? '(no general.architecture)' : printable(r.architecture)}`);
  if (r.name !== undefined) io.out(`  name       ${printable(r.name)}`);
  io.out(`  tokenizer  ${r.tokenizerTokens === undefined ? '(no tokenizer.ggml.tokens)' : `${r.tokenizerTokens} tokens${r.tokenizerModel !== undefined ? ` (${printable(r.tokenizerModel)})` : ''}`}`);
  io.out(`  alignment  ${r.parts[0].alignment}`);
  io.out(`  tensors    ${r.tensorCount} tensors, ${r.elements} weights, ${formatBytes(r.tensorBytes)}: ${r.types.map((t) => `${t.type} ${t.tensors}`).join(', ')}`);
  io.out(`  metadata   ${r.metadata.length} entries`);
  for (const m of r.metadata) {
    const value = m.length !== undefined ? `${m.length} items${m.length > 0 ? `: ${(m.first ?? []).map((v) => printable(JSON.stringify(v))).join(', ')}${m.length > (m.first?.length ?? 0) ? ', ...' : ''}` : ''}` : printable(typeof m.value === 'string' ? JSON.stringify(m.value) : String(m.value));
    io.out(`    ${printable(m.key)} (${m.type}) = ${value}`);
  }
  io.out('');
  io.out(table(r.tensors.map((t) => [printable(t.name), t.type, `[${t.shape.join('x')}]`, t.bytes, ...(r.parts.length > 1 ? [t.part] : [])]), ['tensor', 'type', 'shape', 'bytes', ...(r.parts.length > 1 ? ['part'] : [])]));
  return 0;
}

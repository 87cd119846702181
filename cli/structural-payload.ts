/**
 * `ndiff verify` and `ndiff inspect` for structural payloads (format v7, docs/FORMAT.md §17): a
 * byte delta that rebuilds the base file into an intermediate one, then a value payload (v1-v6)
 * from the intermediate to the target. Both are read with neural-diff/rebuild's own checks
 * (decodeStructuralPayload checks the document and its value payload whole), so a payload these
 * commands accept is one `ndiff apply` accepts, and a malformed one is refused with the same
 * typed error. With `--model`, verify rebuilds in memory (the rebuild's dry run: nothing is
 * written, nothing recovered, no lock taken).
 */
import { readByteDeltaHeader } from '../src/core/byte-delta.ts';
import { decodeStructuralPayload, isStructuralPayload, type StructuralPayload } from '../src/apply/rebuild.ts';
import { isSignedEnvelope, parseEnvelope } from '../src/apply/envelope.ts';
import { openSignedPayload, type SignaturePolicy } from '../src/apply/signature.ts';
import { rebuildOnnxFile } from '../src/io/onnx/files.ts';
import { rebuildTfliteFile } from '../src/io/tflite/files.ts';
import { rebuildModelDir } from '../src/io/tfjs/folder-rebuild.ts';
import { describeSignature } from './keys.ts';
import { isModelFilePath, isTflitePath } from './models.ts';
import { printable, terminalSafe } from './text.ts';
import type { CliIO } from './common.ts';

/** Whether `file` (bare or a signed envelope) holds a structural payload. */
export function holdsStructuralPayload(file: Uint8Array): boolean {
  return isStructuralPayload(isSignedEnvelope(file) ? parseEnvelope(file).payload : file);
}

/** The byte delta's lengths, its header checked (FORMAT.md §16; the rebuild checks it whole against the base). */
function rebuildLengths(p: StructuralPayload): { baseLength: number; outputLength: number } {
  const { baseLength, outputLength } = readByteDeltaHeader(p.rebuild, 2 ** 31 - 1, 'structural payload: byte delta "rb"');
  return { baseLength, outputLength };
}

/** `ndiff verify` of a structural payload: signature, document and value payload; with `model`, a rebuild in memory. */
export async function verifyStructural(a: { payload: string; model?: string; state?: string }, bytes: Uint8Array, policy: SignaturePolicy, io: CliIO): Promise<number> {
  const opened = await openSignedPayload(bytes, policy);
  const p = await decodeStructuralPayload(opened.payload);
  const h = p.header;
  const lengths = rebuildLengths(p);
  const values = p.verifiedValues.payload;
  io.out(describeSignature(opened.signature));
  io.out(`${a.payload}: well-formed v7 structural payload (${h.fileKind}${h.files ? `, ${h.files.length} files` : ''}) for model ${terminalSafe(JSON.stringify(h.modelId))}, sequence ${h.sequence}: a byte delta rebuilds a ${lengths.baseLength}-byte base into ${lengths.outputLength} bytes, then ${values.patches.length} patches (v${values.header.version}); ${bytes.length} bytes`);
  const doc: Record<string, unknown> = {
    payload: a.payload, bytes: bytes.length, signature: opened.signature, version: h.version, structural: true, fileKind: h.fileKind, modelId: h.modelId,
    sequence: h.sequence, patches: values.patches.length, valueVersion: values.header.version, baseFingerprint: h.baseFingerprint,
    intermediateFingerprint: h.intermediateFingerprint, targetFingerprint: h.targetFingerprint, rebuildBytes: p.rebuild.length, valueBytes: p.values.length,
    ...(h.files ? { files: h.files } : {}),
  };
  if (a.model) {
    const options = { ...policy, dryRun: true, state: a.state ?? null };
    const r = isModelFilePath(a.model)
      ? await (isTflitePath(a.model) ? rebuildTfliteFile : rebuildOnnxFile)(a.model, bytes, options)
      : await rebuildModelDir(a.model, bytes, options);
    io.out(r.status === 'already-applied'
      ? `${a.model} is already at the target ${r.header.targetFingerprint}`
      : `rebuilds ${a.model} cleanly (in memory, nothing written): ${h.baseFingerprint} -> ${h.targetFingerprint}`);
    doc.model = { path: a.model, status: r.status === 'already-applied' ? 'already-applied' : 'applies' };
  }
  io.result?.(doc);
  return 0;
}

/** `ndiff inspect` of a structural payload (`bytes` the payload, out of its envelope). */
export async function inspectStructural(file: string, bytes: Uint8Array, signedBy: string | undefined, io: CliIO): Promise<{ header: Record<string, unknown>; values: Uint8Array }> {
  const p = await decodeStructuralPayload(bytes);
  const h = p.header;
  const lengths = rebuildLengths(p);
  io.out(`${file}: neural-diff structural payload v7 (${h.fileKind}), ${bytes.length} bytes`);
  if (signedBy !== undefined) io.out(`  signed by  key id ${signedBy} (not checked here: ndiff verify --public-key KEY checks it)`);
  io.out(`  method     ${printable(h.method)}`);
  io.out(`  model      ${printable(h.modelId)}`);
  io.out(`  base       ${h.baseFingerprint}`);
  io.out(`  rebuilt    ${h.intermediateFingerprint} (the intermediate file: ${lengths.baseLength} bytes in, ${lengths.outputLength} out, a ${p.rebuild.length}-byte delta)`);
  io.out(`  target     ${h.targetFingerprint}`);
  io.out(`  sequence   ${h.sequence}`);
  io.out(`  budget     ${h.budgetBytes ? `${h.budgetBytes} bytes` : 'none'}`);
  io.out(`  created by ${printable(h.createdBy)}${h.createdAt ? ` at ${printable(h.createdAt)}` : ''}`);
  if (h.expiresAt !== undefined) io.out(`  expires    ${new Date(h.expiresAt * 1000).toISOString()}`);
  if (h.meta) for (const [k, v] of Object.entries(h.meta)) io.out(`  meta ${printable(k)} = ${printable(v)}`);
  if (h.files) for (const f of h.files) io.out(`  file       ${printable(f.path)} (${f.length} bytes)`);
  io.out(`  values     a value payload of ${p.values.length} bytes from the intermediate to the target:`);
  const header = { ...h, rebuildBytes: p.rebuild.length, rebuildBaseLength: lengths.baseLength, rebuildOutputLength: lengths.outputLength, valueBytes: p.values.length };
  return { header, values: p.values };
}

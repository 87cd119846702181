import type { Argv } from 'yargs';
import { readModelIdRecord } from '../../src/io/durable/model-id-file.ts';
import { applyVerifiedPayload, verifyPayload } from '../../src/apply/index.ts';
import { openTfjsModel } from '../../src/io/tfjs/index.ts';
import { FileSequenceStore } from '../../src/io/durable/sequence-file.ts';
import { readFolderModelId } from '../../src/io/tfjs/folder-update.ts';
import type { CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { describeSignature, signatureOptions, trustedKeysOf, type SignatureArgs } from '../keys.ts';
import { isModelFilePath, openModel, readPayloadFile } from '../models.ts';
import { terminalSafe } from '../text.ts';
import { holdsStructuralPayload, verifyStructural } from '../structural-payload.ts';
import { MemoryWeightStore, type WeightStore } from '../../src/core/weight-store.ts';

export interface VerifyArgs extends SignatureArgs {
  payload: string;
  model?: string;
  state?: string;
}

export function verifyCommand(y: Argv): Argv<VerifyArgs> {
  return signatureOptions(y
    .usage('ndiff verify <payload> [--model PATH] [--public-key FILE]\n\nCheck a payload is well-formed (and signed), and with --model that it applies cleanly; writes nothing.')
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file (bare or signed)' })
    .option('model', { type: 'string', describe: 'also check it applies to this TF.js folder, .onnx or .tflite' })
    .option('state', { type: 'string', describe: 'also check freshness against this state file' }))
    .example('$0 verify v1-v2.signed.ndiff --public-key release.public.pem', 'is it signed by this key, and well-formed?')
    .example('$0 verify v1-v2.ndiff --model ./model', 'would this payload apply cleanly to this model?')
    .epilogue(seeDocs('verify')) as unknown as Argv<VerifyArgs>;
}

export async function runVerify(a: VerifyArgs, io: CliIO): Promise<number> {
  const bytes = await readPayloadFile(a.payload);
  const trustedKeys = await trustedKeysOf(a);
  const policy = { trustedKeys, ...(a.requireSignature !== undefined ? { requireSignature: a.requireSignature } : {}) };
  // A structural payload (format v7) is checked as neural-diff/rebuild checks it.
  if (holdsStructuralPayload(bytes)) return verifyStructural(a, bytes, policy, io);
  const verified = await verifyPayload(bytes, policy);
  const { payload } = verified;
  io.out(describeSignature(verified.signature));
  io.out(`${a.payload}: well-formed v${payload.header.version} payload for model ${terminalSafe(JSON.stringify(payload.header.modelId))}, sequence ${payload.header.sequence}, ${payload.patches.length} patches, ${bytes.length} bytes`);
  const doc: Record<string, unknown> = {
    payload: a.payload, bytes: bytes.length, signature: verified.signature, version: payload.header.version, modelId: payload.header.modelId,
    sequence: payload.header.sequence, patches: payload.patches.length, baseFingerprint: payload.header.baseFingerprint, targetFingerprint: payload.header.targetFingerprint,
  };
  if (a.model) {
    // An ONNX store holds the file's bytes in memory: patching it writes nothing to disk.
    let copy: WeightStore;
    let close = async () => {};
    if (isModelFilePath(a.model)) {
      const opened = await openModel(a.model);
      copy = opened.store;
      close = opened.close;
    } else {
      const disk = await openTfjsModel(a.model);
      // The copy keeps the folder's storage grids, so a grid mismatch is refused here too.
      copy = Object.assign(MemoryWeightStore.copyOf(disk), { grid: (name: string) => disk.grid(name) });
    }
    const state = a.state ? new FileSequenceStore(a.state) : undefined;
    // The model id the folder (or model file) recorded at its first update, as ndiff apply checks it.
    const modelId = isModelFilePath(a.model) ? await readModelIdRecord(a.model) : await readFolderModelId(a.model);
    const res = await applyVerifiedPayload(copy, verified, { ...policy, ...(modelId !== undefined ? { expectedModelId: modelId } : {}), ...(state ? { sequenceStore: { get: (id: string) => state.get(id), set: () => {} } } : {}) })
      .finally(close);
    io.out(res.status === 'already-applied'
      ? `${a.model} is already at the target ${res.targetFingerprint}`
      : `applies cleanly to ${a.model}: ${res.baseFingerprint} -> ${res.targetFingerprint}`);
    doc.model = { path: a.model, status: res.status === 'already-applied' ? 'already-applied' : 'applies' };
  }
  io.result?.(doc);
  return 0;
}

import type { Argv } from 'yargs';
import type { CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { describeSignature, signatureOptions, type SignatureArgs } from '../keys.ts';
import { terminalSafe } from '../../src/front/text.ts';

export interface VerifyArgs extends SignatureArgs {
  payload: string;
  model?: string;
  state?: string;
}

export function verifyCommand(y: Argv): Argv<VerifyArgs> {
  return signatureOptions(y
    .usage('ndiff verify <payload> [--model PATH] [--public-key FILE]\n\nCheck a payload is well-formed (and signed), and with --model that it applies cleanly; writes nothing.')
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file (bare or signed)' })
    .option('model', { type: 'string', describe: 'also check it applies to this TF.js folder, .onnx, .tflite or .safetensors' })
    .option('state', { type: 'string', describe: 'also check freshness against this state file' }))
    .example('$0 verify v1-v2.signed.ndiff --public-key release.public.pem', 'is it signed by this key, and well-formed?')
    .example('$0 verify v1-v2.ndiff --model ./model', 'would this payload apply cleanly to this model?')
    .epilogue(seeDocs('verify')) as unknown as Argv<VerifyArgs>;
}

/** What verify and fingerprint say of a model an earlier apply or update left an update unfinished beside. */
export const UNFINISHED_NOTE = (model: string) => `note: an earlier apply or update of ${model} was not finished (killed, or its health check never finished): this is the version it switched in, not yet confirmed. The next ndiff apply or ndiff update finishes it or rolls it back first; one that awaited a health check needs --health-check (it is refused without one)`;

/** `ndiff verify`: one call of the library's {@link verify}, its result printed. */
export async function runVerify(a: VerifyArgs, io: CliIO): Promise<number> {
  const { verify } = await import('../../src/front/verify.ts');
  const r = await verify({
    payload: a.payload, publicKeys: a.publicKey ?? [],
    ...(a.requireSignature !== undefined ? { requireSignature: a.requireSignature } : {}),
    ...(a.model !== undefined ? { model: a.model } : {}),
    ...(a.state !== undefined ? { state: a.state } : {}),
  });
  io.out(describeSignature(r.signature));
  io.out(r.gguf
    ? `${a.payload}: well-formed v${r.version} GGUF block payload for model ${terminalSafe(JSON.stringify(r.modelId))}, sequence ${r.sequence}: ${r.chunks} chunks over ${r.parts === 1 ? '1 file' : `${r.parts} part files`}; ${r.bytes} bytes`
    : r.structural
    ? `${a.payload}: well-formed v7 structural payload (${r.fileKind}${r.files ? `, ${r.files.length} files` : ''}) for model ${terminalSafe(JSON.stringify(r.modelId))}, sequence ${r.sequence}: a byte delta rebuilds a ${r.rebuildBaseLength}-byte base into ${r.rebuildOutputLength} bytes, then ${r.patches} patches (v${r.valueVersion}); ${r.bytes} bytes`
    : `${a.payload}: well-formed v${r.version} payload for model ${terminalSafe(JSON.stringify(r.modelId))}, sequence ${r.sequence}, ${r.patches} patches, ${r.bytes} bytes`);
  if (r.model) {
    io.out(r.model.status === 'already-applied'
      ? `${a.model} is already at the target ${r.targetFingerprint}`
      : r.gguf ? `applies cleanly to ${a.model} in place (every chunk decoded against its bytes, nothing written): ${r.baseFingerprint} -> ${r.targetFingerprint}`
      : r.structural ? `rebuilds ${a.model} cleanly (in memory, nothing written): ${r.baseFingerprint} -> ${r.targetFingerprint}` : `applies cleanly to ${a.model}: ${r.baseFingerprint} -> ${r.targetFingerprint}`);
    if (r.model.unfinishedUpdate) io.out(UNFINISHED_NOTE(r.model.path));
  }
  io.result?.(r);
  return 0;
}

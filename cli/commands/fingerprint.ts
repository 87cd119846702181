import type { Argv } from 'yargs';
import { printable } from '../../src/front/text.ts';
import { table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { UNFINISHED_NOTE } from './verify.ts';

export interface FingerprintArgs {
  model: string;
  tensors: boolean;
  record: boolean;
}

export function fingerprintCommand(y: Argv): Argv<FingerprintArgs> {
  return y
    .positional('model', { type: 'string', demandOption: true, describe: 'TF.js folder, .onnx, .tflite, .safetensors or .gguf model file' })
    .option('tensors', { type: 'boolean', default: false, describe: 'also list every tensor digest' })
    .option('record', { type: 'boolean', default: false, describe: 'record the digests so applies read less' })
    .example('$0 fingerprint ./model --record', 'print the model fingerprint and record the digests for fast applies')
    .epilogue(seeDocs('fingerprint')) as unknown as Argv<FingerprintArgs>;
}

/** `ndiff fingerprint`: one call of the library's {@link fingerprint}, its result printed. */
export async function runFingerprint(a: FingerprintArgs, io: CliIO): Promise<number> {
  const { fingerprint } = await import('../../src/front/fingerprint.ts');
  const r = await fingerprint({ model: a.model, tensors: a.tensors, record: a.record, onProgress: (l) => io.progress(l) });
  io.out(r.fingerprint);
  if (r.unfinishedUpdate) io.err(UNFINISHED_NOTE(a.model));
  // Names are the publisher's text: escaped, so control characters cannot rewrite the terminal. Model files give each tensor's dtype.
  if (r.tensors) {
    const typed = r.tensors.some((t) => t.dtype !== undefined);
    io.out(table(r.tensors.map((t) => [printable(t.name), ...(typed ? [t.dtype ?? ''] : []), `[${t.shape.join('x')}]`, t.digest]), ['tensor', ...(typed ? ['dtype'] : []), 'shape', 'digest']));
  }
  io.result?.(r);
  return 0;
}

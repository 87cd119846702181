import type { Argv } from 'yargs';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { locateModelFiles, openTfjsModel } from '../../src/io/tfjs/index.ts';
import { join } from 'node:path';
import { writeRecordedDigests } from '../../src/io/tfjs/recorded-digests.ts';
import { UsageError } from '../../src/core/errors.ts';
import { table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { printable } from '../text.ts';
import { dtypeOf, isModelFilePath, openModel } from '../models.ts';

export interface FingerprintArgs {
  model: string;
  tensors: boolean;
  record: boolean;
}

export function fingerprintCommand(y: Argv): Argv<FingerprintArgs> {
  return y
    .positional('model', { type: 'string', demandOption: true, describe: 'TF.js folder, .onnx or .tflite model file' })
    .option('tensors', { type: 'boolean', default: false, describe: 'also list every tensor digest' })
    .option('record', { type: 'boolean', default: false, describe: 'record the digests so applies read less' })
    .example('$0 fingerprint ./model --record', 'print the model fingerprint and record the digests for fast applies')
    .epilogue(seeDocs('fingerprint')) as unknown as Argv<FingerprintArgs>;
}

export async function runFingerprint(a: FingerprintArgs, io: CliIO): Promise<number> {
  if (isModelFilePath(a.model)) {
    if (a.record) throw new UsageError('--record is for TF.js model folders: an .onnx or .tflite file is hashed whole by every apply, so there is nothing to record');
    const opened = await openModel(a.model);
    try {
      const { store } = opened;
      const { fingerprint, digests } = fingerprintStore(await getHasher(), store);
      io.out(fingerprint);
      // Names are the publisher's text: escaped, so control characters cannot rewrite the terminal.
      if (a.tensors) io.out(table(store.list().map((t) => [printable(t.name), dtypeOf(t), `[${t.shape.join('x')}]`, digests.get(t.name) as string]), ['tensor', 'dtype', 'shape', 'digest']));
      io.result?.({
        model: a.model, fingerprint, tensorCount: digests.size, recorded: false,
        ...(a.tensors ? { tensors: store.list().map((t) => ({ name: t.name, dtype: dtypeOf(t), shape: t.shape, digest: digests.get(t.name) })) } : {}),
      });
    } finally {
      await opened.close();
    }
    return 0;
  }
  // Always a full read: this command is how a folder is checked, so it never trusts a record.
  const place = await locateModelFiles(a.model);
  const store = await openTfjsModel(a.model, { lazy: true });
  const { fingerprint, digests } = fingerprintStore(await getHasher(), store);
  io.out(fingerprint);
  if (a.tensors) io.out(table(store.list().map((t) => [printable(t.name), `[${t.shape.join('x')}]`, digests.get(t.name) as string]), ['tensor', 'shape', 'digest']));
  if (a.record) {
    await writeRecordedDigests(place.dir, store.digestRecords(digests), { files: place.files });
    io.progress(`recorded ${digests.size} tensor digests in ${join(place.dir, place.files.digests)}`);
  }
  io.result?.({
    model: a.model, fingerprint, tensorCount: digests.size, recorded: a.record,
    ...(a.tensors ? { tensors: store.list().map((t) => ({ name: t.name, shape: t.shape, digest: digests.get(t.name) })) } : {}),
  });
  return 0;
}

import type { Argv } from 'yargs';
import { writeFile } from 'node:fs/promises';
import { getHasher } from '../../src/core/hasher.ts';
import { parseBudget, formatBytes } from '../../src/diff/budget.ts';
import { topkDiff } from '../../src/diff/topk.ts';
import { openTfjsModelDir } from '../../src/io/tfjs-artifacts.ts';
import type { CliIO } from '../common.ts';
import { defaultModelId, modelBytes, parseExpiry, writeUpdatedModel } from '../models.ts';

export interface DiffArgs {
  base: string;
  target: string;
  budget: string;
  out: string;
  codec: 'auto' | 'f32' | 'f16' | 'i8';
  modelId?: string;
  sequence: number;
  expires?: string;
  modelOut?: string;
}

export function diffCommand(y: Argv): Argv<DiffArgs> {
  return y
    .option('base', { type: 'string', demandOption: true, describe: 'folder of the model the devices hold (TF.js model.json + shards)' })
    .option('target', { type: 'string', demandOption: true, describe: 'folder of the new model (same architecture)' })
    .option('budget', { type: 'string', demandOption: true, describe: 'byte budget for the whole payload: `1%` of the float32 model, `40KB`, `40KiB`, or bytes' })
    .option('out', { type: 'string', demandOption: true, describe: 'payload file to write' })
    .option('codec', { choices: ['auto', 'f32', 'f16', 'i8'] as const, default: 'auto' as const, describe: 'value codec; `auto` keeps the one with the smallest error' })
    .option('model-id', { type: 'string', describe: 'model identifier written in the header (default: the id the base folder recorded in .ndiff-folder.json, else its name); keep one id along a chain of updates' })
    .option('sequence', { type: 'number', default: 1, describe: 'update sequence number; devices refuse anything at or below the one they hold' })
    .option('expires', { type: 'string', describe: 'expiry: ISO date, or a duration from now like `30d`, `12h`' })
    .option('model-out', { type: 'string', describe: 'also write the model devices hold after this update (base + payload): the --base of the next diff in a chain' })
    .example('$0 diff --base v1/ --target v2/ --budget 1% --out v1-v2.ndiff', 'keep the largest changes that fit in 1% of the model') as unknown as Argv<DiffArgs>;
}

/** Post-hoc diff: magnitude top-k of (target - base) under the byte budget. */
export async function runDiff(a: DiffArgs, io: CliIO): Promise<number> {
  const [base, target] = await Promise.all([openTfjsModelDir(a.base), openTfjsModelDir(a.target)]);
  const total = modelBytes(base);
  const budgetBytes = parseBudget(a.budget, total);
  io.progress(`base ${a.base}: ${base.list().length} tensors, ${formatBytes(total)} as float32; budget ${formatBytes(budgetBytes)}`);
  const hasher = await getHasher();
  const t0 = performance.now();
  const res = topkDiff(hasher, base, target, {
    budgetBytes,
    codec: a.codec,
    modelId: a.modelId ?? await defaultModelId(a.base),
    sequence: a.sequence,
    ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}),
    onProgress: (m) => io.progress(`  ${m}`),
  });
  await writeFile(a.out, res.bytes);
  const ms = performance.now() - t0;
  io.out(`wrote ${a.out}: ${res.bytes.length} bytes (${((100 * res.bytes.length) / total).toFixed(3)}% of the model, ${(total / res.bytes.length).toFixed(1)}x smaller), ${res.kept} of ${res.changed} changed values kept, codec ${res.codec}, in ${(ms / 1000).toFixed(2)} s`);
  io.out(`base ${res.payload.header.baseFingerprint} -> target ${res.payload.header.targetFingerprint}`);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${await writeUpdatedModel(a.base, a.modelOut, res.bytes)}): diff the next version against it`);
  return 0;
}

/**
 * One structural rebuild in a process of its own, for test/rebuild-hostile.test.ts: a hostile
 * case must end in a typed refusal in bounded memory, which only a separate process can show
 * (its peak resident memory), and a case that would hang (a FIFO shard) must not hang the test
 * runner. Prints one JSON line: the status or the error's name and code, the peak RSS in MiB
 * and the seconds taken.
 *
 *   rebuild-child.ts dir   <model folder or JSON> <payload file>   (rebuildModelDir)
 *   rebuild-child.ts onnx  <model.onnx> <payload file>             (rebuildOnnxFile)
 *   rebuild-child.ts files <model folder> <payload file>           (rebuildModelFiles in memory, TF.js)
 *   rebuild-child.ts read  <model folder> <any file>               (readTfjsModelFiles alone)
 */
import { readFile } from 'node:fs/promises';
import { NeuralDiffError } from '../../src/core/errors.ts';
import { rebuildModelFiles } from '../../src/apply/rebuild.ts';
import { readTfjsModelFiles, rebuildModelDir, TFJS_REBUILD } from '../../src/io/tfjs/folder-rebuild.ts';
import { rebuildOnnxFile } from '../../src/io/onnx/files.ts';

const [mode, model, payloadFile] = process.argv.slice(2);
const payload = new Uint8Array(await readFile(payloadFile));
const t0 = performance.now();
const report = (r: Record<string, unknown>) => {
  process.stdout.write(JSON.stringify({ ...r, maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), seconds: Number(((performance.now() - t0) / 1000).toFixed(2)) }) + '\n');
};
try {
  let status: string;
  if (mode === 'dir') status = (await rebuildModelDir(model, payload)).status;
  else if (mode === 'onnx') status = (await rebuildOnnxFile(model, payload)).status;
  else if (mode === 'files') status = (await rebuildModelFiles(await readTfjsModelFiles(model, 'model.json'), payload, TFJS_REBUILD)).status;
  else if (mode === 'read') status = `read ${(await readTfjsModelFiles(model, 'model.json')).length} files`;
  else throw new Error(`unknown mode ${mode}`);
  report({ status });
} catch (e) {
  report({ error: (e as Error).name, code: e instanceof NeuralDiffError ? e.code : undefined, message: (e as Error).message.slice(0, 400) });
}

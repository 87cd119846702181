/**
 * Real pretrained TF.js models, taken from the `nsfwjs` devDependency (MIT): a
 * MobileNetV2 Keras layers-model (2.6M weights) and a MobileNetV2 graph-model, both with
 * uint8-quantized weights. Weights nobody here wrote: the tests prove the stores on the formats
 * models really ship in, and the pretrained example adapts one to a new task.
 *
 * nsfwjs ships each model as browserify UMD bundles: `model.min.js` exports the model.json
 * object and `group1-shardXofY.min.js` exports the shard bytes as a base64 string. This
 * helper evaluates them with a CommonJS shim and writes an ordinary model folder (model.json
 * plus the shard files its manifest names), cached under the OS temp folder per nsfwjs
 * version. No network: only the installed package is read.
 */
import { createRequire } from 'node:module';
import { mkdir, readFile, rename, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const require = createRequire(import.meta.url);

/** The models used here, by the folder name inside `nsfwjs/dist/models`. */
export const PRETRAINED = {
  /** Keras layers-model, 224x224x3 input, 5 classes. */
  layers: 'mobilenet_v2',
  /** Graph-model (converted SavedModel), 224x224x3 input, 5 classes. */
  graph: 'mobilenet_v2_mid',
} as const;

function nsfwjsRoot(): string {
  // nsfwjs's `exports` hides package.json; resolve an exported entry and walk up.
  let dir = path.dirname(require.resolve('nsfwjs'));
  while (path.basename(dir) !== 'nsfwjs') {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the nsfwjs package folder: run npm install (it is a devDependency)');
    dir = up;
  }
  return dir;
}

/** Evaluate one UMD bundle file with a CommonJS shim and return its export. */
async function evalUmd(file: string): Promise<unknown> {
  const src = await readFile(file, 'utf8');
  const module = { exports: {} as unknown };
  // The bundle checks `typeof exports == "object" && typeof module != "undefined"`.
  new Function('module', 'exports', 'define', src)(module, module.exports, undefined);
  return module.exports;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The folder of a pretrained model as model.json + binary shards (created on first use,
 * then reused).
 */
export async function pretrainedModelDir(kind: keyof typeof PRETRAINED): Promise<string> {
  const root = nsfwjsRoot();
  const version = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')).version as string;
  const name = PRETRAINED[kind];
  const dir = path.join(tmpdir(), `neural-diff-nsfwjs-${version}`, name);
  if (await exists(path.join(dir, 'model.json'))) return dir;
  const src = path.join(root, 'dist', 'models', name);
  const modelJson = (await evalUmd(path.join(src, 'model.min.js'))) as { weightsManifest: { paths: string[] }[] };
  const work = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(work, { recursive: true });
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) {
      const b64 = await evalUmd(path.join(src, `${p}.min.js`));
      if (typeof b64 !== 'string') throw new Error(`nsfwjs ${name}/${p}.min.js did not export a base64 string`);
      await writeFile(path.join(work, p), Buffer.from(b64, 'base64'));
    }
  }
  await writeFile(path.join(work, 'model.json'), JSON.stringify(modelJson));
  await mkdir(path.dirname(dir), { recursive: true });
  try {
    await rename(work, dir);
  } catch (err) {
    // Another test process made it first: use theirs.
    if (!(await exists(path.join(dir, 'model.json')))) throw err;
  }
  return dir;
}

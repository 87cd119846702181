/**
 * A release folder on a static host, and a Node or Electron app that keeps its model up to date
 * from it: the same job as examples/node-updater, with `ndiff release` and `updateModel` doing
 * the bookkeeping (model id, sequence numbers, which payload fits, downloads, retries).
 *
 *   node examples/release-updater/run.mjs [OUT] [--json]   in an app that installed neural-diff
 *                                                          and @tensorflow/tfjs
 *   npm run example:release-updater                        inside this repo
 *
 * Build server: three versions of a small classifier (v2 and v3 replace its head), each added to
 * a release folder with `addVersion` (what `ndiff release add` runs): exact payloads from the
 * previous versions, full packages, a signed manifest. Static host: a 30-line node:http server
 * (any CDN does the same: GET with Range). Devices: one on v1, one on v2, and a new install with
 * no model, each brought to v3 by `updateModel` with a health check that loads the new version
 * with tfjs and compares its output on a fixed input.
 */
import { cp, mkdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join, dirname, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { addVersion, fileSystemIO, generateKeyPair } from 'neural-diff';
import { updateModel } from 'neural-diff/node';
import { createPrivateKey } from 'node:crypto';

const CANARY = Float32Array.from({ length: 28 * 28 }, (_, i) => ((i * 37) % 101) / 100);

/**
 * The classifier, its head drawn with `headSeed`. Every version has the same topology, as a
 * retrained model does (the topology in model.json is part of the model's fingerprint): the layers
 * and the model are named (tfjs would make up `max_pooling2d_3`, `sequential_2` in one process),
 * the initializers (whose seeds model.json records) are the same, and the new head is set after.
 * @param {number} headSeed
 */
function classifier(headSeed) {
  const init = (/** @type {number} */ seed) => tf.initializers.glorotUniform({ seed });
  const model = tf.sequential({
    name: 'classifier',
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: init(1), name: 'conv1' }),
      tf.layers.maxPooling2d({ poolSize: 2, name: 'pool' }),
      tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu', kernelInitializer: init(2), name: 'conv2' }),
      tf.layers.flatten({ name: 'flatten' }),
      tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: init(3), name: 'features' }),
      tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(4), name: 'head' }),
    ],
  });
  const head = model.getLayer('head');
  const [kernel, bias] = head.getWeights();
  head.setWeights([
    tf.tidy(() => tf.randomUniform(kernel.shape, -0.3, 0.3, 'float32', headSeed)),
    tf.tidy(() => tf.randomUniform(bias.shape, -0.1, 0.1, 'float32', headSeed + 1)),
  ]);
  return model;
}

/** @param {tf.LayersModel} model */
const canaryOutput = (model) => /** @type {Float32Array} */ (tf.tidy(() => /** @type {tf.Tensor} */ (model.predict(tf.tensor4d(CANARY, [1, 28, 28, 1]))).dataSync()));

/** A static file server with Range support, as a CDN serves the folder. @param {string} root */
async function staticHost(root) {
  const server = createServer(async (req, res) => {
    const file = join(root, normalize(new URL(req.url ?? '/', 'http://x').pathname).replace(/^[/\\]+/, ''));
    const bytes = await readFile(file).catch(() => null);
    if (!bytes || !file.startsWith(root)) return res.writeHead(404).end();
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    const body = bytes.subarray(start);
    res.writeHead(req.headers.range ? 206 : 200, { 'Content-Length': body.length, ...(req.headers.range ? { 'Content-Range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}) });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  return { url: `http://127.0.0.1:${/** @type {{ port: number }} */ (server.address()).port}/`, close: () => new Promise((resolve) => server.close(resolve)) };
}

/**
 * @typedef {{ devices: { from: string, status: string, path: string, bytes: number, fullBytes: number, healthy: boolean }[], expected: string, fingerprints: string[] }} ReleaseUpdaterSummary
 * @param {string} out @param {(line: string) => void} [log] @returns {Promise<ReleaseUpdaterSummary>}
 */
export async function runReleaseUpdaterExample(out, log = console.log) {
  await tf.setBackend('cpu');
  await rm(out, { recursive: true, force: true });

  // ---- build server
  const keys = generateKeyPair();
  const key = createPrivateKey(keys.privateKeyPem);
  const release = join(out, 'site', 'classifier');
  const versions = [];
  const canaries = new Map();
  let latest = '';
  for (const [v, headSeed] of [[1, 10], [2, 20], [3, 30]]) {
    const model = classifier(headSeed);
    const dir = join(out, 'server', `v${v}`);
    await model.save(fileSystemIO(dir));
    versions.push(dir);
    const added = await addVersion(release, dir, { modelId: 'classifier', key, expiresAt: Math.floor(Date.now() / 1000) + 30 * 86400 });
    canaries.set(added.fingerprint, canaryOutput(model));
    latest = added.fingerprint;
    model.dispose();
    log(`build server: version ${added.version} (${added.fingerprint}), ${added.published?.added ?? 0} payload(s) into it, manifest release ${added.published?.release}`);
  }

  // ---- static host and devices
  const host = await staticHost(join(out, 'site'));
  /** @type {ReleaseUpdaterSummary} */
  const summary = { devices: [], expected: latest, fingerprints: [] };
  try {
    for (const [name, from] of [['v1', versions[0]], ['v2', versions[1]], ['new install', undefined]]) {
      const model = join(out, 'devices', name.replace(' ', '-'), 'model');
      await mkdir(dirname(model), { recursive: true });
      if (from) await cp(from, model, { recursive: true });
      let healthy = false;
      const result = await updateModel({
        model,
        modelId: 'classifier',
        urls: [`${host.url}classifier/`],
        trustedKeys: [keys.publicKeyPem],
        // Runs once the new version is in place, before it is kept: false rolls back.
        healthCheck: async ({ path, fingerprint }) => {
          const loaded = await tf.loadLayersModel(fileSystemIO(path));
          const got = canaryOutput(loaded);
          loaded.dispose();
          const want = canaries.get(fingerprint);
          healthy = !!want && got.every((x, k) => Math.abs(x - want[k]) <= 1e-5);
          return healthy;
        },
      });
      const bytes = result.steps.reduce((n, s) => n + s.bytes, 0);
      summary.devices.push({ from: name, status: result.status, path: result.path, bytes, fullBytes: result.fullBytes ?? 0, healthy });
      summary.fingerprints.push(result.fingerprint ?? '');
      log(`device on ${name}: ${result.status} by ${result.path === 'full' ? 'the full model' : 'payloads'}, ${bytes} bytes (the full model is ${result.fullBytes}); health check ${healthy ? 'passed' : 'failed'}`);
    }
  } finally {
    await host.close();
  }
  return summary;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const out = args.find((a) => !a.startsWith('--')) ?? join(dirname(fileURLToPath(import.meta.url)), 'out');
  const summary = await runReleaseUpdaterExample(out, json ? () => {} : console.log);
  if (json) console.log(JSON.stringify(summary));
}

/**
 * A Node or Electron app that keeps its model up to date with signed diffs.
 *
 *   node examples/node-updater/run.mjs [OUT] [--json]   in an app that installed neural-diff and
 *                                                       @tensorflow/tfjs (plain Node, no TypeScript)
 *   npm run example:node-updater                        inside this repo (from the TypeScript sources)
 *
 * Writes under OUT (default examples/node-updater/out/); --json prints a summary JSON line.
 *
 * Build server (`neural-diff`): three versions of a small image classifier (v2 and v3 replace
 * its classifier head, as a head fine-tune does; here the new heads are drawn with other seeds,
 * since this example is about shipping updates: examples/quickstart learns one), a signing key,
 * and signed top-k diffs v1→v2 and v2→v3 with a canary: the new version's output for a fixed
 * input.
 *
 * Device (`neural-diff/node`, no trainer): the app installs v1, records its digests, then
 * applies each update with `applyToModelDir`: signature checked before anything is decoded,
 * base checked, only the changed shard written, an atomic switch, and a health check that loads
 * the new version with tfjs and compares its canary output (within 1e-5: other devices compute
 * in another order) before the update is confirmed. Then
 * it shows what a device refuses: an old update replayed and a tampered one, with the model
 * folder untouched.
 *
 * To fetch updates over HTTP instead of handing payloads to the applier, with the model id,
 * sequence numbers, payload choice and downloads taken care of, see examples/release-updater.
 */
import { cp, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { fileSystemIO, generateKeyPair, openTfjsModelDir, signPayload, MemoryWeightStore } from 'neural-diff';
import { getHasher, topkDiff } from 'neural-diff/kit';
import { applyToModelDir, recordModelDirDigests, NeuralDiffError } from 'neural-diff/node';

/** A fixed input every version is checked on (one 28x28 grey image). */
const CANARY = Float32Array.from({ length: 28 * 28 }, (_, i) => ((i * 37) % 101) / 100);
/** 64 KiB shards, so the example model spans several files as real ones do (tfjs uses 4 MiB). */
const SHARD_BYTES = 64 * 1024;

/**
 * The classifier: two convolutions and a dense layer, then the head (`head`), whose weights are
 * drawn with `headSeed`. The topology model.json keeps is part of the model's fingerprint (its
 * frame), so every version has the same one, as a retrained model does: every layer and the model
 * are named (names tfjs makes up, `max_pooling2d_3`, `sequential_2`, would differ between
 * versions built in one process) and the initializers (whose seeds model.json records) are the
 * same; the new head is set after the model is built.
 */
/** @param {number} headSeed @returns {tf.LayersModel} */
function classifier(headSeed) {
  const model = architecture();
  const head = model.getLayer('head');
  const [kernel, bias] = head.getWeights();
  head.setWeights([
    tf.tidy(() => tf.randomUniform(kernel.shape, -0.3, 0.3, 'float32', headSeed)),
    tf.tidy(() => tf.randomUniform(bias.shape, -0.1, 0.1, 'float32', headSeed + 1)),
  ]);
  return model;
}

/** The classifier's layers, with fixed names and initializers. @returns {tf.LayersModel} */
function architecture() {
  const init = (/** @type {number} */ seed) => tf.initializers.glorotUniform({ seed });
  return tf.sequential({
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
}

/** @param {tf.LayersModel} model @returns {Float32Array} */
function canaryOutput(model) {
  return /** @type {Float32Array} */ (tf.tidy(() => /** @type {tf.Tensor} */ (model.predict(tf.tensor4d(CANARY, [1, 28, 28, 1]))).dataSync()));
}

/** @param {string} dir @returns {Promise<Map<string, string>>} */
async function folderBytes(dir) {
  const out = new Map();
  for (const f of (await readdir(dir)).sort()) out.set(f, (await readFile(join(dir, f))).toString('base64'));
  return out;
}

/**
 * What the example did, for its test.
 * @typedef {{ installed: string, updates: { status: string, baseCheck: { hashedTensors: number, recordedTensors: number }, payloadBytes: number, healthy: boolean }[], refused: { replay: string, tampered: string, folderUntouched: boolean }, final: { fingerprint: string, expected: string } }} NodeUpdaterSummary
 */

/**
 * @param {string} out where to write
 * @param {(line: string) => void} [log]
 * @returns {Promise<NodeUpdaterSummary>}
 */
export async function runNodeUpdaterExample(out, log = console.log) {
  await tf.setBackend('cpu');
  await rm(out, { recursive: true, force: true });
  const hasher = await getHasher();

  // ---- build server
  log('build server: three versions of the classifier, a key, signed diffs');
  const versions = [];
  const canaries = [];
  for (const [v, headSeed] of [[1, 10], [2, 20], [3, 30]]) {
    const model = classifier(headSeed);
    const dir = join(out, 'server', `v${v}`);
    await model.save(fileSystemIO(dir, { shardBytes: SHARD_BYTES }));
    versions.push(dir);
    canaries.push(canaryOutput(model));
    model.dispose();
  }
  const key = generateKeyPair();
  const updates = [];
  // Each diff is made against what devices hold after the previous one (base + payload, which
  // can differ from the server's version in the last bit of a weight), never the server's copy.
  let held = MemoryWeightStore.copyOf(await openTfjsModelDir(versions[0]));
  for (let v = 1; v < 3; v++) {
    const target = MemoryWeightStore.copyOf(await openTfjsModelDir(versions[v]));
    const built = topkDiff(hasher, held, target, { budgetBytes: 20_000, codec: 'f32', modelId: 'classifier', sequence: v + 1 });
    updates.push({ bytes: signPayload(built.bytes, key.privateKeyPem), canary: canaries[v], target: built.payload.header.targetFingerprint });
    log(`  v${v}→v${v + 1}: ${built.bytes.length} bytes (${built.kept} weights), ${updates[updates.length - 1].bytes.length} signed by key ${key.keyId}`);
    held = held.clone();
    for (const [name, values] of built.targetValues) held.values(name).set(values);
  }

  // ---- device
  const device = join(out, 'device', 'model');
  await mkdir(join(out, 'device'), { recursive: true });
  await cp(versions[0], device, { recursive: true });
  const installed = (await recordModelDirDigests(device)).fingerprint;
  log(`device: installed v1 (${installed}); its tensor digests recorded for fast applies`);

  /** @type {NodeUpdaterSummary} */
  const summary = { installed, updates: [], refused: { replay: '', tampered: '', folderUntouched: false }, final: { fingerprint: '', expected: updates[1].target } };
  for (const [i, u] of updates.entries()) {
    let healthy = false;
    const res = await applyToModelDir(device, u.bytes, {
      trustedKeys: [key.publicKeyPem],
      // Runs after the switch, before the update is confirmed: false rolls back.
      healthCheck: async ({ dir }) => {
        const model = await tf.loadLayersModel(fileSystemIO(dir));
        const got = canaryOutput(model);
        model.dispose();
        // Another device or backend computes in another order: compare within a tolerance.
        healthy = got.length === u.canary.length && got.every((x, k) => Number.isFinite(x) && Math.abs(x - u.canary[k]) <= 1e-5);
        return healthy;
      },
    });
    summary.updates.push({ status: res.status, baseCheck: res.baseCheck, payloadBytes: u.bytes.length, healthy });
    log(`  update ${i + 2}: ${res.status} ${res.baseFingerprint} → ${res.targetFingerprint}; base checked: ${res.baseCheck.hashedTensors} tensor(s) hashed, ${res.baseCheck.recordedTensors} by recorded digests; canary ${healthy ? 'matches' : 'differs'}`);
  }

  const before = await folderBytes(device);
  const codeOf = async (/** @type {Uint8Array} */ bytes) => {
    try {
      await applyToModelDir(device, bytes, { trustedKeys: [key.publicKeyPem] });
      return 'applied';
    } catch (e) {
      if (!(e instanceof NeuralDiffError)) throw e;
      log(`  refused: ${e.code}: ${e.message.slice(0, 140)}…`);
      return e.code;
    }
  };
  summary.refused.replay = await codeOf(updates[0].bytes);
  const tampered = updates[1].bytes.slice();
  tampered[tampered.length >> 1] ^= 1;
  summary.refused.tampered = await codeOf(tampered);
  const after = await folderBytes(device);
  summary.refused.folderUntouched = after.size === before.size && [...before].every(([f, b]) => after.get(f) === b);
  summary.final.fingerprint = (await recordModelDirDigests(device)).fingerprint;
  log(`device: model ${summary.final.fingerprint} (v3 is ${summary.final.expected}); refusals left the folder ${summary.refused.folderUntouched ? 'byte for byte untouched' : 'CHANGED'}`);
  return summary;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const out = args.find((a) => !a.startsWith('--')) ?? join(dirname(fileURLToPath(import.meta.url)), 'out');
  const summary = await runNodeUpdaterExample(out, json ? () => {} : console.log);
  if (json) console.log(JSON.stringify(summary));
}

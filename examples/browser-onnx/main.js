// An ONNX app's whole update path: fetch, verify and patch the model's bytes, reload the session.
import * as ort from 'onnxruntime-web';
import { applyPayload, fingerprintStore, getHasher } from 'neural-diff/apply';
import { OnnxWeightStore } from 'neural-diff/onnx';

ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = './';
const params = new URLSearchParams(location.search);
const modelUrl = params.get('model') ?? 'model.onnx';
const payloadUrl = params.get('payload') ?? 'update.ndiff';
const show = (id, text) => { document.getElementById(id).textContent = text; };

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** One 32 ms frame (with Silero's 64-sample context) of a fixed test signal: a chirp with a little noise. */
function testFrame() {
  const x = new Float32Array(64 + 512);
  let seed = 1;
  for (let i = 0; i < x.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    x[i] = 0.4 * Math.sin(2 * Math.PI * (200 + 3 * i) * i / 16000) + 0.01 * (seed / 2 ** 32 - 0.5);
  }
  return x;
}

async function speechProbability(bytes) {
  const session = await ort.InferenceSession.create(bytes);
  const input = testFrame();
  const out = await session.run({
    input: new ort.Tensor('float32', input, [1, input.length]),
    state: new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]),
    sr: new ort.Tensor('int64', BigInt64Array.from([16000n]), []),
  });
  await session.release();
  return out.output.data[0];
}

async function main() {
  const [modelBytes, payloadBytes] = await Promise.all([fetchBytes(modelUrl), fetchBytes(payloadUrl)]);
  // Float32 weights are patched in modelBytes itself, at the same offsets.
  const store = new OnnxWeightStore(modelBytes, { source: modelUrl });
  const hasher = await getHasher();
  show('model', `${store.weights().length} float weights, ${modelBytes.length.toLocaleString('en')} bytes`);
  show('before', fingerprintStore(hasher, store).fingerprint);
  // Run the old model first: onnxruntime copies the bytes it is given.
  show('output-before', (await speechProbability(modelBytes)).toFixed(7));

  const t0 = performance.now();
  const result = await applyPayload(store, payloadBytes, { hasher });
  show('time', `${(performance.now() - t0).toFixed(1)} ms for ${result.writtenValues.toLocaleString('en')} written values`);
  show('after', fingerprintStore(hasher, store).fingerprint);
  show('output-after', (await speechProbability(store.modelBytes())).toFixed(7));
  show('status', `${result.status}: update ${result.sequence} (${payloadBytes.length.toLocaleString('en')} bytes) patched ${result.changedTensors.length} tensors`);
  document.body.dataset.state = 'done';
}

main().catch((err) => {
  show('status', `${err.code ?? err.name}: ${err.message}`);
  document.body.dataset.state = 'error';
});

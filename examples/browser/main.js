// The whole device side of an update, as a browser app writes it.
import { applyPayload, fingerprintStore, getHasher } from 'neural-diff/apply';
import { SafetensorsWeightStore } from 'neural-diff/safetensors';

const params = new URLSearchParams(location.search);
const modelUrl = params.get('model') ?? 'model.safetensors';
const payloadUrl = params.get('payload') ?? 'update.ndiff';
const show = (id, text) => { document.getElementById(id).textContent = text; };

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function main() {
  const [modelBytes, payloadBytes] = await Promise.all([fetchBytes(modelUrl), fetchBytes(payloadUrl)]);
  // F32 tensors are views into modelBytes: the patch writes into the downloaded file itself.
  const store = new SafetensorsWeightStore(modelBytes, modelUrl);
  const hasher = await getHasher(); // xxhash-wasm, or pure TypeScript where WebAssembly is absent
  const weights = store.list().reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  show('hasher', hasher.kind);
  show('model', `${store.list().length} tensors, ${weights.toLocaleString('en')} weights, ${modelBytes.length.toLocaleString('en')} bytes`);
  show('before', fingerprintStore(hasher, store).fingerprint);

  const t0 = performance.now();
  const result = await applyPayload(store, payloadBytes, { hasher });
  show('time', `${(performance.now() - t0).toFixed(1)} ms for ${result.writtenValues.toLocaleString('en')} written values`);
  show('after', fingerprintStore(hasher, store).fingerprint);
  show('status', `${result.status}: update ${result.sequence} (${payloadBytes.length.toLocaleString('en')} bytes) patched ${result.changedTensors.length} tensors`);

  const link = document.getElementById('download');
  link.href = URL.createObjectURL(new Blob(store.serialize(), { type: 'application/octet-stream' }));
  link.hidden = false;
  document.body.dataset.state = 'done';
}

main().catch((err) => {
  // Typed errors carry a code (ND_BASE_MISMATCH, ...) and say what to do.
  show('status', `${err.code ?? err.name}: ${err.message}`);
  document.body.dataset.state = 'error';
});

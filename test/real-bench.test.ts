/**
 * `npm run bench:real -- --quick` in the suite: the pairs already in devDependencies (Silero VAD
 * v5.1 -> v6 and legacy -> v5.1 from @ricky0123/vad-web 0.0.31), no download. Needs zstd and
 * bsdiff; installs them as root (as CI does), else skips with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchmarkSkip } from './helpers/benchmarks.ts';
import { ensurePackages } from '../bench/onnx.ts';
import { realBenchMarkdown, runRealBench } from '../bench/real.ts';

let skip: string | false = benchmarkSkip;
if (!skip) {
  try {
    ensurePackages([{ pkg: 'zstd', bin: 'zstd' }, { pkg: 'bsdiff', bin: 'bsdiff' }], () => {});
  } catch (e) {
    skip = (e as Error).message;
  }
}

test('bench:real --quick: the exact payload reaches v6 and is compared with zstd and bsdiff; another architecture takes a structural payload that rebuilds the target file byte for byte', { skip, timeout: 600_000 }, async (t) => {
  const [same, other] = await runRealBench({ quick: true, log: () => {} });
  assert.equal(same.skipped, undefined);
  assert.equal(same.refused, undefined);
  assert.equal(same.roundTrip, true, 'base + payload has the target fingerprint');
  assert.ok((same.payloadBytes as number) > 0 && typeof same.zstdBytes === 'number' && typeof same.bsdiffBytes === 'number');
  // Float32 weights: no tensor is stored narrower, so the payload is format v3 (codec xr).
  assert.equal(same.version, 3);
  assert.equal(same.v3Bytes, same.payloadBytes);
  assert.ok((same.payloadBytes as number) <= (same.zstdBytes as number), `${same.payloadBytes} <= zstd ${same.zstdBytes}`);
  // Legacy -> v5 changes the architecture: no value payload joins them (the reason named and
  // counted); the structural payload does, rebuilt to the target file byte for byte.
  assert.equal(other.refused?.code, 'ND_MODEL_MISMATCH');
  assert.match(other.refused?.message ?? '', /tensor\(s\) added .*removed|the two models differ outside their weights/);
  const s = other.structural;
  assert.ok(s, 'a structural payload for the single-file pair');
  assert.equal(s.byteForByte, true);
  assert.ok(s.added > 0 && s.removed > 0 && s.renamed > 0 && s.graphChanged, JSON.stringify(s));
  assert.equal(s.bytes > s.rebuildBytes + s.valueBytes - 1 && s.bytes < s.rebuildBytes + s.valueBytes + 200, true, 'the payload is its two parts and a small header');
  assert.ok(typeof other.zstdBytes === 'number' && typeof other.bsdiffBytes === 'number');
  // another architecture: most of the file is new, so it costs about what the byte-diff tools do
  assert.ok(s.bytes < 1.2 * (other.zstdBytes as number), `${s.bytes} vs zstd ${other.zstdBytes}`);
  const md = realBenchMarkdown([same, other]);
  assert.match(md, /\| Silero VAD v5\.1 -> v6 \(ONNX\) \| [\d,]+ \(v3; /);
  assert.match(md, /\| Silero VAD legacy -> v5\.1 \(ONNX; another architecture\) \| structural \(v7\): [\d,]+ \(rebuild [\d,]+ \+ values [\d,]+\) \| \| [\d,]+ \| [\d,]+ \| [\d,]+ \(the file\) \| target file byte for byte \|/);
  t.diagnostic(`v5.1 -> v6: ${same.payloadBytes} bytes, zstd --patch-from ${same.zstdBytes}, bsdiff ${same.bsdiffBytes}`);
  t.diagnostic(`legacy -> v5.1, structural: ${s.bytes} bytes, zstd --patch-from ${other.zstdBytes}, bsdiff ${other.bsdiffBytes}`);
});

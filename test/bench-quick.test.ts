/**
 * Each benchmark docs/BENCHMARKS.md quotes runs: its quick mode, through the npm script the docs
 * name (issue 45, item 12: `npm run bench:apply` had stopped running). The figures of a quick run
 * prove nothing and are not checked; that the script runs to the end and writes its results is.
 * The other benchmarks and examples have tests of their own (kws-bench, onnx-bench, real-bench,
 * vad-learned-bench, release-bench, pretrained-example, node-updater-example, release-example,
 * readme for the demo).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { benchmarkSkip } from './helpers/benchmarks.ts';

const root = join(import.meta.dirname, '..');

/**
 * `npm run SCRIPT -- ARGS`, except that a script of several commands joined by `&&` gets the
 * arguments on each command (npm would append them to the last one only).
 */
function npmRun(script: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const line = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts[script];
  assert.ok(line, `package.json has no script ${script}`);
  const command = line.split(' && ').map((c) => `${c} ${args.join(' ')}`).join(' && ');
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', command], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: `${join(root, 'node_modules', '.bin')}:${process.env.PATH}` } });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    c.on('close', (code) => resolve({ code, out }));
  });
}

const cases: { script: string; args: string[]; shows: RegExp; timeoutMs?: number }[] = [
  { script: 'bench:apply', args: ['--quick'], shows: /wrote bench\/out\/apply\.json/ },
  // bench:train runs three scripts; each gets --quick. Their quick modes still train (wasm,
  // native, worker pools): 7 minutes beside another job here, over 10 on a busier machine.
  { script: 'bench:train', args: ['--quick'], shows: /hash diff .* samples\/s[\s\S]*wrote bench\/out\/train-engine\.json[\s\S]*Training throughput/, timeoutMs: 1_800_000 },
  { script: 'bench:train-kernels', args: ['--quick'], shows: /depthwise backprop-filter JS \/ SIMD +112x112x96 \(s2\)[\s\S]*Keras ReLU6 gradient tfjs \/ ours[\s\S]*wrote bench\/out\/train-kernels-simd\.json/ },
  { script: 'bench:large', args: ['--gb', '0.03', '--tensor-mb', '4'], shows: /tfjs +apply .*"status":"applied"/ },
  { script: 'conformance:onnx', args: ['--filter', 'relu'], shows: /\d+ passing, 0 failing/ },
  { script: 'conformance:tflite', args: ['--quick'], shows: /2 distinct \(a file[^)]*\); every one read and written back byte-identical: yes[\s\S]*\| exact \(every change\) \| [\d,]+ \| 0\.000e\+0 \|/ },
  { script: 'bench:tflite-learned', args: ['--quick'], shows: /\| post hoc topk \| 5% \| [\d,]+ \|[\s\S]*\| learned sparse \(teacher v2\) \| 5% \| [\d,]+ \|/ },
  { script: 'bench:diff-speed', args: ['--quick'], shows: /generated \([\d,]+ weights\) lowbit +this checkout: [\d.]+ s CPU, [\d,]+ weights\/s[\s\S]*generated \([\d,]+ weights\) lowrank +this checkout: / },
  { script: 'bench:lowbit', args: ['--quick'], shows: /BitDelta \(post hoc, 1 bit, a scale per tensor\): \d+ B .*lowbit at the same bytes/ },
  // The calibrated row is ndiff diff --calibrate on Silero: the 8 kHz branch and the STFT basis are not reached at 16 kHz.
  { script: 'bench:vad-lowbit', args: ['--quick'], shows: /\| lowbit, no data .* \| 10% \| \d+ \| [\d.]+% \| [\d.]+% \|[\s\S]*the 14 tensors the inputs reach\), chosen on calibration frames/ },
];

for (const c of cases) {
  test(`npm run ${c.script} -- ${c.args.join(' ')} runs to the end`, { skip: benchmarkSkip, timeout: c.timeoutMs ?? 600_000 }, async () => {
    const r = await npmRun(c.script, c.args);
    assert.equal(r.code, 0, r.out.slice(-3000));
    assert.match(r.out, c.shows);
  });
}

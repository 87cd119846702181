/**
 * The small transformer's matrix products on the native backend beside torch.mm / torch.bmm on
 * the same OpenBLAS (PyTorch with OpenBLAS's OpenMP build, as bench/train-vs-torch.ts loads it from
 * .cache/openblas-openmp), one thread each: the Linear layers' forward products and their two
 * gradients (batch 32 x 32 tokens = 1,024 rows, widths 64, 128, 192) and the attention's batched
 * products (128 items of 32x16 and 32x32). Ours is the registered BatchMatMul kernel called
 * directly (blocks cut from the shape, as in a compiled step); CPU us a call after 20 warm-up
 * calls, over 200 calls, and GFLOP/s.
 *
 *   node --conditions=neural-diff-source --import tsx bench/native-gemm-vs-torch.ts
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';

/** [a's shape, b's shape, transposeA, transposeB]. */
const SHAPES: [number[], number[], boolean, boolean][] = [
  [[1024, 64], [64, 192], false, false], [[1024, 64], [1024, 192], true, false], [[1024, 192], [64, 192], false, true],
  [[1024, 128], [128, 64], false, false], [[1024, 64], [1024, 128], true, false], [[1024, 128], [64, 128], false, true],
  [[128, 32, 16], [128, 16, 32], false, false], [[128, 32, 32], [128, 32, 16], false, false], [[128, 32, 32], [128, 32, 16], true, false],
];
const WARM = 20;
const CALLS = 200;

const status = nativeAddonStatus();
if (!status.available) throw new Error(`the native addon is not built: ${status.reason}`);
await initBackend('native', { threads: 1 });
const kernel = tf.getKernel('BatchMatMul', 'native');
if (!kernel) throw new Error('the native backend registers no BatchMatMul');
const backend = tf.backend();
const flops = ([as, bs, ta, tb]: (typeof SHAPES)[number]) => {
  const m = ta ? as[as.length - 1] : as[as.length - 2];
  const k = ta ? as[as.length - 2] : as[as.length - 1];
  const n = tb ? bs[bs.length - 2] : bs[bs.length - 1];
  return 2 * (as.length === 3 ? as[0] : 1) * m * n * k;
};
const ours = SHAPES.map(([as, bs, ta, tb]) => {
  const a = tf.randomNormal(as);
  const b = tf.randomNormal(bs);
  const call = () => {
    const out = kernel.kernelFunc({ inputs: { a, b }, attrs: { transposeA: ta, transposeB: tb }, backend } as never) as tf.TensorInfo;
    backend.disposeData(out.dataId);
  };
  for (let i = 0; i < WARM; i++) call();
  const c0 = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) call();
  const c = process.cpuUsage(c0);
  tf.dispose([a, b]);
  return (c.user + c.system) / CALLS;
});

const here = path.dirname(fileURLToPath(import.meta.url));
const blas = path.join(here, '..', '.cache', 'openblas-openmp', 'usr', 'lib', `${os.arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`, 'openblas-openmp');
const script = `
import json, sys, time, torch
torch.set_num_threads(1)
out = []
for a_s, b_s, ta, tb in json.loads(sys.argv[1]):
    a, b = torch.randn(*a_s), torch.randn(*b_s)
    A = a.transpose(-1, -2) if ta else a
    B = b.transpose(-1, -2) if tb else b
    f = (lambda: torch.bmm(A, B)) if len(a_s) == 3 else (lambda: torch.mm(A, B))
    for _ in range(${WARM}): f()
    c0 = time.process_time()
    for _ in range(${CALLS}): f()
    out.append((time.process_time() - c0) / ${CALLS} * 1e6)
print(json.dumps(out))`;
const r = spawnSync('/usr/bin/python3', ['-c', script, JSON.stringify(SHAPES)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1', LD_LIBRARY_PATH: [blas, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') } });
const torchUs: (number | undefined)[] = r.status === 0 ? JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') : [];
if (r.status !== 0) console.log(`PyTorch side failed (${r.stderr.trim().split('\n').pop()}): ours only`);
console.log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; CPU us a call (GFLOP/s)`);
console.log('| a | b | transposed | ours | torch | torch / ours (time) |');
console.log('|---|---|---|---:|---:|---:|');
SHAPES.forEach((s, i) => {
  const t = torchUs[i];
  const g = (us: number) => `${us.toFixed(1)} (${(flops(s) / us / 1000).toFixed(0)})`;
  console.log(`| ${s[0].join('x')} | ${s[1].join('x')} | ${s[2] ? 'a' : ''}${s[3] ? 'b' : ''} | ${g(ours[i])} | ${t === undefined ? 'n/a' : g(t)} | ${t === undefined ? '' : `${(t / ours[i]).toFixed(2)}x`} |`);
});

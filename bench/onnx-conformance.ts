/**
 * `npm run conformance:onnx`: the trainer's ONNX executor (src/engine/onnx) against ONNX's own
 * backend test data, Debian's `libonnx-testdata` (ONNX 1.12: per-operator node tests, each a
 * model.onnx with test_data_set_N/input_K.pb and output_K.pb as serialized TensorProto).
 *
 * Every node test whose operators the executor implements is run and compared as ONNX's
 * backend test compares (numpy assert_allclose, rtol 1e-3, atol 1e-7, NaN equal to NaN, shapes
 * equal). Prints the operators implemented, and tests supported / passing / total. As root it
 * installs the package when it is missing (and says so); otherwise it says how and stops.
 *
 *   npm run conformance:onnx [-- --filter lstm] [--backend cpu|wasm] [--suite node|pytorch-converted|...] [--verbose]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type TrainBackendName } from '../src/engine/backend.ts';
import { OnnxProgram, supportedOperators, unsupportedNodes } from '../src/engine/onnx/executor.ts';
import { decodeOnnxModel, decodeOnnxTensor, type OnnxTensor } from '../src/engine/onnx/model.ts';
import { tensorOf, tfDtype } from '../src/engine/onnx/ops/op.ts';
import { UnsupportedOperatorError } from '../src/core/errors.ts';

/** Where Debian's libonnx-testdata puts the test models. */
export const ONNX_TESTDATA = '/usr/share/libonnx-testdata/data';
/** ONNX's backend test defaults (onnx/backend/test/case/test_case.py). */
export const RTOL = 1e-3;
export const ATOL = 1e-7;

/** The outcome of one test directory. */
export interface ConformanceResult {
  test: string;
  status: 'pass' | 'fail' | 'refused' | 'unsupported';
  /** Why it failed, was refused or is unsupported. */
  detail?: string;
}

/** Totals of a run. */
export interface ConformanceSummary {
  total: number;
  /** Tests whose every operator (and input type) the executor implements. */
  supported: number;
  passing: number;
  /** Supported tests refused at run time with a typed error (an attribute or input variant not implemented). */
  refused: number;
  failing: number;
  results: ConformanceResult[];
}

function dpkgInstalled(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

/**
 * Make sure the test data is present: installs `libonnx-testdata` with apt-get when missing and
 * running as root (logging that it does); returns false (with the reason logged) when it cannot.
 */
export function ensureOnnxTestData(log: (line: string) => void): boolean {
  if (existsSync(path.join(ONNX_TESTDATA, 'node'))) return true;
  if (process.getuid?.() !== 0 || spawnSync('apt-get', ['--version']).status !== 0) {
    log(`ONNX test data not found at ${ONNX_TESTDATA}: install it with \`sudo apt-get install -y libonnx-testdata\` (Debian/Ubuntu)`);
    return false;
  }
  log('installing the Debian package libonnx-testdata (ONNX backend test data, 1,072 models) with apt-get ...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const lock = ['-o', 'DPkg::Lock::Timeout=120'];
  spawnSync('apt-get', [...lock, 'update', '-qq'], { env });
  const r = spawnSync('apt-get', [...lock, 'install', '-y', '-q', '--no-install-recommends', 'libonnx-testdata'], { env, encoding: 'utf8' });
  if (r.status !== 0 || !dpkgInstalled('libonnx-testdata')) {
    log(`apt-get install libonnx-testdata failed: ${(r.stderr ?? '').trim().split('\n').pop()}`);
    return false;
  }
  log('installed libonnx-testdata');
  return true;
}

/**
 * ONNX 1.12 writes BFLOAT16 test tensors as UINT16 bit patterns (numpy has no bfloat16): read
 * them as the BFLOAT16 values the graph's input or output declares.
 */
function asDeclared(t: OnnxTensor, declared: number): OnnxTensor {
  if (declared !== 16 || t.dataType !== 4) return t;
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return { ...t, dataType: 16, values: Float64Array.from(t.values as Float64Array, (b) => ((u[0] = b << 16), f[0])) };
}

function toTensor(t: OnnxTensor): tf.Tensor {
  const dtype = tfDtype(t.dataType);
  if (!dtype || dtype === 'string') throw new Error(`data type ${t.dataType}`);
  return tensorOf(t.values as Float64Array, t.dims, dtype);
}

/** Compare as numpy's assert_allclose(expected, got, rtol, atol); undefined when equal, else why not. */
export function compareTensors(expected: OnnxTensor, got: tf.Tensor, rtol = RTOL, atol = ATOL): string | undefined {
  const shape = expected.dims;
  if (shape.length !== got.shape.length || shape.some((d, i) => d !== got.shape[i])) return `shape [${got.shape.join(', ')}], expected [${shape.join(', ')}]`;
  const want = expected.values as Float64Array;
  const have = got.dataSync() as ArrayLike<number>;
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < want.length; i++) {
    const e = want[i];
    const g = Number(have[i]);
    if (Number.isNaN(e) && Number.isNaN(g)) continue;
    if (e === g) continue;
    const err = Math.abs(g - e);
    if (!(err <= atol + rtol * Math.abs(e)) && (worst < 0 || err > worstErr)) {
      worst = i;
      worstErr = err;
    }
  }
  return worst < 0 ? undefined : `value ${worst}: ${have[worst]}, expected ${want[worst]} (|diff| ${worstErr.toExponential(2)})`;
}

/** Run one test directory (model.onnx and its test_data_set_N folders). */
export function runConformanceTest(dir: string): ConformanceResult {
  const test = path.basename(dir);
  let model;
  try {
    model = decodeOnnxModel(new Uint8Array(readFileSync(path.join(dir, 'model.onnx'))), { source: test });
  } catch (e) {
    return { test, status: 'unsupported', detail: `not decoded: ${(e as Error).message}` };
  }
  const missing = unsupportedNodes(model);
  if (missing.length) return { test, status: 'unsupported', detail: [...new Set(missing.map((m) => m.op))].join(', ') };
  const odd = [...model.graph.inputs, ...model.graph.outputs].find((v) => { const d = tfDtype(v.dataType); return !d || d === 'string'; });
  if (odd) return { test, status: 'unsupported', detail: `a ${odd.dataType ? `data type ${odd.dataType}` : 'sequence or optional'} input or output (${odd.name})` };
  let program: OnnxProgram | undefined;
  try {
    program = new OnnxProgram(new Uint8Array(readFileSync(path.join(dir, 'model.onnx'))), { source: test });
    const sets = readdirSync(dir).filter((d) => d.startsWith('test_data_set_')).sort();
    for (const set of sets) {
      const files = readdirSync(path.join(dir, set));
      const read = (kind: string) => files.filter((f) => f.startsWith(kind)).sort((a, b) => Number(a.slice(kind.length, -3)) - Number(b.slice(kind.length, -3))).map((f) => decodeOnnxTensor(new Uint8Array(readFileSync(path.join(dir, set, f)))));
      const inputs = read('input_');
      const outputs = read('output_');
      const why = tf.tidy(() => {
        const feeds: Record<string, tf.Tensor> = {};
        const p = program as OnnxProgram;
        // Inputs are given in the order of the graph's inputs (the fed ones).
        p.inputs.forEach((info, k) => inputs[k] && (feeds[info.name] = toTensor(asDeclared(inputs[k], info.dataType))));
        const got = p.run(feeds);
        for (const [k, info] of p.outputs.entries()) {
          if (!outputs[k]) continue;
          const bad = compareTensors(asDeclared(outputs[k], info.dataType), got[info.name]);
          if (bad) return `${set} output ${info.name}: ${bad}`;
        }
        return undefined;
      });
      if (why) return { test, status: 'fail', detail: why };
    }
    return { test, status: 'pass' };
  } catch (e) {
    if (e instanceof UnsupportedOperatorError) return { test, status: 'refused', detail: e.message };
    return { test, status: 'fail', detail: (e as Error).message.slice(0, 300) };
  } finally {
    program?.dispose();
  }
}

/** Run every test of `suite` (default `node`) whose name contains `filter`. */
export function runOnnxConformance(options: { suite?: string; filter?: string; only?: readonly string[] } = {}): ConformanceSummary {
  const root = path.join(ONNX_TESTDATA, options.suite ?? 'node');
  let tests = readdirSync(root).filter((t) => existsSync(path.join(root, t, 'model.onnx'))).sort();
  if (options.filter) tests = tests.filter((t) => t.includes(options.filter as string));
  if (options.only) tests = tests.filter((t) => options.only?.includes(t));
  const results = tests.map((t) => runConformanceTest(path.join(root, t)));
  const count = (s: ConformanceResult['status']) => results.filter((r) => r.status === s).length;
  return {
    total: results.length,
    supported: results.length - count('unsupported'),
    passing: count('pass'),
    refused: count('refused'),
    failing: count('fail'),
    results,
  };
}

async function main(argv: string[]): Promise<number> {
  const arg = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const log = (l: string) => console.error(l);
  if (!ensureOnnxTestData(log)) {
    console.log('conformance:onnx skipped: the ONNX test data (libonnx-testdata) is not installed and cannot be installed here');
    return 0;
  }
  const backend = (arg('backend') ?? 'wasm') as TrainBackendName;
  await initBackend(backend);
  const suite = arg('suite') ?? 'node';
  const s = runOnnxConformance({ suite, filter: arg('filter') });
  const verbose = argv.includes('--verbose');
  for (const r of s.results) if (r.status === 'fail' || r.status === 'refused' || (verbose && r.status === 'unsupported')) console.log(`${r.status.padEnd(11)} ${r.test}: ${r.detail}`);
  console.log(`\nONNX backend ${suite} tests (libonnx-testdata 1.12, rtol ${RTOL}, atol ${ATOL}, tfjs ${backend} backend):`);
  console.log(`  operators implemented: ${supportedOperators().length}`);
  console.log(`  tests: ${s.total} total, ${s.supported} with only implemented operators, ${s.passing} passing, ${s.failing} failing, ${s.refused} refused at run time (a variant not implemented)`);
  return s.failing ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}

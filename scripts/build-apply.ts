/**
 * Build the browser bundles of the device side: `src/apply/index.ts` (the package's
 * `neural-diff/apply` entry) with its dependencies (the pure Ed25519 verifier included) at `dist/browser/apply.js`,
 * and the pure safetensors store (`neural-diff/safetensors`) at `dist/browser/safetensors.js`, minified
 * ES modules for a `<script type="module">` or an import map. Prints the minified and
 * minified + gzip sizes (each entry counted with the chunk it shares).
 *
 * The ONNX store (`neural-diff/onnx`) is built apart, together with the applier, as one file
 * `dist/browser/onnx-apply.js` that exports both (an import map points both names at it): an ONNX
 * app loads exactly that, and the applier's own bundle keeps its chunking. The LiteRT store
 * (`neural-diff/tflite`) likewise, as `dist/browser/tflite-apply.js`. A device that also takes
 * structural payloads (format v7) loads the rebuild with them: `rebuild-apply.js`
 * (`neural-diff/rebuild` and `neural-diff/apply`), `onnx-rebuild-apply.js` and
 * `tflite-rebuild-apply.js` (the same with the file format's store), one file each, so the
 * applier's own bundle keeps its size and chunking.
 *
 *   npm run build:apply                          # writes dist/browser/
 *   node --import tsx scripts/build-apply.ts --outdir /tmp/nd-dist
 */
import { build } from 'esbuild';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One built entry, in bytes. */
export interface BundleEntry {
  /** Where its file was written. */
  outfile: string;
  /** Minified size of the entry and every chunk it imports. */
  minBytes: number;
  /** The same files, each gzip level 9, summed. */
  gzipBytes: number;
}

/** What {@link buildApplyBundle} wrote. */
export interface ApplyBundle {
  /** `neural-diff/apply`: the applier with its dependencies. */
  apply: BundleEntry;
  /** `neural-diff/safetensors`: the pure safetensors store (shares a chunk with apply). */
  safetensors: BundleEntry;
  /** `neural-diff/onnx` with `neural-diff/apply`, one file exporting both. */
  onnxWithApply: BundleEntry;
  /** `neural-diff/tflite` with `neural-diff/apply`, one file exporting both. */
  tfliteWithApply: BundleEntry;
  /** `neural-diff/rebuild` with `neural-diff/apply`, one file. */
  rebuildWithApply: BundleEntry;
  /** `neural-diff/onnx`, `neural-diff/rebuild` and `neural-diff/apply`, one file. */
  onnxRebuildWithApply: BundleEntry;
  /** `neural-diff/tflite`, `neural-diff/rebuild` and `neural-diff/apply`, one file. */
  tfliteRebuildWithApply: BundleEntry;
  /** Bytes each input contributes to the apply entry's output, largest first. */
  applyInputs: { path: string; bytes: number }[];
}

/**
 * Build the browser bundles (ESM, minified, platform browser, ES2020) into `outdir`:
 * `apply.js` and `safetensors.js`, plus the chunks they share (the error classes), so both
 * can be loaded on one page and `instanceof` works across them.
 */
export async function buildApplyBundle(outdir = path.join(root, 'dist', 'browser')): Promise<ApplyBundle> {
  const result = await build({
    entryPoints: { apply: path.join(root, 'src', 'apply', 'index.ts'), safetensors: path.join(root, 'src', 'io', 'safetensors', 'store.ts') },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    outdir,
    write: false,
    metafile: true,
    legalComments: 'none',
    chunkNames: 'chunk-[hash]',
    logLevel: 'silent',
  });
  await mkdir(outdir, { recursive: true });
  // Chunk names carry content hashes: drop the ones an earlier build left.
  for (const f of await readdir(outdir)) if (/^chunk-[A-Z0-9]+\.js$/.test(f)) await rm(path.join(outdir, f));
  const bytes = new Map<string, Uint8Array>();
  for (const f of result.outputFiles) {
    await writeFile(f.path, f.contents);
    bytes.set(path.relative(root, f.path), f.contents);
  }
  const outputs = result.metafile.outputs;
  /** The output files `file` loads (the applier has no dynamic import: nothing is loaded apart). */
  const closure = (file: string, seen = new Set<string>()): Set<string> => {
    seen.add(file);
    for (const imp of outputs[file].imports) if (!seen.has(imp.path) && outputs[imp.path]) closure(imp.path, seen);
    return seen;
  };
  const fileBytes = (f: string) => bytes.get(path.relative(root, path.resolve(root, f))) as Uint8Array;
  const gz = (f: string) => gzipSync(fileBytes(f), { level: 9 }).length;
  const entry = (name: string): BundleEntry => {
    const file = Object.keys(outputs).find((k) => path.basename(k) === `${name}.js`) as string;
    const loaded = closure(file);
    let minBytes = 0;
    let gzipBytes = 0;
    for (const f of loaded) {
      minBytes += fileBytes(f).length;
      gzipBytes += gz(f);
    }
    return { outfile: path.resolve(root, file), minBytes, gzipBytes };
  };
  const applyFile = Object.keys(outputs).find((k) => path.basename(k) === 'apply.js') as string;
  const applyInputs = [...closure(applyFile)]
    .flatMap((f) => Object.entries(outputs[f].inputs).map(([p, v]) => ({ path: p, bytes: v.bytesInOutput })))
    .sort((a, b) => b.bytes - a.bytes);
  /** Modules with the applier, as one file `<name>-apply.js` exporting them all. */
  const withApply = async (name: string, ...modules: string[]): Promise<BundleEntry> => {
    const built = await build({
      stdin: {
        contents: ['src/apply/index.ts', ...modules].map((m) => `export * from './${m}';\n`).join(''),
        resolveDir: root,
        sourcefile: `${name}-apply.ts`,
        loader: 'ts',
      },
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      minify: true,
      write: false,
      legalComments: 'none',
      logLevel: 'silent',
    });
    const outfile = path.join(outdir, `${name}-apply.js`);
    const b = built.outputFiles[0].contents;
    await writeFile(outfile, b);
    return { outfile, minBytes: b.length, gzipBytes: gzipSync(b, { level: 9 }).length };
  };
  const onnxWithApply = await withApply('onnx', 'src/io/onnx/store.ts');
  const tfliteWithApply = await withApply('tflite', 'src/io/tflite/store.ts');
  const rebuildWithApply = await withApply('rebuild', 'src/apply/rebuild.ts');
  const onnxRebuildWithApply = await withApply('onnx-rebuild', 'src/apply/rebuild.ts', 'src/io/onnx/store.ts');
  const tfliteRebuildWithApply = await withApply('tflite-rebuild', 'src/apply/rebuild.ts', 'src/io/tflite/store.ts');
  return { apply: entry('apply'), safetensors: entry('safetensors'), onnxWithApply, tfliteWithApply, rebuildWithApply, onnxRebuildWithApply, tfliteRebuildWithApply, applyInputs };
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--outdir');
  const bundle = await buildApplyBundle(i > 0 ? path.resolve(process.argv[i + 1]) : undefined);
  for (const [name, e] of [['neural-diff/apply', bundle.apply], ['neural-diff/safetensors', bundle.safetensors]] as const) {
    console.log(`${name} -> ${path.relative(process.cwd(), e.outfile)} (+ shared chunk): ${e.minBytes} bytes minified (${kb(e.minBytes)}), ${e.gzipBytes} bytes min+gzip (${kb(e.gzipBytes)})`);
  }
  for (const [name, o] of [['neural-diff/onnx', bundle.onnxWithApply], ['neural-diff/tflite', bundle.tfliteWithApply], ['neural-diff/rebuild', bundle.rebuildWithApply], ['neural-diff/onnx + neural-diff/rebuild', bundle.onnxRebuildWithApply], ['neural-diff/tflite + neural-diff/rebuild', bundle.tfliteRebuildWithApply]] as const) {
    console.log(`${name} + neural-diff/apply -> ${path.relative(process.cwd(), o.outfile)} (one file): ${o.minBytes} bytes minified (${kb(o.minBytes)}), ${o.gzipBytes} bytes min+gzip (${kb(o.gzipBytes)})`);
  }
  console.log('largest inputs of the applier:');
  for (const inp of bundle.applyInputs.slice(0, 6)) console.log(`  ${String(inp.bytes).padStart(6)}  ${inp.path}`);
}

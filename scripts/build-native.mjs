/**
 * Build the native training backend's addon (src/engine/kernels/native/blas.c, binding.gyp) with the
 * node-gyp that ships with npm, against the system's OpenBLAS (Debian: `libopenblas-dev`).
 *
 *   npm run build:native               # builds, or fails saying what is missing
 *   npm run build:native -- --optional # builds, or says why it skipped and exits 0 (CI, scripts)
 *   node scripts/build-native.mjs --include-dirs  # (for binding.gyp) the folder holding cblas.h
 *
 * The addon lands in build/Release/neural_diff_blas.node (git-ignored, not in the npm package);
 * `ndiff train` then picks the native backend by default (see docs/guides/training-speed.md).
 * `npm install` never runs this: the wasm backend needs nothing native.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const optional = process.argv.includes('--optional');
const howTo = 'install it (Debian/Ubuntu: `apt-get install libopenblas-dev`), then run `npm run build:native`';

/** Folders that may hold OpenBLAS's cblas.h, most specific first (Debian puts it per threading flavour). */
function includeCandidates() {
  const dirs = [];
  for (const base of ['/usr/include', '/usr/local/include']) {
    if (!existsSync(base)) continue;
    for (const multiarch of readdirSync(base).filter((d) => d.endsWith('-linux-gnu'))) {
      for (const flavour of ['openblas-pthread', 'openblas-openmp', 'openblas-serial']) dirs.push(path.join(base, multiarch, flavour));
    }
    dirs.push(path.join(base, 'openblas'), base);
  }
  return dirs;
}

function cblasDir() {
  return includeCandidates().find((d) => existsSync(path.join(d, 'cblas.h')) && existsSync(path.join(d, 'openblas_config.h')));
}

function libOpenBlas() {
  const dirs = ['/usr/lib', '/usr/local/lib', '/usr/lib64'];
  for (const base of ['/usr/lib', '/usr/local/lib']) {
    if (existsSync(base)) for (const d of readdirSync(base).filter((x) => x.endsWith('-linux-gnu'))) dirs.push(path.join(base, d));
  }
  return dirs.map((d) => path.join(d, 'libopenblas.so')).find((f) => existsSync(f));
}

if (process.argv.includes('--include-dirs')) {
  process.stdout.write(cblasDir() ?? '');
  process.exit(0);
}

function stop(why) {
  if (optional) {
    console.log(`build:native skipped: ${why}; the wasm backend stays in use. To get the native backend, ${howTo}.`);
    process.exit(0);
  }
  console.error(`build:native: ${why}. To build the native backend, ${howTo}.`);
  process.exit(1);
}

if (process.platform !== 'linux') stop(`the native backend is built on Linux only (this is ${process.platform})`);
const include = cblasDir();
const lib = libOpenBlas();
if (!include || !lib) stop(`OpenBLAS's development files are missing (${include ? '' : 'no cblas.h'}${!include && !lib ? ', ' : ''}${lib ? '' : 'no libopenblas.so'})`);

/** npm's own node-gyp: npm hands scripts its path; outside npm, ask npm where its global folder is. */
function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  try {
    const globalRoot = execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim();
    const p = path.join(globalRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(p)) return p;
  } catch {
    // fall through
  }
  return undefined;
}

const gyp = nodeGyp();
if (!gyp) stop('node-gyp was not found (it ships with npm: reinstall npm, or run this through `npm run build:native`)');
console.log(`build:native: OpenBLAS headers in ${include}, library ${lib}; node-gyp ${gyp}`);
const built = spawnSync(process.execPath, [gyp, 'rebuild', '--loglevel=warn'], { cwd: root, stdio: 'inherit' });
if (built.status !== 0) stop(`node-gyp failed (exit ${built.status ?? built.signal}); its output is above`);

const addonPath = path.join(root, 'build', 'Release', 'neural_diff_blas.node');
try {
  const addon = createRequire(import.meta.url)(addonPath);
  const info = addon.info();
  console.log(`build:native: ${path.relative(root, addonPath)} loads; OpenBLAS ${info.config} (core ${info.corename}, ${info.threads} thread(s) by default)`);
} catch (e) {
  stop(`the built addon does not load: ${e instanceof Error ? e.message : String(e)}`);
}

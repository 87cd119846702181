// `npm run build`: compile src/ and cli/ to ESM JavaScript and .d.ts (with declaration maps) under dist/
// (dist/src, dist/cli) with tsc (tsconfig.build.json). Plain JavaScript so that it runs before
// anything is compiled. tsc rewrites the `.ts` extensions of relative imports in the JavaScript
// (rewriteRelativeImportExtensions) but not in declaration files, so this rewrites those: a
// consumer's TypeScript then resolves `./format.js` to `./format.d.ts` as usual. The JavaScript then
// loses its comments (esbuild, printed as is otherwise, not minified): the TSDoc a user reads is in
// the .d.ts files, which keep it, and the comments were a quarter of what a device app installs.
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'esbuild';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');

for (const sub of ['src', 'cli']) rmSync(path.join(dist, sub), { recursive: true, force: true });

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

// `from './x.ts'`, `import('./x.ts')` and `import("../x.ts")` in .d.ts files → `.js`.
const relativeTs = /((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]*?)\.ts(['"])/g;
let files = 0;
let [jsBefore, jsAfter] = [0, 0];
for (const sub of ['src', 'cli']) {
  for (const entry of readdirSync(path.join(dist, sub), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const text = readFileSync(file, 'utf8');
    if (entry.name.endsWith('.js')) {
      // Comments out (legal ones and the shebang stay); the code as tsc wrote it, ES modules, nothing lowered.
      const out = transformSync(text, { loader: 'js', format: 'esm', target: 'esnext', charset: 'utf8', legalComments: 'inline', sourcefile: file }).code;
      writeFileSync(file, out);
      jsBefore += Buffer.byteLength(text);
      jsAfter += Buffer.byteLength(out);
      continue;
    }
    if (!entry.name.endsWith('.d.ts')) continue;
    const out = text.replace(relativeTs, '$1$2.js$3');
    if (out !== text) writeFileSync(file, out);
    files++;
  }
}
chmodSync(path.join(dist, 'cli', 'bin.js'), 0o755);

// Declaration files no entry of package.json's exports reaches are removed: a consumer's
// TypeScript only ever follows the imports of an entry's .d.ts (the exports map forbids deep
// imports), and on a device every file takes whole disk blocks (the device install's budget is
// under 10 MiB on disk, test/consumer.test.ts). Reached: each export's `types` file, then every
// relative `from '...'`, `import('...')` and `/// <reference path>` of a reached file.
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const entries = Object.values(pkg.exports).map((e) => (typeof e === 'object' ? e.types : undefined)).filter((t) => typeof t === 'string' && t.startsWith('./dist/src/'));
const specifier = /(?:from\s*|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]|\/\/\/\s*<reference\s+path=['"]([^'"]+)['"]/g;
const reached = new Set();
const queue = entries.map((t) => path.join(root, t));
while (queue.length) {
  const file = queue.pop();
  if (reached.has(file)) continue;
  reached.add(file);
  for (const m of readFileSync(file, 'utf8').matchAll(specifier)) {
    const target = path.resolve(path.dirname(file), m[1] ?? m[2]);
    const dts = target.endsWith('.d.ts') ? target : target.replace(/\.js$/, '') + '.d.ts';
    try {
      readFileSync(dts);
    } catch {
      throw new Error(`build: ${path.relative(root, file)} imports ${m[1] ?? m[2]}, which has no declaration file ${path.relative(root, dts)}`);
    }
    queue.push(dts);
  }
}
let pruned = 0;
for (const entry of readdirSync(path.join(dist, 'src'), { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const file = path.join(entry.parentPath, entry.name);
  if (reached.has(file)) continue;
  rmSync(file);
  rmSync(`${file}.map`, { force: true });
  pruned++;
}
console.log(`dist/: compiled with tsc; ${files} declaration files (${pruned} no export reaches removed); JavaScript without comments ${jsBefore} -> ${jsAfter} bytes`);

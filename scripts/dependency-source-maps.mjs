// Preloaded beside tsx by `npm test` and the source checkout's `ndiff` (cli/ndiff.mjs): keeps
// source maps for this repository's TypeScript (tsx turns them on, so a stack trace names the .ts
// line) but skips reading the ones the dependencies ship for their bundles. tfjs alone brings seven
// map files, 16 MB, which Node reads and parses in every process that imports it (0.25-0.45 s of CPU
// per process on Node 20, 22 and 24 here, measured with `node --import tsx` importing
// src/engine/backend.ts; the suite starts hundreds of such processes). Nothing else changes: a
// module under node_modules is compiled as before, with maps off for that moment only.
import Module from 'node:module';

const compile = Module.prototype._compile;
const inDependency = (filename) => typeof filename === 'string' && /[\\/]node_modules[\\/]/.test(filename);
// How many dependency modules are being compiled (and run: _compile runs the module) right now; a
// module of ours one of them loads meanwhile gets its maps as usual.
let depth = 0;
Module.prototype._compile = function (content, filename, ...rest) {
  const dependency = inDependency(filename);
  // Outside any dependency: ours as usual, and a dependency as usual when maps are off anyway.
  if (depth === 0 && !(dependency && process.sourceMapsEnabled)) return compile.call(this, content, filename, ...rest);
  if (dependency) depth += 1;
  process.setSourceMapsEnabled(!dependency);
  try {
    return compile.call(this, content, filename, ...rest);
  } finally {
    if (dependency) depth -= 1;
    process.setSourceMapsEnabled(depth === 0);
  }
};

/**
 * child.ts bundled by esbuild, the process the kill harnesses start once per kill: node starts a
 * bundle in about 0.1 s of CPU, tsx the same sources in 1-2 s (it compiles the CLI's imports), so
 * a harness of 60 kills spent most of its time starting children. The bundle is built from this
 * checkout's sources each test process, so it runs exactly the code under test.
 */
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

/** Bundle child.ts into `outDir` (its `crash-child.mjs`); tfjs and msgpackr's native addon stay outside, loaded where used. */
export async function bundleChild(outDir: string): Promise<string> {
  const out = join(outDir, 'crash-child.mjs');
  await build({
    entryPoints: [join(import.meta.dirname, 'child.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['msgpackr-extract', '@tensorflow/*'],
    banner: { js: "import { createRequire as __ndiffCreateRequire } from 'node:module'; const require = __ndiffCreateRequire(import.meta.url);" },
    logLevel: 'silent',
  });
  return out;
}

let shared: Promise<string> | undefined;

/** One bundle per test process, in a temp folder removed when the process exits. */
export function crashChild(): Promise<string> {
  shared ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ndiff-crash-child-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return bundleChild(dir);
  })();
  return shared;
}

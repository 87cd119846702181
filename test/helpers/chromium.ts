/** Debian's Chromium for tests that render pages: found, or installed with apt-get when root. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { onceSkip } from './benchmarks.ts';

/** Path of a Chromium binary, installing Debian's package if needed and allowed; or a skip reason. */
export function findChromium(): { path: string } | { skip: string } {
  const once = onceSkip('pages in headless Chromium (the browser\'s runtime, not Node\'s) are');
  if (once) return { skip: once };
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(Boolean) as string[];
  const found = candidates.find((p) => existsSync(p));
  if (found) return { path: found };
  if (process.platform !== 'linux' || process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    return { skip: 'no Chromium found (set CHROMIUM_PATH, or run as root on Debian so the test can apt-get install chromium)' };
  }
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    // Test files run in parallel: two of them installing at once would fail on dpkg's lock (and
    // skip their tests), so installs take turns, and a turn that finds Chromium installed is done.
    const install = 'test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }';
    execFileSync('flock', ['/tmp/neural-diff-chromium-install.lock', 'sh', '-c', install], { stdio: 'ignore', env, timeout: 900_000 });
  } catch (err) {
    return { skip: `installing Debian's chromium failed: ${(err as Error).message}` };
  }
  return existsSync('/usr/bin/chromium') ? { path: '/usr/bin/chromium' } : { skip: 'apt-get installed chromium but /usr/bin/chromium is missing' };
}

/** Flags for headless Chromium on this kind of machine (root, no network). */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

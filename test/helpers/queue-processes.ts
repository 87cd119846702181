/**
 * Real processes of the job engine for its tests: `ndiff worker` and `ndiff release run`, each
 * in its own process group (a kill takes its job or check processes too), their stderr lines
 * kept as they come, and the exit awaited as an event.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const cli = join(import.meta.dirname, '..', '..', 'cli', 'ndiff.mjs');

/** A process of the CLI with its stdout and stderr lines and a promise of its exit. */
export type NdiffChild = ChildProcess & { out: string[]; log: string[]; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> };

/** `ndiff ARGV` in a process group of its own. */
export function ndiffChild(argv: string[]): NdiffChild {
  const child = spawn(process.execPath, [cli, ...argv], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }) as NdiffChild;
  child.out = [];
  child.log = [];
  child.stdout?.on('data', (d: Buffer) => child.out.push(...d.toString().split('\n').filter(Boolean)));
  child.stderr?.on('data', (d: Buffer) => child.log.push(...d.toString().split('\n').filter(Boolean)));
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

/** `ndiff worker --queue URL --lock-seconds 2 ...extra`. */
export function startWorker(url: string, ...extra: string[]): NdiffChild {
  return ndiffChild(['worker', '--queue', url, '--lock-seconds', '2', ...extra]);
}

/** Kill a process and everything it started, at once (a machine lost mid-job), and wait for it to be gone. */
export async function killGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  process.kill(-(child.pid as number), 'SIGKILL');
  await gone;
}

/** `ndiff ARGV` run in this process: its exit code, what it printed and what it wrote on stderr (progress included). */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { main } from '../../cli/ndiff.ts';

const CLI = fileURLToPath(new URL('../../cli/ndiff.mjs', import.meta.url));

export async function runNdiff(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** `ndiff ARGV` in a process of its own, as a script runs it: its exit code or the signal that ended it, and what it printed. */
export function ndiffProcess(argv: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

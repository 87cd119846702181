/**
 * A health check given as a shell command (`ndiff apply --health-check`, `ndiff update
 * --health-check`): run after the switch with NDIFF_MODEL_DIR and NDIFF_MODEL_FILE set (and `env`); a non-zero exit, a timeout or a command that
 * cannot start fails it, and the applier rolls back.
 */
import { spawn } from 'node:child_process';
import type { Progress } from './progress.ts';
import { terminalSafe } from './text.ts';

/**
 * Run `command` in a shell; resolves true on exit 0 within `timeoutS`, else rejects with what
 * happened (the exit code or signal, a timeout, a command that cannot start, and its last output
 * line), which the applier's HealthCheckError quotes. Its output lines go to `progress`.
 */
export function runHealthCheck(command: string, dir: string, timeoutS: number, progress: Progress, file?: string, env: Record<string, string> = {}): Promise<true> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout stops whatever the shell started too.
    const child = spawn(command, { shell: true, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env, NDIFF_MODEL_DIR: dir, ...(file ? { NDIFF_MODEL_FILE: file } : {}) } });
    let lastLine = '';
    let timedOut = false;
    const relay = (chunk: Buffer) => chunk.toString().split('\n').filter(Boolean).forEach((l) => {
      lastLine = l;
      progress(`  health check: ${l}`);
    });
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    const timer = setTimeout(() => {
      timedOut = true;
      progress(`  health check: no answer after ${timeoutS} s, stopping it`);
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutS * 1000);
    const quoted = JSON.stringify(command.length > 80 ? command.slice(0, 77) + '...' : command);
    const last = () => (lastLine ? `; its last line: ${terminalSafe(lastLine.slice(0, 200))}` : '');
    child.on('error', (e) => {
      clearTimeout(timer);
      progress(`  health check: cannot start (${e.message})`);
      reject(new Error(`the command ${quoted} could not start (${e.message})`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(true);
      else if (timedOut) reject(new Error(`the command ${quoted} gave no answer within healthCheckTimeout (--health-check-timeout) ${timeoutS} s and was stopped${last()}`));
      else reject(new Error(`the command ${quoted} ${code !== null ? `exited with code ${code}` : `was killed by ${signal}`}${last()}`));
    });
  });
}

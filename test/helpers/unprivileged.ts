/**
 * Running a child process that file modes bind, whoever runs the suite.
 *
 * Root ignores file modes (CAP_DAC_OVERRIDE), so a test that needs "this folder is read-only to
 * the process" cannot get it by chmod alone. Switching to another user (nobody) would work only
 * where that user can read the checkout, which a clone in a 0700 folder (or under /root) forbids.
 * Instead the child stays root, and so keeps reading the checkout, its node_modules and TMPDIR
 * wherever they are, but runs without the capabilities that bypass file modes, through
 * util-linux's `setpriv`: modes then bind it like any owner.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** The capabilities that let root read, write or chmod past a file's mode. */
const MODE_BYPASSING_CAPS = ['dac_override', 'dac_read_search', 'fowner'];

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/**
 * The command and arguments that run `command args` so that file modes bind it, or a reason why
 * that cannot be done here (root on a machine without `setpriv`), for a test to skip with.
 */
export function modeBoundCommand(command: string, args: readonly string[]): { command: string; args: string[] } | { unavailable: string } {
  if (process.getuid?.() !== 0) return { command, args: [...args] };
  if (SETPRIV === undefined) return { unavailable: 'running as root without util-linux setpriv: cannot drop the capabilities that bypass file modes' };
  const bounding = MODE_BYPASSING_CAPS.map((c) => `-${c}`).join(',');
  return { command: SETPRIV, args: [`--bounding-set=${bounding}`, `--inh-caps=${bounding}`, '--', command, ...args] };
}

/** True when a process started through {@link modeBoundCommand} really cannot write in `dir`. */
export function cannotWriteIn(dir: string): boolean {
  const run = modeBoundCommand('/bin/sh', ['-c', 'if touch "$1/.mode-probe" 2>/dev/null; then rm -f "$1/.mode-probe"; exit 0; fi; exit 3', 'sh', dir]);
  if ('unavailable' in run) return false;
  return spawnSync(run.command, run.args).status === 3;
}

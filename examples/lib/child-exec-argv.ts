/**
 * The Node flags an example's child processes start with: the parent's own (a heap limit, a
 * profiler's flags...), with TypeScript loaded through tsx and the package's `neural-diff-source`
 * condition, so a child resolves `neural-diff` to the same `src/` sources as the parent even when
 * the parent was started without them (`dist/` may be stale, or absent in a fresh clone).
 * Debugger flags are dropped (a child would fight the parent for the debugger's port).
 *
 * @module
 */

/** The source condition of package.json's exports. */
export const SOURCE_CONDITION = 'neural-diff-source';

/** Does `argv` already set the condition `name` (`--conditions=X`, `--conditions X`, `-C X`, `-C=X`)? */
function hasCondition(argv: readonly string[], name: string): boolean {
  return argv.some((a, i) => a === `--conditions=${name}` || a === `-C=${name}` || a === `-C${name}` || ((a === '--conditions' || a === '-C') && argv[i + 1] === name));
}

/** `parent`'s flags (the running process's by default) for a child process (module doc). */
export function childExecArgv(parent: readonly string[] = process.execArgv): string[] {
  const argv = parent.filter((a) => !a.startsWith('--inspect') && !a.startsWith('--debug'));
  if (!argv.some((a) => a.includes('tsx'))) argv.push('--import', 'tsx');
  if (!hasCondition(argv, SOURCE_CONDITION)) argv.push(`--conditions=${SOURCE_CONDITION}`);
  return argv;
}

/**
 * The pieces every command's `--help` shares: `--help` is one screen (what each option is, its
 * default, its choices), and the full explanation of every option lives in one page per command,
 * `docs/cli/<command>.md`, which the last line of the help names.
 */

/** The page documenting `command` (`diff`, `train`, `release`...), relative to the package root. */
export function docsPage(command: string): string {
  return `docs/cli/${command}.md`;
}

/** The last line of a command's `--help`: where every option is explained in full. */
export function seeDocs(command: string): string {
  return `Every option in full, more examples, exit codes: ${docsPage(command)} (in the package)`;
}

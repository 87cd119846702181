/** `ndiff ARGV` run in this process: its exit code, what it printed and what it wrote on stderr (progress included). */
import { main } from '../../cli/ndiff.ts';

export async function runNdiff(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** What the fuzzers of model files on disk share: the folder's state to compare, and a time limit. */
import { readdir, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';

/** Files under `dir` (links not followed) with their bytes: what a refusal must leave as it was. */
export async function snapshot(dir: string): Promise<string> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await stat(p);
        out.push(`${path.relative(dir, p)} ${st.mode} ${st.size} ${st.size < 1 << 20 ? (await readFile(p)).toString('base64') : ''}`);
      } else out.push(`${path.relative(dir, p)} ${e.isSymbolicLink() ? 'link' : 'special'}`);
    }
  };
  await walk(dir);
  return out.join('\n');
}

/** `p`, or a rejection marked `hang` when it gives no answer within `ms`. */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error(`no answer in ${ms} ms`), { hang: true })), ms)))]).finally(() => clearTimeout(timer));
}

/**
 * A process that takes a model folder's apply lock with a delayed deletion of a stale lock
 * file: its first unlink of a lock file waits, after writing `<ready>`, until `<go>` exists (the
 * race of issue #14: a process that read a stale lock deletes it only after another process took
 * the lock). It prints `locked` or `refused: <message>`, then holds the lock until `<release>`
 * exists.
 *
 *   node --import tsx test/helpers/lock-child.ts DIR READY GO RELEASE
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { existsSync, writeFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const fsp = require('node:fs/promises') as { unlink: (...a: unknown[]) => Promise<void> };
const [dir, ready, go, release] = process.argv.slice(2);
const until = async (file: string) => {
  while (!existsSync(file)) await new Promise((r) => setTimeout(r, 10));
};

const original = fsp.unlink;
let delayed = false;
fsp.unlink = async function (this: unknown, file: unknown, ...rest: unknown[]) {
  if (!delayed && /\.ndiff-apply\.lock/.test(String(file))) {
    delayed = true;
    writeFileSync(ready, '');
    await until(go);
  }
  return original.call(this, file, ...rest);
};
syncBuiltinESMExports();

const { lockModelDir } = await import('../../src/io/tfjs/folder-update.ts');
try {
  const unlock = await lockModelDir(dir);
  process.stdout.write('locked\n');
  await until(release);
  await unlock();
} catch (e) {
  process.stdout.write(`refused: ${(e as Error).message}\n`);
}
if (!delayed) writeFileSync(ready, '');

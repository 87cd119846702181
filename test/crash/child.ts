/**
 * The process the crash-injection test kills. It applies a payload to a model folder (through
 * the CLI's `ndiff apply` handler, or the library's applyToModelDir) and SIGKILLs itself right
 * before its N-th file-system operation that changes something (opening for write, writing,
 * fsync, rename, link, unlink, mkdir), so every step of the protocol is hit, deterministically.
 *
 *   NDIFF_CRASH_AT=N      kill before mutating operation N (0 or unset: never)
 *   NDIFF_CRASH_TORN=1    if operation N writes data, write the first half of it, then kill
 *   NDIFF_CRASH_LOG=FILE  on a normal exit, write the operations performed, one per line
 *   argv[2]               JSON: {"mode": "cli" | "lib", "dir", "payload", "state"?, "health"?: "pass" | "fail", "shardBytes"?, "publicKey"?}
 *                         or {"mode": "install", "dir", "payload": package folder, "fingerprint"}, {"mode": "release-add", "dir": release folder, "payload": model, "key"}
 *                         or {"mode": "update", "dir": model, "payload": release URL, "publicKey", "health": "kill"}: `ndiff update`'s
 *                         updateModel, whose health check SIGKILLs the process (test/crash/health-check.ts)
 *
 * The hooks wrap node:fs/promises (module.syncBuiltinESMExports makes the ESM bindings see the
 * wrappers) and the FileHandle prototype; the code under test is unchanged.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { tmpdir } from 'node:os';

const require = createRequire(import.meta.url);
const fsp = require('node:fs/promises') as Record<string, (...a: unknown[]) => Promise<unknown>>;
const crashAt = Number(process.env.NDIFF_CRASH_AT ?? 0);
const torn = process.env.NDIFF_CRASH_TORN === '1';
const log: string[] = [];
const handlePaths = new WeakMap<object, string>();

function die(): never {
  process.kill(process.pid, 'SIGKILL');
  for (;;) { /* SIGKILL is on its way */ }
}

/** Count one mutating operation; kill first if it is the chosen one. Returns true when a torn write should happen. */
function step(label: string, canTear = false): boolean {
  log.push(label);
  if (crashAt > 0 && log.length === crashAt) {
    if (torn && canTear) return true;
    die();
  }
  return false;
}

const probe = (await fsp.open(`${tmpdir()}/ndiff-crash-probe-${process.pid}`, 'w')) as { close(): Promise<void> };
const FileHandleProto = Object.getPrototypeOf(probe) as Record<string, (...a: unknown[]) => Promise<unknown>>;
await probe.close();
await fsp.unlink(`${tmpdir()}/ndiff-crash-probe-${process.pid}`);

const wrap = (name: string, label: (...a: unknown[]) => string | null) => {
  const original = fsp[name];
  fsp[name] = async function (...args: unknown[]) {
    const l = label(...args);
    if (l !== null) step(l);
    const result = await original.apply(this, args);
    if (name === 'open' && result && typeof result === 'object') handlePaths.set(result, basename(String(args[0])));
    return result;
  };
};
wrap('open', (file, flags) => (typeof flags === 'string' && /[wa+]/.test(flags) ? `open(${basename(String(file))}, ${flags})` : null));
wrap('rename', (from, to) => `rename(${basename(String(from))} -> ${basename(String(to))})`);
wrap('unlink', (file) => `unlink(${basename(String(file))})`);
wrap('rm', (file) => `rm(${basename(String(file))})`);
wrap('mkdir', (file) => `mkdir(${basename(String(file))})`);
wrap('writeFile', (file) => `writeFile(${basename(String(file))})`);
wrap('copyFile', (from, to) => `copyFile(${basename(String(from))} -> ${basename(String(to))})`);
wrap('link', (from, to) => `link(${basename(String(from))} -> ${basename(String(to))})`);
syncBuiltinESMExports();

for (const method of ['writeFile', 'write']) {
  const original = FileHandleProto[method];
  FileHandleProto[method] = async function (this: object, data: unknown, ...rest: unknown[]) {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : (data as Uint8Array);
    // write(buffer, offset, length, position): the bytes written are buffer[offset, offset + length).
    const positional = method === 'write' && typeof rest[0] === 'number' && typeof rest[1] === 'number';
    const size = positional ? (rest[1] as number) : bytes.length;
    if (step(`${method}(${handlePaths.get(this) ?? '?'}, ${size} bytes)`, size > 1)) {
      // A torn write lands where the write would have: half its bytes, at its position.
      if (positional) await FileHandleProto.write.call(this, bytes, rest[0], (rest[1] as number) >> 1, rest[2]);
      else await FileHandleProto.write.call(this, bytes.subarray(0, bytes.length >> 1));
      die();
    }
    return original.call(this, data, ...rest);
  };
}
for (const method of ['sync', 'datasync']) {
  const original = FileHandleProto[method];
  FileHandleProto[method] = async function (this: object, ...rest: unknown[]) {
    step(`${method}(${handlePaths.get(this) ?? '?'})`);
    return original.apply(this, rest);
  };
}

process.on('exit', () => {
  if (process.env.NDIFF_CRASH_LOG) writeFileSync(process.env.NDIFF_CRASH_LOG, log.join('\n') + '\n');
});

const job = JSON.parse(process.argv[2]) as { mode: 'cli' | 'lib' | 'install' | 'release-add' | 'update'; dir: string; payload: string; state?: string; health?: 'pass' | 'fail' | 'kill'; shardBytes?: number; publicKey?: string; fingerprint?: string; key?: string };
const quiet = { out: () => {}, err: (l: string) => process.stderr.write(l + '\n'), progress: () => {} };
if (job.mode === 'update') {
  // `ndiff update` of the model `dir` from the release at the URL `payload`, killed while its health check runs.
  const { updateModel } = await import('../../src/io/updater/node-updater.ts');
  const { readFile } = await import('node:fs/promises');
  const r = await updateModel({ model: job.dir, modelId: 'm', urls: [job.payload], trustedKeys: [await readFile(job.publicKey as string, 'utf8')], healthCheck: () => (job.health === 'kill' ? die() : job.health !== 'fail') });
  process.stderr.write(`${JSON.stringify(r)}\n`);
  process.exitCode = r.status === 'failed' ? 1 : 0;
} else if (job.mode === 'install') {
  // `ndiff update`'s full install (test/crash/delivery.ts): the package is the folder `payload`.
  const { tfjsFolderTarget } = await import('../../src/io/updater/targets.ts');
  const { readdir, readFile } = await import('node:fs/promises');
  const files = await Promise.all((await readdir(job.payload)).sort().map(async (name) => ({ path: name, bytes: new Uint8Array(await readFile(`${job.payload}/${name}`)) })));
  await tfjsFolderTarget(job.dir).installPackage(files, { modelId: 'kws', fingerprint: job.fingerprint as string });
} else if (job.mode === 'release-add') {
  // `ndiff release add` of the model `payload` to the release folder `dir` (test/crash/delivery.ts).
  const { addVersion } = await import('../../src/release/add.ts');
  const { readPrivateKeyFile } = await import('../../src/sign/node-keys.ts');
  await addVersion(job.dir, job.payload, { key: await readPrivateKeyFile(job.key as string), expiresAt: Math.floor(Date.now() / 1000) + 86400 });
} else if (job.mode === 'cli') {
  const { runApply } = await import('../../cli/commands/apply.ts');
  const code = await runApply({
    model: job.dir,
    patch: job.payload,
    dryRun: false,
    fullCheck: false,
    maxPayloadBytes: 1 << 24,
    healthCheckTimeout: 60,
    ...(job.state ? { state: job.state } : {}),
    ...(job.publicKey ? { publicKey: [job.publicKey] } : {}),
  }, quiet);
  process.exitCode = code;
} else {
  const { applyToModelDir } = await import('../../src/io/tfjs/folder-update.ts');
  const { readFile } = await import('node:fs/promises');
  const bytes = new Uint8Array(await readFile(job.payload));
  try {
    await applyToModelDir(job.dir, bytes, {
      ...(job.state ? { state: job.state } : {}),
      ...(job.shardBytes ? { shardBytes: job.shardBytes } : {}),
      ...(job.health ? { healthCheck: () => job.health === 'pass' } : {}),
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exitCode = (e as { code?: string }).code === 'ND_HEALTH_CHECK' ? 5 : 1;
  }
}

/**
 * A real `redis-server` (Debian's package) for the job-engine tests: started on a free loopback
 * port with a temporary folder, stopped at the end; never a mock. `redisServerPath()` is
 * undefined where it is not installed, so the tests skip, saying so (`.ci/run` installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The redis-server binary, or undefined. */
export function redisServerPath(): string | undefined {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (existsSync(p)) return p;
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : undefined;
}

/** Why the Redis tests skip here (false when redis-server is installed). */
export const redisSkip: string | false = redisServerPath() ? false : 'redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it): the job-engine tests need a real one';

export interface RedisServer {
  url: string;
  port: number;
  /** The running server's process id (undefined while stopped). */
  pid(): number | undefined;
  /** Stop it (SIGTERM: with persistence it writes its append-only file first). */
  stop(): Promise<void>;
  /** Start it again on the same port and folder (what it persisted comes back). */
  start(): Promise<void>;
  /** Stop for good and remove its folder. */
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Start a redis-server; `persist` keeps its data in an append-only file across a restart. A start
 * waits for the server to say it is ready, however long that takes on a busy machine; `signal`
 * (a test's: aborted when its timeout fires) ends a start that never comes, stopping the server.
 */
export async function startRedis(options: { persist?: boolean; signal?: AbortSignal } = {}): Promise<RedisServer> {
  const bin = redisServerPath();
  if (!bin) throw new Error(String(redisSkip));
  const dir = await mkdtemp(join(tmpdir(), 'nd-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--protected-mode', 'yes',
    ...(options.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'])];
  const start = async () => {
    const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    let out = '';
    const onAbort = () => c.kill('SIGKILL');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    await new Promise<void>((resolve, reject) => {
      c.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (/Ready to accept connections/.test(out)) resolve();
      });
      c.once('exit', (code, signal) => {
        reject(new Error(`redis-server ${options.signal?.aborted ? 'was stopped, the test having ended, before it said it was ready' : `exited (${code ?? signal})`}: ${out.slice(-500)}`));
      });
    }).finally(() => options.signal?.removeEventListener('abort', onAbort));
    c.stdout?.resume();
    c.stderr?.resume();
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, port, pid: () => child?.pid, stop, start, close: async () => { await stop(); await rm(dir, { recursive: true, force: true }); } };
}

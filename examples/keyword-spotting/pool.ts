/**
 * The worker processes that render the keyword-spotting data's rows (see `data.ts` and
 * `worker.ts`), and one split rendered through them.
 *
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KWS_LOGMEL, frameCount } from '../lib/audio/logmel.ts';
import { childExecArgv } from '../lib/child-exec-argv.ts';
import type { SplitSpec } from './plan.ts';
import type { Assets, Row } from './render.ts';
import type { CpuSeconds, FromWorker, ToWorker } from './worker.ts';

/** Rows per message to a worker. */
const BATCH = 24;

/**
 * Worker processes (see `worker.ts`) that render rows. Started once, before the big feature
 * arrays exist, so starting them is cheap; they start the synthesizers themselves.
 */
export class WorkerPool {
  private readonly workers: ChildProcess[] = [];

  constructor(count: number, assets: Assets, inflight: number) {
    const entry = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const execArgv = childExecArgv();
    for (let i = 0; i < count; i++) {
      const w = fork(entry, [], { execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      w.send({ type: 'init', assets, inflight } satisfies ToWorker);
      this.workers.push(w);
    }
  }

  /** Renders `rows` and returns their features, row i at offset i * size. */
  run(rows: Row[], size: number, onProgress: (done: number) => void): Promise<Float32Array> {
    const x = new Float32Array(rows.length * size);
    return new Promise((resolvePromise, reject) => {
      let nextStart = 0;
      let done = 0;
      let finished = false;
      const cleanups: (() => void)[] = [];
      const finish = (err?: Error) => {
        if (finished) return;
        finished = true;
        for (const c of cleanups) c();
        if (err) reject(err);
        else resolvePromise(x);
      };
      const feed = (w: ChildProcess) => {
        if (nextStart >= rows.length) return;
        const start = nextStart;
        nextStart = Math.min(rows.length, start + BATCH);
        w.send({ type: 'batch', id: start, rows: rows.slice(start, nextStart) } satisfies ToWorker);
      };
      if (rows.length === 0) return finish();
      for (const w of this.workers) {
        const onMessage = (msg: FromWorker) => {
          if (msg.type === 'stats') return;
          if (msg.type === 'error') return finish(new Error(`worker ${w.pid}: ${msg.message}`));
          x.set(msg.x, msg.id * size);
          done += msg.x.length / size;
          onProgress(done);
          if (done === rows.length) return finish();
          feed(w);
        };
        const onExit = (code: number | null) => finish(new Error(`worker ${w.pid} exited (code ${code}) before finishing`));
        w.on('message', onMessage);
        w.on('exit', onExit);
        cleanups.push(() => {
          w.off('message', onMessage);
          w.off('exit', onExit);
        });
        // two batches in flight per worker so it never waits for the next one
        feed(w);
        feed(w);
      }
    });
  }

  /** CPU seconds used so far by the workers and their synthesizer processes. */
  async cpu(): Promise<CpuSeconds> {
    const all = await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<CpuSeconds>((resolvePromise) => {
            const on = (msg: FromWorker) => {
              if (msg.type !== 'stats') return;
              w.off('message', on);
              resolvePromise(msg.cpu);
            };
            w.on('message', on);
            w.send({ type: 'stats' } satisfies ToWorker);
          }),
      ),
    );
    return all.reduce((a, b) => ({ self: a.self + b.self, children: a.children + b.children }), { self: 0, children: 0 });
  }

  /** Lets the workers exit. */
  close(): void {
    for (const w of this.workers) if (w.connected) w.disconnect();
  }
}

export interface SplitResult {
  x: Float32Array;
  y: Int32Array;
  source: Int32Array;
  seconds: number;
}

export async function runSplit(spec: SplitSpec, pool: WorkerPool, log: (l: string) => void, quiet: boolean): Promise<SplitResult> {
  const n = spec.rows.length;
  const size = frameCount() * KWS_LOGMEL.melBins;
  const t0 = performance.now();
  let lastReport = t0;
  const x = await pool.run(spec.rows, size, (done) => {
    const now = performance.now();
    if (!quiet && now - lastReport > 5000 && done < n) {
      lastReport = now;
      log(`  ${spec.name.padEnd(15)} ${String(done).padStart(6)}/${n}  ${(done / ((now - t0) / 1000)).toFixed(0)} utt/s`);
    }
  });
  const y = Int32Array.from(spec.rows, (r) => r.label);
  const source = Int32Array.from(spec.rows, (r) => r.source);
  return { x, y, source, seconds: (performance.now() - t0) / 1000 };
}

/**
 * Worker process of `data.ts`: receives decoded recordings once, then batches of planned rows,
 * and answers each batch with its log-mel features.
 *
 * Why a process and not a thread: the synthesizers are started with fork/exec, whose cost grows
 * with the memory of the process that starts them. The main process holds hundreds of MB of
 * features; these workers stay small, so each espeak-ng / flite start stays cheap, and two of
 * them use both cores for the DSP as well.
 *
 * Protocol (advanced IPC serialization, typed arrays pass as such):
 * - in: `{ type: 'init', assets, inflight }`, then `{ type: 'batch', id, rows }` any number of times
 * - in: `{ type: 'stats' }` -> out: `{ type: 'stats', cpu }` (CPU seconds of the worker and its synthesizers)
 * - out: `{ type: 'done', id, x }` (x: Float32Array of rows.length * 1960) or `{ type: 'error', id, message }`
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { RowRenderer, type Assets, type Row } from './render.ts';

/** Messages the parent sends. */
export type ToWorker =
  | { type: 'init'; assets: Assets; inflight: number }
  | { type: 'batch'; id: number; rows: Row[] }
  | { type: 'stats' };

/** Messages the worker sends back. */
export type FromWorker =
  | { type: 'done'; id: number; x: Float32Array }
  | { type: 'error'; id: number; message: string }
  | { type: 'stats'; cpu: CpuSeconds };

/** CPU time used so far, in seconds. */
export interface CpuSeconds {
  /** this worker process */
  self: number;
  /** its finished synthesizer processes (espeak-ng, flite) */
  children: number;
}

/** Reads own and reaped children's CPU time from /proc (Linux); children is 0 elsewhere. */
function cpuSeconds(): CpuSeconds {
  const u = process.cpuUsage();
  let children = 0;
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); cutime and cstime are fields 16 and 17
    children = (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    children = 0;
  }
  return { self: (u.user + u.system) / 1e6, children };
}

interface Batch {
  id: number;
  rows: Row[];
  x: Float32Array;
  remaining: number;
}

function send(msg: FromWorker): void {
  process.send!(msg);
}

if (typeof process.send === 'function') {
  let renderer: RowRenderer | undefined;
  let inflight = 2;
  const queue: { batch: Batch; index: number }[] = [];
  let running = 0;
  let failed = false;

  const pump = (): void => {
    while (!failed && renderer && running < inflight && queue.length > 0) {
      const { batch, index } = queue.shift()!;
      running++;
      const r = renderer;
      r.renderInto(batch.rows[index], batch.x, index * r.size).then(
        () => {
          running--;
          if (--batch.remaining === 0) send({ type: 'done', id: batch.id, x: batch.x });
          pump();
        },
        (e: unknown) => {
          failed = true;
          send({ type: 'error', id: batch.id, message: e instanceof Error ? e.message : String(e) });
        },
      );
    }
  };

  process.on('message', (msg: ToWorker) => {
    if (msg.type === 'stats') {
      send({ type: 'stats', cpu: cpuSeconds() });
      return;
    }
    if (msg.type === 'init') {
      renderer = new RowRenderer(msg.assets);
      inflight = Math.max(1, msg.inflight);
    } else if (msg.type === 'batch') {
      if (!renderer) {
        failed = true;
        send({ type: 'error', id: msg.id, message: 'worker got a batch before init' });
        return;
      }
      const size = renderer.size;
      const batch: Batch = { id: msg.id, rows: msg.rows, x: new Float32Array(msg.rows.length * size), remaining: msg.rows.length };
      if (msg.rows.length === 0) send({ type: 'done', id: msg.id, x: batch.x });
      for (let i = 0; i < msg.rows.length; i++) queue.push({ batch, index: i });
    }
    pump();
  });
  // exit when the parent disconnects
  process.on('disconnect', () => process.exit(0));
}

/**
 * GGUF payload chunks coded on worker threads (build side, Node): the range coders that code a
 * chunk run at about 15 MB/s of changed bytes on one core, and a GGUF model's chunks are
 * independent, so a diff of a multi-GB pair codes one chunk per core at once. The caller's thread
 * reads and hashes each chunk and hands it over (its bytes transferred, not copied); the payload
 * assembles the coded chunks in file order, so the bytes are the same at any thread count.
 *
 * Synchronous for its caller (`diffGgufModels` is, and the on-grid search calls it in a loop), as
 * the training pool is: each worker answers on its own channel and counts up one shared word,
 * which the caller waits on (Atomics.wait) before it takes the answers (receiveMessageOnPort). A
 * worker that throws answers with the error; one that exits raises the word on the way out; either
 * stops the diff with a {@link DiffWorkerError}. Workers start on first use and stay for the next
 * diff until {@link GgufChunkCoders.close}.
 */
import os from 'node:os';
import { MessageChannel, receiveMessageOnPort, type MessagePort, type Worker } from 'node:worker_threads';
import { DiffWorkerError, UsageError } from '../../core/errors.ts';
import { startModuleWorker } from '../worker-thread.ts';
import type { GgufChunkCoderPool, GgufChunkInput } from './diff.ts';
import type { GgufChunkCoding } from './payload.ts';

/** What a worker starts with. */
export interface ChunkCoderSetup {
  index: number;
  /** Int32 words: [0] counts answers and exits, [1 + index] is 1 once worker `index` has exited. */
  signal: SharedArrayBuffer;
  port: MessagePort;
}

/** One chunk to code. */
export interface ChunkCoderRequest {
  id: number;
  base: Uint8Array;
  target: Uint8Array;
  coding?: GgufChunkCoding;
}

/** A chunk coded, or why not. */
export type ChunkCoderReply = { id: number; coding: number; delta: Uint8Array } | { id: number; error: string };

interface Member {
  worker: Worker;
  port: MessagePort;
  /** The chunk it is coding, or -1. */
  busy: number;
}

/** The default thread count: every core, at most 8 (past that the caller's reading is the limit). */
export function defaultDiffThreads(): number {
  return Math.max(1, Math.min(8, os.availableParallelism()));
}

/** Worker threads that code GGUF payload chunks (module doc). */
export class GgufChunkCoders implements GgufChunkCoderPool {
  private members: Member[] = [];
  private readonly signal: Int32Array;
  private closed = false;

  /** @param threads - worker threads, 1 or more ({@link defaultDiffThreads} is every core, at most 8) */
  constructor(readonly threads: number) {
    if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`threads must be a whole number of at least 1, found ${threads}`, { threads });
    this.signal = new Int32Array(new SharedArrayBuffer(4 * (1 + threads)));
  }

  private start(): void {
    if (this.closed) throw new UsageError('these chunk coders were closed');
    while (this.members.length < this.threads) {
      const index = this.members.length;
      const { port1, port2 } = new MessageChannel();
      const setup: ChunkCoderSetup = { index, signal: this.signal.buffer as SharedArrayBuffer, port: port2 };
      const worker = startModuleWorker(import.meta.url, 'chunk-coder-worker', { workerData: setup, transferList: [port2] as never[] });
      worker.unref();
      this.members.push({ worker, port: port1, busy: -1 });
    }
  }

  codeAll(next: () => GgufChunkInput | undefined, coding: GgufChunkCoding | undefined, done: (index: number, coded: { coding: number; delta: Uint8Array }) => void): void {
    this.start();
    try {
      this.run(next, coding, done);
    } catch (e) {
      // A chunk unread or a callback that threw leaves answers in flight: these workers are not reused.
      this.close();
      throw e;
    }
  }

  private run(next: () => GgufChunkInput | undefined, coding: GgufChunkCoding | undefined, done: (index: number, coded: { coding: number; delta: Uint8Array }) => void): void {
    let id = 0;
    let inFlight = 0;
    let more = true;
    for (;;) {
      for (const m of this.members) {
        if (m.busy >= 0 || !more) continue;
        const input = next();
        if (!input) {
          more = false;
          break;
        }
        const request: ChunkCoderRequest = { id, base: input.base, target: input.target, ...(coding ? { coding } : {}) };
        m.port.postMessage(request, [input.base.buffer as ArrayBuffer, input.target.buffer as ArrayBuffer]);
        m.busy = id++;
        inFlight++;
      }
      if (!inFlight) return;
      const seen = Atomics.load(this.signal, 0);
      let answered = false;
      for (const m of this.members) {
        if (m.busy < 0) continue;
        const received = receiveMessageOnPort(m.port);
        if (!received) continue;
        const reply = received.message as ChunkCoderReply;
        m.busy = -1;
        inFlight--;
        answered = true;
        if ('error' in reply) {
          this.close();
          throw new DiffWorkerError(`a worker coding chunk ${reply.id + 1} of the payload failed: ${reply.error}. Nothing was written; diff with one thread (--threads 1) to code on the main thread`, { chunk: reply.id + 1 });
        }
        done(reply.id, { coding: reply.coding, delta: reply.delta });
      }
      if (answered) continue;
      const exited = this.members.findIndex((m, i) => m.busy >= 0 && Atomics.load(this.signal, 1 + i) === 1);
      if (exited >= 0) {
        const chunk = this.members[exited].busy + 1;
        this.close();
        throw new DiffWorkerError(`worker ${exited + 1} of ${this.threads} exited while coding chunk ${chunk} of the payload (out of memory?). Nothing was written; diff with one thread (--threads 1) to code on the main thread`, { worker: exited + 1, chunk });
      }
      Atomics.wait(this.signal, 0, seen);
    }
  }

  /** Stop the workers (the next use is refused). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.members) {
      m.port.close();
      void m.worker.terminate();
    }
    this.members = [];
  }
}

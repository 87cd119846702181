/**
 * A worker thread that codes GGUF payload chunks for the build side's diff
 * (src/io/gguf/chunk-coders.ts): each request's base and target bytes coded as
 * `diffGgufModels` codes them on one thread (`codeChunk` with the aligned byte delta), the coded
 * bytes sent back by transfer. After each answer it counts up the shared word the parent waits on;
 * an error is answered, not thrown, and an exit raises the word too, so the parent never waits on
 * a worker that is gone.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodeAlignedByteDelta } from '../../diff/byte-delta.ts';
import { codeChunk } from './payload.ts';
import type { ChunkCoderReply, ChunkCoderRequest, ChunkCoderSetup } from './chunk-coders.ts';

const setup = workerData as ChunkCoderSetup;
const signal = new Int32Array(setup.signal);

function raise(): void {
  Atomics.add(signal, 0, 1);
  Atomics.notify(signal, 0);
}

process.on('exit', () => {
  Atomics.store(signal, 1 + setup.index, 1);
  raise();
});

setup.port.on('message', (request: ChunkCoderRequest) => {
  let reply: ChunkCoderReply;
  try {
    const { coding, delta } = codeChunk(request.base, request.target, (a, b) => encodeAlignedByteDelta(a, b).bytes, request.coding);
    reply = { id: request.id, coding, delta };
  } catch (e) {
    reply = { id: request.id, error: e instanceof Error ? e.message : String(e) };
  }
  setup.port.postMessage(reply, 'delta' in reply ? [reply.delta.buffer as ArrayBuffer] : []);
  raise();
});
parentPort?.unref();

/**
 * The page of test/browser-gguf-opfs.test.ts: each request runs in a new dedicated worker
 * (test/helpers/gguf-opfs-worker.ts); `killOn` terminates it when it announces that event (the
 * apply held at a step), as a closed tab or a crash ends it.
 */
import { applyGgufInOpfs, type OpfsDirectory } from '../../src/io/gguf/opfs.ts';

type Reply = { done: true; value?: unknown; error?: { name: string; code?: string; message: string } } | { event: string };

function run(request: Record<string, unknown>, killOn?: string): Promise<{ value?: unknown; error?: { name: string; code?: string; message: string }; killed?: string }> {
  return new Promise((resolve) => {
    const worker = new Worker('./gguf-worker.js', { type: 'module' });
    worker.onmessage = (e: MessageEvent<Reply>) => {
      const m = e.data;
      if ('event' in m) {
        if (m.event === killOn) {
          worker.terminate();
          resolve({ killed: m.event });
        }
        return;
      }
      worker.terminate();
      resolve({ value: m.value, error: m.error });
    };
    worker.onerror = (e) => resolve({ error: { name: 'WorkerError', message: e.message } });
    worker.postMessage(request);
  });
}

/** The apply called on the page's main thread, where OPFS has no synchronous access handles: its error. */
async function applyOnMainThread(name: string, payload: string): Promise<{ name: string; code?: string; message: string } | undefined> {
  const dir = await navigator.storage.getDirectory();
  try {
    await applyGgufInOpfs(dir as unknown as OpfsDirectory, name, await (await dir.getFileHandle(payload)).getFile(), { sequences: null });
    return undefined;
  } catch (e) {
    const err = e as Error & { code?: string };
    return { name: err.name, code: err.code, message: err.message };
  }
}

(window as unknown as { gguf: unknown }).gguf = { run, applyOnMainThread };
document.body.dataset.state = 'ready';

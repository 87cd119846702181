/**
 * Starting a worker thread from a module of this package (Node): built code starts the `.js`
 * file beside the caller; from source (run through tsx) the worker is a `.ts` file and Node does
 * not hand tsx's loader to worker threads, so a two-line bootstrap registers it in the new thread
 * first. The training pool and the GGUF chunk coders start their workers through it.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start the worker module `name` (no extension) that sits beside the module at `callerUrl`
 * (the caller's `import.meta.url`).
 */
export function startModuleWorker(callerUrl: string, name: string, options: WorkerOptions): Worker {
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, callerUrl), options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const file = new URL(`./${name}.ts`, callerUrl).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(file)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

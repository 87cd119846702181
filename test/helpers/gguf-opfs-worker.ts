/**
 * The dedicated worker of test/browser-gguf-opfs.test.ts: `neural-diff/gguf` patching a GGUF
 * model in the page's Origin Private File System. One request per worker, by message; a request
 * may hold the apply at a step (the k-th write to the model, or inside its health check) and say
 * so, so the page can terminate the worker there: a kill at a known point, waiting on an event.
 */
import { applyGgufInOpfs, applyGgufInPlace, ggufFingerprintIn, ggufOpfsTarget, opfsVolume, recoverGgufInOpfs, type GgufVolume, type OpfsDirectory } from '../../src/io/gguf/opfs.ts';
import { MemoryUpdaterState, Updater } from '../../src/updater/index.ts';

interface Request {
  op: 'put' | 'sha256' | 'list' | 'clear' | 'apply' | 'recover' | 'fingerprint' | 'update';
  name?: string;
  url?: string;
  payload?: string;
  /** Hold the apply before this write to the model (1-based), announcing `held`. */
  holdAtWrite?: number;
  /** The health check: passes, fails, or hangs announcing `in-health-check`. */
  health?: 'pass' | 'fail' | 'hang';
  trustedKeys?: string[];
  /** `update`: the release folder's URL and its model id. */
  release?: string;
  modelId?: string;
}

const post = (m: unknown) => (self as unknown as { postMessage(m: unknown): void }).postMessage(m);
const never = () => new Promise<never>(() => {});

/** `volume` with the apply held before the `k`-th write to `model`. */
function holding(volume: GgufVolume, model: string, k: number): GgufVolume {
  let writes = 0;
  return {
    ...volume,
    async open(name, mode) {
      const f = await volume.open(name, mode);
      if (name !== model) return f;
      return {
        ...f,
        async write(bytes, position) {
          if (++writes === k) {
            post({ event: 'held', at: position });
            await never();
          }
          return f.write(bytes, position);
        },
      };
    },
  };
}

async function handle(r: Request): Promise<unknown> {
  const dir = (await navigator.storage.getDirectory()) as unknown as OpfsDirectory & FileSystemDirectoryHandle;
  const name = r.name as string;
  const health = r.health === undefined ? undefined : async () => {
    if (r.health === 'hang') {
      post({ event: 'in-health-check' });
      await never();
    }
    return r.health === 'pass';
  };
  switch (r.op) {
    case 'put': {
      const bytes = new Uint8Array(await (await fetch(r.url as string)).arrayBuffer());
      const fh = (await dir.getFileHandle(name, { create: true })) as unknown as { createSyncAccessHandle(): Promise<{ truncate(n: number): void; write(b: Uint8Array, o: { at: number }): number; flush(): void; close(): void }> };
      const h = await fh.createSyncAccessHandle();
      h.truncate(0);
      h.write(bytes, { at: 0 });
      h.flush();
      h.close();
      return bytes.length;
    }
    case 'sha256': {
      const bytes = await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer();
      return Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
    }
    case 'list': {
      const names: string[] = [];
      for await (const key of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(key);
      return names.sort();
    }
    case 'clear': {
      const names: string[] = [];
      for await (const key of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(key);
      for (const n of names) await dir.removeEntry(n);
      // The applied sequences too (the default store: IndexedDB's database `neural-diff`).
      await new Promise((resolve, reject) => {
        const del = indexedDB.deleteDatabase('neural-diff');
        del.onsuccess = resolve;
        del.onerror = () => reject(del.error);
        del.onblocked = () => reject(new Error('the sequence database is open elsewhere'));
      });
      return names.length;
    }
    case 'fingerprint':
      return ggufFingerprintIn(opfsVolume(dir), name);
    case 'apply': {
      const payload = await (await dir.getFileHandle(r.payload as string)).getFile();
      const options = { healthCheck: health, trustedKeys: r.trustedKeys };
      const result = r.holdAtWrite ? await applyGgufInPlace(holding(opfsVolume(dir), name, r.holdAtWrite), name, payload, options) : await applyGgufInOpfs(dir, name, payload, options);
      return { status: result.status, writtenBytes: result.writtenBytes, targetFingerprint: result.targetFingerprint, verified: result.signature.verified, recovery: result.recovery.actions };
    }
    case 'update': {
      // neural-diff/updater with the OPFS model as its target: the manifest, the payload for the
      // version held, applied in place.
      const updater = new Updater({ modelId: r.modelId as string, urls: [r.release as string], trustedKeys: r.trustedKeys ?? [], target: ggufOpfsTarget(dir, name), state: new MemoryUpdaterState(), ...(health ? { healthCheck: health } : {}) });
      const u = await updater.update();
      return { status: u.status, steps: u.steps.map((s) => `${s.kind} ${s.outcome}`), fingerprint: u.fingerprint, error: u.error, fetched: u.download };
    }
    case 'recover': {
      const report = await recoverGgufInOpfs(dir, name, { healthCheck: health });
      return { actions: report.actions, rolledBack: report.rolledBack, pending: report.pending };
    }
  }
}

self.onmessage = (e: MessageEvent<Request>) => {
  handle(e.data).then(
    (value) => post({ done: true, value }),
    (err: Error & { code?: string }) => post({ done: true, error: { name: err.name, code: err.code, message: err.message } }),
  );
};

/**
 * What the browser updater test's page loads (bundled for the browser): the device updater, and
 * `runUpdate`, one update of a model held in memory with the state and downloads in IndexedDB.
 */
import { IndexedDbDownloadStore, IndexedDbUpdaterState, Updater, weightStoreTarget, type UpdateResult, type UpdaterRecord } from '../../src/updater/index.ts';
import { MemoryWeightStore } from '../../src/core/weight-store.ts';

export * from '../../src/updater/index.ts';

/** Hold `tensors` in memory and run one update; the result and the IndexedDB record after it. */
export async function runUpdate(args: { tensors: [string, { shape: number[]; data: number[]; patchable?: false }][]; publicKey: string; url: string }): Promise<{ result: UpdateResult; record?: UpdaterRecord }> {
  // A read-only tensor (the model's frame) stays read-only, as a live model given its model.json lists it.
  const store = new MemoryWeightStore(Object.fromEntries(args.tensors.map(([n, t]) => [n, { shape: t.shape, data: Float32Array.from(t.data), ...(t.patchable === false ? { patchable: false } : {}) }])));
  const state = new IndexedDbUpdaterState();
  const updater = new Updater({
    modelId: 'kws',
    urls: [args.url],
    trustedKeys: [args.publicKey],
    chunkBytes: 256,
    state,
    downloads: new IndexedDbDownloadStore(),
    target: weightStoreTarget({
      store: () => store,
      install: async () => {
        throw new Error('not expected: the page holds a known version');
      },
    }),
  });
  const result = await updater.update();
  return { result: JSON.parse(JSON.stringify(result)) as UpdateResult, record: await state.load('kws') };
}

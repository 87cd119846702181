/** The package's entry points resolve by name (package.json "exports") and expose the documented API. */
import { test } from 'node:test';
import assert from 'node:assert/strict';

test('neural-diff and neural-diff/apply resolve and export the documented names', async () => {
  const lib = await import('neural-diff');
  for (const name of ['trainDiff', 'topkDiff', 'buildPayload', 'openTfjsModelDir', 'fileSystemIO', 'applyPayload', 'decodePayload', 'renderHtml', 'parseBudget', 'tfModelStore', 'openSafetensorsFile']) {
    assert.equal(typeof (lib as Record<string, unknown>)[name], 'function', name);
  }
  const device = await import('neural-diff/apply');
  for (const name of ['applyPayload', 'verifyPayload', 'decodePayload', 'fingerprintStore', 'getHasher', 'MemoryWeightStore', 'MemorySequenceStore', 'NeuralDiffError']) {
    assert.ok(name in device, name);
  }
  assert.ok(!('trainDiff' in device), 'the device entry has no trainer');
});

/**
 * A GGUF model (`.gguf`, a split model by any part) as a target of the device updater (Node,
 * Electron's main process). Its versions are named by their stored-bytes digest
 * (docs/format/gguf.md, 18.4), as GGUF payloads and a GGUF release manifest name them, and a
 * payload is applied in place behind the undo journal (src/io/gguf/in-place.ts): no second copy
 * of a file of gigabytes. Where the other file targets keep the previous version whole until the
 * health check passes, this one keeps the journal (the bytes the payload replaced): a failed
 * check writes them back (the old version byte for byte), a passed one deletes it. A kill between
 * the switch and the confirmation leaves the journal and its switch marker, which the next run
 * finishes through {@link ModelTarget.settlePending} as every target's unconfirmed switch is.
 *
 * A full install is refused ({@link ModelTarget.installs} false): the updater would hold the
 * whole model in memory and write a second copy beside it; it plans payloads only and says what
 * to do when none starts from the model held.
 */
import { stat } from 'node:fs/promises';
import { ModelFormatError } from '../../core/errors.ts';
import type { ModelTarget, PendingUpdateOutcome, TargetApplyOptions } from '../../updater/target.ts';
import { applyToGgufFile, ggufFileDigests, ggufStoredDigest, ggufUpdatePending, recoverGgufFile, type GgufFileDigests } from '../gguf/in-place.ts';
import { checkGgufTargetPayload } from '../gguf/target-payload.ts';

/** Refuse a folder, a FIFO or a device where the model file should be (nothing changed). */
async function refuseNonFile(file: string): Promise<void> {
  const st = await stat(file).catch(() => undefined);
  if (!st || st.isFile()) return;
  throw new ModelFormatError(`${file} is not a file, and a GGUF model is one file (or the parts of a split model): nothing was changed; pass the path of the .gguf file`, { path: file });
}

/** A `.gguf` model as an updater target (module doc). */
export function ggufFileTarget(file: string): ModelTarget {
  // The digests the fingerprint took, handed to the next apply: its base check then reads the model only if it changed since.
  let known: GgufFileDigests | undefined;
  return {
    kind: 'gguf',
    rebuilds: false,
    installs: false,
    async hasPending() {
      return ggufUpdatePending(file);
    },
    async settlePending(check): Promise<PendingUpdateOutcome | undefined> {
      if (!(await ggufUpdatePending(file))) return undefined;
      const report = await recoverGgufFile(file, {
        healthCheck: check && (async () => check({ kind: 'payload', fingerprint: (await ggufStoredDigest(file)) as string })),
      });
      return report.pending && { ...report.pending, actions: report.actions };
    },
    async fingerprint(options) {
      await refuseNonFile(file);
      if ((await stat(file).catch(() => undefined)) === undefined) return undefined;
      // An update stopped before its new version was whole in place is rolled back first.
      if (options?.recover !== false) await recoverGgufFile(file);
      known = await ggufFileDigests(file);
      return known?.digest;
    },
    async applyPayload(bytes: Uint8Array, o: TargetApplyOptions) {
      checkGgufTargetPayload(bytes, file);
      const check = o.healthCheck;
      const digests = known;
      known = undefined;
      await applyToGgufFile(file, bytes, {
        trustedKeys: o.trustedKeys, expectedModelId: o.expectedModelId, state: o.sequenceStore, now: o.now,
        ...(check ? { healthCheck: () => check() } : {}),
        ...(digests ? { knownDigests: digests } : {}),
      });
    },
    async installPackage() {
      // The updater plans no full install for this target (installs: false); a caller that asks anyway is told why.
      throw new ModelFormatError(`${file} is a GGUF model, which the updater never installs whole (it would hold the model in memory and write a second copy beside it): nothing was changed; download the full model yourself and replace the file while the app is stopped, then update it by payloads`, { path: file });
    },
  };
}

/**
 * What both GGUF targets of the device updater (`ggufFileTarget` on disk, `ggufVolumeTarget` in
 * OPFS or any volume) check of a payload before they apply it: that it is a GGUF block payload
 * (format v8), signed or not. Pure: no node module.
 */
import { ModelMismatchError } from '../../core/errors.ts';
import { isSignedEnvelope, parseEnvelope } from '../../apply/envelope.ts';
import { isGgufPayloadDocument } from './payload.ts';

/**
 * Refuse a payload that is not a GGUF block payload for the GGUF model `file` (as messages name
 * it), before anything is written.
 * @throws ModelMismatchError the release holds payloads of another kind of model
 */
export function checkGgufTargetPayload(bytes: Uint8Array, file: string): void {
  if (isGgufPayloadDocument(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes)) return;
  throw new ModelMismatchError(`${file} is a GGUF model, and the payload is not a GGUF block payload (format v8): nothing was written; the release holds payloads of another kind of model`, { file });
}

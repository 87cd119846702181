/**
 * Recorded tensor digests of a TF.js model folder (`.ndiff-digests.json`; beside a model file
 * sharing its folder, `<file>.ndiff-digests.json`), so an apply reads
 * and hashes only the shards it patches instead of the whole model.
 *
 * After a verified, confirmed apply, the digest of every tensor is written down together with
 * what ties it to its bytes: the tensor's manifest entry and, for each shard file its bytes lie
 * in, the file's path, identity (device, inode, size, mtime and ctime in nanoseconds) and the
 * byte range. The next apply trusts a recorded digest only for a tensor it does not patch and
 * only while all of that is unchanged; every tensor it writes is read and hashed. The file is
 * a cache: a missing, damaged or foreign one is ignored (the apply then reads everything), and
 * it is never the only check between a payload and the weights (docs/SECURITY.md).
 *
 * ```json
 * { "format": "neural-diff-digests", "version": 1,
 *   "tensors": { "dense/kernel": { "entry": "{…}", "spans": ["group1-shard1of1.bin|2049:…|0|4096"], "digest": "9f…" } } }
 * ```
 */
import * as path from 'node:path';
import { fingerprintStore } from '../../core/fingerprint.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import { locateModelFiles, openTfjsModelDir, type RecordedDigest } from './index.ts';
import { readRegularFile, writeFileAtomically, type FileOps } from '../durable/durable.ts';
import { DIGESTS_FILE, FOLDER_MODEL_FILES, type ModelFiles } from '../durable/control-files.ts';

/** The file's name inside a model folder. */
export { DIGESTS_FILE };
const FORMAT = 'neural-diff-digests';

/**
 * The recorded digests of the model in `dir` (empty when there are none or the file is not
 * usable); `files` names the model's files (default: a folder of its own).
 */
export async function readRecordedDigests(dir: string, files: ModelFiles = FOLDER_MODEL_FILES): Promise<Map<string, RecordedDigest>> {
  const out = new Map<string, RecordedDigest>();
  let doc: unknown;
  try {
    // Not a regular file (a FIFO would hang a plain read), damaged, or missing: ignored.
    const bytes = await readRegularFile(path.join(dir, files.digests), { maxBytes: 256 * 1024 * 1024 });
    if (bytes === null) return out;
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return out;
  }
  const d = doc as { format?: unknown; version?: unknown; tensors?: unknown };
  if (typeof d !== 'object' || d === null || d.format !== FORMAT || d.version !== 1) return out;
  if (typeof d.tensors !== 'object' || d.tensors === null || Array.isArray(d.tensors)) return out;
  for (const [name, v] of Object.entries(d.tensors as Record<string, unknown>)) {
    const r = v as Partial<RecordedDigest> | null;
    if (!r || typeof r.entry !== 'string' || typeof r.digest !== 'string' || !/^[0-9a-f]{16}$/.test(r.digest)) continue;
    if (!Array.isArray(r.spans) || !r.spans.every((s) => typeof s === 'string')) continue;
    out.set(name, { entry: r.entry, spans: r.spans, digest: r.digest });
  }
  return out;
}

/**
 * Replace the recorded digests of `dir` (atomically). With `durable: false` nothing is fsynced:
 * after a crash the file may be the previous one (whose records still check their files) or
 * unreadable (ignored), never wrong, so an apply does not wait for the disk for a cache.
 */
export async function writeRecordedDigests(dir: string, records: ReadonlyMap<string, RecordedDigest>, options: { durable?: boolean; fileOps?: FileOps; sweep?: boolean; files?: ModelFiles } = {}): Promise<void> {
  const doc = { format: FORMAT, version: 1, tensors: Object.fromEntries(records) };
  await writeFileAtomically(path.join(dir, (options.files ?? FOLDER_MODEL_FILES).digests), new TextEncoder().encode(JSON.stringify(doc) + '\n'), options);
}

/**
 * Read and hash every tensor of the model `model` (a folder, or a model JSON file with its shards
 * beside it) and record the digests, so the next
 * apply reads only the shards it patches. For a folder installed from a full download (after
 * checking the returned fingerprint against the published one); an apply records them itself.
 * `tensors` counts the weight digests recorded; the frame (`tfjs:frame`) is not among them, since
 * every apply computes it again from model.json and its non-float entries.
 */
export async function recordModelDirDigests(model: string, options: { hasher?: Hasher | 'wasm' | 'pure' } = {}): Promise<{ fingerprint: string; tensors: number }> {
  const hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);
  const { dir, files } = await locateModelFiles(model);
  const store = await openTfjsModelDir(dir, { lazy: true, modelJsonFile: files.model });
  const { fingerprint, digests } = fingerprintStore(hasher, store);
  const records = store.digestRecords(digests);
  await writeRecordedDigests(dir, records, { files });
  return { fingerprint, tensors: records.size };
}

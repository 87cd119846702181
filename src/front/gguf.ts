/**
 * GGUF models (llama.cpp's files) in the library calls: what `ndiff inspect model.gguf` shows
 * ({@link inspectGguf}) and what `ndiff fingerprint model.gguf` computes (the model fingerprint
 * of docs/format/gguf.md, hashed a range of blocks at a time). A split model is named by any of
 * its parts (`name-00001-of-00003.gguf`). Diffs and applies of GGUF models: `diff-gguf.ts` and
 * src/io/gguf/in-place.ts.
 */
import { getHasher } from '../core/hasher.ts';
import { openGgufModel } from '../io/gguf/files.ts';
import { fingerprintGguf, ggufShape, GGUF_FRAME, isGgufWeight } from '../io/gguf/fingerprint.ts';
import { summarizeGguf, type GgufSummary } from '../io/gguf/summary.ts';

export type { GgufSummary, GgufMetadataSummary, GgufTensorSummary } from '../io/gguf/summary.ts';

/** What {@link inspectGguf} returns: the fields `ndiff inspect model.gguf --json` prints. */
export type GgufInspectReport = GgufSummary & { file: string; format: 'gguf' };

/**
 * Show a GGUF model (one file, or a split model by any part's path) as `ndiff inspect` does:
 * its parts, architecture, name, tokenizer size, metadata, and every tensor's type, shape and
 * size. Reads the headers only.
 * @throws ModelFormatError a missing file or part, a malformed header, parts that disagree
 */
export async function inspectGguf(path: string): Promise<GgufInspectReport> {
  const files = openGgufModel(path);
  try {
    return { file: path, format: 'gguf', ...summarizeGguf(files.model) };
  } finally {
    files.close();
  }
}

/** One tensor of {@link fingerprintGgufFile}: its name, ggml type (`frame` for `gguf:frame`), shape and digest. */
export interface GgufTensorDigest {
  name: string;
  dtype: string;
  shape: number[];
  digest: string;
}

/**
 * The fingerprint of a GGUF model (docs/format/gguf.md) and, with `tensors`, every digest in
 * file order (the frame last).
 * @throws ModelFormatError as {@link inspectGguf}, or a tensor named `gguf:frame`
 */
export async function fingerprintGgufFile(path: string, tensors = false): Promise<{ fingerprint: string; tensorCount: number; tensors?: GgufTensorDigest[] }> {
  const hasher = await getHasher();
  const files = openGgufModel(path);
  try {
    const { fingerprint, digests } = fingerprintGguf(hasher, files.model);
    const list = (): GgufTensorDigest[] => [
      ...files.model.tensors.filter(isGgufWeight).map((t) => ({ name: t.info.name, dtype: t.info.type.name, shape: ggufShape(t.info.ne), digest: digests.get(t.info.name) as string })),
      { name: GGUF_FRAME, dtype: 'frame', shape: [8], digest: digests.get(GGUF_FRAME) as string },
    ];
    return { fingerprint, tensorCount: digests.size, ...(tensors ? { tensors: list() } : {}) };
  } finally {
    files.close();
  }
}

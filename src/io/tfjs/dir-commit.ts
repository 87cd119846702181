/**
 * The folder store's commit: the patched model planned group by group (shard boundaries kept
 * where every entry keeps its size, and then only shards holding changed bytes written, or
 * taken over from the writes staged ahead in dir-staging.ts; else the group laid out again),
 * written by the atomic protocol of write.ts (src/io/tfjs/index.ts tells it step by step), and
 * the model read back as the store holds it from then on.
 */
import { overlaps, writeModelAtomically, type PlannedGroup, type PlannedShard, type StagedShard } from './write.ts';
import { shardBytes, storedRange, type LoadedModel, type Shard } from './read.ts';
import * as path from 'node:path';
import { computeGroupLayout, concatBytes, parseModelJson, replaceTopLevelValue, type EntryLayout } from './manifest.ts';
import { encodeForCommit, type StoreAccess } from './dir-entries.ts';
import type { ShardStaging } from './dir-staging.ts';

/**
 * Write the store's patched model back and return the model as it is on disk after the switch.
 * `changed` are float tensors of the model (the store checked them); see the store's `commit`
 * for what is written. On any error, model.json and the old shards are untouched.
 */
export async function writePatchedModel(store: StoreAccess, staging: ShardStaging, changed: ReadonlySet<string>): Promise<LoadedModel> {
  const { dir, options, modelFiles } = store;
  const state = store.model();
  const allFloat32 = options.quantizedUnchanged === 'float32';
  const used = new Set<StagedShard>();
  const groups: PlannedGroup[] = state.modelJson.weightsManifest.map((group, g) => {
    const entries = state.layouts[g].entries;
    const recs = entries.map((l) => store.record(l.entry.name)!);
    const encode = (k: number) => encodeForCommit(store, recs[k], changed.has(entries[k].entry.name), allFloat32);
    let planned = entries.map((_, k) => encode(k));
    // A released tensor's new bytes, when a commit needs them: read again from its new shards.
    const materialize = (k: number) => {
      store.readReleased(recs[k]);
      return encode(k);
    };
    const src = state.groups[g];
    // Keep the shard boundaries unless a size changed or the caller asked for a shard size
    // (a released tensor kept its size: its new shards were written with these boundaries).
    const sameLayout = options.shardBytes === undefined && planned.every((x, i) => x.bytes === undefined || x.bytes.length === entries[i].byteLength);
    if (sameLayout) {
      // Keep the shard boundaries: a shard with no new bytes stays the same file.
      const shards: PlannedShard[] = src.shards.map((s, i) => {
        const dirty = planned.map((x, k) => ({ x, k, l: entries[k] })).filter(({ x, l }) => (x.bytes !== undefined || x.released) && overlaps(l, s));
        if (dirty.length === 0) return { keep: s };
        // The new bytes: a released tensor's are read again from the files they were written to.
        const parts = () => shardParts(dir, s, dirty.map(({ x, k, l }) => ({ l, bytes: (x.released ? materialize(k).bytes : x.bytes) ?? store.bytesOf(recs[k]) })));
        // Written ahead (stageWrites) from the same entries' bytes: the file to use, unless
        // an earlier commit already switched to it (a second commit, e.g. going back after
        // a failed health check, writes its own bytes).
        const staged = staging.stagedShard(`${g}/${i}`);
        if (staged && !staged.consumed && staged.changed.length === dirty.length && dirty.every(({ l }, k) => staged.changed[k] === l.entry.name)) {
          used.add(staged);
          return { staged, size: s.size, parts };
        }
        return { parts: parts() };
      });
      return { base: group as Record<string, unknown>, weights: planned.map((x) => x.out), shards };
    }
    // Laid out again: every released tensor's values are read again first.
    if (recs.some((r) => r.released)) planned = entries.map((_, k) => (recs[k].released ? materialize(k) : planned[k]));
    const weights = planned.map((x) => x.out);
    const data = concatBytes(planned.map((x, i) => x.bytes ?? store.bytesOf(store.record(entries[i].entry.name)!)));
    return { base: group as Record<string, unknown>, weights, data };
  });
  // Staged writes this commit does not use (a group laid out again) finish first, so none
  // renames a file over one this commit writes; dropStaged deletes them.
  await Promise.all(staging.writesNotIn(used));
  const oldText = state.jsonText;
  const result = await writeModelAtomically({
    ...options,
    dir,
    groups,
    expectedModelJson: state.jsonBytes,
    render: (manifest) => replaceTopLevelValue(oldText, 'weightsManifest', JSON.stringify(manifest)),
    files: modelFiles,
  });
  const modelJson = parseModelJson(result.text, path.join(dir, modelFiles.model));
  const layouts = modelJson.weightsManifest.map((grp, g) => {
    const hasStrings = grp.weights.some((w) => w.dtype === 'string' && !w.quantization);
    return computeGroupLayout(grp.weights, hasStrings ? concatBytes(result.groups[g].shards.map((s) => shardBytes(dir, s))) : undefined, g);
  });
  return { dir, jsonBytes: result.bytes, jsonText: result.text, modelJson, groups: result.groups, layouts };
}

/**
 * A shard's new bytes as parts, in order: the changed entries' new bytes (`dirty`, in
 * manifest order, each overlapping `s`), and the old shard's bytes between them (the old
 * shard is read only if there is such a gap).
 */
function shardParts(dir: string, s: Shard, dirty: readonly { bytes: Uint8Array; l: EntryLayout }[]): Uint8Array[] {
  const end = s.start + s.size;
  const old = (from: number, to: number) => storedRange(dir, s, from, to);
  const parts: Uint8Array[] = [];
  let at = s.start;
  for (const { bytes, l } of dirty) {
    const from = Math.max(l.offset, s.start);
    const to = Math.min(l.offset + l.byteLength, end);
    if (from > at) parts.push(old(at, from));
    parts.push(bytes.subarray(from - l.offset, to - l.offset));
    at = to;
  }
  if (at < end) parts.push(old(at, end));
  return parts;
}

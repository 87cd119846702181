/**
 * TF.js model folders on disk (`model.json` + weight shard files), for Node without
 * tfjs-node:
 *
 * - {@link openTfjsModelDir}: a {@link WeightStore} over a folder, for the applier;
 * - {@link fileSystemIO}: a `tf.io.IOHandler`, so `tf.loadLayersModel(fileSystemIO(dir))`,
 *   `tf.loadGraphModel(fileSystemIO(dir))` and `model.save(fileSystemIO(dir))` work;
 * - {@link readModelTensors} / {@link writeModelDir}: plain named-array convenience;
 * - {@link referencedFiles} / {@link listStaleFiles}: what a folder uses, what is left over.
 *
 * Every write uses one protocol, so a loader of the folder sees exactly the old model until
 * the switch and exactly the new one after it, even across a crash or power loss (every change
 * to the folder goes through the `fileOps` of src/io/durable/durable.ts, which the power-loss harness
 * records):
 *
 * 0. with `onBeforeWrite`, the caller's hook runs once the new version is planned, while steps
 *    2 and 3's files are written, and resolves before anything a loader reads is created (the
 *    kept previous version, the switch): folder-update.ts writes its update journal there;
 * 1. the new weight bytes are cut into ~4 MiB shards named
 *    `group<g>-shard<i>of<n>-<16 hex of xxh64(shard)>.bin` (content-addressed: a name
 *    never holds two different contents, so a live file is never overwritten);
 * 2. each shard is written to `<name>.tmp-<id>`, fsynced, closed (with `verifyWrites`, read
 *    back and compared with the bytes meant), renamed to `<name>`, four at a time (shards
 *    whose bytes a patch left unchanged are not written: they stay the same files);
 * 3. the new model.json is written to `model.json.tmp-<id>`, fsynced, closed (and verified), at the
 *    same time as the shards; once all are written, with `keepPrevious`, model.json is
 *    hard-linked as `model.json.prev`; the folder is fsynced;
 * 4. model.json is checked to still be the bytes the operation started from (else a
 *    {@link ModelFormatError}: someone else changed the model), then the temp file is renamed
 *    over `model.json` (the atomic switch) and the folder is fsynced;
 * 5. shards the old model.json named and the new one does not are deleted (best effort:
 *    the switch already happened; {@link listStaleFiles} finds anything left behind).
 *
 * Any failure before step 4's rename removes the temporary and newly created files and leaves
 * `model.json` and the old shards byte for byte as they were.
 *
 * A weights manifest that names a file the applier owns (model.json itself, the kept previous
 * version, the journal, the lock, the state file, temporary files: src/io/durable/control-files.ts) as
 * a shard is refused when the folder is opened: a write would rewrite and delete it.
 */
export { MODEL_JSON, PREVIOUS_MODEL_JSON } from '../durable/control-files.ts';
export { type BeforeSwitchHook, type WriteOptions, type BeforeWriteHook, type OpenOptions, type TfjsTensorEntry, type PassthroughEntry, type RecordedDigest } from './options.ts';
export { checkManifestNamesNoControlFiles } from './read.ts';
export { TfjsDirWeightStore, openTfjsModelDir, readModelTensors } from './dir-store.ts';
export { type TfjsModelLocation, type ModelPlace, isModelJsonPath, locateTfjsModel, locateModelFiles, openTfjsModel } from './model-file.ts';
export { type TensorInput, type ModelJsonTemplate, writeModelDir, referencedFiles, listStaleFiles } from './model-dir.ts';
export { gridOfEntry, quantizeOnGrid } from './grid.ts';
export { type FileSystemIOOptions, fileSystemIO } from './io-handler.ts';
export { type ConverterQuantization, converterQuantize, quantizeModelDir } from './converter-quantize.ts';

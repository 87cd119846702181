/**
 * A tf.io.IOHandler over a folder, so tfjs loads and saves models on disk without tfjs-node.
 */
import { type PlannedGroup, writeModelAtomically } from './write.ts';
import type { WriteOptions } from './options.ts';
import { withManifest } from './model-dir.ts';
import { loadModel } from './read.ts';
import type { IOHandler, IOModelArtifacts, IOSaveResult, IOTrainingConfig, IOWeightsManifestEntry } from './io-types.ts';
import { ModelFormatError, NeuralDiffError, UsageError } from '../../core/errors.ts';
import { computeGroupLayout, concatBytes, validateModelJson, type TfjsWeightEntry } from './manifest.ts';

/** Options of {@link fileSystemIO}. */
export type FileSystemIOOptions = WriteOptions & {
  /**
   * `load()` reads this model JSON file of the folder instead of model.json (a model shipped as
   * `<name>.json` + shards beside other models); `save()` refuses it and writes model.json only.
   */
  modelJsonFile?: string;
};

/**
 * A `tf.io.IOHandler` for a model folder, for Node without tfjs-node (whose `file://`
 * handler is the only one tfjs has):
 *
 * - `load()` reads model.json and its shards (checked as in {@link openTfjsModelDir}) and
 *   hands tfjs the raw, possibly quantized weights, which tfjs decodes itself. Works with
 *   `tf.loadLayersModel` and `tf.loadGraphModel`.
 * - `save(artifacts)` writes the weights exactly as tfjs encoded them (float32 for
 *   `model.save`) into ~4 MiB content-named shards and model.json, with the atomic protocol of
 *   the module doc, replacing any model already in `dir`.
 */
export function fileSystemIO(dir: string, options: FileSystemIOOptions = {}): IOHandler {
  return {
    async load(): Promise<IOModelArtifacts> {
      const m = await loadModel(dir, options.modelJsonFile);
      const j = m.modelJson;
      const artifacts: IOModelArtifacts = {
        modelTopology: j.modelTopology as {},
        format: j.format,
        generatedBy: j.generatedBy,
        convertedBy: j.convertedBy,
      };
      if (j.trainingConfig != null) artifacts.trainingConfig = j.trainingConfig as IOTrainingConfig;
      if (j.weightsManifest.length > 0) {
        artifacts.weightSpecs = j.weightsManifest.flatMap((g) => g.weights) as IOWeightsManifestEntry[];
        const all = concatBytes(m.groups.flatMap((g) => g.shards.map((sh) => sh.bytes as Uint8Array)));
        artifacts.weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
      }
      if (j.signature != null) artifacts.signature = j.signature as {};
      if (j.userDefinedMetadata != null) artifacts.userDefinedMetadata = j.userDefinedMetadata as { [key: string]: {} };
      if (j.modelInitializer != null) artifacts.modelInitializer = j.modelInitializer as {};
      if (j.initializerSignature != null) artifacts.initializerSignature = j.initializerSignature as {};
      return artifacts;
    },

    async save(artifacts: IOModelArtifacts): Promise<IOSaveResult> {
      if (options.modelJsonFile !== undefined && options.modelJsonFile !== 'model.json') {
        throw new UsageError(`fileSystemIO.save: this handler reads ${options.modelJsonFile}; saving writes a folder's model.json: make the handler without modelJsonFile to save`);
      }
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new UsageError('fileSystemIO.save: expected a JSON model topology, found a binary (ArrayBuffer) GraphDef; save a layers model or convert the graph with tensorflowjs_converter');
      }
      const specs = (artifacts.weightSpecs ?? []) as TfjsWeightEntry[];
      const wd = artifacts.weightData;
      const data = wd === undefined ? new Uint8Array(0)
        : Array.isArray(wd) ? concatBytes(wd.map((b) => new Uint8Array(b)))
          : new Uint8Array(wd);
      const json: Record<string, unknown> = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [], weights: specs }],
      };
      if (artifacts.signature != null) json.signature = artifacts.signature;
      if (artifacts.userDefinedMetadata != null) json.userDefinedMetadata = artifacts.userDefinedMetadata;
      if (artifacts.modelInitializer != null) json.modelInitializer = artifacts.modelInitializer;
      if (artifacts.initializerSignature != null) json.initializerSignature = artifacts.initializerSignature;
      if (artifacts.trainingConfig != null) json.trainingConfig = artifacts.trainingConfig;
      try {
        validateModelJson(json, 'fileSystemIO.save artifacts');
        const layout = computeGroupLayout(specs, data);
        if (layout.totalBytes !== data.length) {
          throw new ModelFormatError(`expected ${layout.totalBytes} bytes of weight data for ${specs.length} weight specs, found ${data.length}`);
        }
      } catch (err) {
        if (err instanceof NeuralDiffError && !(err instanceof UsageError)) {
          throw new UsageError(`fileSystemIO.save: the artifacts tfjs handed over are inconsistent (${err.message}); nothing was written`, { cause: err.message });
        }
        throw err;
      }
      const groups: PlannedGroup[] = specs.length > 0 ? [{ base: {}, weights: specs, data }] : [];
      await writeModelAtomically({ ...options, dir, groups, render: (manifest) => JSON.stringify(withManifest(json, manifest)) });
      const enc = new TextEncoder();
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: artifacts.modelTopology == null ? 0 : enc.encode(JSON.stringify(artifacts.modelTopology)).length,
          weightSpecsBytes: enc.encode(JSON.stringify(specs)).length,
          weightDataBytes: data.length,
        },
      };
    },
  };
}

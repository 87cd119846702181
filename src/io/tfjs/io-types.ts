/**
 * The parts of tfjs' `tf.io` types that {@link fileSystemIO} hands to tfjs, declared here so that
 * the Node updater entry (`neural-diff/node`) type-checks without `@tensorflow/tfjs` installed.
 * They are structurally compatible with `tf.io.ModelArtifacts`, `tf.io.IOHandler` and friends of
 * tfjs 4.x: `tf.loadLayersModel(fileSystemIO(dir))` and `model.save(fileSystemIO(dir))` type-check
 * (test/tfjs-artifacts.test.ts does both).
 */

/** One weight of a tfjs weights manifest (`tf.io.WeightsManifestEntry`). */
export interface IOWeightsManifestEntry {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32' | 'bool' | 'string' | 'complex64';
  group?: 'model' | 'optimizer';
  quantization?: {
    scale?: number;
    min?: number;
    dtype: 'uint16' | 'uint8' | 'float16';
    original_dtype?: 'float32' | 'int32' | 'bool' | 'string' | 'complex64';
  };
}

/** What a tfjs model is saved as and loaded from (`tf.io.ModelArtifacts`). */
export interface IOModelArtifacts {
  modelTopology?: {} | ArrayBuffer;
  trainingConfig?: IOTrainingConfig;
  weightSpecs?: IOWeightsManifestEntry[];
  weightData?: ArrayBuffer | ArrayBuffer[];
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  signature?: {};
  userDefinedMetadata?: { [key: string]: {} };
  modelInitializer?: {};
  initializerSignature?: {};
}

/** A Keras training config (`tf.io.TrainingConfig`). */
export interface IOTrainingConfig {
  optimizer_config: {};
  loss: string | string[] | { [key: string]: string };
  metrics?: string[] | { [key: string]: string };
  weighted_metrics?: string[];
  sample_weight_mode?: string;
  loss_weights?: number[] | { [key: string]: number };
}

/** What `save` reports (`tf.io.SaveResult`). */
export interface IOSaveResult {
  modelArtifactsInfo: {
    dateSaved: Date;
    modelTopologyType: 'JSON' | 'GraphDef';
    modelTopologyBytes?: number;
    weightSpecsBytes?: number;
    weightDataBytes?: number;
  };
  responses?: Response[];
}

/** A tfjs IO handler with both directions (`tf.io.IOHandler` with `load` and `save`). */
export interface IOHandler {
  load(): Promise<IOModelArtifacts>;
  save(artifacts: IOModelArtifacts): Promise<IOSaveResult>;
}

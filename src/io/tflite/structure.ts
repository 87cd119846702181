/**
 * The parts of a `.tflite` file that are the model's structure and never weight data: every table,
 * vtable, vector and string the schema reaches from the root, walked once with the checked reader
 * so that `FlatBufferReader.structure` lists them. The scan then refuses a buffer whose bytes
 * overlap any of them (docs/FORMAT.md §15): a payload that patches a weight laid over an
 * operator's options table would otherwise change a fused activation, a stride or a shape
 * without changing the graph's fingerprint. Plain TypeScript, no node imports (device code).
 *
 * Walked (field numbers of tensorflow/lite/schema/schema.fbs): `Model.operator_codes` (1) with
 * their `custom_code`, `.description` (3), `.metadata_buffer` (5), `.metadata` (6) with names,
 * `.signature_defs` (7) with their tensor maps and keys; `SubGraph.inputs`, `.outputs`,
 * `.operators` (1-3), `.name` (4); every tensor (constant or not): `shape`, `name`,
 * `quantization` (its `min`, `max`, `scale`, `zero_point`, `details`), `sparsity` (its vectors
 * and dimension metadata), `shape_signature`, `variant_tensors`; every operator: `inputs`,
 * `outputs`, `builtin_options` and `builtin_options_2` (the tables, and the vectors and strings
 * inside them, by the union's type: RESHAPE's `new_shape`, SQUEEZE's `squeeze_dims`, the StableHLO
 * operators' dimension lists, ...; see {@link OPTION_VECTORS}), `custom_options`,
 * `mutating_variable_inputs`, `intermediates`, and custom options stored past the FlatBuffer
 * (`large_custom_options_offset`/`_size`). Each vector is bounds-checked as it is walked, so an
 * options vector whose offset or length leaves the file is refused at the scan, and its bytes are
 * structure: a weight laid over RESHAPE's target shape is refused like one over a stride.
 */
import type { FbVector, FlatBufferReader } from './flatbuffers.ts';

/** An options table's vectors and strings: [field, element bytes] (0: a string). */
type OptionVectors = readonly (readonly [number, number])[];

/**
 * The vectors and strings inside `builtin_options` tables (schema.fbs `BuiltinOptions`), by the
 * union's type; every other options table holds scalars only.
 */
export const OPTION_VECTORS: Readonly<Record<number, OptionVectors>> = {
  3: [[1, 4], [2, 4]], // ConcatEmbeddingsOptions: num_columns_per_channel, embedding_dim_per_channel
  17: [[0, 4]], // ReshapeOptions: new_shape
  30: [[0, 4]], // SqueezeOptions: squeeze_dims
  111: [[0, 0], [1, 0]], // VarHandleOptions: container, shared_name
  115: [[0, 4]], // BucketizeOptions: boundaries
};

/** The same for `builtin_options_2` (schema.fbs `BuiltinOptions2`: the StableHLO operators). */
export const OPTION2_VECTORS: Readonly<Record<number, OptionVectors>> = {
  2: [[0, 8]], // StablehloBroadcastInDimOptions: broadcast_dimensions
  3: [[0, 8], [1, 8], [2, 8]], // StablehloSliceOptions: start_indices, limit_indices, strides
  // StablehloConvolutionOptions: window_strides, padding, lhs_dilation, rhs_dilation, the input,
  // kernel and output spatial dimensions, precision_config
  4: [[0, 8], [1, 8], [2, 8], [3, 8], [7, 8], [10, 8], [13, 8], [16, 4]],
  5: [[0, 0], [2, 0], [4, 4], [5, 1]], // StablehloCustomCallOptions: call_target_name, backend_config, called_computations, custom_attributes
  6: [[0, 8]], // StablehloReduceOptions: dimensions
  7: [[1, 8], [2, 8], [3, 8]], // StablehloScatterOptions: update_window_dims, inserted_window_dims, scatter_dims_to_operand_dims
  9: [[0, 8]], // StablehloDynamicSliceOptions: slice_sizes
  10: [[0, 8], [1, 8], [2, 8]], // StablehloPadOptions: edge_padding_low, edge_padding_high, interior_padding
  12: [[0, 8], [1, 8], [2, 8], [3, 8], [4, 4]], // StablehloDotGeneralOptions: the batching and contracting dimensions, precision_config
  13: [[0, 8], [1, 8], [2, 8], [3, 8], [4, 8]], // StablehloReduceWindowOptions: window_dimensions, window_strides, base_dilations, window_dilations, padding
  16: [[0, 8], [1, 8], [2, 8], [4, 8]], // StablehloGatherOptions: offset_dims, collapsed_slice_dims, start_index_map, slice_sizes
  17: [[0, 8]], // StablehloTransposeOptions: permutation
  21: [[0, 0], [2, 1]], // StableHLOCompositeOptions: name, composite_attributes
  23: [[0, 4]], // StablehloCaseOptions: branch_subgraph_indices
};

/** Record every structural part of the model rooted at `model` (module doc); returns custom options stored past the FlatBuffer, flat (start, end). */
export function walkTfliteStructure(fb: FlatBufferReader, model: number): number[] {
  const outside: number[] = [];
  const tables = (t: number, field: number, what: string, each: (t: number, i: number) => void) => {
    const v = fb.fieldVector(t, field, 4, what);
    for (let i = 0; i < (v?.length ?? 0); i++) each(fb.tableAt(v as FbVector, i, `${what} ${i}`), i);
  };
  tables(model, 1, 'operator code', (c, i) => fb.fieldString(c, 1, `the custom code of operator code ${i}`));
  fb.fieldString(model, 3, 'the model\'s description');
  fb.fieldVector(model, 5, 4, 'the metadata buffers');
  tables(model, 6, 'metadata', (m, i) => fb.fieldString(m, 0, `the name of metadata ${i}`));
  tables(model, 7, 'signature', (s, i) => {
    for (const f of [0, 1]) tables(s, f, `a tensor map of signature ${i}`, (m) => fb.fieldString(m, 0, `a tensor map name of signature ${i}`));
    fb.fieldString(s, 2, `the key of signature ${i}`);
  });
  tables(model, 2, 'subgraph', (sub, g) => {
    fb.fieldVector(sub, 1, 4, `the inputs of subgraph ${g}`);
    fb.fieldVector(sub, 2, 4, `the outputs of subgraph ${g}`);
    fb.fieldString(sub, 4, `the name of subgraph ${g}`);
    tables(sub, 0, `tensor of subgraph ${g}`, (t, k) => walkTensor(fb, t, `tensor ${k} of subgraph ${g}`));
    tables(sub, 3, `operator of subgraph ${g}`, (o, k) => {
      const what = `operator ${k} of subgraph ${g}`;
      for (const f of [1, 2, 8]) fb.fieldVector(o, f, 4, `the tensors of ${what}`);
      for (const f of [5, 7]) fb.fieldVector(o, f, 1, `the custom options of ${what}`);
      // builtin_options (4, its type in 3) and builtin_options_2 (12, its type in 11), with their vectors.
      for (const [typeField, field, vectors] of [[3, 4, OPTION_VECTORS], [11, 12, OPTION2_VECTORS]] as const) {
        const options = fb.fieldTable(o, field, `the options of ${what}`);
        if (options < 0) continue;
        for (const [f, width] of vectors[fb.fieldU8(o, typeField, 0)] ?? []) {
          if (width === 0) fb.fieldString(options, f, `an option of ${what}`);
          else fb.fieldVector(options, f, width, `an option of ${what}`);
        }
      }
      const at = fb.fieldU64(o, 9, 0);
      const size = fb.fieldU64(o, 10, 0);
      if (at > 1 && size) {
        fb.check(at, size, `the custom options of ${what}`);
        outside.push(at, at + size);
      }
    });
  });
  return outside;
}

function walkTensor(fb: FlatBufferReader, t: number, what: string): void {
  fb.fieldVector(t, 0, 4, `the shape of ${what}`);
  fb.fieldString(t, 3, `the name of ${what}`);
  fb.fieldVector(t, 7, 4, `the shape signature of ${what}`);
  const q = fb.fieldTable(t, 4, `the quantization of ${what}`);
  if (q >= 0) {
    for (const f of [0, 1, 2]) fb.fieldVector(q, f, 4, `the quantization of ${what}`);
    fb.fieldVector(q, 3, 8, `the zero points of ${what}`);
    const details = fb.fieldTable(q, 5, `the quantization details of ${what}`);
    if (details >= 0) fb.fieldVector(details, 0, 1, `the quantization details of ${what}`);
  }
  const sparsity = fb.fieldTable(t, 6, `the sparsity of ${what}`);
  if (sparsity >= 0) {
    for (const f of [0, 1]) fb.fieldVector(sparsity, f, 4, `the sparsity of ${what}`);
    const dims = fb.fieldVector(sparsity, 2, 4, `the dimension metadata of ${what}`);
    for (let i = 0; i < (dims?.length ?? 0); i++) {
      const d = fb.tableAt(dims as FbVector, i, `the dimension metadata of ${what}`);
      // array_segments (3) and array_indices (5): Int32Vector (1), Uint16Vector (2) or Uint8Vector (3), each `values` (0).
      for (const [typeField, field] of [[2, 3], [4, 5]]) {
        const width = [0, 4, 2, 1][fb.fieldU8(d, typeField, 0)];
        const v = fb.fieldTable(d, field, `the sparse indices of ${what}`);
        if (v >= 0 && width) fb.fieldVector(v, 0, width, `the sparse indices of ${what}`);
      }
    }
  }
  const variants = fb.fieldVector(t, 9, 4, `the variant tensors of ${what}`);
  for (let i = 0; i < (variants?.length ?? 0); i++) fb.fieldVector(fb.tableAt(variants as FbVector, i, `a variant tensor of ${what}`), 0, 4, `a variant tensor of ${what}`);
}

/**
 * A tiny segmentation-like model as a .tflite and an .onnx file (built here, no download): a
 * one-channel 4x4 image in, a sigmoid mask out, the mask's channels chosen (a second version
 * whose output differs from the first's).
 */
import { buildTflite, f32Bytes, T } from './tflite-build.ts';
import { DT, f32le, graph, model, node, tensor, valueInfoFree } from './onnx-build.ts';

/** The image's side. */
export const SIDE = 4;

/** A one-channel 4x4 "segmentation" model: mask = sigmoid(w · (image + offset) + b), per pixel (ADD, CONV_2D 1x1, LOGISTIC). */
export function segTflite(w: number, b: number, channels = 1): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'image', shape: [1, SIDE, SIDE, 1], type: T.FLOAT32 },
      { name: 'offset', shape: [1], type: T.FLOAT32, buffer: 3 },
      { name: 'shifted', shape: [1, SIDE, SIDE, 1], type: T.FLOAT32 },
      { name: 'conv/kernel', shape: [channels, 1, 1, 1], type: T.FLOAT32, buffer: 1 },
      { name: 'conv/bias', shape: [channels], type: T.FLOAT32, buffer: 2 },
      { name: 'conv/out', shape: [1, SIDE, SIDE, channels], type: T.FLOAT32 },
      { name: 'mask', shape: [1, SIDE, SIDE, channels], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes(Array(channels).fill(w)), f32Bytes(Array(channels).fill(b)), f32Bytes([0])],
    operators: [
      // ADD (an offset both versions keep), CONV_2D (padding SAME, stride 1x1, no activation), LOGISTIC (the sigmoid)
      { op: 0, inputs: [0, 1], outputs: [2] },
      { op: 3, inputs: [2, 3, 4], outputs: [5], options: { type: 1, fields: [{ u8: 0 }, { i32: 1 }, { i32: 1 }, { u8: 0 }] } },
      { op: 14, inputs: [5], outputs: [6] },
    ],
    inputs: [0],
    outputs: [6],
  });
}

/** The same model as ONNX: Conv 1x1 -> Sigmoid, `[N, 1, 4, 4]` in and out. */
export function segOnnx(w: number, b: number, channels = 1): Uint8Array {
  return model(graph({
    initializers: [tensor({ name: 'offset', dims: [1], dataType: DT.FLOAT, raw: f32le([0]) }), tensor({ name: 'conv.w', dims: [channels, 1, 1, 1], dataType: DT.FLOAT, raw: f32le(Array(channels).fill(w)) }), tensor({ name: 'conv.b', dims: [channels], dataType: DT.FLOAT, raw: f32le(Array(channels).fill(b)) })],
    nodes: [
      node({ opType: 'Add', inputs: ['image', 'offset'], outputs: ['shifted'] }),
      node({ opType: 'Conv', inputs: ['shifted', 'conv.w', 'conv.b'], outputs: ['c'] }),
      node({ opType: 'Sigmoid', inputs: ['c'], outputs: ['mask'] }),
    ],
    inputs: [valueInfoFree('image', ['N', 1, SIDE, SIDE])],
    outputs: [valueInfoFree('mask', ['N', channels, SIDE, SIDE])],
  }));
}


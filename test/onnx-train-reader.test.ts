/**
 * The trainer reads an ONNX file's protobuf through the weight store's cursor
 * (src/io/onnx/wire.ts): a field number 0, or an attribute's float stored with another wire
 * type, is a `ModelFormatError` naming the file when a training program is made from it, as the
 * store refuses such bytes, never a raw RangeError or a model decoded from garbage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelFormatError } from '../src/core/errors.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { decodeOnnxModel } from '../src/engine/onnx/model.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { initBackend } from '../src/engine/backend.ts';
import { fBytes, fString, fVarint, graph, model, node, valueInfo, varint } from './helpers/onnx-build.ts';

await initBackend('wasm');

/** A `ModelFormatError` naming `source`, with `why` in its message. */
const refused = (source: string, why: RegExp) => (e: unknown) => {
  assert.ok(e instanceof ModelFormatError, `expected a ModelFormatError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
  assert.equal(e.code, 'ND_MODEL_FORMAT');
  assert.ok(e.message.startsWith(`${source}: `), e.message);
  assert.match(e.message, why);
  return true;
};

test('a field number 0 (in a node, or in a graph input the store skips) is refused by the trainer as by the store', () => {
  const relu = node({ opType: 'Relu', inputs: ['x'], outputs: ['y'] });
  const io = { inputs: [valueInfo('x', [1, 4])], outputs: [valueInfo('y', [1, 4])] };
  // Tag 0x00: field 0, varint; then its value.
  const zero = [0x00, 0x05];
  const inNode = model(graph({ nodes: [[...relu, ...zero]], ...io }));
  assert.throws(() => new OnnxProgram(inNode, { source: 'zero-node.onnx' }), refused('zero-node.onnx', /field tag 0 at byte \d+ is not a valid field number/));
  assert.throws(() => new OnnxWeightStore(inNode, { source: 'zero-node.onnx' }), refused('zero-node.onnx', /not a valid field number/));
  const inInput = model(graph({ nodes: [relu], inputs: [[...valueInfo('x', [1, 4]), ...zero]], outputs: io.outputs }));
  assert.throws(() => new OnnxProgram(inInput, { source: 'zero-input.onnx' }), refused('zero-input.onnx', /not a valid field number/));
  assert.throws(() => decodeOnnxModel(inInput, { source: 'zero-input.onnx' }), refused('zero-input.onnx', /not a valid field number/));
  // The same model without the stray field trains: the checks refuse only what is malformed.
  assert.equal(new OnnxProgram(model(graph({ nodes: [relu], ...io }))).model.graph.nodes.length, 1);
});

/** A LeakyRelu model written with its node last and `alpha` (an AttributeProto's bytes) last in the node: its last bytes are the file's. */
function leakyReluModel(alpha: number[]): Uint8Array {
  const leaky = [...fString(1, 'x'), ...fString(2, 'y'), ...fString(4, 'LeakyRelu'), ...fBytes(5, alpha)];
  const g = [...fString(2, 'g'), ...fBytes(11, valueInfo('x', [1, 4])), ...fBytes(12, valueInfo('y', [1, 4])), ...fBytes(1, leaky)];
  return Uint8Array.from([...fVarint(1, 8), ...fBytes(8, [...fString(1, ''), ...fVarint(2, 17)]), ...fBytes(7, g)]);
}

test('an attribute\'s float stored as a varint (the file\'s last bytes) is a ModelFormatError, not a RangeError', () => {
  // alpha (type FLOAT) with the tag of field 2 and wire type 0 (a varint) instead of 5 (fixed32),
  // last in the file, so a 4-byte read at it runs past the end.
  const bytes = leakyReluModel([...fString(1, 'alpha'), ...fVarint(20, 1), ...varint((2 << 3) | 0), 0x01]);
  assert.equal(bytes[bytes.length - 1], 0x01, 'the float field is the last byte of the file');
  assert.throws(() => new OnnxProgram(bytes, { source: 'alpha.onnx' }), refused('alpha.onnx', /field 2 \(f\) has varint, expected fixed32/));
  // With the float stored as ONNX stores it, the same graph is read, alpha and all.
  const fine = leakyReluModel([...fString(1, 'alpha'), ...fVarint(20, 1), ...varint((2 << 3) | 5), 0, 0, 0x80, 0x3e]);
  assert.equal(new OnnxProgram(fine).model.graph.nodes[0].attributes.get('alpha')?.f, 0.25);
});

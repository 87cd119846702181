/** A model's inputs and outputs (moved to the library, src/front/ports.ts); re-exported for the commands that import them here. */
export { interfaceWarning, modelPortsAt, ONNX_REBUILD, portChange, portsDiffer, portsOf, portText, TFLITE_REBUILD, type Port } from '../../src/front/ports.ts';

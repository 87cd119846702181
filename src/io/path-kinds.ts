/**
 * Which kind of model a path names, by its extension, as the commands and library calls take
 * paths. Pure (no imports), so the CLI decides which reader to load before loading it.
 */

/** True for a path the CLI treats as an ONNX model file (by its extension). */
export function isOnnxPath(p: string): boolean {
  return /\.onnx$/i.test(p);
}

/** True for a path the CLI treats as a LiteRT model file (by its extension). */
export function isTflitePath(p: string): boolean {
  return /\.tflite$/i.test(p);
}

/** True for a path taken as a safetensors file (by its extension). */
export function isSafetensorsPath(p: string): boolean {
  return /\.safetensors$/i.test(p);
}

/** True for a path taken as a GGUF model (by its extension): inspected, fingerprinted, diffed and patched in place by its own path (src/io/gguf/). */
export function isGgufPath(p: string): boolean {
  return /\.gguf$/i.test(p);
}

/**
 * True for a single-file model (`.onnx`, `.tflite` or `.safetensors`): its model id and state are
 * recorded beside the file, and it is patched as a file, crash-safely ({@link weightsFileFormatOf}).
 */
export function isModelFilePath(p: string): boolean {
  return isOnnxPath(p) || isTflitePath(p) || isSafetensorsPath(p);
}

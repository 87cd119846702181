/**
 * A stateful model's sequence as one waveform and back (src/engine/program/training-model.ts
 * augments sequences whole): the frames a streaming runtime feeds are cut from continuous audio,
 * often each behind the previous frame's last samples (Silero VAD as vad-web feeds it: 64 samples
 * of context, then 512 new), so an augmentation applied frame by frame would break the audio at
 * every frame edge, and the state would carry that break. Here the overlap is found from the
 * frames themselves, the waveform rebuilt, and after it is augmented the frames are cut again
 * with the same overlap: every frame's context is the augmented end of the frame before it.
 */

/**
 * How many values each frame repeats from the end of the frame before it: the largest `o` below
 * `width` for which every consecutive pair of the frames `start .. end − 1` agrees (0 when none
 * does, or for a sequence of one frame). `values` holds the frames row after row. Audio that
 * repeats exactly from frame to frame (a pure tone whose period divides the hop) can agree at a
 * larger overlap too; recorded and synthesized speech, with its noise floor, does not.
 */
export function frameOverlap(values: Float32Array, width: number, start: number, end: number): number {
  if (end - start < 2) return 0;
  for (let o = width - 1; o > 0; o--) {
    let holds = true;
    for (let f = start; f + 1 < end && holds; f++) {
      const a = f * width + width - o;
      const b = (f + 1) * width;
      for (let i = 0; i < o; i++) {
        if (values[a + i] !== values[b + i]) {
          holds = false;
          break;
        }
      }
    }
    if (holds) return o;
  }
  return 0;
}

/**
 * The waveform of frames `start .. end − 1` overlapping by `overlap`: each frame's new values
 * (the first frame's leading `overlap` values are context from before the sequence, not part of it).
 */
export function sequenceWave(values: Float32Array, width: number, start: number, end: number, overlap: number): Float32Array {
  const hop = width - overlap;
  const wave = new Float32Array((end - start) * hop);
  for (let f = start; f < end; f++) wave.set(values.subarray(f * width + overlap, (f + 1) * width), (f - start) * hop);
  return wave;
}

/**
 * Frames cut from `wave` as {@link sequenceWave} took them, written to `out` from row `at`:
 * frame t is the `overlap` values before its new ones, then the new ones; what lies before the
 * waveform (the first frame's context) is taken from `head`, the sequence's original first frame.
 */
export function cutFrames(wave: Float32Array, width: number, overlap: number, head: Float32Array, out: Float32Array, at: number): void {
  const hop = width - overlap;
  const frames = wave.length / hop;
  for (let t = 0; t < frames; t++) {
    const row = (at + t) * width;
    for (let i = 0; i < width; i++) {
      const p = t * hop + i - overlap;
      out[row + i] = p >= 0 ? wave[p] : head[i + t * hop];
    }
  }
}

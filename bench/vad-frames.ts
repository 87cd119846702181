/**
 * Silero VAD frames as `@ricky0123/vad-web` feeds them, written as a data folder for
 * `ndiff diff --eval` and `ndiff train` on the `.onnx` files (docs/onnx-training.md): each frame
 * the previous frame's last 64 samples then 512 new ones (16 kHz), one sequence per stream.
 *
 *   input.npy     [frames, 576] float32
 *   sr.npy        0-d, 16000 (fed to every frame)
 *   sequence.npy  [frames] int32, the stream of each frame
 *
 * The audio is `bench:onnx`'s evaluation audio: `synthetic` (espeak-ng sentences with silence and
 * noise between), `real` (the English recordings of the Debian packages ktuberling-data and
 * klettres-data; GPL-2+, installed with apt-get as root when missing, never committed) or
 * `heldback` (both, the audio bench:vad-learned holds back from training and validation; its
 * training and validation folders: `npm run bench:vad-learned -- --write-frames DIR`).
 *
 *   node --import tsx bench/vad-frames.ts --out /tmp/vad-frames                 # synthetic audio
 *   node --import tsx bench/vad-frames.ts --out /tmp/vad-real --set real
 *   node --import tsx bench/vad-frames.ts --out /tmp/vad-quick --quick          # a few seconds of audio
 *   node --import tsx bench/vad-frames.ts --out /tmp/vad-heldback --set heldback # both sets, one sequence each
 *   ndiff diff --model-id silero-vad --base silero_vad_v5.onnx --target silero_vad_v6.onnx \
 *     --budget 10% --eval /tmp/vad-frames --state state:stateN --out v5-v6.ndiff
 */
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { saveNpy } from '../src/io/npy/files.ts';
import { ensurePackages, real, synthetic } from './onnx.ts';

const RATE = 16000;
const FRAME = 512;
const CONTEXT = 64;

/** Frames as vad-web feeds them: 64 samples of the previous frame, then 512 new; one sequence per stream. */
export function frames(streams: Float32Array[]): { input: Float32Array; sequence: Int32Array } {
  const counts = streams.map((s) => Math.floor(s.length / FRAME));
  const total = counts.reduce((a, b) => a + b, 0);
  const input = new Float32Array(total * (CONTEXT + FRAME));
  const sequence = new Int32Array(total);
  let at = 0;
  streams.forEach((pcm, k) => {
    let context = new Float32Array(CONTEXT);
    for (let f = 0; f < counts[k]; f++) {
      const row = input.subarray(at * (CONTEXT + FRAME), (at + 1) * (CONTEXT + FRAME));
      row.set(context);
      row.set(pcm.subarray(f * FRAME, (f + 1) * FRAME), CONTEXT);
      context = row.slice(-CONTEXT);
      sequence[at++] = k;
    }
  });
  return { input, sequence };
}

/** Write `streams` as a frames folder (module doc) at `dir`; the number of frames. */
export async function writeFramesFolder(dir: string, streams: Float32Array[]): Promise<number> {
  const f = frames(streams);
  await mkdir(dir, { recursive: true });
  saveNpy(path.join(dir, 'input.npy'), f.input, [f.sequence.length, CONTEXT + FRAME]);
  saveNpy(path.join(dir, 'sr.npy'), Int32Array.of(RATE), []);
  saveNpy(path.join(dir, 'sequence.npy'), f.sequence, [f.sequence.length]);
  return f.sequence.length;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const SETS = ['synthetic', 'real', 'heldback'];
  const out = arg('--out');
  const set = arg('--set') ?? 'synthetic';
  if (!out || !SETS.includes(set)) {
    console.error(`usage: node --import tsx bench/vad-frames.ts --out DIR [--set ${SETS.join('|')}] [--quick]`);
    process.exit(2);
  }
  const quick = process.argv.includes('--quick');
  const log = (l: string) => console.error(l);
  ensurePackages([...(set !== 'real' ? [{ pkg: 'espeak-ng', bin: 'espeak-ng' }] : []), { pkg: 'sox', bin: 'sox' }, ...(set !== 'synthetic' ? [{ pkg: 'ktuberling-data' }, { pkg: 'klettres-data' }] : [])], log);
  const parts = set === 'heldback' ? [synthetic(quick), real(quick)] : [set === 'real' ? real(quick) : synthetic(quick)];
  const streams = parts.map((p) => p.pcm);
  const what = `${set} audio, ${parts.reduce((a, p) => a + p.clips, 0)} clips, ${parts.length === 1 ? 'one sequence' : 'synthetic then real, one sequence each'}`;
  const n = await writeFramesFolder(out, streams);
  console.log(`wrote ${out}: ${n} frames (${(streams.reduce((a, s) => a + s.length, 0) / RATE).toFixed(1)} s of ${what}): input.npy, sr.npy, sequence.npy`);
}

/**
 * What CI checks once, in its in-place suite (on Node 24), and its suite runs on the other Node
 * releases (`test/fresh-clone/run.sh --node`, which sets NDIFF_SKIP_BENCHMARKS=1) do not check
 * again. Those runs check what a Node release, a checkout's path or TMPDIR can change (the
 * runtime, its flags, memory, files and processes), which the rest of the suite exercises. Not
 * repeated:
 *
 * - a benchmark's or an example's quick mode (minutes of training each): {@link benchmarkSkip};
 * - pages run in headless Chromium, whose runtime is the browser's, the same on every Node
 *   release (test/helpers/chromium.ts);
 * - checks of what the repository builds from its sources with other tools: the API reference
 *   (TypeDoc), the trainer's kernels (clang, also from a copy elsewhere in the in-place run), and
 *   TypeScript's checks of the repository (test/typecheck.test.ts), of the published types and of
 *   the README's scripts: {@link onceSkip};
 * - long checks that run in this process alone, never in the checkout, TMPDIR or a child process,
 *   and prove what a Node release cannot change, where other files exercise the same code on every
 *   release: the power-loss harness's sampled crash states (under /dev/shm: the order of an
 *   apply's file operations; the kill-based crash tests run everywhere), the self-tuning
 *   training on MNIST, the library's training cases of test/train.test.ts and
 *   test/train-teacher.test.ts and the in-process ONNX cases of test/program-distill.test.ts
 *   (their CLI cases and the other trainer files run everywhere): {@link onceSkip};
 * - the files that only train in this process, whose models and payloads go through TMPDIR by the
 *   readers and writers the other files test on every release (the trainer's fronts, default
 *   methods, structural, composite and grid training, TF.js graph and LiteRT training, map
 *   outputs, compiled teacher passes; each says so at its top): the trainer still runs on every
 *   release in the CLI training cases of train.test.ts and train-teacher.test.ts and in the ONNX,
 *   lowbit, budget-auto, thread and kernel files: {@link onceSkip}.
 *
 * That keeps CI's three suite runs within its time on a busy machine.
 */

/** True in a suite run that repeats CI's in-place run on another Node release. */
export const repeatRun = process.env.NDIFF_SKIP_BENCHMARKS === '1';

/** The skip reason of a test CI checks once (see the module doc), or false. */
export function onceSkip(what: string): string | false {
  return repeatRun ? `NDIFF_SKIP_BENCHMARKS=1: ${what} checked once per CI, in the in-place suite` : false;
}

/** The skip reason of a benchmark's or an example's quick run in a repeated suite run, or false. */
export const benchmarkSkip: string | false = onceSkip('benchmark and example runs are');

/**
 * Tests that run a benchmark's or an example's quick mode (minutes of training each) are skipped
 * when NDIFF_SKIP_BENCHMARKS=1. CI sets it for its suite runs on the other Node releases
 * (`test/fresh-clone/run.sh --node`): those runs check what a Node release can change (its
 * runtime, flags and memory), which the rest of the suite exercises; the benchmark and example
 * scripts run once per CI, in the suite on the machine's Node. That keeps CI's three suite runs
 * within its time on a busy machine.
 */
export const benchmarkSkip: string | false = process.env.NDIFF_SKIP_BENCHMARKS === '1'
  ? 'NDIFF_SKIP_BENCHMARKS=1: benchmark and example runs are checked once per CI, in the suite on the machine\'s Node'
  : false;

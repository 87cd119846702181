/**
 * The full crash-injection run (`npm run crash-test`):
 *
 *   node --import tsx test/crash/run.ts [--json FILE] [--big]
 *   node --import tsx test/crash/run.ts --power-loss [--json FILE]   (test/power-loss/run.ts instead)
 *
 * Every mutating file-system operation of five apply scenarios is a kill point (each scenario's
 * operations are listed from a clean run first), plus double kills: a first kill every third
 * point of the CLI scenario, then a second kill at 7 points of the recovery-and-apply that
 * follows; then every kill point of `ndiff update`'s full install and of `ndiff release add`
 * (test/crash/delivery.ts), and of structural applies (format v7) rebuilding ONNX and LiteRT files
 * and ONNX models whose data files are added, dropped or renamed, plain and with the interrupted
 * write torn (test/crash/rebuild.ts); then `ndiff update` of a .tflite, an .onnx and a TF.js model
 * killed while its health check runs, and the next update's behaviour (test/crash/health-check.ts). Exit 0 only if after every kill the folder held exactly the old or the new version
 * and the re-run finished cleanly.
 */
import { rm, writeFile } from 'node:fs/promises';
import { buildFixture, countOperations, killAt, merge, spread, type CrashSummary } from './harness.ts';
import { runPowerLoss } from '../power-loss/run.ts';
import { crashOnnx } from './onnx.ts';
import { crashRebuild } from './rebuild.ts';
import { buildDeliveryFixture, crashFullInstall, crashReleaseAdd } from './delivery.ts';
import { crashDuringHealthCheck } from './health-check.ts';

if (process.argv.includes('--power-loss')) {
  process.exitCode = await runPowerLoss(process.argv);
} else {
  await runKills();
}

async function runKills(): Promise<void> {
  const jsonIndex = process.argv.indexOf('--json');
  const jsonFile = jsonIndex >= 0 ? process.argv[jsonIndex + 1] : undefined;
  const t0 = performance.now();
  const fx = await buildFixture();
  const parts: { name: string; ops: number; summary: CrashSummary }[] = [];
  try {
    for (const s of fx.scenarios) {
      const ops = await countOperations(fx, s);
      const summary = await killAt(fx, s, ops, spread(ops.length));
      parts.push({ name: s.name, ops: ops.length, summary });
      console.log(`${s.name}: ${ops.length} operations, ${summary.kills} kills -> old ${summary.sawOld}, new ${summary.sawNew}, neither ${summary.neither.length}; re-run failures ${summary.rerunFailures.length}`);
    }
    const cli = fx.scenarios[0];
    const ops = await countOperations(fx, cli);
    const firsts = spread(ops.length).filter((p) => p % 3 === 1);
    const double = await killAt(fx, cli, ops, firsts, { second: () => [1, 2, 3, 4, 6, 10, 18] });
    parts.push({ name: `${cli.name}: double kills (second kill during the recovery)`, ops: ops.length, summary: double });
    console.log(`double kills: ${firsts.length} first kill points x 7 second kill points, ${double.kills} kills -> old ${double.sawOld}, new ${double.sawNew}, neither ${double.neither.length}; re-run failures ${double.rerunFailures.length}`);

    // ONNX model files (test/crash/onnx.ts): every kill point of `ndiff apply` on a .onnx file
    // with external data; with --big, a few points of one whose data lies past 4 GiB.
    const onnx = await crashOnnx();
    console.log(`ONNX file with external data: ${onnx.operations} operations, ${onnx.kills} kills -> old ${onnx.sawOld}, new ${onnx.sawNew}; bad ${onnx.bad.length}`);
    const onnxBig = process.argv.includes('--big') ? await crashOnnx({ big: true, points: (n) => [2, Math.floor(n / 2), n - 1] }) : undefined;
    if (onnxBig) console.log(`ONNX file, data past 4 GiB (sparse): ${onnxBig.operations} operations, ${onnxBig.kills} kills -> old ${onnxBig.sawOld}, new ${onnxBig.sawNew}; bad ${onnxBig.bad.length}`);
    // The delivery path (test/crash/delivery.ts): every kill point of ndiff update's full install
    // and of ndiff release add.
    const dfx = await buildDeliveryFixture();
    const install = await crashFullInstall(dfx);
    console.log(`ndiff update, full install: ${install.operations} operations, ${install.kills} kills -> old ${install.sawOld}, new ${install.sawNew}, no folder between the two renames ${install.sawGap}; bad ${install.bad.length}`);
    const add = await crashReleaseAdd(dfx);
    console.log(`ndiff release add: ${add.operations} operations, ${add.kills} kills -> serves release 1 ${add.sawOld}, version 2 ${add.sawNew}; bad ${add.bad.length}`);
    await rm(dfx.root, { recursive: true, force: true });
    // Structural applies (test/crash/rebuild.ts): every kill point of `ndiff apply` rebuilding
    // three random pairs of each single-file format, and two of an ONNX model with external data
    // whose new version adds, drops or renames a data file, then every point again with torn writes.
    const rebuildBad: string[] = [];
    for (const format of ['onnx', 'tflite', 'onnx-data-added', 'onnx-data-dropped', 'onnx-data-renamed'] as const) {
      for (const torn of [false, true]) {
        for (const seed of format.startsWith('onnx-data-') ? [3, 11] : [3, 11, 29]) {
          const r = await crashRebuild(format, seed, { torn });
          rebuildBad.push(...r.bad);
          console.log(`structural apply, ${format} pair ${seed}${torn ? ', torn writes' : ''}: ${r.operations} operations, ${r.kills} kills -> old ${r.sawOld}, new ${r.sawNew}; bad ${r.bad.length}`);
        }
      }
    }
    // `ndiff update` killed during its health check (test/crash/health-check.ts): every format, ordinary and structural releases.
    const health = await crashDuringHealthCheck();
    console.log(`ndiff update killed during its health check: ${health.cases.length} cases (${health.cases.join(', ')}), ${health.kills} kills -> the next update without a health check refused ${health.refused}, confirmed with a passing one ${health.confirmed}, rolled back with a failing one ${health.rolledBack}; bad ${health.bad.length}`);
    const onnxBad = [...onnx.bad, ...(onnxBig?.bad ?? []), ...install.bad, ...add.bad, ...rebuildBad, ...health.bad];
    for (const b of onnxBad.slice(0, 20)) console.log(`  FAIL ${b}`);

    const all = merge(parts.map((p) => p.summary));
    console.log(`\n${all.kills} kills (SIGKILL) in ${((performance.now() - t0) / 1000).toFixed(0)} s: the loader saw the old version ${all.sawOld} times, the new one ${all.sawNew} times, neither ${all.neither.length} times; ${all.rerunFailures.length} re-runs did not finish cleanly`);
    for (const bad of [...all.neither, ...all.rerunFailures].slice(0, 20)) console.log(`  FAIL ${JSON.stringify(bad)}`);
    const ok = all.neither.length === 0 && all.rerunFailures.length === 0 && onnxBad.length === 0;
    console.log(ok ? 'PASS' : 'FAIL');
    if (jsonFile) await writeFile(jsonFile, JSON.stringify({ kills: all.kills, sawOld: all.sawOld, sawNew: all.sawNew, neither: all.neither, rerunFailures: all.rerunFailures, scenarios: parts.map((p) => ({ name: p.name, ops: p.ops, kills: p.summary.kills, sawOld: p.summary.sawOld, sawNew: p.summary.sawNew })), records: all.records }, null, 2));
    process.exitCode = ok ? 0 : 1;
  } finally {
    await rm(fx.root, { recursive: true, force: true });
  }
}

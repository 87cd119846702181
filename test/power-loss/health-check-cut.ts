/**
 * A power cut while an update's health check runs (issue 61, finding 1), for every format the
 * power-loss harness rebuilds or patches (a TF.js folder's value update and structural rebuild,
 * an ONNX file's and a LiteRT file's rebuild): the scenario's apply is recorded with a health
 * check that passes, and every folder a cut could leave at the point where the check ran (every
 * operation before it issued, the confirmation not begun) is handed to the next command, as
 * `ndiff update` meets it (the updater's file targets, `settlePending`):
 *
 * 1. without a health check: refused (PendingUpdateError), the folder byte for byte as the cut
 *    left it;
 * 2. with a health check that passes: confirmed, the new version, nothing left beside it;
 * 3. with one that fails (a fresh copy of the state): rolled back, the old version, nothing left.
 */
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import { PendingUpdateError } from '../../src/core/errors.ts';
import { onnxFileTarget, tfjsFolderTarget, tfjsModelFileTarget, tfliteFileTarget } from '../../src/io/updater/targets.ts';
import { modelFilesOf } from '../../src/io/durable/control-files.ts';
import type { ModelTarget } from '../../src/updater/target.ts';
import { crashStates, describeOp, imageKey, materialize, snapshotFolder, type FsOp } from './fs-model.ts';
import { leftovers, loaderSees, modelPath, recordApply, type PowerLossScenario } from './harness.ts';

export interface HealthCheckCutSummary {
  name: string;
  /** Crash states checked (distinct folders at the cut). */
  states: number;
  /** States each next command was run on: refused without a health check, confirmed, rolled back. */
  refused: number;
  confirmed: number;
  rolledBack: number;
  problems: string[];
}

/** The index of the first operation of the confirmation in the recorded apply (the health check ran just before it). */
function confirmationStart(s: PowerLossScenario, log: readonly FsOp[]): number {
  const kept = s.weightsFile ? undefined : modelFilesOf(s.modelFile).previous;
  const i = log.findIndex((o) => (s.weightsFile
    ? o.op === 'rename' && o.from === `${s.weightsFile.name}.ndiff-update.json` && o.to === `${s.weightsFile.name}.ndiff-update.done`
    : o.op === 'unlink' && o.name === kept));
  if (i < 0) throw new Error(`${s.name}: no confirmation in the recorded apply:\n${log.map(describeOp).join('\n')}`);
  return i;
}

/** The folder's files but the apply lock's (taking over the lock the cut left behind deletes it; nothing else may change). */
async function folderKey(dir: string): Promise<string> {
  const image = await snapshotFolder(dir);
  return imageKey({ ...image, names: new Map([...image.names].filter(([name]) => !name.startsWith('.ndiff-apply.lock'))) });
}

/** The updater's target for the scenario's model at `dir` (as `ndiff update` opens it). */
function targetOf(dir: string, s: PowerLossScenario): ModelTarget {
  const model = modelPath(dir, s);
  if (s.weightsFile) return s.weightsFile.format === 'onnx' ? onnxFileTarget(model) : tfliteFileTarget(model);
  return s.modelFile ? tfjsModelFileTarget(model) : tfjsFolderTarget(model);
}

/** Check the folders a cut during the health check of `s` (recorded with a passing one) leaves (module doc). */
export async function checkCutDuringHealthCheck(scenario: PowerLossScenario, root: string): Promise<HealthCheckCutSummary> {
  const s: PowerLossScenario = { ...scenario, name: `${scenario.name}, cut during its health check`, healthFails: false, healthPasses: true };
  const log = await recordApply(s, root);
  const cut = confirmationStart(s, log);
  const summary: HealthCheckCutSummary = { name: s.name, states: 0, refused: 0, confirmed: 0, rolledBack: 0, problems: [] };
  const base = path.join(root, 'health-cut');
  for (const [i, state] of [...crashStates(s.initial, log, { points: [cut] })].entries()) {
    summary.states++;
    const problem = (what: string) => summary.problems.push(`${s.name}, state ${state.variant}: ${what}`);
    const dir = path.join(base, `${i}`);
    await rm(dir, { recursive: true, force: true });
    await materialize(state.image, dir);
    const seen = await loaderSees(dir, s);
    if (seen !== 'new') problem(`the cut left ${seen}, expected the switched-in new version`);
    // 1. no health check: refused, nothing changed
    const before = await folderKey(dir);
    try {
      await targetOf(dir, s).settlePending?.(undefined);
      problem('an update without a health check did not refuse the unconfirmed switch');
    } catch (e) {
      if (e instanceof PendingUpdateError) summary.refused++;
      else problem(`refused with ${(e as Error).constructor.name}: ${(e as Error).message.slice(0, 160)}`);
    }
    if ((await folderKey(dir)) !== before) problem('the refusal changed the folder');
    // 2. a health check that passes: confirmed
    const confirmed = await targetOf(dir, s).settlePending?.(() => true);
    if (confirmed?.outcome === 'confirmed') summary.confirmed++;
    else problem(`a passing health check ended ${JSON.stringify(confirmed)}`);
    if ((await loaderSees(dir, s)) !== 'new') problem('confirmed, but the loader does not see the new version');
    const leftConfirmed = await leftovers(dir, s);
    if (leftConfirmed.length) problem(`left after the confirmation: ${leftConfirmed.join(', ')}`);
    // 3. a health check that fails, on the state as the cut left it: rolled back
    await rm(dir, { recursive: true, force: true });
    await materialize(state.image, dir);
    const rolled = await targetOf(dir, s).settlePending?.(() => false);
    if (rolled?.outcome === 'rolled-back' && rolled.healthCheck === 'failed') summary.rolledBack++;
    else problem(`a failing health check ended ${JSON.stringify(rolled)}`);
    if ((await loaderSees(dir, s)) !== 'old') problem('rolled back, but the loader does not see the old version');
    const leftRolled = await leftovers(dir, s);
    if (leftRolled.length) problem(`left after the rollback: ${leftRolled.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  }
  return summary;
}

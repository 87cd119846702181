/**
 * The recipes in examples/ci/, parsed and run here as far as this machine allows: the GitHub
 * Actions workflow's jobs in order (plan, the matrix from its JSON output, publish), each in a
 * workspace of its own with artifacts copied between them as the runner would; the Kubernetes
 * Indexed Job's command once per completion index. `ndiff` is this checkout's CLI; the steps that
 * install the package from npm are the only ones not run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { addVersion } from '../src/release/add.ts';
import { readRecord } from '../src/release/record.ts';
import { perturbed } from './helpers/perturb.ts';
import { writeStore } from './helpers/dirs.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';

const root = join(import.meta.dirname, '..');

/** A release of versions 1..3 and the folder of version 4 (not added), with an `ndiff` on PATH. */
async function setUp(): Promise<{ chain: ReleaseChain; v4: string; bin: string }> {
  const chain = await releaseChain(3);
  const v4 = join(chain.work, 'v4');
  await writeStore(v4, perturbed(await openTfjsModelDir(chain.versions[2]), 0.05, 4));
  const bin = join(chain.work, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'ndiff'), `#!/bin/sh\nexec "${process.execPath}" "${join(root, 'cli', 'ndiff.mjs')}" "$@"\n`);
  await chmod(join(bin, 'ndiff'), 0o755);
  return { chain, v4, bin };
}

function sh(script: string, cwd: string, env: Record<string, string>): string {
  const r = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd, env: { ...process.env, ...env }, encoding: 'utf8' });
  assert.equal(r.status, 0, `${script}\n${r.stderr}`);
  return r.stdout;
}

interface Step { name?: string; id?: string; uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string> }
interface WorkflowJob { needs?: string; outputs?: Record<string, string>; strategy?: { matrix: Record<string, string> }; steps: Step[] }

test('examples/ci/github-actions.yml: plan, a matrix job per payload, publish, each in its own workspace', { timeout: 300_000 }, async () => {
  const { chain, v4, bin } = await setUp();
  const wf = parse(await readFile(join(root, 'examples', 'ci', 'github-actions.yml'), 'utf8')) as { env: Record<string, string>; jobs: Record<string, WorkflowJob> };
  assert.deepEqual(Object.keys(wf.jobs), ['plan', 'payload', 'publish']);
  assert.equal(wf.jobs.payload.needs, 'plan');
  assert.equal(wf.jobs.publish.needs, 'payload');
  assert.equal(wf.jobs.payload.strategy?.matrix.id, '${{ fromJSON(needs.plan.outputs.jobs) }}');
  const artifacts = join(chain.work, 'artifacts');
  const outputs: Record<string, Record<string, string>> = {};
  const runJob = async (name: string, job: WorkflowJob, matrix: Record<string, string> = {}) => {
    const ws = join(chain.work, 'ws', `${name}${matrix.id ? `-${matrix.id}` : ''}`);
    const temp = join(ws, '..', `${name}${matrix.id ?? ''}-tmp`);
    await mkdir(ws, { recursive: true });
    await mkdir(temp, { recursive: true });
    const expand = (s: string) => s
      .replace(/\$\{\{ inputs\.model \}\}/g, 'models/v4')
      .replace(/\$\{\{ matrix\.(\w+) \}\}/g, (_m, k: string) => matrix[k])
      .replace(/\$\{\{ secrets\.RELEASE_PRIVATE_KEY \}\}/g, chain.keys.privateKeyPem);
    for (const step of job.steps) {
      const uses = step.uses?.split('@')[0];
      const w = (step.with ?? {}) as Record<string, string>;
      if (uses === 'actions/checkout') {
        await cp(chain.releaseDir, join(ws, 'site', 'kws'), { recursive: true });
        await cp(v4, join(ws, 'models', 'v4'), { recursive: true });
      } else if (uses === 'actions/upload-artifact') {
        await cp(join(ws, w.path), join(artifacts, expand(w.name)), { recursive: true });
      } else if (uses === 'actions/download-artifact') {
        const names = w.pattern ? (await readdir(artifacts)).filter((n) => n.startsWith(w.pattern.replace(/\*$/, ''))) : [expand(w.name)];
        assert.ok(names.length > 0, `no artifact ${w.pattern ?? w.name}`);
        for (const n of names) await cp(join(artifacts, n), join(ws, w.path), { recursive: true });
      } else if (uses === 'actions/setup-node') {
        // This machine's Node runs the steps.
      } else if (step.run && step.name !== 'Install neural-diff') {
        const out = join(temp, 'github-output');
        await writeFile(out, '');
        const env = Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, expand(v)]));
        sh(expand(step.run), ws, { ...wf.env, ...env, GITHUB_OUTPUT: out, RUNNER_TEMP: temp, PATH: `${bin}:${process.env.PATH}` });
        if (step.id) outputs[step.id] = Object.fromEntries((await readFile(out, 'utf8')).split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      }
    }
  };
  await runJob('plan', wf.jobs.plan);
  assert.equal(wf.jobs.plan.outputs?.jobs, '${{ steps.plan.outputs.jobs }}');
  const ids = JSON.parse(outputs.plan.jobs) as string[];
  assert.deepEqual(ids, ['v4-from-v3', 'v4-from-v2', 'v4-from-v1']);
  for (const id of ids) await runJob('payload', wf.jobs.payload, { id });
  await runJob('publish', wf.jobs.publish);
  const published = join(artifacts, 'published');
  const manifest = validateManifest(JSON.parse(await readFile(join(published, 'manifest.json'), 'utf8')).signed);
  assert.equal(manifest.latest, 4);
  assert.deepEqual(manifest.payloads.filter((p) => p.toVersion === 4).map((p) => p.fromVersion).sort(), [1, 2, 3]);
  assert.equal((await readRecord(published))?.pending, null);
});

test('examples/ci/k8s-indexed-job.yaml: each completion index runs its job of the plan, then publish signs them all', { timeout: 300_000 }, async () => {
  const { chain, v4, bin } = await setUp();
  const doc = parse(await readFile(join(root, 'examples', 'ci', 'k8s-indexed-job.yaml'), 'utf8')) as {
    kind: string;
    spec: { completionMode: string; completions: number; template: { spec: { containers: { command: string[]; args: string[]; env: { name: string; value: string }[]; volumeMounts: { name: string; mountPath: string }[] }[] } } };
  };
  assert.equal(doc.kind, 'Job');
  assert.equal(doc.spec.completionMode, 'Indexed');
  const [container] = doc.spec.template.spec.containers;
  // The shared volume: a local folder stands for the mount, the release folder inside it.
  const mount = join(chain.work, 'volume');
  const release = container.env.find((e) => e.name === 'RELEASE')?.value ?? '';
  assert.ok(release.startsWith(`${container.volumeMounts[0].mountPath}/`), release);
  const local = join(mount, release.slice(container.volumeMounts[0].mountPath.length + 1));
  await cp(chain.releaseDir, local, { recursive: true });
  const planned = await addVersion(local, v4, { planOnly: true });
  assert.equal(doc.spec.completions, planned.jobs.length, 'completions is the plan\'s number of jobs');
  assert.deepEqual(container.command, ['sh', '-c']);
  const script = container.args[0].replace(/^npx --yes --package neural-diff ndiff /, 'ndiff ');
  assert.notEqual(script, container.args[0], 'the pod runs ndiff from the neural-diff package');
  for (let i = 0; i < doc.spec.completions; i++) sh(script, chain.work, { RELEASE: local, JOB_COMPLETION_INDEX: String(i), PATH: `${bin}:${process.env.PATH}` });
  assert.equal((await readdir(join(local, 'jobs'))).filter((f) => f.endsWith('.ndiff')).length, 3);
  const key = join(chain.work, 'release.private.pem');
  await writeFile(key, chain.keys.privateKeyPem);
  sh(`ndiff release publish --release "${local}" --key "${key}"`, chain.work, { PATH: `${bin}:${process.env.PATH}` });
  const manifest = validateManifest(JSON.parse(await readFile(join(local, 'manifest.json'), 'utf8')).signed);
  assert.deepEqual(manifest.payloads.filter((p) => p.toVersion === 4).map((p) => p.fromVersion).sort(), [1, 2, 3]);
});

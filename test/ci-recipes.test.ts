/**
 * The recipes in examples/ci/, checked and run here as far as this machine allows.
 *
 * The GitHub Actions workflow: actionlint's checks that matter (every expression names something
 * declared; no expression pasted into a `run:` script, where it would be script injection), a
 * concurrency group, installs of a packed tarball only (never a package name from the registry),
 * each script through `bash -n` and, when installed, shellcheck; then three dispatches from a first
 * version on, each job in a workspace of its own (test/helpers/workflow-runner.ts): checkout is a
 * git clone of a local repository (sparse where the recipe asks), artifacts are copied between
 * jobs, the matrix job is skipped on a first version, and publish pushes the release folder back.
 *
 * The Kubernetes Indexed Job: a template whose job count and version come from the plan, rendered
 * by the commands its comments give, each pod's command run once per completion index (a fake
 * `kubectl` runs them), from a first version on.
 *
 * `npm` is a stand-in that checks what it is asked (`install -g` of a `.tgz` file that exists,
 * `pack` writes one) and puts this checkout's `ndiff` on PATH: installing from the registry is the
 * one thing not run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { validateManifest } from '../src/updater/manifest.ts';
import { readRecord } from '../src/release/record.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { checkExpressionNames, needsOf, runScript, runWorkflow, type Workflow } from './helpers/workflow-runner.ts';

const root = join(import.meta.dirname, '..');
const recipes = join(root, 'examples', 'ci');
const version = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }).version;

/** Tools for the recipes' scripts: `ndiff` (this checkout's CLI, put on PATH by `npm install -g`), a checking `npm`. */
async function tools(work: string): Promise<{ bin: string; shim: string }> {
  const bin = join(work, 'tools');
  await mkdir(bin, { recursive: true });
  const shim = join(work, 'ndiff-shim');
  await writeFile(shim, `#!/bin/sh\nexec "${process.execPath}" "${join(root, 'cli', 'ndiff.mjs')}" "$@"\n`);
  await chmod(shim, 0o755);
  await writeFile(join(bin, 'npm'), `#!/bin/bash
# npm as the recipes may use it: ci, pack (writes a tarball), install -g of packed tarballs only.
set -e
cmd=$1; shift
case "$cmd" in
  ci) exit 0 ;;
  pack)
    dest=.
    while [ $# -gt 0 ]; do if [ "$1" = --pack-destination ]; then dest=$2; shift; fi; shift; done
    printf 'neural-diff packed' > "$dest/neural-diff-${version}.tgz"; echo "neural-diff-${version}.tgz" ;;
  install|i|add)
    global=; pkgs=()
    for a in "$@"; do case "$a" in -g|--global) global=1 ;; -*) ;; *) pkgs+=("$a") ;; esac; done
    [ -n "$global" ] || { echo "npm: expected install -g" >&2; exit 1; }
    [ \${#pkgs[@]} -gt 0 ] || { echo "npm: nothing to install" >&2; exit 1; }
    for p in "\${pkgs[@]}"; do
      case "$p" in
        *.tgz) [ -f "$p" ] || { echo "npm: no tarball at $p" >&2; exit 1; } ;;
        *) echo "npm: $p is a name the registry resolves, not a packed tarball" >&2; exit 1 ;;
      esac
    done
    dir=\${PATH%%:*}; mkdir -p "$dir"; cp "${shim}" "$dir/ndiff" ;;
  *) echo "npm $cmd: not what a recipe should run" >&2; exit 1 ;;
esac
`);
  await chmod(join(bin, 'npm'), 0o755);
  for (const name of ['npx', 'pnpm', 'yarn']) {
    await writeFile(join(bin, name), `#!/bin/sh\necho "${name}: fetches packages by name; install the packed tarball" >&2\nexit 1\n`);
    await chmod(join(bin, name), 0o755);
  }
  return { bin, shim };
}

function git(args: string[], cwd: string): string {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
  assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A bare repository holding the model versions (no release folder yet), as a model repository starts. */
async function modelRepository(chain: ReleaseChain): Promise<string> {
  const seed = join(chain.work, 'seed');
  await mkdir(join(seed, 'models'), { recursive: true });
  for (const [i, v] of chain.versions.entries()) await cp(v, join(seed, 'models', `v${i + 1}`), { recursive: true });
  git(['init', '-q', '-b', 'main'], seed);
  git(['add', '-A'], seed);
  git(['commit', '-q', '-m', 'models'], seed);
  const origin = join(chain.work, 'origin.git');
  git(['clone', '-q', '--bare', seed, origin], chain.work);
  return origin;
}

const workflow = async () => parse(await readFile(join(recipes, 'github-actions.yml'), 'utf8')) as Workflow;

/** Every `run:` script of the workflow with where it is. */
const scriptsOf = (wf: Workflow) => Object.entries(wf.jobs).flatMap(([job, j]) => j.steps.filter((s) => s.run !== undefined).map((s) => ({ where: `${job}: ${s.name ?? s.run}`, run: s.run as string })));

test('examples/ci/github-actions.yml: expressions name declared things and never reach a script; one run at a time; only a packed tarball is installed', async () => {
  const wf = await workflow();
  assert.deepEqual(checkExpressionNames(wf), [], 'every expression names a declared input, need, output, step, matrix key or variable');
  for (const { where, run } of scriptsOf(wf)) {
    assert.doesNotMatch(run, /\$\{\{/, `${where}: an expression inside run: is pasted into the script before bash reads it (script injection); pass it through env:`);
  }
  assert.ok(wf.concurrency?.group, 'a concurrency group: two dispatches would plan and publish one release folder from two runners');
  assert.equal(wf.concurrency?.['cancel-in-progress'], false, 'a second dispatch waits; cancelling a run mid-publish is no better');
  assert.equal(wf.permissions?.contents, 'read', 'jobs read the repository; only publish writes');
  for (const [name, job] of Object.entries(wf.jobs)) {
    for (const s of job.steps) {
      if (s.run === undefined) continue;
      assert.doesNotMatch(s.run, /\bnpx\b|\b(pnpm|yarn) (add|dlx)\b/, `${name}: runs a package fetched by name`);
      for (const m of s.run.matchAll(/\bnpm (?:install|i|add)\b([^\n]*)/g)) {
        const pkgs = m[1].trim().split(/\s+/).filter((a) => a && !a.startsWith('-'));
        assert.ok(pkgs.length > 0 && pkgs.every((p) => /\.tgz$/.test(p)), `${name}: npm ${m[0]} installs ${pkgs.join(' ')}: only the tarball packed from the pinned commit`);
      }
    }
  }
  // The package is packed from a pinned commit, and the placeholder pin is refused.
  const pack = wf.jobs.package;
  const checkout = pack.steps.find((s) => s.uses?.startsWith('actions/checkout'));
  assert.equal(checkout?.with?.ref, '${{ env.NEURAL_DIFF_COMMIT }}');
  assert.ok(pack.steps.some((s) => /npm ci\b/.test(s.run ?? '') && /npm pack\b/.test(s.run ?? '')), 'npm ci (the lockfile\'s integrity) then npm pack');
  const guard = pack.steps[0].run as string;
  const shell = wf.defaults?.run?.shell;
  for (const [commit, ok] of [[wf.env?.NEURAL_DIFF_COMMIT, false], ['main', false], ['a'.repeat(40), true]] as const) {
    assert.equal(runScript(guard, shell, root, { ...process.env, NEURAL_DIFF_COMMIT: String(commit) }).status === 0, ok, `the pin guard on ${commit}`);
  }
  // Every job that runs ndiff installed it first, from the package job's artifact.
  for (const [name, job] of Object.entries(wf.jobs)) {
    const ndiffAt = job.steps.findIndex((s) => /\bndiff /.test(s.run ?? ''));
    if (ndiffAt < 0) continue;
    assert.ok(needsOf(job).includes('package'), `${name} needs the package job`);
    assert.ok(job.steps.slice(0, ndiffAt).some((s) => s.uses?.startsWith('actions/download-artifact') && s.with?.name === 'neural-diff-package'), `${name} downloads the packed tarball`);
  }
});

test('examples/ci/github-actions.yml: every script passes bash -n, and shellcheck when it is installed', async (t) => {
  const wf = await workflow();
  const shellcheck = spawnSync('shellcheck', ['--version']).status === 0;
  if (!shellcheck) t.diagnostic('shellcheck is not installed (apt-get install shellcheck): only bash -n ran');
  for (const { where, run } of scriptsOf(wf)) {
    const r = spawnSync('bash', ['-n'], { input: run, encoding: 'utf8' });
    assert.equal(r.status, 0, `${where}: ${r.stderr}`);
    if (!shellcheck) continue;
    const c = spawnSync('shellcheck', ['-s', 'bash', '-'], { input: run, encoding: 'utf8' });
    assert.equal(c.status, 0, `${where}:\n${c.stdout}`);
  }
  const matrixJob = Object.entries(wf.jobs).find(([, j]) => j.strategy)?.[1];
  assert.match(matrixJob?.if ?? '', /!= '\[\]'/, 'the matrix job is skipped when the plan has no job (GitHub refuses an empty matrix)');
});

test('examples/ci/github-actions.yml: a first version, then two more: plan, a matrix job per payload reading only its inputs, publish pushing the folder back', { timeout: 600_000 }, async () => {
  const chain = await releaseChain(3);
  const origin = await modelRepository(chain);
  const { bin } = await tools(chain.work);
  const wf = await workflow();
  const release = wf.env?.RELEASE as string;
  const commit = git(['rev-parse', 'HEAD'], root).trim();
  const seen: { inputs: string[]; blobs: string[] }[] = [];
  const runs: Record<string, string>[] = [];
  for (const [n, modelId] of [[1, 'kws'], [2, ''], [3, '']] as const) {
    runs.push(await runWorkflow(wf, {
      origin, work: join(chain.work, `run${n}`), inputs: { model: `models/v${n}`, 'model-id': modelId },
      secrets: { RELEASE_PRIVATE_KEY: chain.keys.privateKeyPem }, env: { NEURAL_DIFF_COMMIT: commit },
      path: [bin], globalBin: (ws) => `${ws}-bin`,
      afterJob: async (name, ws, matrix) => {
        if (name !== 'payload') return;
        const inputs = String((matrix.job as Record<string, string>).inputs).split('\n');
        const blobs = (await readdir(join(ws, release, 'blobs'))).map((b) => `${release}/blobs/${b}`);
        seen.push({ inputs, blobs });
      },
    }));
  }
  assert.deepEqual(runs.map((r) => r.payload), ['skipped', 'success', 'success'], 'a first version plans no job: no matrix, and publish still runs');
  assert.deepEqual(runs.map((r) => r.publish), ['success', 'success', 'success']);
  // Each payload job held the files its job reads, no others: two versions, not the folder.
  assert.equal(seen.length, 3, 'v2-from-v1, v3-from-v2, v3-from-v1');
  for (const s of seen) assert.deepEqual(s.blobs.sort(), s.inputs.sort());
  // What publish pushed: the release folder of versions 1..3, signed.
  const clone = join(chain.work, 'published');
  git(['clone', '-q', origin, clone], chain.work);
  const published = join(clone, release);
  const manifest = validateManifest(JSON.parse(await readFile(join(published, 'manifest.json'), 'utf8')).signed);
  assert.equal(manifest.modelId, 'kws');
  assert.equal(manifest.latest, 3);
  assert.deepEqual(manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion}`).sort(), ['1->2', '1->3', '2->3']);
  assert.equal((await readRecord(published))?.pending, null);
  for (const p of manifest.payloads) assert.ok((await stat(join(published, p.file))).isFile(), `${p.file} is committed`);
  assert.equal(git(['log', '--format=%s', '-1'], clone).trim(), `Release models/v3 into ${release}`);
});

interface PodSpec { name: string; image: string; command: string[]; args: string[]; env: { name: string; value: string }[]; volumeMounts: { name: string; mountPath: string }[] }
interface IndexedJob {
  kind: string;
  metadata: { name: string };
  spec: { completionMode: string; completions: number | string; parallelism: number | string; backoffLimitPerIndex: number; template: { spec: { containers: PodSpec[]; volumes: { name: string; persistentVolumeClaim: { claimName: string } }[] } } };
}

test('examples/ci/k8s-indexed-job.yaml: a template rendered from the plan, on a ReadWriteMany claim, Kubernetes 1.29+', async () => {
  const text = await readFile(join(recipes, 'k8s-indexed-job.yaml'), 'utf8');
  const doc = parse(text) as IndexedJob;
  assert.equal(doc.spec.completions, '__JOBS__', 'completions come from the plan, not from an edit by hand');
  assert.equal(doc.spec.parallelism, '__JOBS__');
  assert.match(doc.metadata.name, /__VERSION__/, 'one Job name per version: the next plan does not collide with the last');
  assert.ok(doc.spec.backoffLimitPerIndex > 0);
  const comments = text.split('\n').filter((l) => l.startsWith('#')).join('\n');
  assert.match(comments, /ReadWriteMany/, 'the claim must be ReadWriteMany: pods on several nodes write one folder');
  assert.match(comments, /Kubernetes 1\.29/, 'backoffLimitPerIndex needs Kubernetes 1.29');
  const [pod] = doc.spec.template.spec.containers;
  assert.doesNotMatch(pod.args.join('\n'), /\bnpx\b|npm (install|i) (-g )?neural-diff\b/, 'no package by name from the registry');
  assert.match(pod.args[0], /sha256sum -c/, 'the tarball is checked against its SHA-256 before it is installed');
  assert.equal(pod.env.find((e) => e.name === 'NEURAL_DIFF_PACKAGE')?.value, `/release/tools/neural-diff-${version}.tgz`);
  assert.equal(spawnSync('bash', ['-n'], { input: pod.args[0] }).status, 0);
});

/** The commands of the manifest's comments (the lines after the "On a machine that mounts" paragraph, indented). */
function renderCommands(text: string): string {
  return text.split('\n').filter((l) => l.startsWith('#   ')).map((l) => l.slice(4)).join('\n');
}

test('examples/ci/k8s-indexed-job.yaml: rendered by its own commands, each completion index runs its job, then publish signs them, from a first version on', { timeout: 600_000 }, async () => {
  const chain = await releaseChain(3);
  const { bin, shim } = await tools(chain.work);
  const text = await readFile(join(recipes, 'k8s-indexed-job.yaml'), 'utf8');
  const mount = join(chain.work, 'volume');
  await mkdir(join(mount, 'tools'), { recursive: true });
  await writeFile(join(mount, 'tools', `neural-diff-${version}.tgz`), 'neural-diff packed');
  await writeFile(join(chain.work, 'k8s-indexed-job.yaml'), text);
  const key = join(chain.work, 'release.private.pem');
  await writeFile(key, chain.keys.privateKeyPem);
  // The machine that plans and publishes has neural-diff installed.
  await mkdir(join(chain.work, 'host-bin'));
  await cp(shim, join(chain.work, 'host-bin', 'ndiff'));
  // kubectl: `apply` runs every completion index's pod command in turn (the mount is a local folder), `wait` returns.
  const applied = join(chain.work, 'applied.jsonl');
  await writeFile(join(bin, 'kubectl'), `#!${process.execPath}
import { readFileSync, appendFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import yaml from ${JSON.stringify(join(root, 'node_modules', 'yaml', 'dist', 'index.js'))};
const [verb, , file] = process.argv.slice(2);
if (verb === 'wait') process.exit(0);
if (verb !== 'apply') { console.error('kubectl ' + verb); process.exit(1); }
const doc = yaml.parse(readFileSync(file, 'utf8'));
const [pod] = doc.spec.template.spec.containers;
const mountPath = pod.volumeMounts[0].mountPath;
const local = (v) => v.split(mountPath + '/').join(${JSON.stringify(mount)} + '/');
appendFileSync(${JSON.stringify(applied)}, JSON.stringify({ name: doc.metadata.name, completions: doc.spec.completions, parallelism: doc.spec.parallelism }) + '\\n');
for (let i = 0; i < doc.spec.completions; i++) {
  const bin = ${JSON.stringify(chain.work)} + '/pod-' + doc.metadata.name + '-' + i + '-bin';
  mkdirSync(bin, { recursive: true });
  const env = { ...process.env, PATH: bin + ':' + ${JSON.stringify(bin)} + ':' + process.env.PATH, JOB_COMPLETION_INDEX: String(i) };
  for (const e of pod.env) env[e.name] = local(e.value);
  const r = spawnSync(pod.command[0], [...pod.command.slice(1), ...pod.args], { env, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
`);
  await chmod(join(bin, 'kubectl'), 0o755);
  // The claim's mount point, /release, is here a local folder, whose path may hold spaces (a TMPDIR
  // with one): quoted for the shell, as the recipe's own /release needs no quotes.
  const script = renderCommands(text).replaceAll('/release/', `'${mount.replaceAll("'", "'\\''")}'/`);
  assert.match(script, /ndiff release add .*--plan/);
  assert.match(script, /ndiff release publish/);
  for (const [n, modelId] of [[1, 'kws'], [2, ''], [3, '']] as const) {
    const r = spawnSync('bash', ['-eo', 'pipefail', '-c', script], {
      cwd: chain.work, encoding: 'utf8',
      env: { ...process.env, MODEL: chain.versions[n - 1], MODEL_ID: modelId, KEY: key, PATH: `${join(chain.work, 'host-bin')}:${bin}:${process.env.PATH}` },
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const manifest = validateManifest(JSON.parse(await readFile(join(mount, 'kws', 'manifest.json'), 'utf8')).signed);
    assert.equal(manifest.latest, n);
  }
  const jobs = (await readFile(applied, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { name: string; completions: number; parallelism: number });
  assert.deepEqual(jobs, [{ name: 'kws-payloads-v2', completions: 1, parallelism: 1 }, { name: 'kws-payloads-v3', completions: 2, parallelism: 2 }], 'no Job for a first version; completions as the plan has jobs');
  const manifest = validateManifest(JSON.parse(await readFile(join(mount, 'kws', 'manifest.json'), 'utf8')).signed);
  assert.deepEqual(manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion}`).sort(), ['1->2', '1->3', '2->3']);
});

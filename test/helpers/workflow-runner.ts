/**
 * A GitHub Actions workflow run on this machine, as far as it allows, for test/ci-recipes.test.ts:
 * the jobs in the order of their `needs`, each job's and step's `if:` evaluated (the expression
 * language's comparisons, `&&`, `||`, `!` and the status functions), a matrix from its JSON, each job
 * in a workspace of its own, `actions/checkout` as a git clone of a local repository (sparse when
 * asked), artifacts copied between jobs as the runner would, and `run:` steps through the shell
 * GitHub uses. Also the static checks actionlint makes that matter here: every expression names a
 * declared input, need, output, step, matrix key or variable, and no `run:` holds an expression.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, readdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Step { name?: string; id?: string; if?: string; uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string>; 'working-directory'?: string }
export interface WorkflowJob { needs?: string | string[]; if?: string; outputs?: Record<string, string>; env?: Record<string, string>; strategy?: { matrix: Record<string, unknown> }; steps: Step[] }
export interface Workflow {
  on: { workflow_dispatch: { inputs: Record<string, { required?: boolean; default?: string }> } };
  env?: Record<string, string>;
  defaults?: { run?: { shell?: string } };
  concurrency?: { group?: string; 'cancel-in-progress'?: boolean };
  permissions?: Record<string, string>;
  jobs: Record<string, WorkflowJob>;
}

/** The needs of a job as a list. */
export const needsOf = (job: WorkflowJob): string[] => (job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs]);

type Value = string | number | boolean | null | Value[] | { [k: string]: Value };

/** Evaluate a GitHub Actions expression (without `${{ }}`) against `contexts`. */
export function evaluate(expr: string, contexts: Record<string, Value>, status: { cancelled: boolean; failed: boolean }): Value {
  const tokens = expr.match(/'(?:[^']|'')*'|&&|\|\||==|!=|[!()[\],]|[A-Za-z_][\w.-]*|\d+(?:\.\d+)?/g) ?? [];
  assert.equal(tokens.join(''), expr.replace(/\s+/g, ''), `unreadable expression ${expr}`);
  let at = 0;
  const peek = () => tokens[at];
  const take = (t?: string) => {
    const got = tokens[at++];
    if (t !== undefined) assert.equal(got, t, `expected ${t} in ${expr}`);
    return got;
  };
  const truthy = (v: Value) => !(v === false || v === null || v === 0 || v === '' || v === undefined);
  const primary = (): Value => {
    const t = take();
    if (t === '(') {
      const v = or();
      take(')');
      return v;
    }
    if (t === '!') return !truthy(primary());
    if (t.startsWith("'")) return t.slice(1, -1).replace(/''/g, "'");
    if (/^\d/.test(t)) return Number(t);
    if (t === 'true' || t === 'false') return t === 'true';
    if (peek() === '(') {
      take('(');
      const args: Value[] = [];
      while (peek() !== ')') {
        args.push(or());
        if (peek() === ',') take(',');
      }
      take(')');
      if (t === 'cancelled') return status.cancelled;
      if (t === 'always') return true;
      if (t === 'success') return !status.failed && !status.cancelled;
      if (t === 'failure') return status.failed;
      if (t === 'fromJSON') return JSON.parse(String(args[0])) as Value;
      if (t === 'toJSON') return JSON.stringify(args[0]);
      throw new Error(`function ${t} in ${expr}`);
    }
    let v: Value = contexts;
    for (const part of t.split('.')) v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, Value>)[part] ?? null : null;
    return v;
  };
  const cmp = (): Value => {
    let v = primary();
    while (peek() === '==' || peek() === '!=') {
      const op = take();
      const w = primary();
      v = op === '==' ? v === w : v !== w;
    }
    return v;
  };
  const and = (): Value => {
    let v = cmp();
    while (peek() === '&&') {
      take();
      const w = cmp();
      v = truthy(v) ? w : v;
    }
    return v;
  };
  const or = (): Value => {
    let v = and();
    while (peek() === '||') {
      take();
      const w = and();
      v = truthy(v) ? v : w;
    }
    return v;
  };
  const v = or();
  assert.equal(at, tokens.length, `trailing tokens in ${expr}`);
  return v;
}

/** `${{ ... }}` in `s` replaced by their values. */
export function expand(s: string, contexts: Record<string, Value>, status = { cancelled: false, failed: false }): string {
  return s.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_m, e: string) => {
    const v = evaluate(e, contexts, status);
    return typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v ?? '');
  });
}

/** An `if:` is true (GitHub wraps a bare one in `${{ }}`; without a status function it means `success() && ...`). */
export function condition(cond: string | undefined, contexts: Record<string, Value>, status: { cancelled: boolean; failed: boolean }): boolean {
  if (cond === undefined) return !status.failed && !status.cancelled;
  const e = cond.trim().replace(/^\$\{\{\s*/, '').replace(/\s*\}\}$/, '');
  const v = evaluate(e, contexts, status);
  const statusFn = /\b(always|cancelled|success|failure)\(/.test(e);
  return (statusFn || (!status.failed && !status.cancelled)) && !(v === false || v === null || v === 0 || v === '');
}

/** Every `${{ }}` expression of the workflow with where it is: `jobs.<job>` or `workflow`. */
export function expressionsOf(wf: Workflow): { job?: string; step?: number; text: string; where: string }[] {
  const out: { job?: string; step?: number; text: string; where: string }[] = [];
  const walk = (v: unknown, where: string, job?: string, step?: number) => {
    if (typeof v === 'string') {
      for (const m of v.matchAll(/\$\{\{\s*(.*?)\s*\}\}/g)) out.push({ job, step, text: m[1], where });
      if (/(^|\.)if$/.test(where) && !v.includes('${{')) out.push({ job, step, text: v, where });
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${where}[${i}]`, job, step));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${where}.${k}`, job, step);
  };
  walk(wf.env ?? {}, 'env');
  for (const [name, job] of Object.entries(wf.jobs)) {
    const { steps, ...rest } = job;
    walk(rest, `jobs.${name}`, name);
    steps.forEach((s, i) => walk(s, `jobs.${name}.steps[${i}]`, name, i));
  }
  return out;
}

/**
 * What actionlint checks of an expression's names: inputs declared, needs listed, outputs
 * declared, step ids earlier in the job, matrix keys, variables declared. Returns the problems.
 */
export function checkExpressionNames(wf: Workflow): string[] {
  const problems: string[] = [];
  const inputs = Object.keys(wf.on.workflow_dispatch.inputs);
  for (const { job, step, text, where } of expressionsOf(wf)) {
    for (const m of text.matchAll(/(?<![\w.'-])([a-z]+)((?:\.[\w-]+)+)/g)) {
      const [ctx, ...path] = [m[1], ...m[2].slice(1).split('.')];
      const j = job ? wf.jobs[job] : undefined;
      const bad = (why: string) => problems.push(`${where}: ${ctx}.${path.join('.')}: ${why}`);
      if (ctx === 'inputs') {
        if (!inputs.includes(path[0])) bad('no such input');
      } else if (ctx === 'needs') {
        if (!j || !needsOf(j).includes(path[0])) bad('not in this job\'s needs');
        else if (path[1] === 'outputs' && !(path[2] in (wf.jobs[path[0]].outputs ?? {}))) bad('the needed job declares no such output');
        else if (path[1] !== 'outputs' && path[1] !== 'result') bad('needs.<job>.outputs or .result');
      } else if (ctx === 'steps') {
        const ids = (j?.steps ?? []).slice(0, step ?? j?.steps.length).map((s) => s.id);
        if (!ids.includes(path[0])) bad('no earlier step with this id');
      } else if (ctx === 'matrix') {
        if (!j?.strategy || !(path[0] in j.strategy.matrix)) bad('no such matrix key');
      } else if (ctx === 'env') {
        if (!(path[0] in (wf.env ?? {})) && !(path[0] in (j?.env ?? {}))) bad('no such variable in env:');
      } else if (!['secrets', 'runner', 'github', 'vars', 'job', 'strategy'].includes(ctx)) {
        bad('unknown context');
      }
    }
  }
  return problems;
}

/** Run `script` as a `run:` step: GitHub's `bash -e` (with `pipefail` when the shell is `bash`). */
export function runScript(script: string, shell: string | undefined, cwd: string, env: Record<string, string | undefined>): { status: number | null; stdout: string; stderr: string; error?: Error } {
  const flags = shell === 'bash' ? ['--noprofile', '--norc', '-eo', 'pipefail', '-c'] : ['-e', '-c'];
  return spawnSync('bash', [...flags, script], { cwd, env, encoding: 'utf8' });
}

/** What a workflow run needs from the test: the repository, the inputs, the secrets, tools on PATH. */
export interface RunSetup {
  /** A bare git repository: what `actions/checkout` clones and the run pushes to. */
  origin: string;
  /** Where this run's workspaces and artifacts go (one folder per run). */
  work: string;
  inputs: Record<string, string>;
  secrets: Record<string, string>;
  /** Overrides of the workflow's env (e.g. a pinned commit). */
  env?: Record<string, string>;
  /** Prepended to PATH for every `run:` step; `globalBin(job)` is PATH too (what `npm install -g` fills). */
  path: string[];
  globalBin: (ws: string) => string;
  /** Called after each job with its workspace. */
  afterJob?: (name: string, ws: string, matrix: Record<string, Value>) => Promise<void>;
}

/** Run the workflow's jobs in order; returns each job's result ('success' or 'skipped'). */
export async function runWorkflow(wf: Workflow, setup: RunSetup): Promise<Record<string, string>> {
  const artifacts = join(setup.work, 'artifacts');
  await mkdir(artifacts, { recursive: true });
  const inputs = Object.fromEntries(Object.entries(wf.on.workflow_dispatch.inputs).map(([k, d]) => [k, setup.inputs[k] ?? d.default ?? '']));
  const needs: Record<string, { result: string; outputs: Record<string, string> }> = {};
  const done = new Set<string>();
  while (done.size < Object.keys(wf.jobs).length) {
    const ready = Object.entries(wf.jobs).find(([n, j]) => !done.has(n) && needsOf(j).every((x) => done.has(x)));
    assert.ok(ready, 'a cycle in needs');
    const [name, job] = ready;
    done.add(name);
    const need = Object.fromEntries(needsOf(job).map((n) => [n, needs[n]]));
    const upstream = Object.values(need);
    const status = { cancelled: false, failed: upstream.some((n) => n.result === 'failure') };
    const base = { inputs, env: { ...wf.env, ...setup.env }, secrets: setup.secrets, needs: need } as Record<string, Value>;
    // A job whose need was skipped is skipped too, unless its if: uses a status function.
    const skippedNeed = upstream.some((n) => n.result === 'skipped') && !/\b(always|cancelled|failure)\(/.test(job.if ?? '');
    if (skippedNeed || !condition(job.if, base, status)) {
      needs[name] = { result: 'skipped', outputs: {} };
      continue;
    }
    const matrixSpec = job.strategy?.matrix ?? {};
    const key = Object.keys(matrixSpec)[0];
    const values: (Value | undefined)[] = key === undefined ? [undefined] : (JSON.parse(expand(String(matrixSpec[key]), base)) as Value[]);
    assert.ok(values.length > 0, `job ${name}: a matrix of no entries (GitHub refuses it: the run fails)`);
    let outputs: Record<string, string> = {};
    for (const value of values) {
      const matrix = key === undefined ? {} : { [key]: value as Value };
      const ws = join(setup.work, 'ws', `${name}${key === undefined ? '' : `-${values.indexOf(value)}`}`);
      outputs = await runJob(wf, job, ws, { ...base, matrix }, setup, artifacts);
      await setup.afterJob?.(name, ws, matrix);
    }
    needs[name] = { result: 'success', outputs };
  }
  return Object.fromEntries(Object.entries(needs).map(([n, v]) => [n, v.result]));
}

async function runJob(wf: Workflow, job: WorkflowJob, ws: string, contexts: Record<string, Value>, setup: RunSetup, artifacts: string): Promise<Record<string, string>> {
  const temp = `${ws}-tmp`;
  await mkdir(temp, { recursive: true });
  await mkdir(ws, { recursive: true }); // the runner's empty workspace
  const steps: Record<string, { outputs: Record<string, string> }> = {};
  const ctx = () => ({ ...contexts, steps, runner: { temp } } as Record<string, Value>);
  const git = (args: string[], cwd: string) => {
    const r = spawnSync('git', args, { cwd, encoding: 'utf8' });
    assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
  };
  for (const step of job.steps) {
    if (!condition(step.if, ctx(), { cancelled: false, failed: false })) continue;
    const uses = step.uses?.split('@')[0];
    const w = Object.fromEntries(Object.entries(step.with ?? {}).map(([k, v]) => [k, expand(String(v), ctx())]));
    if (uses === 'actions/checkout') {
      if (w.repository) await mkdir(join(ws, w.path ?? '.'), { recursive: true }); // another repository: the fake npm needs none of it
      else if (w['sparse-checkout']) {
        git(['clone', '-q', '--no-checkout', setup.origin, ws], setup.work);
        git(['sparse-checkout', 'set', '--no-cone', ...w['sparse-checkout'].split('\n').filter(Boolean)], ws);
        git(['checkout', '-q'], ws);
      } else git(['clone', '-q', setup.origin, ws], setup.work);
    } else if (uses === 'actions/upload-artifact') {
      await cp(join(ws, w.path), join(artifacts, w.name), { recursive: true });
    } else if (uses === 'actions/download-artifact') {
      const names = w.pattern ? (await readdir(artifacts)).filter((n) => n.startsWith(w.pattern.replace(/\*$/, ''))) : [w.name];
      for (const n of names) await cp(join(artifacts, n), join(ws, w.path ?? '.'), { recursive: true });
    } else if (uses === 'actions/setup-node') {
      // This machine's Node runs the steps.
    } else if (step.run !== undefined) {
      const out = join(temp, 'github-output');
      await writeFile(out, '');
      const env = Object.fromEntries(Object.entries({ ...wf.env, ...setup.env, ...job.env, ...step.env }).map(([k, v]) => [k, expand(String(v), ctx())]));
      const r = runScript(step.run, wf.defaults?.run?.shell, join(ws, step['working-directory'] ?? '.'), {
        ...process.env, ...env, GITHUB_OUTPUT: out, GITHUB_WORKSPACE: ws, GITHUB_REF: 'refs/heads/main', RUNNER_TEMP: temp,
        PATH: [setup.globalBin(ws), ...setup.path, process.env.PATH].join(':'),
      });
      assert.equal(r.status, 0, `step ${step.name ?? step.run} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stdout}\n${r.stderr}`);
      if (step.id) steps[step.id] = { outputs: Object.fromEntries((await readFile(out, 'utf8')).split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])) };
    } else throw new Error(`step ${step.name ?? step.uses}: not emulated here`);
  }
  return Object.fromEntries(Object.entries(job.outputs ?? {}).map(([k, v]) => [k, expand(v, ctx())]));
}

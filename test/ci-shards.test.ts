/**
 * What `.ci/run` promises in its header: the README's test command in place, then fresh clones on
 * the other Node releases whose parts (`test/fresh-clone/run.sh --shard K/N`, or `K,L/N` for several
 * parts in one clone) together hold every test file exactly once.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname, '..');
const recipe = readFileSync(join(root, '.ci/run'), 'utf8');
const commands = recipe.split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#'));

test('.ci/run runs the README\'s test command in place', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.match(readme, /\nnpm test\b/);
  assert.ok(commands.includes('npm test'), 'a line that is exactly `npm test`');
});

test('the fresh clones\' parts cover the test files once: K runs over 1..N, each once, one N', () => {
  const parts = commands.filter((l) => l.includes('test/fresh-clone/run.sh')).map((l) => {
    const m = /--shard[ =]([\d,]+)\/(\d+)/.exec(l);
    assert.ok(m, `a fresh-clone line without --shard runs the whole suite again: ${l}`);
    return { ks: m[1].split(',').map(Number), n: Number(m[2]), node: /--node[ =](\S+)/.exec(l)?.[1] };
  });
  assert.ok(parts.length >= 1, 'at least one fresh clone');
  const n = parts[0].n;
  assert.ok(parts.every((p) => p.n === n), `one N for every part: ${JSON.stringify(parts)}`);
  assert.deepEqual(parts.flatMap((p) => p.ks).sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1));
  assert.equal(new Set(parts.map((p) => p.node)).size, parts.length, 'each clone on its own Node release');
});

test('every Node release the package supports runs: one in place, each of the others in a fresh clone, each a release its engines range takes', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
  const testAt = commands.indexOf('npm test');
  const inPlace = commands.slice(0, testAt).map((l) => /scripts\/node-release\.sh (\d+\.\d+\.\d+)/.exec(l)?.[1]).filter(Boolean).at(-1);
  assert.ok(inPlace, 'the in-place run names its Node release (scripts/node-release.sh VERSION before `npm test`)');
  const clones = commands.filter((l) => l.includes('test/fresh-clone/run.sh')).map((l) => /--node[ =](\d+\.\d+\.\d+)/.exec(l)?.[1]);
  assert.ok(clones.every(Boolean), `each fresh clone names its Node release: ${JSON.stringify(clones)}`);
  const majors = [inPlace, ...clones].map((v) => Number(v!.split('.')[0]));
  // engines: "^20.19.0 || ^22.12.0 || >=24.0.0": the majors it names, each run once.
  const supported = [...pkg.engines.node.matchAll(/(\d+)\.(\d+)\.(\d+)/g)].map((m) => ({ major: Number(m[1]), minor: Number(m[2]) }));
  assert.deepEqual([...majors].sort((a, b) => a - b), supported.map((r) => r.major).sort((a, b) => a - b), `the releases run (${[inPlace, ...clones].join(', ')}) against engines ${pkg.engines.node}`);
  for (const v of [inPlace, ...clones]) {
    const [major, minor] = v!.split('.').map(Number);
    const range = supported.find((r) => r.major === major)!;
    assert.ok(minor >= range.minor, `${v} is older than engines' ${range.major}.${range.minor}`);
  }
});

test('run.sh refuses a part that is not K/N with 1 <= K <= N (or K,L/N increasing), before cloning anything', () => {
  for (const bad of ['0/2', '3/2', '1', 'a/b', '1/0', '2,2/3', '3,2/3', '2,4/3', ',1/3']) {
    const r = spawnSync('bash', [join(root, 'test/fresh-clone/run.sh'), '--shard', bad], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${bad}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /--shard takes K\/N with 1 <= K <= N/, bad);
    assert.doesNotMatch(r.stdout, /== fresh clone/, bad);
  }
});

test('run.sh runs every part it is given in one clone, fails when any part fails, not only the last, and removes its clones (npm stubbed: install passes, the test run of part 1 fails)', () => {
  const stub = mkdtempSync(join(tmpdir(), 'nd-npm-stub-'));
  try {
    writeFileSync(join(stub, 'npm'), '#!/bin/sh\ncase "$1" in test) echo "stub npm test with $NODE_OPTIONS"; case "$NODE_OPTIONS" in *--test-shard=$FAIL_PART*) exit 1;; esac;; esac\nexit 0\n', { mode: 0o755 });
    const run = (failPart: string) => spawnSync('bash', [join(root, 'test/fresh-clone/run.sh'), '--shard', '1,2/2'], { encoding: 'utf8', env: { ...process.env, PATH: `${stub}:${process.env.PATH}`, FAIL_PART: failPart } });
    const failing = run('1/2');
    assert.notEqual(failing.status, 0, failing.stdout + failing.stderr);
    assert.match(failing.stdout, /--test-shard=1\/2[\s\S]*--test-shard=2\/2/, 'both parts ran, in order');
    assert.match(failing.stderr, /part\(s\) 1\/2 failed/);
    const passing = run('none');
    assert.equal(passing.status, 0, passing.stdout + passing.stderr);
    assert.match(passing.stdout, /stub npm test with .*--test-shard=1\/2[\s\S]*stub npm test with .*--test-shard=2\/2/);
    // Without --keep the clones are removed when it ends, failing or not.
    for (const r of [failing, passing]) {
      const checkout = /checkout: (.*)/.exec(r.stdout)?.[1];
      assert.ok(checkout, r.stdout);
      assert.equal(existsSync(checkout), false, `${checkout} left behind`);
    }
  } finally {
    rmSync(stub, { recursive: true, force: true });
  }
});

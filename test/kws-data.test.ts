import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ESPEAK_EVAL_ACCENTS, ESPEAK_TRAIN_ACCENTS, ToolsUnavailableError, ensureTools, type KwsManifest } from '../examples/keyword-spotting/data.ts';
import { loadXY } from '../src/io/npy/files.ts';
import { parseNpy } from '../src/io/npy/npy.ts';
import { benchmarkSkip } from './helpers/benchmarks.ts';

const script = fileURLToPath(new URL('../examples/keyword-spotting/data.ts', import.meta.url));
const repo = fileURLToPath(new URL('..', import.meta.url));

/** Why the suite is skipped, or undefined when espeak-ng is (or could be made) available. */
function espeakUnavailable(): string | undefined {
  try {
    ensureTools(() => {}, ['espeak-ng']);
    return undefined;
  } catch (e) {
    if (e instanceof ToolsUnavailableError) return `espeak-ng is not installed and cannot be installed here: ${e.message}`;
    throw e;
  }
}

function runQuick(out: string, extra: string[] = []): string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--quick', '--out', out, ...extra], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 170_000,
  });
  assert.equal(r.status, 0, `data.ts --quick failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const skip = benchmarkSkip || espeakUnavailable();

describe('keyword-spotting data (quick mode)', { skip, timeout: 400_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kws-data-test-'));
  let manifest: KwsManifest;
  let stdout = '';
  before(() => {
    stdout = runQuick(join(dir, 'a'));
    manifest = JSON.parse(readFileSync(join(dir, 'a', 'manifest.json'), 'utf8')) as KwsManifest;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reports progress and speed on stdout', () => {
    assert.match(stdout, /plan: 12 splits, \d+ utterances/);
    assert.match(stdout, /base-train\s+\d+ rows in [\d.]+ s \(\d+ utt\/s\)/);
    assert.match(stdout, /done: \d+ utterances/);
  });

  it('fixes the class index space up front: every update word plus spare slots', () => {
    assert.equal(manifest.numClasses, manifest.classes.length);
    assert.deepEqual(manifest.classes.map((c) => c.index), manifest.classes.map((_, i) => i));
    assert.equal(manifest.classes[0].name, '_silence_');
    assert.equal(manifest.classes[1].name, '_unknown_');
    assert.ok(manifest.classes.filter((c) => c.kind === 'spare').length >= 2);
    assert.equal(manifest.updates.length, 6);
    for (const u of manifest.updates) {
      for (const name of u.newClasses) assert.ok(manifest.classes.some((c) => c.name === name && c.introducedIn === u.step));
      assert.ok(u.evalAll.includes(u.eval));
      assert.ok(manifest.splits[u.train] && manifest.splits[u.eval], `splits of update ${u.step}`);
    }
  });

  it('writes x [n,49,40,1] float32, y [n] int32 and source [n] per split, matching the manifest', () => {
    for (const [name, sp] of Object.entries(manifest.splits)) {
      const x = parseNpy(readFileSync(join(dir, 'a', sp.files.x)));
      const y = parseNpy(readFileSync(join(dir, 'a', sp.files.y)));
      const s = parseNpy(readFileSync(join(dir, 'a', sp.files.source)));
      assert.equal(x.dtype, '<f4');
      assert.equal(y.dtype, '<i4');
      assert.deepEqual(x.shape, [sp.count, 49, 40, 1], name);
      assert.deepEqual(y.shape, [sp.count], name);
      assert.deepEqual(s.shape, [sp.count], name);
      assert.ok(sp.count > 0, name);
      const floor = Math.log(1e-6) - 1e-4;
      for (const v of x.data) assert.ok(Number.isFinite(v) && v >= floor, `${name}: feature ${v}`);
      for (const f of ['x', 'y', 'source'] as const) {
        const digest = createHash('sha256').update(readFileSync(join(dir, 'a', sp.files[f]))).digest('hex');
        assert.equal(digest, sp.sha256[f], `${name}/${f} sha256`);
      }
      // the loader the trainer uses reads the split folder
      const xy = loadXY(join(dir, 'a', name), { numClasses: manifest.numClasses });
      assert.equal(xy.n, sp.count);
    }
  });

  it('labels are class indices within the manifest, active at the split’s update, never spare slots', () => {
    for (const [name, sp] of Object.entries(manifest.splits)) {
      const y = parseNpy(readFileSync(join(dir, 'a', sp.files.y))).data;
      const active = new Set(manifest.updates[sp.update].activeClasses);
      const counts: Record<string, number> = {};
      for (const v of y) {
        assert.ok(Number.isInteger(v) && v >= 0 && v < manifest.numClasses, `${name}: label ${v}`);
        assert.ok(active.has(v), `${name}: class ${manifest.classes[v].name} is not active at update ${sp.update}`);
        assert.notEqual(manifest.classes[v].kind, 'spare');
        counts[manifest.classes[v].name] = (counts[manifest.classes[v].name] ?? 0) + 1;
      }
      assert.deepEqual(counts, sp.perClass, name);
    }
    // train and eval of an update cover the same classes; updates 0-2 train some of their new words
    for (const u of manifest.updates) {
      assert.deepEqual(Object.keys(manifest.splits[u.train].perClass).sort(), Object.keys(manifest.splits[u.eval].perClass).sort(), `update ${u.step}`);
      if (u.step <= 2) assert.ok(u.newClasses.some((w) => w in manifest.splits[u.train].perClass), `update ${u.step} trains none of its new words`);
    }
  });

  it('never trains on evaluation accents, voices or speakers', () => {
    const held = manifest.heldOut;
    for (const [k, v] of Object.entries(held)) {
      const overlap = v.train.filter((t) => v.eval.includes(t));
      assert.deepEqual(overlap, [], `${k} overlap`);
      assert.ok(v.train.length > 0 && v.eval.length > 0, k);
    }
    for (const a of held.espeakAccents.eval) assert.ok((ESPEAK_EVAL_ACCENTS as readonly string[]).includes(a));
    for (const a of held.espeakAccents.train) assert.ok((ESPEAK_TRAIN_ACCENTS as readonly string[]).includes(a));
    // check every row's actual source, not only the manifest's lists
    for (const [name, sp] of Object.entries(manifest.splits)) {
      const src = parseNpy(readFileSync(join(dir, 'a', sp.files.source))).data;
      for (const id of src) {
        const s = manifest.sources[id];
        assert.ok(s, `${name}: source ${id}`);
        const side = sp.role === 'train' ? 'train' : 'eval';
        if (s.kind === 'espeak-ng') {
          assert.ok(held.espeakAccents[side].includes(s.accent!), `${name}: accent ${s.accent}`);
          assert.ok(held.espeakVariants[side].includes(s.variant!), `${name}: variant ${s.variant}`);
        } else if (s.kind === 'flite') {
          assert.ok(held.fliteVoices[side].includes(s.voice!), `${name}: flite voice ${s.voice}`);
        } else if (s.kind === 'real') {
          assert.ok(held.realSpeakers[side].includes(s.speaker!), `${name}: speaker ${s.speaker}`);
        }
      }
    }
    // real recordings: the train and eval splits share no recording
    const files = (name: string) => {
      const src = parseNpy(readFileSync(join(dir, 'a', manifest.splits[name].files.source))).data;
      return new Set(Array.from(src, (id) => manifest.sources[id].file));
    };
    const trainFiles = files('u4-real-train');
    for (const f of files('u4-real-eval')) assert.ok(!trainFiles.has(f), `recording ${f} in both`);
  });

  it('is deterministic: same seed, same manifest (with file hashes), whatever the process count', () => {
    runQuick(join(dir, 'b'), ['--jobs', '1', '--inflight', '3']);
    const again = readFileSync(join(dir, 'b', 'manifest.json'), 'utf8');
    assert.equal(again, readFileSync(join(dir, 'a', 'manifest.json'), 'utf8'));
  });
});

/**
 * The keyword data's unlabeled field split (examples/keyword-spotting/field.ts) in quick mode: it
 * shares no evaluation accent, voice variant, flite voice, speaker, recording or babble language
 * with the data it goes with (every row's source checked, as the data's own split test does), it is
 * deterministic, the benchmark reads its inputs alone and refuses a field split made for other
 * data, and `--teacher-distill-inputs field` draws it into the teacher chains.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ToolsUnavailableError, ensureTools, type KwsManifest } from '../examples/keyword-spotting/data.ts';
import { FIELD_ESPEAK_LANGS, evalSourceIds, fieldInputs, fieldOverlaps, generateField, type FieldManifest } from '../examples/keyword-spotting/field.ts';
import { UsageError } from '../src/core/errors.ts';
import { benchmarkSkip } from './helpers/benchmarks.ts';
import { parseNpy } from '../src/io/npy/npy.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));
const dataScript = join(repo, 'examples/keyword-spotting/data.ts');
const benchScript = join(repo, 'examples/keyword-spotting/bench.ts');

function toolsMissing(): string | undefined {
  try {
    ensureTools(() => {});
    return undefined;
  } catch (e) {
    if (e instanceof ToolsUnavailableError) return `speech tools are not installed and cannot be installed here: ${e.message}`;
    throw e;
  }
}

describe('keyword field split (quick mode)', { skip: benchmarkSkip || toolsMissing(), timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kws-field-test-'));
  const data = join(dir, 'data');
  const field = join(dir, 'data-field');
  let manifest: KwsManifest;
  let fm: FieldManifest;
  const quiet = () => {};
  before(async () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', dataScript, '--quick', '--out', data, '--jobs', '1'], { cwd: repo, encoding: 'utf8', timeout: 170_000 });
    assert.equal(r.status, 0, `data.ts --quick failed:\n${r.stdout}\n${r.stderr}`);
    manifest = JSON.parse(readFileSync(join(data, 'manifest.json'), 'utf8')) as KwsManifest;
    fm = await generateField({ data, out: field, seed: 1, jobs: 1, log: quiet });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('holds the data\'s words, unknown and silence, in files its manifest lists', () => {
    const x = parseNpy(readFileSync(join(field, 'x.npy')));
    const y = parseNpy(readFileSync(join(field, 'y.npy')));
    assert.deepEqual(x.shape, [fm.count, 49, 40, 1]);
    assert.equal(y.shape[0], fm.count);
    const words = manifest.classes.filter((c) => c.kind === 'word' && Object.values(manifest.splits).some((s) => s.role === 'train' && c.name in s.perClass)).map((c) => c.name);
    for (const w of [...words, '_unknown_', '_silence_']) assert.ok((fm.perClass[w] ?? 0) > 0, `no ${w} row`);
    for (const v of x.data) assert.ok(Number.isFinite(v), 'finite features');
    for (const k of ['espeak-light', 'espeak-far', 'real-foreign']) assert.ok((fm.perCondition[k] ?? 0) > 0, `no ${k} row`);
  });

  it('shares no evaluation accent, variant, flite voice, speaker, recording or babble language with the data', () => {
    const used = parseNpy(readFileSync(join(field, 'source.npy'))).data as Int32Array;
    const evalIds = evalSourceIds(data, manifest).flatMap((a) => [...a]);
    assert.deepEqual(fieldOverlaps(fm, used, manifest, evalIds), []);
    // every row's own source, not only the lists
    for (const id of used) {
      const s = fm.sources[id];
      if (s.kind === 'espeak-ng') {
        assert.ok((FIELD_ESPEAK_LANGS as readonly string[]).includes(s.accent!), s.accent);
        assert.ok(manifest.heldOut.espeakVariants.train.includes(s.variant!), `variant ${s.variant} is a training one`);
      }
      if (s.kind === 'flite') assert.ok(!manifest.heldOut.fliteVoices.eval.includes(s.voice!) && typeof s.f0 === 'number', `flite ${s.voice}`);
      if (s.kind === 'real') assert.ok(!manifest.heldOut.realSpeakers.eval.includes(s.speaker!) && !manifest.heldOut.realSpeakers.train.includes(s.speaker!), s.speaker);
    }
    for (const l of fm.voices.babbleLanguages) assert.ok(manifest.heldOut.babbleLanguages.train.includes(l), `babble ${l}`);
  });

  it('names each way a field split would meet the evaluation', () => {
    const evalIds = evalSourceIds(data, manifest).flatMap((a) => [...a]);
    const evalEspeak = manifest.sources.find((s) => s.kind === 'espeak-ng' && manifest.heldOut.espeakAccents.eval.includes(s.accent!))!;
    const bad: FieldManifest['sources'] = [
      { id: 0, kind: 'flite', voice: manifest.heldOut.fliteVoices.eval[0], f0: 180 },
      { id: 1, kind: 'espeak-ng', accent: 'nl', variant: manifest.heldOut.espeakVariants.eval[0] },
      { id: 2, kind: 'real', speaker: manifest.heldOut.realSpeakers.eval[0], file: '/x.ogg' },
      { id: 3, kind: 'real', speaker: `ktuberling-${manifest.heldOut.babbleLanguages.eval[0]}`, file: '/y.ogg' },
      { id: 4, kind: 'espeak-ng', accent: evalEspeak.accent, variant: evalEspeak.variant },
    ];
    const found = fieldOverlaps({ sources: bad, voices: { ...fm.voices, babbleLanguages: [manifest.heldOut.babbleLanguages.eval[1]] } }, [0, 1, 2, 3, 4], manifest, evalIds);
    for (const want of [/flite voice slt/, /variant .* held out/, /speaker klettres-en_GB is held out/, /speaks an evaluation babble language/, /accent en-\S+ is held out/, /speaks in an evaluation split/, /babble language \S+ is an evaluation babble language/]) {
      assert.ok(found.some((f) => want.test(f)), `${want} in ${JSON.stringify(found)}`);
    }
  });

  it('is deterministic: the same seed writes the same manifest and files', async () => {
    const again = await generateField({ data, out: join(dir, 'again'), seed: 1, jobs: 1, inflight: 3, log: quiet });
    assert.deepEqual(again, fm);
    const other = await generateField({ data, out: join(dir, 'seed2'), seed: 2, jobs: 1, log: quiet });
    assert.notEqual(other.sha256.x, fm.sha256.x, 'another seed draws other rows');
  });

  it('is read as inputs alone, and only with the data it was made for', () => {
    const copy = join(dir, 'inputs-only');
    cpSync(field, copy, { recursive: true });
    rmSync(join(copy, 'y.npy'));
    rmSync(join(copy, 'source.npy'));
    const x = fieldInputs(copy, data);
    assert.deepEqual(x.shape, [fm.count, 49, 40, 1]);
    const other = join(dir, 'other-data');
    cpSync(data, other, { recursive: true });
    writeFileSync(join(other, 'manifest.json'), readFileSync(join(data, 'manifest.json'), 'utf8').replace('"seed": 1', '"seed": 7'));
    assert.throws(() => fieldInputs(copy, other), (e: unknown) => e instanceof UsageError && /made for other data/.test(e.message) && /field\.ts --data/.test(e.message));
    writeFileSync(join(copy, 'x.npy'), Buffer.concat([readFileSync(join(copy, 'x.npy')).subarray(0, -4), Buffer.alloc(4)]));
    assert.throws(() => fieldInputs(copy, data), (e: unknown) => e instanceof UsageError && /sha256 differs/.test(e.message));
  });

  it('--teacher-distill-inputs field: the teacher chains distil on the field inputs (generated when missing)', () => {
    rmSync(field, { recursive: true, force: true });
    const out = join(dir, 'bench.json');
    const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', benchScript, '--quick', '--data', data, '--work', join(dir, 'work'), '--out', out, '--methods', 'none', '--teacher-methods', 'lowbit:1', '--teacher-distill-inputs', 'field', '--jobs', '1'], { cwd: repo, encoding: 'utf8', timeout: 500_000 });
    assert.equal(r.status, 0, `bench failed:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
    assert.match(r.stdout, /no field split in .*data-field: generating it/);
    assert.match(r.stdout, new RegExp(`teacher chains distil on ${fm.count} field inputs \\(.*data-field\\) beside \\d+ of the update's, distillMix 0\\.5`));
    const rows = JSON.parse(readFileSync(out, 'utf8')) as { method: string; teacher?: boolean; agreement?: number }[];
    const low = rows.find((x) => x.method === 'lowbit' && x.teacher);
    assert.ok(low && typeof low.agreement === 'number', 'the lowbit teacher row');
    const bad = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', benchScript, '--quick', '--data', data, '--work', join(dir, 'work'), '--teacher-distill-inputs', 'fields'], { cwd: repo, encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--teacher-distill-inputs must be none, seen, field or seen\+field, found "fields"/);
  });
});

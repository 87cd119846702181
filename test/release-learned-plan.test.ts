/**
 * A learned plan's checks that need no training: `release add` refuses a learned method without
 * plan, budget, training data or eval inputs (exit 2, the folder as it was), and learned options
 * without a learned method; the record and a job ticket refuse a learned job whose inputs are not
 * named by content, or whose id does not say its method, before anything runs or is signed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile, mkdir } from 'node:fs/promises';
import { saveNpy } from '../src/io/npy/files.ts';
import { existsSync } from 'node:fs';
import { readRecord } from '../src/release/record.ts';
import { writeBlob } from '../src/release/blobs.ts';
import { cancelPending } from '../src/release/add.ts';
import { checkTicket, ticketsOf } from '../src/release/ticket.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { runNdiff } from './helpers/ndiff-run.ts';
import { treeBytes } from './helpers/dirs.ts';

test('release add: a learned method is planned only, with a budget, training data and eval inputs; learned options need a learned method', async () => {
  const chain = await releaseChain(1);
  const data = join(chain.work, 'data');
  await mkdir(data);
  await saveNpy(join(data, 'x.npy'), new Float32Array(8), [2, 4]);
  const before = await treeBytes(chain.releaseDir);
  const add = (...extra: string[]) => runNdiff('release', 'add', '--release', chain.releaseDir, '--model', chain.versions[0], ...extra);
  const cases: [string[], RegExp][] = [
    [['--method', 'sparse', '--budget', '5%', '--train', data, '--eval', data], /--method sparse learns each payload in a job: add with --plan, then run the plan on a job queue/],
    [['--plan', '--method', 'sparse', '--train', data, '--eval', data], /--method sparse needs --budget, e\.g\. 5%/],
    [['--plan', '--method', 'lowbit', '--budget', '5%', '--eval', data], /--method lowbit needs --train DATA/],
    [['--plan', '--method', 'auto', '--budget', '5%', '--train', data], /--method auto needs --eval INPUTS/],
    [['--plan', '--train', data], /--train plan learned payloads: set --method to a learned one \(sparse, lowbit, auto\.\.\.\), or leave them out/],
    [['--plan', '--method', 'bogus'], /--method "bogus": expected exact, topk or a learned method \(sparse, hash/],
  ];
  for (const [extra, message] of cases) {
    const r = await add(...extra);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.err}`);
    assert.match(r.err, message);
  }
  assert.deepEqual(await treeBytes(chain.releaseDir), before, 'a refused add leaves the folder as it was');
});

test('a learned job whose inputs are not named by content, or whose id hides its method, is refused by the record and by a worker', async () => {
  const chain = await releaseChain(1);
  await chain.addNext({ planOnly: true });
  const record = (await readRecord(chain.releaseDir))!;
  const file = join(chain.releaseDir, 'release.json');
  const exact = record.pending!.jobs[0];
  const blob = record.versions[0].files[0];
  const learned = { ...exact, id: `${exact.id}-train-sparse`, policy: { method: 'learned' as const, budget: '5%', learned: { method: 'sparse' as const, train: [{ ...blob, path: 'x.npy' }], eval: [{ ...blob, path: 'x.npy' }], epochs: 2, seed: 0, tune: 'off' as const, threads: 1 } } };
  // As add --plan writes it: read back, and its ticket names the data by content.
  await writeFile(file, JSON.stringify({ ...record, pending: { ...record.pending, jobs: [learned] } }));
  const ok = (await readRecord(chain.releaseDir))!;
  const [ticket] = ticketsOf(ok);
  assert.equal(checkTicket(JSON.parse(JSON.stringify(ticket))).job.id, learned.id);
  const forged: [string, unknown][] = [
    ['a data file outside blobs/', { ...learned, policy: { ...learned.policy, learned: { ...learned.policy.learned, train: [{ ...blob, path: 'x.npy', file: '../../etc/passwd' }] } } }],
    ['a data file named with a folder', { ...learned, policy: { ...learned.policy, learned: { ...learned.policy.learned, eval: [{ ...blob, path: '../x.npy' }] } } }],
    ['no eval inputs', { ...learned, policy: { ...learned.policy, learned: { ...learned.policy.learned, eval: [] } } }],
    ['an id that does not say its method', { ...learned, id: exact.id }],
    ['another method in the id', { ...learned, id: `${exact.id}-train-lora` }],
    ['a learned suffix on an exact job', { ...exact, id: `${exact.id}-train-sparse` }],
  ];
  for (const [what, job] of forged) {
    await writeFile(file, JSON.stringify({ ...record, pending: { ...record.pending, jobs: [job] } }));
    await assert.rejects(readRecord(chain.releaseDir), /pending\.jobs\[0\] to be a job `ndiff release add --plan` writes/, what);
    if (what.startsWith('a data file') || what === 'no eval inputs') assert.throws(() => checkTicket({ ...ticket, job }), /expected a release job ticket/, what);
  }
  // Cancelling the plan removes its data's blobs (nothing reads them, and the folder is served), not the versions'.
  const data = { path: 'x.npy', ...(await writeBlob(chain.releaseDir, new Uint8Array([1, 2, 3]))) };
  await writeFile(file, JSON.stringify({ ...record, pending: { ...record.pending, jobs: [{ ...learned, policy: { ...learned.policy, learned: { ...learned.policy.learned, train: [data] } } }] } }));
  await cancelPending(chain.releaseDir);
  assert.equal(existsSync(join(chain.releaseDir, data.file)), false, 'the plan\'s data left the folder');
  assert.ok(existsSync(join(chain.releaseDir, blob.file)), 'version 1\'s file stays');
});

// A node:test reporter: per test file, the sum of its top-level tests' durations, their count and
// failures, slowest first: where the suite's time goes (docs/CONTRIBUTING.md).
//   node --conditions=neural-diff-source --import tsx --test --test-concurrency=2 \
//     --test-reporter=./scripts/test-file-times.mjs --test-reporter-destination=times.txt \
//     --test-reporter=spec --test-reporter-destination=stdout test/*.test.ts
export default async function* fileTimes(source) {
  const per = new Map();
  for await (const ev of source) {
    if ((ev.type === 'test:pass' || ev.type === 'test:fail') && ev.data.nesting === 0) {
      const f = ev.data.file ?? '?';
      const e = per.get(f) ?? { ms: 0, n: 0, fail: 0 };
      e.ms += ev.data.details?.duration_ms ?? 0; e.n++; if (ev.type === 'test:fail') e.fail++;
      per.set(f, e);
    }
  }
  const rows = [...per.entries()].sort((a, b) => b[1].ms - a[1].ms);
  let tot = 0; for (const [, e] of rows) tot += e.ms;
  yield `total ${(tot / 1000).toFixed(0)} s over ${rows.length} files\n`;
  for (const [f, e] of rows) yield `${(e.ms / 1000).toFixed(1)}\t${e.n}\t${e.fail}\t${f.replace(/.*\/test\//, 'test/')}\n`;
}

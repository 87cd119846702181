// A node:test reporter: per test file, the sum of its top-level tests' durations, their count and
// failures, slowest first, then when each file's tests began and ended (seconds from the start of
// the run, as the events arrived): where the suite's time goes and which file ran alone at its end
// (docs/CONTRIBUTING.md).
//   node --conditions=neural-diff-source --import tsx --test --test-concurrency=2 \
//     --test-reporter=./scripts/test-file-times.mjs --test-reporter-destination=times.txt \
//     --test-reporter=spec --test-reporter-destination=stdout test/*.test.ts
export default async function* fileTimes(source) {
  const t0 = Date.now();
  const per = new Map();
  const entry = (f) => {
    let e = per.get(f);
    if (!e) per.set(f, (e = { ms: 0, n: 0, fail: 0, first: (Date.now() - t0) / 1000, last: 0 }));
    return e;
  };
  for await (const ev of source) {
    const f = ev.data?.file;
    if (f && (ev.type === 'test:start' || ev.type === 'test:pass' || ev.type === 'test:fail')) entry(f).last = (Date.now() - t0) / 1000;
    if ((ev.type === 'test:pass' || ev.type === 'test:fail') && ev.data.nesting === 0) {
      const e = entry(ev.data.file ?? '?');
      e.ms += ev.data.details?.duration_ms ?? 0; e.n++; if (ev.type === 'test:fail') e.fail++;
    }
  }
  const rows = [...per.entries()].sort((a, b) => b[1].ms - a[1].ms);
  let tot = 0; for (const [, e] of rows) tot += e.ms;
  const name = (f) => f.replace(/.*\/test\//, 'test/');
  yield `total ${(tot / 1000).toFixed(0)} s over ${rows.length} files, ${((Date.now() - t0) / 1000).toFixed(0)} s wall\n`;
  for (const [f, e] of rows) yield `${(e.ms / 1000).toFixed(1)}\t${e.n}\t${e.fail}\t${name(f)}\n`;
  yield `\nfirst and last event of each file (s from the start), by the last:\n`;
  for (const [f, e] of [...per.entries()].sort((a, b) => a[1].last - b[1].last)) yield `${e.first.toFixed(0)}\t${e.last.toFixed(0)}\t${name(f)}\n`;
}

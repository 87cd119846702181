/**
 * The in-place apply of a GGUF payload on a large model, against the least any apply must do:
 * a generated Q8_0 model of `--mib` MiB (default 2048; its data section left as holes, so it
 * costs no disk but reads as zeros, a "sparse" file), a v2 with `--share` (default 10%) of its
 * blocks rewritten with seeded random bytes in runs of 64 blocks, the exact payload between them
 * (format v8, every chunk XOR range-coded), then, alternated on fresh copies of v1 (`cp --sparse=always`):
 *
 * - **apply**: `applyToGgufFile` (what `ndiff apply` runs): the base's digest, every chunk decoded
 *   and journalled (fsynced) before the first overwrite, the overwrites, fsync, the read-back and
 *   the target's digest, the journal's removal;
 * - **plain**: the changed ranges read, their new bytes written in place, one fsync: no journal,
 *   no digests, nothing checked (the floor of any in-place update).
 *
 * Each run is a child process; its peak RSS is the kernel's high-water mark of its own memory
 * (`VmHWM` of /proc/self/status: `process.resourceUsage().maxRSS` keeps the parent's peak across the
 * fork and exec, which made every run report the bench's own memory). The ratio is apply / plain
 * of the medians. `--baseline DIR` adds a third contender, the apply of another checkout
 * (`DIR/src/io/gguf/in-place.ts`, given the payload's bytes), side by side in the same runs. The disk the apply grows is its journal: the old bytes of the
 * changed ranges, and a header.
 *
 *   node --conditions=neural-diff-source --import tsx bench/gguf-apply.ts [--mib 2048] [--share 0.1] [--runs 3]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { openGgufModel } from '../src/io/gguf/files.ts';
import { writeGeneratedQ8Pair } from './gguf-generated.ts';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};

/** One timed run, as the child prints it. */
interface RunFigures {
  seconds: number;
  maxRssMiB: number;
  writtenBytes: number;
}

/** This process's peak resident memory in KiB: VmHWM where /proc has it, else maxRSS. */
function peakRssKiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS;
}

if (process.argv[2] === '--child') {
  // node bench/gguf-apply.ts --child apply|plain MODEL PAYLOAD
  const [, , , mode, model, payloadFile] = process.argv;
  const start = process.hrtime.bigint();
  let written = 0;
  if (mode === 'baseline') {
    // Another checkout's apply, given the payload's bytes (every version takes them).
    const { applyToGgufFile } = await import(path.join(process.argv[6], 'src/io/gguf/in-place.ts'));
    const file = readFileSync(payloadFile);
    const r = await applyToGgufFile(model, new Uint8Array(file.buffer, file.byteOffset, file.length), { state: null });
    written = r.writtenBytes;
  } else if (mode === 'apply') {
    const { applyToGgufFile } = await import('../src/io/gguf/in-place.ts');
    // The payload by its path: read a window and a chunk at a time, as `ndiff apply` reads it.
    const r = await applyToGgufFile(model, payloadFile, { state: null });
    written = r.writtenBytes;
  } else {
    const file = readFileSync(payloadFile);
    const bytes = new Uint8Array(file.buffer, file.byteOffset, file.length);
    const { decodeGgufPayload, decodeGgufChunk } = await import('../src/io/gguf/payload.ts');
    const { getHasher } = await import('../src/core/hasher.ts');
    const { openSync: open, readSync, writeSync: write, fsyncSync, closeSync: close } = await import('node:fs');
    const hasher = await getHasher();
    const p = decodeGgufPayload(bytes, { maxPayloadBytes: bytes.length });
    const fd = open(model, 'r+');
    for (const chunk of p.chunks) {
      const old = new Uint8Array(chunk.bytes);
      let at = 0;
      for (const r of chunk.runs) {
        readSync(fd, old, at, r.length, r.offset);
        at += r.length;
      }
      const next = decodeGgufChunk(hasher, chunk, old, 'chunk');
      at = 0;
      for (const r of chunk.runs) {
        write(fd, next, at, r.length, r.offset);
        at += r.length;
      }
      written += chunk.bytes;
    }
    fsyncSync(fd);
    close(fd);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(`${JSON.stringify({ seconds, maxRssMiB: peakRssKiB() / 1024, writtenBytes: written } satisfies RunFigures)}\n`);
  process.exit(0);
}

const mib = Number(arg('--mib', '2048'));
const share = Number(arg('--share', '0.1'));
const runs = Number(arg('--runs', '3'));
const work = mkdtempSync(path.join(tmpdir(), 'ndiff-bench-gguf-apply-'));
try {
  const pair = writeGeneratedQ8Pair(work, { mib, share });
  const { v1, v2, size } = pair;
  console.log(`model: ${pair.description}`);
  // The payload with every chunk XOR range-coded, as this benchmark's figures have always been
  // made (`ndiff diff` also tries a byte delta per chunk and keeps the smaller; on rewritten
  // blocks the XOR wins every chunk, and the apply measured here is the same either way).
  const payload = path.join(work, 'p.ndiff');
  const started = process.hrtime.bigint();
  const baseFiles = openGgufModel(v1);
  const targetFiles = openGgufModel(v2);
  const made = diffGgufModels(await getHasher(), baseFiles.model, targetFiles.model, { modelId: 'bench', sequence: 1, createdBy: 'bench', chunkCoding: 'xor' });
  baseFiles.close();
  targetFiles.close();
  writeFileSync(payload, made.payload);
  const diffSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`payload: ${made.payload.length} bytes (${((100 * made.payload.length) / size).toFixed(1)}% of the model; ${made.changedBytes} bytes in ${made.runs} ranges, ${made.chunks} chunks), made in ${diffSeconds.toFixed(1)} s`);

  const baseline = process.argv.includes('--baseline') ? path.resolve(arg('--baseline', '')) : undefined;
  const one = (mode: 'apply' | 'plain' | 'baseline'): RunFigures => {
    const device = path.join(work, 'device.gguf');
    rmSync(device, { force: true });
    execFileSync('cp', ['--sparse=always', v1, device]);
    const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', import.meta.filename, '--child', mode, device, payload, ...(baseline ? [baseline] : [])], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`${mode} failed: ${r.stderr}`);
    const figures = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as RunFigures;
    // Both must leave the device at v2, byte for byte.
    execFileSync('cmp', ['-s', device, v2]);
    return figures;
  };
  const apply: RunFigures[] = [];
  const plain: RunFigures[] = [];
  const before: RunFigures[] = [];
  for (let i = 0; i < runs; i++) {
    if (baseline) before.push(one('baseline'));
    // Alternated, plain first every other run.
    if (i % 2 === 0) {
      plain.push(one('plain'));
      apply.push(one('apply'));
    } else {
      apply.push(one('apply'));
      plain.push(one('plain'));
    }
    console.log(`run ${i + 1}: apply ${apply.at(-1)!.seconds.toFixed(2)} s (${apply.at(-1)!.maxRssMiB.toFixed(0)} MiB peak), plain ${plain.at(-1)!.seconds.toFixed(2)} s (${plain.at(-1)!.maxRssMiB.toFixed(0)} MiB peak)`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const a = median(apply.map((r) => r.seconds));
  const b = median(plain.map((r) => r.seconds));
  console.log('');
  console.log('| | median time | peak RSS | bytes written in place |');
  console.log('|---|---:|---:|---:|');
  console.log(`| apply (journal, digests, read-back) | ${a.toFixed(2)} s | ${Math.max(...apply.map((r) => r.maxRssMiB)).toFixed(0)} MiB | ${apply[0].writtenBytes} |`);
  console.log(`| plain read and rewrite of the changed ranges | ${b.toFixed(2)} s | ${Math.max(...plain.map((r) => r.maxRssMiB)).toFixed(0)} MiB | ${plain[0].writtenBytes} |`);
  if (baseline) {
    const c = median(before.map((r) => r.seconds));
    console.log(`| apply of ${baseline} | ${c.toFixed(2)} s | ${Math.max(...before.map((r) => r.maxRssMiB)).toFixed(0)} MiB | ${before[0].writtenBytes} |`);
    console.log(`baseline apply / plain: ${(c / b).toFixed(2)}x`);
  }
  console.log(`apply / plain: ${(a / b).toFixed(2)}x (medians of ${runs} alternated runs); the journal: ${apply[0].writtenBytes} bytes of old ranges`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/**
 * The Debian packages the keyword-spotting data needs (espeak-ng, flite, sox, ktuberling-data,
 * klettres-data): checking them, installing the missing ones with apt-get, their versions, and
 * what they offer (espeak-ng accents and variants, flite voices, a package's recordings).
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { UsageError } from '../../src/core/errors.ts';
import { EXCLUDED_VARIANTS } from './vocabulary.ts';

/** A Debian package the generator needs, and how to tell it is usable. */
interface Requirement {
  pkg: string;
  /** executable that must run, if the package ships one */
  bin?: string;
}

const REQUIREMENTS: Requirement[] = [
  { pkg: 'espeak-ng', bin: 'espeak-ng' },
  { pkg: 'flite', bin: 'flite' },
  { pkg: 'sox', bin: 'sox' },
  { pkg: 'ktuberling-data' },
  { pkg: 'klettres-data' },
];

function run(cmd: string, args: string[]): { ok: boolean; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { ok: r.status === 0 && !r.error, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

function packageInstalled(req: Requirement): boolean {
  const q = run('dpkg-query', ['-W', '-f=${Status}', req.pkg]);
  const dpkgOk = q.ok && q.stdout.includes('install ok installed');
  if (req.bin) {
    const b = run('sh', ['-c', `command -v ${req.bin}`]);
    return b.ok && b.stdout.trim() !== '' && (dpkgOk || !run('sh', ['-c', 'command -v dpkg-query']).ok);
  }
  return dpkgOk;
}

/** Thrown when a required package is missing and cannot be installed. */
export class ToolsUnavailableError extends UsageError {
  /** Packages that are still missing. */
  readonly missing: string[];
  constructor(missing: string[], why: string) {
    super(
      `keyword-spotting data needs the Debian packages ${missing.join(', ')}, which are missing and could not be installed (${why}); install them with: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing.join(' ')}`,
      { missing },
    );
    this.missing = missing;
  }
}

/**
 * Makes sure espeak-ng, flite, sox, ktuberling-data and klettres-data are installed, installing
 * the missing ones with apt-get (as root; `apt-get update` first). Says what it does on `log`.
 *
 * @returns the packages that were installed by this call.
 * @throws ToolsUnavailableError when a package is missing and cannot be installed.
 */
export function ensureTools(log: (line: string) => void = console.log, packages: readonly string[] = REQUIREMENTS.map((r) => r.pkg)): string[] {
  const wanted = REQUIREMENTS.filter((r) => packages.includes(r.pkg));
  const missing = wanted.filter((r) => !packageInstalled(r)).map((r) => r.pkg);
  if (missing.length === 0) return [];
  if (!run('sh', ['-c', 'command -v apt-get']).ok) throw new ToolsUnavailableError(missing, 'apt-get is not available');
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new ToolsUnavailableError(missing, 'installing needs root');
  }
  log(`installing ${missing.join(', ')} with apt-get (Debian packages; the sound data is GPL-2+ and stays out of git) ...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // wait for a dpkg lock held by another apt run instead of failing at once
  const lock = ['-o', 'DPkg::Lock::Timeout=120'];
  const upd = spawnSync('apt-get', [...lock, 'update', '-qq'], { encoding: 'utf8', env });
  if (upd.status !== 0) log(`apt-get update failed (${(upd.stderr || '').trim().split('\n').pop()}); trying the install anyway`);
  const inst = spawnSync('apt-get', [...lock, 'install', '-y', '-q', '--no-install-recommends', ...missing], { encoding: 'utf8', env });
  const still = wanted.filter((r) => !packageInstalled(r)).map((r) => r.pkg);
  if (inst.status !== 0 || still.length > 0) {
    const tail = `${inst.stderr ?? ''}${inst.stdout ?? ''}`.trim().split('\n').slice(-2).join(' | ');
    throw new ToolsUnavailableError(still.length ? still : missing, `apt-get install exited with ${inst.status}: ${tail}`);
  }
  log(`installed ${missing.join(', ')}`);
  return missing;
}

export function toolVersions(): Record<string, string> {
  const v: Record<string, string> = {};
  for (const r of REQUIREMENTS) {
    const q = run('dpkg-query', ['-W', '-f=${Version}', r.pkg]);
    v[r.pkg] = q.ok ? q.stdout.trim() : 'unknown';
  }
  return v;
}

/** espeak-ng voice variants (file names under `voices/!v`), sorted. */
export function espeakVariants(): string[] {
  const r = run('espeak-ng', ['--voices=variant']);
  if (!r.ok) throw new UsageError(`espeak-ng --voices=variant failed: ${r.stderr.trim()}; reinstall espeak-ng`);
  const out = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const m = /\s!v\/(\S+)/.exec(line);
    if (m && !EXCLUDED_VARIANTS.has(m[1])) out.add(m[1]);
  }
  return [...out].sort();
}

export function espeakAccents(): Set<string> {
  const r = run('espeak-ng', ['--voices=en']);
  const out = new Set<string>();
  for (const line of r.stdout.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 5 && cols[4].startsWith('gmw/')) out.add(cols[1]);
  }
  return out;
}

export function fliteVoices(): Set<string> {
  const r = run('flite', ['-lv']);
  return new Set((r.stdout + r.stderr).replace(/^.*?:/s, '').trim().split(/\s+/));
}

export function packageFiles(pkg: string): string[] {
  const r = run('dpkg', ['-L', pkg]);
  if (!r.ok) throw new UsageError(`dpkg -L ${pkg} failed: ${r.stderr.trim()}; reinstall ${pkg}`);
  return r.stdout.split('\n').filter((l) => l.endsWith('.ogg'));
}

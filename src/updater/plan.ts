/**
 * The cheapest way from the model a device holds to the newest version a release offers:
 * Dijkstra over bytes on the graph whose nodes are model fingerprints and whose edges are the
 * payloads, against the full package of the newest version (an edge from anywhere, an unknown
 * model or no model at all included). The newest version is reached by any state of it: its
 * fingerprint, or the target of a lossy payload into it (a payload made under a byte budget
 * ends near the version, not at it).
 *
 * Ties go to fewer steps, then to the payload path over the full package, then to file names,
 * so every device with the same fingerprint picks the same path.
 */
import { packageBytes, versionOf, type ManifestPayload, type ManifestVersion, type ReleaseManifest } from './manifest.ts';

/** What {@link planUpdate} chose. */
export interface UpdatePlan {
  /** `none`: the device holds the newest version; `payloads`: apply `steps` in order; `full`: install the full package. */
  kind: 'none' | 'payloads' | 'full';
  /** The payloads to apply, in order (empty unless `kind` is `payloads`). */
  steps: ManifestPayload[];
  /** Bytes to download. */
  bytes: number;
  /** Bytes of the newest version's full package (what a device without a path downloads). */
  fullBytes: number;
  /** The newest version. */
  version: ManifestVersion;
  /** The fingerprint the device ends at. */
  fingerprint: string;
}

/** What the planner may not use. */
export interface PlanExclusions {
  /** SHA-256 of payloads not to use (failed a health check, or failed to download this run). */
  payloads?: ReadonlySet<string>;
  /** True when the newest full package may not be used (it failed a health check). */
  noFullPackage?: boolean;
  /**
   * True when the device cannot take structural payloads (a model held in memory): they are no
   * edge for it, so a chain through one is no path and the full package is offered instead.
   */
  noStructural?: boolean;
}

/** The key under which a failed full package is remembered. */
export function packageKey(version: ManifestVersion): string {
  return `package:${version.fingerprint}`;
}

interface Label {
  bytes: number;
  steps: number;
  /** The payload that reached this node, and the node it came from. */
  via?: ManifestPayload;
  names: string;
}

function better(a: Label, b: Label | undefined): boolean {
  if (!b) return true;
  if (a.bytes !== b.bytes) return a.bytes < b.bytes;
  if (a.steps !== b.steps) return a.steps < b.steps;
  return a.names < b.names;
}

/**
 * Plan the update of a device holding `fingerprint` (undefined: no model, or one that cannot be
 * read). Returns null when nothing is left to try (no payload path and the full package excluded).
 */
export function planUpdate(manifest: ReleaseManifest, fingerprint: string | undefined, exclude: PlanExclusions = {}): UpdatePlan | null {
  const latest = versionOf(manifest, manifest.latest);
  const fullBytes = packageBytes(latest);
  const goals = new Set([latest.fingerprint, ...manifest.payloads.filter((p) => p.toVersion === latest.version).map((p) => p.target)]);
  if (fingerprint !== undefined && goals.has(fingerprint)) return { kind: 'none', steps: [], bytes: 0, fullBytes, version: latest, fingerprint };
  const full: UpdatePlan | null = exclude.noFullPackage ? null : { kind: 'full', steps: [], bytes: fullBytes, fullBytes, version: latest, fingerprint: latest.fingerprint };
  if (fingerprint === undefined) return full;

  const edges = new Map<string, ManifestPayload[]>();
  for (const p of manifest.payloads) {
    if (exclude.payloads?.has(p.sha256) || (exclude.noStructural && p.structural)) continue;
    const out = edges.get(p.base) ?? [];
    out.push(p);
    edges.set(p.base, out);
  }
  // Dijkstra; the graphs are small (versions x history), so the frontier is a plain scan.
  const labels = new Map<string, Label>([[fingerprint, { bytes: 0, steps: 0, names: '' }]]);
  const done = new Set<string>();
  let reached: string | undefined;
  for (;;) {
    let node: string | undefined;
    for (const [n, l] of labels) if (!done.has(n) && (node === undefined || better(l, labels.get(node)))) node = n;
    if (node === undefined) break;
    done.add(node);
    if (goals.has(node)) {
      reached = node;
      break;
    }
    const here = labels.get(node) as Label;
    for (const p of edges.get(node) ?? []) {
      const next: Label = { bytes: here.bytes + p.length, steps: here.steps + 1, via: p, names: here.names + p.sha256 };
      if (!done.has(p.target) && better(next, labels.get(p.target))) labels.set(p.target, next);
    }
  }
  if (reached === undefined) return full;
  const steps: ManifestPayload[] = [];
  for (let n = reached; n !== fingerprint;) {
    const via = labels.get(n)?.via as ManifestPayload;
    steps.unshift(via);
    n = via.base;
  }
  const bytes = (labels.get(reached) as Label).bytes;
  if (full && full.bytes < bytes) return full;
  return { kind: 'payloads', steps, bytes, fullBytes, version: latest, fingerprint: reached };
}

/**
 * A compiled step's intermediates in one block of the backend's memory, laid out once (issue 63:
 * "buffers allocated once, each buffer reused after its last reader").
 *
 * At capture, every intermediate of a plan (an output some later kernel reads, or nobody reads,
 * and that neither leaves the step nor becomes a variable) has a size and a lifetime: from the
 * kernel that writes it to its last reader. {@link planArena} gives each one an offset in one
 * arena, greedy by size (largest first, each into the tightest gap left by the values alive at
 * the same time), 16-byte aligned for SIMD. The plan allocates the arena once ({@link ReplayArena})
 * and frees it with the plan.
 *
 * During a replay the arena hands each kernel's output its planned offset: the backend's `write`
 * (what `makeOutput` allocates through; hooked once per backend, the backend's own outside a
 * replay) gives a request of the planned type and size the planned range instead of a `_malloc`,
 * and `disposeData` of such a value forgets it without a `_free`.
 * Whatever does not match the plan keeps a normal allocation (a kernel's own scratch of another
 * shape; an output allocated elsewhere is said once); a value sitting in a range it was not planned
 * for (a kernel that returns its input as its output, or an output that leaves the step) is moved
 * to a normal allocation of its own before anything can overwrite it, and so is any arena value
 * still alive when the replay ends. So the arena changes where values live, never what they are.
 */
import type { DataType, KernelBackend, TensorInfo } from '@tensorflow/tfjs';
import { UsageError } from '../../core/errors.ts';

/**
 * `planMemory` true lays a plan's intermediates out in one arena; false (the default) gives every
 * kernel's output its own allocation, as before. Off by default: side by side on the keyword CNN
 * and the small transformer (bench/profile-plan.ts --compare arena) replays took 0.87-1.01x the
 * CPU time without it and the WebAssembly memory ended the same size, while a replay holds the
 * arena and the step's outputs at once (docs/benchmarks/training-speed.md).
 */
export const arenaSwitch = { planMemory: false };

/** Offsets are multiples of this (SIMD loads of 16 bytes). */
export const ARENA_ALIGN = 16;

/** A value to place: its bytes and the kernels (indices, inclusive) from its writer to its last reader. */
export interface Lifetime {
  bytes: number;
  first: number;
  last: number;
}

/** Where each value lives in the arena, and the arena's size. */
export interface ArenaLayout {
  offsets: number[];
  bytes: number;
}

const roundUp = (n: number, align: number) => Math.ceil(n / align) * align;

/**
 * Offsets for `items` in one arena: two values alive at the same kernel never share a byte.
 * Greedy by size: the largest first (ties: the earlier writer, then the list's order), each at the
 * start of the smallest gap between the values already placed whose lifetimes meet its own, or
 * after the last of them. Zero-byte values take offset 0 and no room. Deterministic.
 * @throws UsageError for a size or lifetime that is not one.
 */
export function planArena(items: readonly Lifetime[], align = ARENA_ALIGN): ArenaLayout {
  if (!Number.isInteger(align) || align < 1) throw new UsageError(`the arena's alignment must be a positive integer, got ${align}`, { align });
  items.forEach((it, i) => {
    if (!Number.isSafeInteger(it.bytes) || it.bytes < 0 || !Number.isSafeInteger(it.first) || !Number.isSafeInteger(it.last) || it.first < 0 || it.last < it.first) {
      throw new UsageError(`value ${i} to place in the arena needs whole bytes >= 0 and kernels first <= last, got ${it.bytes} bytes from kernel ${it.first} to ${it.last}: plan the arena from the recorded shapes and readers`, { index: i, ...it });
    }
  });
  const size = items.map((it) => roundUp(it.bytes, align));
  const order = items.map((_, i) => i).filter((i) => size[i] > 0).sort((a, b) => size[b] - size[a] || items[a].first - items[b].first || a - b);
  const offsets = new Array<number>(items.length).fill(0);
  const placed: number[] = [];
  let total = 0;
  for (const i of order) {
    const { first, last } = items[i];
    const meet = placed.filter((p) => items[p].first <= last && first <= items[p].last).sort((a, b) => offsets[a] - offsets[b] || a - b);
    let best = -1;
    let bestGap = Infinity;
    let cursor = 0;
    for (const p of meet) {
      const gap = offsets[p] - cursor;
      if (gap >= size[i] && gap < bestGap) {
        best = cursor;
        bestGap = gap;
      }
      cursor = Math.max(cursor, offsets[p] + size[p]);
    }
    offsets[i] = best >= 0 ? best : cursor;
    total = Math.max(total, offsets[i] + size[i]);
    placed.push(i);
  }
  return { offsets, bytes: total };
}

/**
 * Why `layout` cannot hold `items` (two values alive at one kernel share bytes, an offset is not
 * aligned or runs past the arena), or undefined when it can.
 */
export function arenaConflict(items: readonly Lifetime[], layout: ArenaLayout, align = ARENA_ALIGN): string | undefined {
  if (layout.offsets.length !== items.length) return `${layout.offsets.length} offsets for ${items.length} values`;
  for (let i = 0; i < items.length; i++) {
    const o = layout.offsets[i];
    if (!Number.isSafeInteger(o) || o < 0 || o % align !== 0) return `value ${i} is at offset ${o}, not a multiple of ${align}`;
    if (o + items[i].bytes > layout.bytes) return `value ${i} (${items[i].bytes} bytes at ${o}) runs past the arena's ${layout.bytes} bytes`;
  }
  const live = items.map((_, i) => i).filter((i) => items[i].bytes > 0).sort((a, b) => layout.offsets[a] - layout.offsets[b]);
  for (let x = 0; x < live.length; x++) {
    const a = live[x];
    for (let y = x + 1; y < live.length; y++) {
      const b = live[y];
      if (layout.offsets[b] >= layout.offsets[a] + items[a].bytes) break;
      if (items[a].first <= items[b].last && items[b].first <= items[a].last) {
        return `values ${a} and ${b} are both alive at kernel ${Math.max(items[a].first, items[b].first)} and share bytes from ${layout.offsets[b]}`;
      }
    }
  }
  return undefined;
}

/** One planned output: kernel `kernel`'s output `index`, of this shape and type, at `offset`. */
export interface ArenaSlot {
  kernel: number;
  index: number;
  shape: number[];
  dtype: DataType;
  offset: number;
  /**
   * Which of the kernel's allocations (0: its first) becomes this output, learnt from the replays
   * (a kernel may allocate scratch of the output's size before it); undefined until then.
   */
  request?: number;
}

/** One kernel's planned outputs, the value each is lent to in this replay (null: free) and the kernel's allocations in order. */
interface Pending {
  slots: ArenaSlot[];
  lent: (object | null)[];
  requests: Map<object, number>;
  count: number;
}

interface TensorData { id: number; memoryOffset: number; shape: number[]; dtype: DataType; refCount: number }

/** The parts of tfjs-backend-wasm's `BackendWasm` (4.22) the arena works through. */
interface WasmBackendInternals {
  wasm: {
    HEAPU8: Uint8Array;
    _malloc(bytes: number): number;
    _free(offset: number): void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
  dataIdMap: { get(dataId: object): TensorData | undefined; set(dataId: object, d: TensorData): void; delete(dataId: object): void };
  dataIdNextNumber: number;
  write(values: ArrayBufferView | null, shape: number[], dtype: DataType): object;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** The backend as a wasm backend whose memory an arena can live in, or null (the cpu backend...). */
export function wasmBackendOf(backend: KernelBackend): WasmBackendInternals | null {
  const b = backend as unknown as Partial<WasmBackendInternals>;
  return b.wasm && typeof b.wasm._malloc === 'function' && typeof b.wasm._free === 'function' && b.wasm.tfjs && b.dataIdMap && typeof b.dataIdNextNumber === 'number' ? (b as WasmBackendInternals) : null;
}

const bytesPer = (dtype: DataType) => (dtype === 'bool' ? 1 : 4);
const sizeOf = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);
const shapeText = (shape: readonly number[], dtype: string) => `[${shape.join(', ')}] ${dtype}`;

/** Per backend, the arenas lending now (the innermost replay's last). */
const lenders = new WeakMap<object, ReplayArena[]>();

/**
 * The arenas lending on `backend`, its `write` and `disposeData` hooked once for all: set as the
 * instance's own properties a single time and never removed (adding and deleting them around
 * every replay made V8 keep the backend object in its slow dictionary mode, which every kernel's
 * property reads then paid for). Outside a replay they call the backend's own methods.
 */
function lendersOf(b: WasmBackendInternals): ReplayArena[] {
  let stack = lenders.get(b);
  if (stack) return stack;
  const lending: ReplayArena[] = (stack = []);
  const [write, disposeData] = [b.write, b.disposeData];
  b.write = function (values, shape, dtype) {
    const top = lending.length ? lending[lending.length - 1] : null;
    if (top === null) return write.call(b, values, shape, dtype);
    const lent = top.lend(values, shape, dtype);
    if (lent) return lent;
    const dataId = write.call(b, values, shape, dtype);
    top.allocated(dataId);
    return dataId;
  };
  b.disposeData = function (dataId, force = false) {
    for (let k = lending.length - 1; k >= 0; k--) if (lending[k].holds(dataId)) return lending[k].forget(dataId, force);
    return disposeData.call(b, dataId, force);
  };
  lenders.set(b, stack);
  return stack;
}

/** A plan's arena: allocated once, lent to the kernels' outputs during each replay. */
export class ReplayArena {
  /** Bytes the arena spans (the layout's size). */
  readonly bytes: number;
  /**
   * What did not go as planned, each said once: an output allocated outside the arena, an arena
   * value moved out because it was read past its planned life.
   */
  readonly misses: string[] = [];
  /** Arena values moved to their own allocation (a kernel returned its input, a value outlived its plan). */
  moved = 0;
  private readonly raw: number;
  private readonly base: number;
  /** Per kernel with planned outputs: its slots and their state in the replay (made once: a replay allocates nothing here). */
  private readonly byKernel: (Pending | undefined)[] = [];
  /** Arena values alive, and the slot each sits in. */
  private readonly live = new Map<object, ArenaSlot>();
  /** The kernel running now, when it has planned outputs. */
  private pending: Pending | null = null;
  private lending = false;
  private disposed = false;

  constructor(private readonly backend: WasmBackendInternals, readonly slots: readonly ArenaSlot[], bytes: number) {
    this.bytes = bytes;
    for (const s of slots) {
      const p = this.byKernel[s.kernel];
      if (p) {
        p.slots.push(s);
        p.lent.push(null);
      } else this.byKernel[s.kernel] = { slots: [s], lent: [null], requests: new Map(), count: 0 };
    }
    for (const p of this.byKernel) p?.slots.sort((a, b) => a.index - b.index);
    // One allocation before any replay: a replay's own outputs never grow the memory.
    this.raw = bytes > 0 ? backend.wasm._malloc(bytes + ARENA_ALIGN - 1) >>> 0 : 0;
    if (bytes > 0 && this.raw === 0) throw new UsageError(`the backend could not allocate the plan's ${bytes}-byte arena: turn arenaSwitch.planMemory off or train on a smaller batch`, { bytes });
    this.base = roundUp(this.raw, ARENA_ALIGN);
    lendersOf(backend);
  }

  /** Is a replay lending the arena now? */
  get active(): boolean {
    return this.lending;
  }

  /** Start lending (false: already lending, a replay inside a replay of the same plan, or disposed). */
  begin(): boolean {
    if (this.lending || this.disposed) return false;
    this.lending = true;
    lendersOf(this.backend).push(this);
    return true;
  }


  /** Kernel `i` runs next: its planned outputs may be lent. */
  expect(i: number): void {
    const p = this.byKernel[i];
    if (p) {
      p.lent.fill(null);
      p.requests.clear();
      p.count = 0;
    }
    this.pending = p ?? null;
  }

  /** Kernel `i` (named `name`) ran and returned `outs`: each sits in its own planned range, or is moved out. */
  settle(i: number, name: string, outs: readonly TensorInfo[]): void {
    const p = this.byKernel[i];
    for (let j = 0; j < outs.length; j++) {
      const { dataId, shape, dtype } = outs[j];
      const at = this.live.get(dataId);
      let planned: ArenaSlot | undefined;
      if (p) for (const s of p.slots) if (s.index === j) planned = s;
      const request = p?.requests.get(dataId);
      if (at !== undefined && at !== planned) {
        this.moveOut(dataId, `kernel ${name}'s output ${j} came back in the range of kernel ${at.kernel}'s output ${at.index}`);
        continue;
      }
      if (!planned || at === planned) {
        if (planned) planned.request = request;
        continue;
      }
      if (request !== undefined && planned.dtype === dtype && sizeOf(planned.shape) === sizeOf(shape)) {
        // Scratch of the same size took the range first: the next replays lend it to this allocation.
        planned.request = request;
      } else {
        this.miss(`kernel ${name}'s output ${j} (planned ${shapeText(planned.shape, planned.dtype)}, made ${shapeText(shape, dtype)}) was allocated outside the arena`);
      }
    }
    p?.requests.clear();
    this.pending = null;
  }

  /** Stop lending: any arena value still alive moves to its own allocation. */
  end(): void {
    this.pending = null;
    for (const dataId of [...this.live.keys()]) this.moveOut(dataId, 'a value outlived the replay');
    if (this.lending) {
      const stack = lendersOf(this.backend);
      stack.splice(stack.lastIndexOf(this), 1);
      this.lending = false;
    }
  }

  /**
   * A replay failed: the arena values still alive are let go, not moved out (the caller released
   * the outputs it had; what is left is a failing kernel's output that it never returned, which
   * nothing can read), so a failed replay leaves no allocation or data id behind.
   */
  abort(): void {
    this.pending = null;
    for (const dataId of [...this.live.keys()]) this.forget(dataId, true);
  }

  dispose(): void {
    if (this.disposed) return;
    if (this.lending) this.end();
    this.disposed = true;
    if (this.raw) this.backend.wasm._free(this.raw);
  }

  /** Does this arena hold `dataId` (a value lent a planned range and not yet forgotten)? */
  holds(dataId: object): boolean {
    return this.live.has(dataId);
  }

  /** The backend allocated `dataId` itself during the current kernel (its next allocation in order). */
  allocated(dataId: object): void {
    const p = this.pending;
    if (p) p.requests.set(dataId, p.count - 1);
  }

  /** The write the backend would do, into a planned range when the request is one of the current kernel's outputs. */
  lend(values: ArrayBufferView | null, shape: number[], dtype: DataType): object | undefined {
    const p = this.pending;
    if (!p) return undefined;
    const size = sizeOf(shape);
    const request = p.count++;
    let k = -1;
    for (let j = 0; j < p.slots.length; j++) {
      const s = p.slots[j];
      // Same type and element count (a reduction makes [16] and calls it [16, 1] after), and the
      // allocation that became this output in the replays before, once known.
      if (p.lent[j] === null && (s.request === undefined || s.request === request) && s.dtype === dtype && sizeOf(s.shape) === size) {
        k = j;
        break;
      }
    }
    if (k < 0) return undefined;
    const b = this.backend;
    const slot = p.slots[k];
    const dataId = { id: b.dataIdNextNumber++ };
    const id = b.dataIdNextNumber++;
    const offset = this.base + slot.offset;
    b.dataIdMap.set(dataId, { id, memoryOffset: offset, shape, dtype, refCount: 1 });
    b.wasm.tfjs.registerTensor(id, size, offset);
    if (values != null) b.wasm.HEAPU8.set(new Uint8Array(values.buffer, values.byteOffset, size * bytesPer(dtype)), offset);
    p.lent[k] = dataId;
    p.requests.set(dataId, request);
    this.live.set(dataId, slot);
    return dataId;
  }

  /** disposeData of an arena value: the backend's bookkeeping without its `_free`. */
  forget(dataId: object, force: boolean): boolean {
    const b = this.backend;
    const data = b.dataIdMap.get(dataId) as TensorData;
    data.refCount--;
    if (!force && data.refCount > 0) return false;
    b.wasm.tfjs.disposeData(data.id);
    b.dataIdMap.delete(dataId);
    this.live.delete(dataId);
    // Scratch the kernel running now made in a planned range and let go: the range is free again.
    const p = this.pending;
    if (p) {
      const j = p.lent.indexOf(dataId);
      if (j >= 0) p.lent[j] = null;
    }
    return true;
  }

  /** Give an arena value an allocation of its own (the same data id: every holder still reads it). */
  private moveOut(dataId: object, why: string): void {
    const b = this.backend;
    const data = b.dataIdMap.get(dataId) as TensorData;
    const size = sizeOf(data.shape);
    const bytes = size * bytesPer(data.dtype);
    const to = b.wasm._malloc(bytes) >>> 0;
    // Views are taken after the allocation (it may grow the memory).
    b.wasm.HEAPU8.copyWithin(to, data.memoryOffset, data.memoryOffset + bytes);
    b.wasm.tfjs.disposeData(data.id);
    data.memoryOffset = to;
    b.wasm.tfjs.registerTensor(data.id, size, to);
    this.live.delete(dataId);
    this.moved++;
    this.miss(`${why}: moved to its own allocation`);
  }

  private miss(what: string): void {
    if (this.misses.length < 8 && !this.misses.includes(what)) this.misses.push(what);
  }
}

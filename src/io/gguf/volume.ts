/**
 * The folder a GGUF model is patched in place in, as the in-place protocol (`in-place-core.ts`)
 * and its undo journal (`undo-journal.ts`) see it: files named within one folder, read and
 * written at positions, made durable one at a time (`sync`) and as entries of the folder
 * (`syncFolder`, after a create, rename or delete). Two stores give one: a folder on disk
 * (`node-volume.ts`, node:fs) and a folder of the browser's Origin Private File System
 * (`opfs-volume.ts`). Nothing here imports either.
 */

/** A file of the folder, open. */
export interface VolumeFile {
  /** Its length in bytes now. */
  size(): Promise<number>;
  /**
   * Exactly `length` bytes from `position`.
   * @throws ModelFormatError the file ends first (it changed meanwhile, or is damaged)
   */
  read(position: number, length: number): Promise<Uint8Array>;
  /** Fill `into` from `position` (as {@link read}, into a buffer the caller reuses), where the store can. */
  readInto?(into: Uint8Array, position: number): Promise<void>;
  /** Write all of `bytes` at `position`. */
  write(bytes: Uint8Array, position: number): Promise<void>;
  /** Make what was written durable. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** How a file is opened: read only, read and written in place, created anew (refused when it exists), or created or emptied. */
export type VolumeOpenMode = 'r' | 'r+' | 'wx' | 'w';

/** A folder of files for the in-place apply, named by their names in it. */
export interface GgufVolume {
  /** How messages name the file `name` (a path on disk, an OPFS name). */
  describe(name: string): string;
  /** @throws ModelFormatError (or the store's own error) when it cannot be opened as asked */
  open(name: string, mode: VolumeOpenMode): Promise<VolumeFile>;
  /** The file's length, or undefined when there is none. */
  size(name: string): Promise<number | undefined>;
  /** A small file's text, or undefined when there is none. */
  readText(name: string): Promise<string | undefined>;
  /** Delete the file; false when there was none. */
  remove(name: string): Promise<boolean>;
  /** Rename `from` to `to`, replacing `to`. */
  rename(from: string, to: string): Promise<void>;
  /** Make the folder's entries (files created, renamed, deleted) durable. */
  syncFolder(): Promise<void>;
}

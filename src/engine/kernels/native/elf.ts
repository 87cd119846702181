/**
 * What the addon loader checks in an ELF shared object before handing it to the dynamic loader.
 *
 * `dlopen` maps the file's segments and reads its headers without checking them against the
 * file's length: a file cut short (an interrupted `npm run build:native`, a disk that filled up)
 * maps pages past its end, and the first touch of one kills the process with SIGBUS, which no
 * `try` catches. Checked here first, over the file's bytes: the ELF header, every program header
 * (each loaded segment's bytes within the file), every section header (each section with bytes
 * in the file within it; a cut always loses the section headers, which the linker writes last),
 * and that the dynamic symbol table names `symbol` (so another project's addon is refused
 * without running any of its code).
 */

/** Section types (ELF gABI). */
const SHT_NOBITS = 8;
const SHT_DYNSYM = 11;
/** Segment type of a loaded segment. */
const PT_LOAD = 1;

/**
 * What is wrong with `bytes` as an ELF shared object exporting `symbol`, or undefined when
 * nothing is. Reads 32- and 64-bit, little- and big-endian files.
 */
export function elfProblem(bytes: Uint8Array, symbol: string): string | undefined {
  const size = bytes.length;
  if (size < 16 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) return 'it is not an ELF shared object (no ELF magic number)';
  const wide = bytes[4] === 2;
  if (bytes[4] !== 1 && !wide) return `its ELF class ${bytes[4]} is neither 32- nor 64-bit`;
  if (bytes[5] !== 1 && bytes[5] !== 2) return `its ELF data encoding ${bytes[5]} is neither little- nor big-endian`;
  const little = bytes[5] === 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, size);
  const headerSize = wide ? 64 : 52;
  if (size < headerSize) return `it is cut short: ${size} bytes, less than the ELF header's ${headerSize}`;
  const u16 = (at: number) => view.getUint16(at, little);
  const u32 = (at: number) => view.getUint32(at, little);
  // Offsets and sizes as numbers (a 64-bit one past 2^53 is past any file here anyway).
  const word = (at: number) => (wide ? Number(view.getBigUint64(at, little)) : u32(at));
  if (u16(16) !== 3) return `it is not a shared object (ELF type ${u16(16)}, a shared object is 3)`;

  const phoff = word(wide ? 32 : 28);
  const shoff = word(wide ? 40 : 32);
  const phentsize = u16(wide ? 54 : 42);
  const phnum = u16(wide ? 56 : 44);
  const shentsize = u16(wide ? 58 : 46);
  const shnum = u16(wide ? 60 : 48);
  const cut = (what: string, end: number) => `it is cut short (an interrupted build?): its ${what} end at byte ${end}, the file has ${size}`;
  if (phentsize < (wide ? 56 : 32) || phnum === 0) return `its program headers are malformed (${phnum} of ${phentsize} bytes)`;
  if (phoff + phnum * phentsize > size) return cut('program headers', phoff + phnum * phentsize);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (u32(at) !== PT_LOAD) continue;
    const offset = word(wide ? at + 8 : at + 4);
    const fileSize = word(wide ? at + 32 : at + 16);
    if (offset + fileSize > size) return cut(`loaded segment ${i}'s bytes`, offset + fileSize);
  }
  if (shnum === 0 || shentsize < (wide ? 64 : 40)) return `its section headers are missing or malformed (${shnum} of ${shentsize} bytes)`;
  if (shoff + shnum * shentsize > size) return cut('section headers', shoff + shnum * shentsize);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      type: u32(at + 4),
      offset: word(wide ? at + 24 : at + 16),
      size: word(wide ? at + 32 : at + 20),
      link: u32(wide ? at + 40 : at + 24),
      entsize: word(wide ? at + 56 : at + 36),
    };
  };
  let dynsym: ReturnType<typeof section> | undefined;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_NOBITS && s.offset + s.size > size) return cut(`section ${i}'s bytes`, s.offset + s.size);
    if (s.type === SHT_DYNSYM) dynsym = s;
  }
  if (!dynsym || dynsym.link >= shnum) return 'it has no dynamic symbol table: it is not a Node.js addon';
  const strings = section(dynsym.link);
  const entry = wide ? 24 : 16;
  if (dynsym.entsize !== entry) return `its dynamic symbols are malformed (entries of ${dynsym.entsize} bytes, expected ${entry})`;
  const want = new TextEncoder().encode(symbol);
  for (let at = dynsym.offset; at + entry <= dynsym.offset + dynsym.size; at += entry) {
    const name = strings.offset + u32(at);
    if (name + want.length >= strings.offset + strings.size) continue;
    let same = bytes[name + want.length] === 0;
    for (let j = 0; same && j < want.length; j++) same = bytes[name + j] === want[j];
    if (same) return undefined;
  }
  return `it does not export ${symbol}: it is another project's addon, or neural-diff's from another version`;
}

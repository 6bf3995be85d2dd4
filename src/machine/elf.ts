// ELF32 RISC-V executable parsing: validates everything the loader relies on and names the first
// problem it finds. Pure: bytes in, a load plan out; nothing touches a machine here.
import { ElfError } from '../errors.js';

const EM_RISCV = 243;
const ET_EXEC = 2;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;
const EF_RISCV_FLOAT_ABI = 0x6;
const EF_RISCV_RVE = 0x8;

/** One PT_LOAD segment: `data` goes to `addr`, then zeros up to `memsz`. */
export interface ElfSegment {
  addr: number;
  data: Uint8Array;
  memsz: number;
  /** Program header flags (PF_X = 1, PF_W = 2, PF_R = 4). */
  flags: number;
}

/** A validated executable. */
export interface ElfImage {
  entry: number;
  segments: ElfSegment[];
  /** Symbol values by name (the symbols of .symtab, when present). */
  symbols: Map<string, number>;
}

/** Where the image must fit: [base, base + size). */
export interface ElfBounds {
  base: number;
  size: number;
}

/** Parses and validates a RISC-V ELF32 executable against the guest RAM bounds. */
export function parseElf(bytes: Uint8Array, bounds: ElfBounds): ElfImage {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 52) throw new ElfError(`file is ${bytes.length} bytes, too short for an ELF32 header (52 bytes)`);
  if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    throw new ElfError('not an ELF file (bad magic number)', 0);
  }
  if (bytes[4] !== 1) throw new ElfError(`ELF class is ${bytes[4] === 2 ? '64-bit' : bytes[4]}; lockstep runs 32-bit RISC-V (ELFCLASS32) executables`, 4);
  if (bytes[5] !== 1) throw new ElfError('ELF data encoding is not little-endian', 5);
  if (bytes[6] !== 1) throw new ElfError(`ELF version is ${bytes[6]}, expected 1`, 6);
  const type = dv.getUint16(16, true);
  if (type !== ET_EXEC) throw new ElfError(`ELF type is ${type}; only static executables (ET_EXEC) can be loaded`, 16);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_RISCV) throw new ElfError(`ELF machine is ${machine}, not RISC-V (${EM_RISCV})`, 18);
  const flags = dv.getUint32(36, true);
  if (flags & EF_RISCV_RVE) throw new ElfError('the executable is built for RV32E, this machine is RV32I-based', 36);
  if (flags & EF_RISCV_FLOAT_ABI) throw new ElfError('the executable uses a hardware floating-point ABI; build with -mabi=ilp32 (this machine has no F/D)', 36);
  const entry = dv.getUint32(24, true);
  const phoff = dv.getUint32(28, true);
  const shoff = dv.getUint32(32, true);
  const ehsize = dv.getUint16(40, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  const shentsize = dv.getUint16(46, true);
  const shnum = dv.getUint16(48, true);
  if (ehsize < 52) throw new ElfError(`ELF header size ${ehsize} is smaller than 52`, 40);
  if (phnum === 0) throw new ElfError('the executable has no program headers', 44);
  if (phentsize !== 32) throw new ElfError(`program header size is ${phentsize}, expected 32`, 42);
  if (phoff + phnum * 32 > bytes.length) throw new ElfError(`program header table (${phnum} entries at 0x${phoff.toString(16)}) runs past the end of the file`, 28);

  const ramEnd = bounds.base + bounds.size;
  const segments: ElfSegment[] = [];
  const headers: number[] = []; // program header index of each segment
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * 32;
    if (dv.getUint32(at, true) !== PT_LOAD) continue;
    const offset = dv.getUint32(at + 4, true);
    const paddr = dv.getUint32(at + 12, true);
    const filesz = dv.getUint32(at + 16, true);
    const memsz = dv.getUint32(at + 20, true);
    const pflags = dv.getUint32(at + 24, true);
    if (memsz === 0) continue;
    if (filesz > memsz) throw new ElfError(`segment ${i}: file size 0x${filesz.toString(16)} exceeds memory size 0x${memsz.toString(16)}`, at + 16);
    if (offset + filesz > bytes.length) throw new ElfError(`segment ${i}: data (0x${filesz.toString(16)} bytes at 0x${offset.toString(16)}) runs past the end of the file`, at + 4);
    if (paddr < bounds.base || paddr + memsz > ramEnd) {
      throw new ElfError(
        `segment ${i}: [0x${paddr.toString(16)}, 0x${(paddr + memsz).toString(16)}) is outside guest RAM [0x${bounds.base.toString(16)}, 0x${ramEnd.toString(16)}); ` +
          'link the program for 0x80000000 or give the machine more memory',
        at + 12,
      );
    }
    segments.push({ addr: paddr, data: bytes.subarray(offset, offset + filesz), memsz, flags: pflags });
    headers.push(i);
  }
  if (segments.length === 0) throw new ElfError('the executable has no loadable (PT_LOAD) segment', phoff);
  checkOverlap(segments, headers, phoff);
  if (entry < bounds.base || entry >= ramEnd || entry % 2 !== 0) {
    throw new ElfError(`entry point 0x${entry.toString(16)} is not a valid instruction address in guest RAM`, 24);
  }
  return { entry, segments, symbols: shoff === 0 || shnum === 0 ? new Map() : readSymbols(bytes, dv, shoff, shentsize, shnum) };
}

/**
 * Refuses overlapping segments. Sorted by address, any overlap shows between neighbours, so this is
 * n log n: an ELF may have 65 535 program headers, and a pairwise check of those took half a minute.
 */
function checkOverlap(segments: readonly ElfSegment[], headers: readonly number[], phoff: number): void {
  const order = segments.map((_, k) => k).sort((a, b) => segments[a]!.addr - segments[b]!.addr || a - b);
  for (let k = 1; k < order.length; k++) {
    const prev = order[k - 1]!;
    const cur = order[k]!;
    if (segments[prev]!.addr + segments[prev]!.memsz > segments[cur]!.addr) {
      // Name the later header of the pair, as a reader going through the table would meet it.
      const [later, other] = headers[cur]! > headers[prev]! ? [cur, prev] : [prev, cur];
      throw new ElfError(`segment ${headers[later]} overlaps another loadable segment at 0x${segments[other]!.addr.toString(16)}`, phoff + headers[later]! * 32 + 12);
    }
  }
}

/** Most bytes of symbol names one file may make the loader decode (a real guest's are a small fraction). */
const MAX_SYMBOL_NAME_BYTES = 16 * 1024 * 1024;

/**
 * The names of one string table, each found in O(log n) and decoded once per offset, with a bound on the
 * bytes decoded in all: symbols pointing into one long unterminated run would otherwise cost time
 * quadratic in the file's size.
 */
class StringTable {
  readonly #bytes: Uint8Array;
  readonly #nuls: number[] = [];
  readonly #names = new Map<number, string>();
  readonly #decoder = new TextDecoder();
  #budget: number;

  constructor(bytes: Uint8Array, budget: number) {
    this.#bytes = bytes;
    this.#budget = budget;
    for (let i = bytes.indexOf(0); i >= 0; i = bytes.indexOf(0, i + 1)) this.#nuls.push(i);
  }

  /** Bytes of the name budget left. */
  get budget(): number {
    return this.#budget;
  }

  /** The name at `offset`: up to the next NUL or the table's end. Undefined once the budget is spent. */
  name(offset: number): string | undefined {
    const cached = this.#names.get(offset);
    if (cached !== undefined) return cached;
    let lo = 0;
    let hi = this.#nuls.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#nuls[mid]! < offset) lo = mid + 1;
      else hi = mid;
    }
    const end = lo < this.#nuls.length ? this.#nuls[lo]! : this.#bytes.length;
    this.#budget -= end - offset;
    if (this.#budget < 0) return undefined;
    const name = this.#decoder.decode(this.#bytes.subarray(offset, end));
    this.#names.set(offset, name);
    return name;
  }
}

function readSymbols(bytes: Uint8Array, dv: DataView, shoff: number, shentsize: number, shnum: number): Map<string, number> {
  if (shentsize !== 40) throw new ElfError(`section header size is ${shentsize}, expected 40`, 46);
  if (shoff + shnum * 40 > bytes.length) throw new ElfError(`section header table (${shnum} entries at 0x${shoff.toString(16)}) runs past the end of the file`, 32);
  const symbols = new Map<string, number>();
  let budget = MAX_SYMBOL_NAME_BYTES;
  const section = (i: number) => {
    const at = shoff + i * 40;
    return { type: dv.getUint32(at + 4, true), offset: dv.getUint32(at + 16, true), size: dv.getUint32(at + 20, true), link: dv.getUint32(at + 24, true), at };
  };
  for (let i = 0; i < shnum; i++) {
    const sh = section(i);
    if (sh.type !== SHT_SYMTAB) continue;
    if (sh.offset + sh.size > bytes.length) throw new ElfError(`symbol table (section ${i}) runs past the end of the file`, sh.at + 16);
    if (sh.link >= shnum) throw new ElfError(`symbol table (section ${i}) links to missing string table ${sh.link}`, sh.at + 24);
    const str = section(sh.link);
    if (str.offset + str.size > bytes.length) throw new ElfError(`string table (section ${sh.link}) runs past the end of the file`, str.at + 16);
    const names = new StringTable(bytes.subarray(str.offset, str.offset + str.size), budget);
    for (let s = sh.offset; s + 16 <= sh.offset + sh.size; s += 16) {
      const nameOff = dv.getUint32(s, true);
      if (nameOff === 0) continue;
      if (nameOff >= str.size) throw new ElfError(`symbol name offset 0x${nameOff.toString(16)} is outside the string table`, s);
      const name = names.name(nameOff);
      if (name === undefined) {
        throw new ElfError(
          `the symbol names of section ${i} add up to more than ${MAX_SYMBOL_NAME_BYTES} bytes; strip the symbol table (riscv64-unknown-elf-strip) to load this file`,
          s,
        );
      }
      if (!symbols.has(name)) symbols.set(name, dv.getUint32(s + 4, true));
    }
    budget = names.budget;
  }
  return symbols;
}

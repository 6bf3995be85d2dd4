// ELF validation: every malformed or unsuitable file gets an ElfError naming the problem, and a
// machine that refused a file is unchanged.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ElfError, Machine, parseElf } from '../../src/index.js';

const hello = readFileSync(new URL('../../guest/bin/hello.elf', import.meta.url));
const bounds = { base: 0x80000000, size: 64 << 20 };

/** A copy of hello.elf with `edit` applied to its bytes. */
function mutated(edit: (b: Buffer, dv: DataView) => void): Buffer {
  const b = Buffer.from(hello);
  edit(b, new DataView(b.buffer, b.byteOffset, b.byteLength));
  return b;
}

function firstLoadHeader(dv: DataView): number {
  const phoff = dv.getUint32(28, true);
  const phnum = dv.getUint16(44, true);
  for (let i = 0; i < phnum; i++) if (dv.getUint32(phoff + i * 32, true) === 1) return phoff + i * 32;
  throw new Error('no PT_LOAD in hello.elf');
}

describe('parseElf', () => {
  it('accepts the committed hello guest and finds its entry and segments', () => {
    const img = parseElf(hello, bounds);
    expect(img.entry).toBe(0x80000000);
    expect(img.segments.length).toBeGreaterThan(0);
    for (const s of img.segments) expect(s.addr).toBeGreaterThanOrEqual(0x80000000);
  });

  const cases: [string, Buffer | Uint8Array, RegExp][] = [
    ['an empty file', new Uint8Array(0), /too short/],
    ['a text file', Buffer.from('#!/bin/sh\necho hello, this is not an ELF file at all, clearly\n'), /bad magic/],
    ['a 64-bit ELF', mutated((b) => (b[4] = 2)), /64-bit/],
    ['a big-endian ELF', mutated((b) => (b[5] = 2)), /little-endian/],
    ['an x86 executable', mutated((_b, dv) => dv.setUint16(18, 3, true)), /not RISC-V/],
    ['a shared object', mutated((_b, dv) => dv.setUint16(16, 3, true)), /ET_EXEC/],
    ['a hard-float binary', mutated((_b, dv) => dv.setUint32(36, dv.getUint32(36, true) | 0x4, true)), /floating-point/],
    ['a program header table past the end', mutated((_b, dv) => dv.setUint32(28, 0xfffff0, true)), /program header table/],
    ['a segment whose data runs past the end', mutated((_b, dv) => dv.setUint32(firstLoadHeader(dv) + 4, 0x7ffff0, true)), /runs past the end/],
    ['a segment outside RAM', mutated((_b, dv) => dv.setUint32(firstLoadHeader(dv) + 12, 0x1000, true)), /outside guest RAM/],
    ['filesz larger than memsz', mutated((_b, dv) => dv.setUint32(firstLoadHeader(dv) + 16, 0xffffff, true)), /exceeds memory size/],
    ['an entry point outside RAM', mutated((_b, dv) => dv.setUint32(24, 0x1000, true)), /entry point/],
    ['a truncated file', hello.subarray(0, 60), /runs past the end|program header/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`rejects ${what} with an error naming the problem`, () => {
      let err: unknown;
      try {
        parseElf(bytes, bounds);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ElfError);
      expect((err as ElfError).code).toBe('ERR_LOCKSTEP_ELF_INVALID');
      expect((err as Error).message).toMatch(message);
    });
  }

  it('rejects an image too large for a small machine, naming the RAM bounds', () => {
    expect(() => parseElf(hello, { base: 0x80000000, size: 4096 })).toThrow(/outside guest RAM \[0x80000000, 0x80001000\)/);
  });
});

/**
 * A minimal ELF32 RISC-V executable: `segments` PT_LOAD headers of 16 zero-filled bytes each (bss) at
 * consecutive addresses from 0x80000000, entry at the first; `overlapLast` moves the last one onto the
 * first. With `symbols`, a .symtab of that many entries whose names all point into one string table of
 * `strtabBytes` bytes with no NUL in it (each at its own offset).
 */
function synthetic(segments: number, opts: { overlapLast?: boolean; symbols?: number; strtabBytes?: number } = {}): Uint8Array {
  const phoff = 52;
  const symbols = opts.symbols ?? 0;
  const strtab = opts.strtabBytes ?? 0;
  const symoff = phoff + segments * 32;
  const stroff = symoff + symbols * 16;
  const shoff = stroff + strtab;
  const shnum = symbols > 0 ? 3 : 0; // null, .symtab, .strtab
  const b = Buffer.alloc(shoff + shnum * 40);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(243, 18); // EM_RISCV
  b.writeUInt32LE(1, 20);
  b.writeUInt32LE(0x80000000, 24); // entry
  b.writeUInt32LE(phoff, 28);
  b.writeUInt32LE(shnum > 0 ? shoff : 0, 32);
  b.writeUInt16LE(52, 40);
  b.writeUInt16LE(32, 42);
  b.writeUInt16LE(segments, 44);
  b.writeUInt16LE(40, 46);
  b.writeUInt16LE(shnum, 48);
  for (let i = 0; i < segments; i++) {
    const at = phoff + i * 32;
    const addr = opts.overlapLast && i === segments - 1 ? 0x80000008 : 0x80000000 + i * 16;
    b.writeUInt32LE(1, at); // PT_LOAD
    b.writeUInt32LE(addr, at + 8);
    b.writeUInt32LE(addr, at + 12);
    b.writeUInt32LE(16, at + 20); // memsz (filesz 0)
    b.writeUInt32LE(6, at + 24); // RW
  }
  if (shnum > 0) {
    for (let k = 0; k < symbols; k++) b.writeUInt32LE(1 + (k % (strtab - 1)), symoff + k * 16); // st_name
    b.fill(0x61, stroff, stroff + strtab); // 'a' ... and no NUL anywhere
    const sh = (i: number, type: number, offset: number, size: number, link: number) => {
      b.writeUInt32LE(type, shoff + i * 40 + 4);
      b.writeUInt32LE(offset, shoff + i * 40 + 16);
      b.writeUInt32LE(size, shoff + i * 40 + 20);
      b.writeUInt32LE(link, shoff + i * 40 + 24);
    };
    sh(1, 2, symoff, symbols * 16, 2); // SHT_SYMTAB -> string table 2
    sh(2, 3, stroff, strtab, 0); // SHT_STRTAB
  }
  return b;
}

describe('parseElf on files built to be slow', () => {
  it('loads an ELF with 65 535 load segments (the most the header can count)', () => {
    const img = parseElf(synthetic(65_535), { base: 0x80000000, size: 2 << 20 });
    expect(img.segments.length).toBe(65_535);
    expect(img.segments.at(-1)).toMatchObject({ addr: 0x80000000 + 65_534 * 16, memsz: 16 });
    const m = new Machine({ memory: 2 << 20 });
    try {
      expect(m.load(synthetic(65_535)).segments.length).toBe(65_535);
    } finally {
      m.close();
    }
  });

  it('refuses 65 535 segments whose last overlaps the first, naming the later one', () => {
    expect(() => parseElf(synthetic(65_535, { overlapLast: true }), { base: 0x80000000, size: 2 << 20 })).toThrow(
      /segment 65534 overlaps another loadable segment at 0x80000000/,
    );
  });

  it('reads a symbol table whose names all point into one long unterminated string without rescanning it per symbol', () => {
    // 200 000 symbols into 1 MiB without a NUL: rescanning to the end for each is 10^11 steps. Each name
    // is decoded once, up to a 16 MiB budget of name bytes in all; past it the file is refused.
    const refused = synthetic(1, { symbols: 200_000, strtabBytes: 1 << 20 });
    expect(() => parseElf(refused, bounds)).toThrow(/symbol names of section 1 add up to more than 16777216 bytes; strip the symbol table/);
    const img = parseElf(synthetic(1, { symbols: 200_000, strtabBytes: 4096 }), bounds);
    expect(img.symbols.size).toBe(4095);
    expect(img.symbols.get('a'.repeat(4095))).toBe(0);
  });
});

describe('Machine.load', () => {
  it('leaves memory untouched when the ELF is refused', () => {
    const m = new Machine({ memory: 1 << 20 });
    try {
      m.writeMemory(0x80000000, new Uint8Array([1, 2, 3, 4]));
      expect(() => m.load(mutated((_b, dv) => dv.setUint16(18, 62, true)))).toThrow(ElfError);
      expect([...m.readMemory(0x80000000, 4)]).toEqual([1, 2, 3, 4]);
    } finally {
      m.close();
    }
  });
});

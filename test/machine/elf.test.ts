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

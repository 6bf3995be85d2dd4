// HTIF: when the ELF has a `tohost` symbol, a guest write of (code << 1) | 1 to it ends the run with
// that exit code; other writes there (and the same writes without the symbol) are plain memory.
import { afterEach, describe, expect, it } from 'vitest';
import { Machine } from '../../src/index.js';
import { Asm } from '../helpers/asm.js';

const TOHOST = 0x80001000;
const live: Machine[] = [];
afterEach(() => {
  while (live.length) live.pop()!.close();
});

/** An ELF32 RISC-V executable: `code` at 0x80000000, 8 zero bytes at TOHOST, and a symbol table. */
function elfWithSymbols(code: Uint8Array, symbols: Record<string, number>): Uint8Array {
  const names = Object.keys(symbols);
  const strtab = Buffer.concat([Buffer.from([0]), ...names.map((n) => Buffer.from(n + '\0'))]);
  const symtab = Buffer.alloc(16 * (names.length + 1));
  let nameOff = 1;
  names.forEach((n, i) => {
    const at = 16 * (i + 1);
    symtab.writeUInt32LE(nameOff, at);
    symtab.writeUInt32LE(symbols[n]!, at + 4);
    symtab.writeUInt8(0x11, at + 12); // GLOBAL OBJECT
    symtab.writeUInt16LE(0xfff1, at + 14); // SHN_ABS
    nameOff += n.length + 1;
  });
  const data = Buffer.alloc(8);
  const ehsize = 52, phsize = 32 * 2;
  const codeOff = ehsize + phsize;
  const dataOff = codeOff + code.length;
  const symOff = dataOff + data.length;
  const strOff = symOff + symtab.length;
  const shOff = strOff + strtab.length;
  const eh = Buffer.alloc(ehsize);
  eh.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  eh.writeUInt16LE(2, 16);
  eh.writeUInt16LE(243, 18);
  eh.writeUInt32LE(1, 20);
  eh.writeUInt32LE(0x80000000, 24);
  eh.writeUInt32LE(ehsize, 28);
  eh.writeUInt32LE(shOff, 32);
  eh.writeUInt16LE(ehsize, 40);
  eh.writeUInt16LE(32, 42);
  eh.writeUInt16LE(2, 44);
  eh.writeUInt16LE(40, 46);
  eh.writeUInt16LE(3, 48); // null, .symtab, .strtab
  const ph = Buffer.alloc(phsize);
  const seg = (i: number, off: number, addr: number, size: number, flags: number) => {
    ph.writeUInt32LE(1, i * 32);
    ph.writeUInt32LE(off, i * 32 + 4);
    ph.writeUInt32LE(addr, i * 32 + 8);
    ph.writeUInt32LE(addr, i * 32 + 12);
    ph.writeUInt32LE(size, i * 32 + 16);
    ph.writeUInt32LE(size, i * 32 + 20);
    ph.writeUInt32LE(flags, i * 32 + 24);
  };
  seg(0, codeOff, 0x80000000, code.length, 5);
  seg(1, dataOff, TOHOST, 8, 6);
  const sh = Buffer.alloc(40 * 3);
  sh.writeUInt32LE(2, 40 + 4); // SHT_SYMTAB
  sh.writeUInt32LE(symOff, 40 + 16);
  sh.writeUInt32LE(symtab.length, 40 + 20);
  sh.writeUInt32LE(2, 40 + 24); // link: .strtab
  sh.writeUInt32LE(16, 40 + 36);
  sh.writeUInt32LE(3, 80 + 4); // SHT_STRTAB
  sh.writeUInt32LE(strOff, 80 + 16);
  sh.writeUInt32LE(strtab.length, 80 + 20);
  return Buffer.concat([eh, ph, Buffer.from(code), data, symtab, strtab, sh]);
}

/** Writes `first` then `second` to tohost, then ebreak (so a run that did not exit ends in a trap). */
function program(first: number, second: number): Uint8Array {
  const a = new Asm();
  a.li(5, TOHOST);
  a.li(10, first);
  a.sw(10, 0, 5);
  a.li(10, second);
  a.sw(10, 0, 5);
  a.ebreak();
  return a.bytes();
}

function machine(): Machine {
  const m = new Machine({ memory: 1 << 20 });
  live.push(m);
  return m;
}

describe('HTIF tohost', () => {
  it('ends the run with the code written as (code << 1) | 1', async () => {
    const m = machine();
    const info = m.load(elfWithSymbols(program((7 << 1) | 1, 1), { tohost: TOHOST }));
    expect(info.tohost).toBe(TOHOST);
    expect(await m.run()).toMatchObject({ kind: 'exit', code: 7, via: 'htif' });
  });

  it('treats a write with the low bit clear as memory and goes on', async () => {
    const m = machine();
    m.load(elfWithSymbols(program(0x40, 1), { tohost: TOHOST }));
    expect(await m.run()).toMatchObject({ kind: 'exit', code: 0, via: 'htif' });
  });

  it('does nothing special without a tohost symbol', async () => {
    const m = machine();
    const info = m.load(elfWithSymbols(program(3, 5), { other: TOHOST }));
    expect(info.tohost).toBeUndefined();
    expect(await m.run()).toMatchObject({ kind: 'trap', cause: 3 });
    expect([...m.readMemory(TOHOST, 4)]).toEqual([5, 0, 0, 0]);
  });
});

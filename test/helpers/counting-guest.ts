// A guest for tests that must see the guest run on: it counts on the UART, forever.
import { Asm } from './asm.js';
import { minimalElf } from './tiny-elf.js';

/** A guest that writes bytes 0, 1, …, 250, 0, 1, … to the UART, one every ~20 000 instructions, forever. */
export function countingGuest(): Buffer {
  const a = new Asm();
  a.lui(5, 0x10000); //        t0 = the UART
  a.li(6, 0); //               t1 = the next byte
  a.li(7, 251);
  a.label('loop');
  a.sb(6, 0, 5);
  a.addi(6, 6, 1);
  a.bne(6, 7, 'wait');
  a.li(6, 0);
  a.label('wait');
  a.li(28, 10_000);
  a.label('spin');
  a.addi(28, 28, -1);
  a.bne(28, 0, 'spin');
  a.j('loop');
  const b = a.bytes();
  const words: number[] = [];
  for (let i = 0; i < b.length; i += 4) words.push(b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
  return minimalElf(words);
}

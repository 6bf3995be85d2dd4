// The smallest RV32 executable: raw instruction words at 0x80000000 in one PT_LOAD segment, for tests
// that need a guest file of a few hand-assembled instructions (test/helpers/asm.ts) and no toolchain.

/** A minimal RV32 ELF executable with `words` at 0x80000000 (one PT_LOAD, no sections). */
export function minimalElf(words: number[]): Buffer {
  const code = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => code.writeUInt32LE(w >>> 0, i * 4));
  const eh = Buffer.alloc(52);
  eh.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  eh.writeUInt16LE(2, 16); // ET_EXEC
  eh.writeUInt16LE(243, 18); // EM_RISCV
  eh.writeUInt32LE(1, 20);
  eh.writeUInt32LE(0x80000000, 24); // entry
  eh.writeUInt32LE(52, 28); // phoff
  eh.writeUInt16LE(52, 40);
  eh.writeUInt16LE(32, 42);
  eh.writeUInt16LE(1, 44);
  eh.writeUInt16LE(40, 46);
  const ph = Buffer.alloc(32);
  ph.writeUInt32LE(1, 0); // PT_LOAD
  ph.writeUInt32LE(84, 4); // offset
  ph.writeUInt32LE(0x80000000, 8);
  ph.writeUInt32LE(0x80000000, 12);
  ph.writeUInt32LE(code.length, 16);
  ph.writeUInt32LE(code.length, 20);
  ph.writeUInt32LE(5, 24); // R+X
  return Buffer.concat([eh, ph, code]);
}

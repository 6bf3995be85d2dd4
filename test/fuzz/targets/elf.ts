// ELF loader target: mutated executables (header and program-header fields first) go through parseElf
// and Machine.load; only ElfError may come out, an accepted image keeps its invariants and runs briefly.
import { readdirSync, readFileSync } from 'node:fs';
import { ElfError, Machine, parseElf } from '../../../src/index.js';
import { check, type FuzzTarget } from '../harness.js';
import { havoc, int, interesting32, pick, type Rnd } from '../mutate.js';

const RAM = 0x80000000;
const MEMORY = 1 << 20;
const corpus = new URL('../corpus/elf/', import.meta.url);
const guests = new URL('../../../guest/bin/', import.meta.url);

let seeds: Uint8Array[] = [];

/** Overwrites a field the loader reads: ELF header fields, then one field of a random program header. */
function mutateField(input: Uint8Array, rnd: Rnd): Uint8Array {
  const b = Uint8Array.from(input);
  const dv = new DataView(b.buffer);
  if (b.length < 52) return b;
  const header: [number, 2 | 4][] = [[24, 4], [28, 4], [32, 4], [40, 2], [42, 2], [44, 2], [46, 2], [48, 2], [36, 4], [16, 2], [18, 2]];
  if (rnd() < 0.4) {
    const [at, size] = pick(rnd, header);
    if (size === 4) dv.setUint32(at, interesting32(rnd), true);
    else dv.setUint16(at, interesting32(rnd) & 0xffff, true);
    return b;
  }
  const phoff = dv.getUint32(28, true);
  const phnum = dv.getUint16(44, true);
  if (phnum === 0 || phoff + 32 > b.length) return b;
  const i = int(rnd, Math.min(phnum, Math.floor((b.length - phoff) / 32)));
  const at = phoff + i * 32 + 4 * int(rnd, 8); // type, offset, vaddr, paddr, filesz, memsz, flags, align
  const near = [RAM, RAM + 4096, RAM + MEMORY - 16, RAM + MEMORY, dv.getUint32(at, true) + 1, dv.getUint32(at, true) - 1];
  dv.setUint32(at, (rnd() < 0.5 ? pick(rnd, near) : interesting32(rnd)) >>> 0, true);
  return b;
}

export const elfTarget: FuzzTarget = {
  name: 'elf',
  about: 'parseElf and Machine.load on mutated executables: ElfError or a valid image that loads and runs',
  setup() {
    seeds = [
      // Copies: a small file's Buffer is a view into Node's shared pool, and nothing may write through it.
      ...readdirSync(corpus).filter((f) => f.endsWith('.elf')).map((f) => Uint8Array.from(readFileSync(new URL(f, corpus)))),
      ...['hello', 'umode', 'semihost'].map((g) => Uint8Array.from(readFileSync(new URL(`${g}.elf`, guests)))),
    ];
  },
  async iterate(rnd) {
    let input = pick(rnd, seeds);
    const rounds = 1 + int(rnd, 3);
    for (let k = 0; k < rounds; k++) input = rnd() < 0.5 ? mutateField(input, rnd) : havoc(input, rnd);
    let image;
    try {
      image = parseElf(input, { base: RAM, size: MEMORY });
    } catch (err) {
      if (err instanceof ElfError) return;
      throw err;
    }
    check(image.entry >= RAM && image.entry < RAM + MEMORY && image.entry % 2 === 0, 'the entry point is an instruction address in RAM');
    const sorted = [...image.segments].sort((a, b) => a.addr - b.addr);
    sorted.forEach((s, k) => {
      check(s.addr >= RAM && s.addr + s.memsz <= RAM + MEMORY, `segment at 0x${s.addr.toString(16)} lies inside RAM`);
      check(s.data.length <= s.memsz, 'a segment holds no more file bytes than memory bytes');
      if (k > 0) check(sorted[k - 1]!.addr + sorted[k - 1]!.memsz <= s.addr, 'segments do not overlap');
    });
    const m = new Machine({ memory: MEMORY });
    try {
      m.load(input);
      // Whatever the bytes decode to, the hart runs them without harming the host.
      const r = await m.run({ maxInstructions: 20_000 });
      check(['exit', 'trap', 'halted', 'budget'].includes(r.kind), `a run ends in a known way (got ${r.kind})`);
    } finally {
      m.close();
    }
  },
};

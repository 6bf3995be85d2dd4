// The block compiler against the interpreter (the reference): the same guests run side by side on both
// engines and must agree on the whole hart state and the state hash at every stop, with stops placed
// inside blocks; recordings cross engines; stops and budgets end tight loops; hostile code stays a guest
// problem. Skipped where the host has no block compiler.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMMITTED_LINUX_APPEND, Machine, committedLinux, type Engine } from '../../src/index.js';
import { Asm, rv } from '../helpers/asm.js';
import { ENGINES, HAS_JIT, inStep } from '../helpers/engines.js';
import { runLogged } from '../helpers/replay.js';
import { CAUSE, DATA, RAM, RAM_END, RAM_SIZE, UNMAPPED } from './harness.js';
import { prng } from './prng.js';

/** Budgets: `small` odd ones from a seeded mix (stops inside blocks), then `big` forever. */
function* budgets(seed: number, small: number, big: number): Generator<number> {
  const rnd = prng(seed);
  const mix = [1, 3, 5, 7, 13, 17, 31, 97, 101, 997, 1009, 4099, 65537];
  for (let i = 0; i < small; i++) yield mix[Math.floor(rnd() * mix.length)]!;
  for (;;) yield big;
}

describe('engine option', () => {
  it('names the bad field and value, and reports the engine in use', () => {
    expect(() => new Machine({ memory: 4096, engine: 'tcg' as Engine })).toThrow(/engine.*'interp' or 'jit', got tcg/);
    const m = new Machine({ memory: 4096, engine: 'interp' });
    try {
      expect(m.engine).toBe('interp');
      expect(m.jitStats()).toBeNull();
    } finally {
      m.close();
    }
    // 'jit' runs the compiler exactly where this build has one (x86-64 Linux).
    expect(HAS_JIT).toBe(process.arch === 'x64' && process.platform === 'linux');
  });

  it('defaults to the compiler where there is one, and LOCKSTEP_ENGINE changes the default only', () => {
    const saved = process.env.LOCKSTEP_ENGINE;
    const engineOf = (options: { engine?: Engine } = {}) => {
      const m = new Machine({ memory: 4096, ...options });
      try {
        return m.engine;
      } finally {
        m.close();
      }
    };
    try {
      delete process.env.LOCKSTEP_ENGINE;
      expect(engineOf()).toBe(HAS_JIT ? 'jit' : 'interp');
      process.env.LOCKSTEP_ENGINE = 'interp';
      expect(engineOf()).toBe('interp');
      expect(engineOf({ engine: 'jit' })).toBe(HAS_JIT ? 'jit' : 'interp');
      process.env.LOCKSTEP_ENGINE = 'jit';
      expect(engineOf({ engine: 'interp' })).toBe('interp');
      process.env.LOCKSTEP_ENGINE = 'tcg';
      expect(() => engineOf()).toThrow(/LOCKSTEP_ENGINE.*'interp' or 'jit', got tcg/);
    } finally {
      if (saved === undefined) delete process.env.LOCKSTEP_ENGINE;
      else process.env.LOCKSTEP_ENGINE = saved;
    }
  });
});

describe.skipIf(!HAS_JIT)('block compiler (engine: jit) against the interpreter', () => {
  // Guests that wait for host input (echo, kvserver) or need a disk image run elsewhere.
  const dir = new URL('../../guest/bin/', import.meta.url);
  const guests = readdirSync(dir).filter((f) => f.endsWith('.elf') && !/^(echo|kvserver|disk)\.elf$/.test(f)).sort();

  it('knows the example guests', () => {
    expect(guests.length).toBeGreaterThanOrEqual(15);
  });

  it.each(guests)('%s: the same hart state and state hash at every stop, stops inside blocks', async (name) => {
    const elf = readFileSync(new URL(name, dir));
    const { last, jit, stops } = await inStep({ memory: 64 << 20, devices: { rng: true } }, (m) => m.load(elf),
      budgets(name.length * 7919, 400, 9_999_991));
    expect(last.kind, `${name} ends as on the interpreter`).not.toBe('budget');
    expect(stops).toBeGreaterThan(0);
    // Every guest runs some M-mode code often enough to be compiled.
    expect(jit!.blocks, `${name}: blocks compiled`).toBeGreaterThan(0);
  }, 120_000);

  it('a Linux boot (firmware in M-mode, kernel and user space under Sv32, all compiled) agrees at every stop for 40 M instructions', async () => {
    const limited = function* () {
      const b = budgets(11, 150, 999_983);
      let total = 0;
      for (const n of b) {
        if (total > 40_000_000) return;
        total += n;
        yield n;
      }
    };
    const r = await inStep({ memory: 64 << 20, clock: 'virtual', devices: { net: true } },
      (m) => m.loadLinux({ ...committedLinux(), append: COMMITTED_LINUX_APPEND }), limited());
    expect(r.last.kind).toBe('budget');
    expect(r.stops).toBeGreaterThan(150);
    expect(r.jit!.blocks).toBeGreaterThan(0);
    // The kernel's paged code ran compiled: blocks compiled and entered while fetches were translated.
    expect(r.jit!.translatedBlocks).toBeGreaterThan(1000);
    expect(r.jit!.translatedEntries).toBeGreaterThan(r.jit!.entries / 2);
  }, 300_000);

  // LOCKSTEP_JIT_SEEDS=first-last widens the seed range for a soak (default 1-60).
  const [firstSeed, lastSeed] = (process.env.LOCKSTEP_JIT_SEEDS ?? '1-60').split('-').map(Number) as [number, number];
  it(`random straight-line and branching code, repeated until compiled, agrees at every stop (seeds ${firstSeed}-${lastSeed})`, async () => {
    expect(Number.isInteger(firstSeed) && Number.isInteger(lastSeed) && firstSeed <= lastSeed, 'LOCKSTEP_JIT_SEEDS is first-last').toBe(true);
    let compiled = 0;
    for (let seed = firstSeed; seed <= lastSeed; seed++) {
      const { program, data } = randomLoop(seed);
      const rnd = prng(seed * 31);
      const mix = [1, 3, 17, 101, 555, 2001, 40_000];
      const b = (function* () {
        for (;;) yield mix[Math.floor(rnd() * mix.length)]!;
      })();
      const r = await inStep({ memory: RAM_SIZE }, (m) => {
        m.writeMemory(RAM, program);
        m.writeMemory(DATA - 2048, data);
        m.pc = RAM;
      }, b);
      expect(r.last.kind, `seed ${seed}`).toBe('trap');
      compiled += r.jit!.blocks;
    }
    expect(compiled).toBeGreaterThan(lastSeed - firstSeed + 1);
  }, 120_000 + (lastSeed - firstSeed) * 2_000);

  // Hostile code in a hot loop: each must end exactly as on the interpreter (and not take the host down).
  const hostile: Array<[string, (a: Asm) => void]> = [
    ['a jalr into the UART (MMIO is not executable)', (a) => a.li(9, 0x10000000).jalr(0, 9, 0)],
    ['a jump to unmapped memory', (a) => a.li(9, UNMAPPED).jalr(1, 9, 0)],
    ['a jump just past the end of RAM', (a) => a.li(9, RAM_END).jalr(1, 9, 0)],
    ['a jump just below RAM', (a) => a.li(9, RAM - 2).jalr(1, 9, 0)],
    ['a jump to the last halfword of RAM (a 32-bit fetch off the end)', (a) => {
      a.li(9, RAM_END - 2).li(10, 0x0003).sh(10, 0, 9).jalr(0, 9, 0);
    }],
    ['division by zero and INT_MIN / -1', (a) => {
      a.li(10, 0x80000000).li(11, -1).div(12, 10, 11).rem(13, 10, 11).divu(14, 10, 0).remu(15, 10, 0).div(16, 11, 0).rem(17, 11, 0);
    }],
    ['loads and stores at the end of RAM (some fault)', (a) => {
      a.li(9, RAM_END - 4).lw(10, 0, 9).lbu(11, 3, 9).lhu(12, 2, 9).sw(10, 0, 9).sh(10, 2, 9).lw(13, 2, 9);
    }],
    ['misaligned loads and stores', (a) => a.li(9, DATA + 1).sw(5, 0, 9).lw(10, 0, 9).sh(5, 2, 9).lh(11, 2, 9)],
    ['device loads and stores (CLINT, UART)', (a) => {
      a.li(9, 0x0200bff8).lw(10, 0, 9).li(9, 0x02004000).sw(5, 0, 9).li(9, 0x10000000).lbu(11, 5, 9);
    }],
    ['an illegal instruction', (a) => a.word(0xffffffff)],
    ['a store over the loop itself', (a) => a.la(9, 'loop').lw(10, 0, 9).sw(10, 0, 9)],
  ];
  it.each(hostile)('%s, compiled, ends as on the interpreter', async (_what, tail) => {
    // The loop runs 200 times, then the tail, 40 rounds: the tail too is compiled. A trap in the tail
    // goes to a handler that starts the next round; the last round ends on an ebreak with mtvec = 0.
    const a = new Asm();
    a.la(9, 'handler').csrrw(0, 0x305, 9);
    a.li(20, 0);
    a.label('round').li(5, 0).li(6, 200);
    a.label('loop').addi(5, 5, 1).xori(7, 5, 0x55).add(8, 7, 5);
    a.bne(5, 6, 'loop');
    tail(a);
    a.label('next').addi(20, 20, 1).li(21, 40).bne(20, 21, 'round');
    a.csrrw(0, 0x305, 0).ebreak();
    a.label('handler').j('next');
    const program = a.bytes();
    const r = await inStep({ memory: RAM_SIZE }, (m) => {
      m.writeMemory(RAM, program);
      m.pc = RAM;
    }, budgets(program.length, 50, 1_000_003));
    expect(r.last).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expect(r.jit!.blocks).toBeGreaterThan(2);
  });

  it('more hot code than the code buffer holds: flushed, compiled again only once twice as hot, in step with the interpreter', async () => {
    // 3 000 chunks of 40 load/add/store triples, each ended by a jump to the next (so that every chunk
    // is a block start dispatch counts), run 100 times: ~26 MiB of compiled code against a 16 MiB buffer.
    // The compiler fills it in round 16, drops everything and needs 32 dispatches of a start from then
    // on, so the next wave fills it in round 48 and the one after would come in round 112: two flushes.
    // With the threshold left at 16 every 16 rounds would compile and flush again (six flushes), each
    // block run compiled a few times for the cost of compiling it, slower than the interpreter.
    const a = new Asm();
    const CHUNKS = 3000;
    const ROUNDS = 100;
    a.li(20, 0);
    a.label('round').li(9, RAM + 0x300000);
    for (let i = 0; i < CHUNKS; i++) {
      a.label(`c${i}`);
      for (let k = 0; k < 40; k++) a.lw(10, (k & 15) * 4, 9).addi(10, 10, (i + k) & 0x3ff).sw(10, (k & 15) * 4, 9);
      a.j(`c${i + 1}`);
    }
    a.label(`c${CHUNKS}`).addi(20, 20, 1).li(21, ROUNDS).beq(20, 21, 'done').la(22, 'round').jalr(0, 22, 0);
    a.label('done').ebreak();
    const program = a.bytes();
    const r = await inStep({ memory: 4 << 20 }, (m) => {
      m.writeMemory(RAM, program);
      m.pc = RAM;
    }, budgets(CHUNKS, 30, 2_000_003));
    expect(r.last).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    // li; each round a lui and the chunks (3 x 40 + j each); loop-backs (addi, li, beq, auipc, addi, jalr); addi, li, beq.
    expect(r.last.instret).toBe(BigInt(1 + ROUNDS * (1 + CHUNKS * 121) + (ROUNDS - 1) * 6 + 3));
    expect(r.jit!.flushes).toBe(2);
    expect(r.jit!.blocks).toBeGreaterThan(r.jit!.invalidated); // compiled again after the last flush
  });

  it('a budget ends a one-instruction loop exactly, and stop() ends it when no budget would', async () => {
    const m = new Machine({ memory: RAM_SIZE, engine: 'jit' });
    try {
      m.writeMemory(RAM, new Asm().li(5, 1).label('spin').j('spin').bytes()); // li; j . (one-instruction block)
      m.pc = RAM;
      for (const n of [1_000_003, 7, 1, 2_000_000_011]) {
        const before = m.counters;
        expect(await m.run({ maxInstructions: n })).toMatchObject({ kind: 'budget' });
        expect(m.counters.instret - before.instret).toBe(BigInt(n));
        expect(m.counters.branches - before.branches).toBe(BigInt(n) - (before.instret === 0n ? 1n : 0n));
      }
      expect(m.jitStats()!.blocks).toBeGreaterThan(0);
      // No budget: only stop() ends it. Ask once the guest is seen running.
      const run = m.run();
      const asked = new Promise<void>((resolve) => {
        const poll = () => (m.progress > 0n ? (m.stop(), resolve()) : setImmediate(poll));
        poll();
      });
      await asked;
      expect(await run).toMatchObject({ kind: 'stopped' });
      const { instret, branches } = m.counters;
      expect(instret - branches).toBe(1n); // every instruction but the li was the jump
      expect(m.pc).toBe(RAM + 4);
    } finally {
      m.close();
    }
  });

  it('a recording made on either engine replays on the other to the same counters and state hashes', async () => {
    const program = timerProgram();
    for (const [from, to] of [['interp', 'jit'], ['jit', 'interp']] as const) {
      const rec = await runRecorded(program, from);
      expect(rec.result, `recorded on ${from}`).toMatchObject({ kind: 'exit', code: 0 });
      expect(rec.ticks, 'timer interrupts were taken').toBeGreaterThan(0);
      const rep = await runRecorded(program, to, rec.batches);
      expect(rep.result, `replayed on ${to}`).toMatchObject({ kind: 'exit', code: 0, instret: rec.result.instret });
      expect(rep.ticks).toBe(rec.ticks);
      expect(rep.hash).toBe(rec.hash);
      expect((from === 'jit' ? rec : rep).blocks).toBeGreaterThan(0);
    }
  }, 60_000);
});

describe.skipIf(!HAS_JIT)('block compiler and code that changes', () => {
  it('a compiled function rewritten from another page runs its new code on the next call (no fence.i)', async () => {
    for (const far of [false, true]) {
      const a = new Asm();
      a.li(10, 0).li(6, 0).li(7, 300);
      a.la(8, 'f').li(9, rv.addi(10, 10, 3)); //       x9 = addi a0, a0, 3
      a.label('loop').jal(1, 'f');
      a.addi(6, 6, 1);
      a.li(11, 150).bne(6, 11, 'next').sw(9, 0, 8); // after 150 calls: f's addi := addi a0, a0, 3
      a.label('next').bne(6, 7, 'loop');
      a.ebreak();
      if (far) while (a.offset < 8192) a.nop(); //     f on a page of its own
      a.label('f').addi(10, 10, 1).jalr(0, 1, 0);
      const m = new Machine({ memory: RAM_SIZE, engine: 'jit' });
      try {
        m.writeMemory(RAM, a.bytes());
        m.pc = RAM;
        expect(await m.run({ maxInstructions: 1_000_000 })).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
        expect(m.getRegister(10), far ? 'f on another page' : 'f on the same page').toBe(150 * 1 + 150 * 3);
        const s = m.jitStats()!;
        expect(s.blocks).toBeGreaterThan(0);
        expect(s.invalidated).toBeGreaterThan(0);
      } finally {
        m.close();
      }
    }
  });

  it('a block that rewrites an instruction further on in itself, every iteration, computes what the interpreter does', async () => {
    const a = new Asm();
    a.li(1, 500).li(5, 0).la(7, 'patch').li(10, rv.addi(5, 5, 0));
    a.label('loop').andi(9, 1, 15).slli(9, 9, 20).or(9, 9, 10).sw(9, 0, 7); // patch := addi x5, x5, (x1 & 15)
    a.label('patch').addi(5, 5, 0);
    a.addi(1, 1, -1).bne(1, 0, 'loop');
    a.ebreak();
    let want = 0;
    for (let i = 500; i >= 1; i--) want += i & 15;
    const program = a.bytes();
    const r = await inStep({ memory: RAM_SIZE }, (m) => {
      m.writeMemory(RAM, program);
      m.pc = RAM;
    }, budgets(3, 40, 100_000));
    expect(r.last).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    const m = new Machine({ memory: RAM_SIZE, engine: 'jit' });
    try {
      m.writeMemory(RAM, program);
      m.pc = RAM;
      await m.run({ maxInstructions: 100_000 });
      expect(m.getRegister(5)).toBe(want);
    } finally {
      m.close();
    }
  });

  it('the host writing over compiled code (writeMemory) between runs: the next iterations run the new code', async () => {
    const a = new Asm();
    a.li(1, 1000).li(5, 0); //                          2 instructions
    a.label('loop').label('body').addi(5, 5, 1).addi(1, 1, -1).bne(1, 0, 'loop'); // 3 per iteration
    a.ebreak();
    const m = new Machine({ memory: RAM_SIZE, engine: 'jit' });
    try {
      m.writeMemory(RAM, a.bytes());
      m.pc = RAM;
      await m.run({ maxInstructions: 2 + 3 * 400 }); // at the top of iteration 401
      expect(m.jitStats()!.blocks).toBeGreaterThan(0);
      expect(m.getRegister(5)).toBe(400);
      m.writeMemory(a.addr('body'), Uint8Array.from(new Asm().addi(5, 5, 5).bytes()));
      expect(await m.run({ maxInstructions: 100_000 })).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
      expect(m.getRegister(5)).toBe(400 + 600 * 5);
    } finally {
      m.close();
    }
  });

  it('a snapshot restored over compiled code runs the snapshot\'s code', async () => {
    const loop = (step: number) => {
      const a = new Asm();
      a.li(1, 1000).li(5, 0);
      a.label('loop').addi(5, 5, step).addi(1, 1, -1).bne(1, 0, 'loop');
      return a.ebreak().bytes();
    };
    const other = new Machine({ memory: RAM_SIZE, engine: 'interp' });
    const m = new Machine({ memory: RAM_SIZE, engine: 'jit' });
    try {
      other.writeMemory(RAM, loop(7));
      other.pc = RAM;
      await other.run({ maxInstructions: 2 + 3 * 10 });
      const snap = other.snapshot();
      m.writeMemory(RAM, loop(1));
      m.pc = RAM;
      await m.run({ maxInstructions: 2 + 3 * 500 });
      expect(m.jitStats()!.blocks).toBeGreaterThan(0);
      m.restore(snap);
      expect(await m.run({ maxInstructions: 100_000 })).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
      expect(m.getRegister(5)).toBe(7 * 1000);
    } finally {
      other.close();
      m.close();
    }
  });
});

/**
 * A random loop body (ALU, M, loads and stores around x2, forward branches, compressed forms, a call),
 * run 40 times, then an ebreak. Registers x3..x15 and x17..x20 are written; x1 links, x2 is the data
 * base, x16 counts. One program in eight has its base near the end of RAM, so some accesses fault.
 */
function randomLoop(seed: number): { program: Uint8Array; data: Uint8Array } {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pickOf = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const dst = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20];
  const src = [0, ...dst, 2];
  const creg = [8, 9, 10, 11, 12, 13, 14, 15];
  const special = [0, 1, -1, 0x80000000, 0x7fffffff, 2, 31, 32, 0xffff, 0x8000];
  const a = new Asm();
  for (const r of dst) a.li(r, rnd() < 0.4 ? pickOf(special) : Math.floor(rnd() * 2 ** 32));
  a.li(2, rnd() < 0.125 ? RAM_END - 256 : DATA);
  a.li(16, 40);
  a.label('loop');
  let labels = 0;
  const pending: string[] = [];
  const n = 10 + int(50);
  for (let i = 0; i < n; i++) {
    const rd = pickOf(dst), r1 = pickOf(src), r2 = pickOf(src);
    const k = int(24);
    if (k < 6) {
      const op = pickOf(['add', 'sub', 'xor', 'or', 'and', 'sll', 'srl', 'sra', 'slt', 'sltu'] as const);
      a[op](rd, r1, r2);
    } else if (k < 10) {
      const op = pickOf(['addi', 'xori', 'ori', 'andi', 'slti', 'sltiu'] as const);
      a[op](rd, r1, int(4096) - 2048);
    } else if (k < 11) {
      a[pickOf(['slli', 'srli', 'srai'] as const)](rd, r1, int(32));
    } else if (k < 13) {
      a[pickOf(['mul', 'mulh', 'mulhsu', 'mulhu', 'div', 'divu', 'rem', 'remu'] as const)](rd, r1, r2);
    } else if (k < 16) {
      const op = pickOf(['lw', 'lh', 'lhu', 'lb', 'lbu'] as const);
      a[op](rd, int(512) - 256, 2);
    } else if (k < 18) {
      const op = pickOf(['sw', 'sh', 'sb'] as const);
      a[op](r1, int(512) - 256, 2);
    } else if (k < 20) {
      const c = pickOf(creg), d = pickOf(creg);
      const op = int(8);
      if (op === 0) a.c_add(c, d);
      else if (op === 1) a.c_addi(c, int(63) - 31 || 1);
      else if (op === 2) a.c_mv(c, d);
      else if (op === 3) a.c_li(c, int(63) - 31);
      else if (op === 4) a.c_slli(c, 1 + int(31));
      else if (op === 5) a[pickOf(['c_sub', 'c_xor', 'c_or', 'c_and'] as const)](c, d);
      else if (op === 6) a.c_lwsp(c, 4 * int(32));
      else a.c_swsp(c, 4 * int(32));
    } else if (k < 22) {
      const l = `f${labels++}`;
      const op = pickOf(['beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu'] as const);
      a[op](r1, r2, l);
      pending.push(l);
    } else if (k < 23) {
      a.lui(rd, int(1 << 20)).auipc(pickOf(dst), int(1 << 20));
    } else {
      a.jal(1, 'fn');
    }
    // Close a pending forward branch now and then (it skips what came since).
    if (pending.length > 0 && rnd() < 0.3) a.label(pending.shift()!);
  }
  for (const l of pending) a.label(l);
  a.addi(16, 16, -1).bne(16, 0, 'loop');
  a.ebreak();
  a.label('fn').addi(20, 20, 7).xor(19, 19, 20).jalr(0, 1, 0);
  const data = new Uint8Array(4096);
  for (let i = 0; i < data.length; i++) data[i] = int(256);
  return { program: a.bytes(), data };
}

/**
 * M-mode compute loop under a timer interrupt re-armed every 3 µs of host time (the real clock): the
 * interrupts land wherever the host's time puts them, so a replay must stop inside blocks to deliver them.
 * x12 counts iterations, x13 interrupts; the finisher ends it after 3 000 000 iterations.
 */
function timerProgram(): Uint8Array {
  const a = new Asm();
  a.la(5, 'handler').csrrw(0, 0x305, 5); //            mtvec
  a.li(5, 0x0200bff8).li(6, 0x02004000); //            mtime, mtimecmp
  a.lw(10, 0, 5).addi(10, 10, 30).sw(0, 4, 6).sw(10, 0, 6);
  a.li(7, 0x80).csrrs(0, 0x304, 7).csrrsi(0, 0x300, 8); // mie.MTIE, mstatus.MIE
  a.li(12, 0).li(13, 0).li(8, DATA).li(14, 3_000_000);
  a.label('loop').addi(12, 12, 1);
  a.lw(15, 0, 8).add(15, 15, 12).xor(15, 15, 13).sw(15, 0, 8);
  a.andi(9, 12, 255).slli(9, 9, 2).add(9, 9, 8).lw(17, 4, 9).add(17, 17, 15).sw(17, 4, 9);
  a.bne(12, 14, 'loop');
  a.lui(28, 0x100).li(29, 0x5555).sw(29, 0, 28);
  a.label('handler').addi(13, 13, 1).lw(10, 0, 5).addi(10, 10, 30).sw(10, 0, 6).mret();
  return a.bytes();
}

async function runRecorded(program: Uint8Array, engine: Engine, batches?: Uint8Array[]) {
  const m = new Machine({ memory: RAM_SIZE, clock: 'real', engine });
  try {
    m.writeMemory(RAM, program);
    m.pc = RAM;
    const { result, batches: out } = await runLogged(m, batches, { hashInterval: 100_000 });
    return { result, hash: m.stateHash(), batches: out, ticks: m.getRegister(13), blocks: m.jitStats()?.blocks ?? 0 };
  } finally {
    m.close();
  }
}

// --- Paged code (Sv32): one S-mode kernel loop and a U-mode task, built to make every way a mapping
// can change happen under compiled blocks, with an M-mode timer interrupting them throughout.
// (Pages at distinct indices of the direct-mapped translation cache, also from the identity-mapped
// kernel and tables, so that cached entries live long enough to matter.)
const VA1 = 0x40021000; //  F's page, one alias
const VA2 = 0x40432000; //  F's page, another alias (another root entry)
const VA3 = 0x40843000; //  G: G1 or G2 by the leaf PTE, G2 under root B
const VA_U = 0x00464000; // the U task's code (two pages)
const VA_UD = 0x00476000; // the U task's data
const F_PA = RAM + 0x10000, G1_PA = RAM + 0x11000, G2_PA = RAM + 0x12000, U_PA = RAM + 0x13000, UD_PA = RAM + 0x14000;
/** The U task's second code page, VA_U + 4 KiB: not the physical page after U_PA (that is UD_PA, data). */
const U2_PA = RAM + 0x16000;
/** The U task starts near the end of its first page: its loop runs across the two. */
const U_ENTRY = VA_U + 0xfe0;
const ROOT_A = RAM + 0xf0000, ROOT_B = RAM + 0xe0000, B_TABLE = RAM + 0xe1000;
/** Leaf PTE addresses under root A: second-level tables are taken in the order VA1, VA2, VA3, VA_U (VA_UD shares it). */
const LEAF = (table: number, va: number) => ROOT_A + 0x1000 * table + ((va >>> 12) & 0x3ff) * 4;
const LEAF_VA1 = LEAF(1, VA1), LEAF_VA3 = LEAF(3, VA3), LEAF_U = LEAF(4, VA_U), LEAF_UD = LEAF(4, VA_UD);
const PTE_V = 1, PTE_R = 2, PTE_W = 4, PTE_X = 8, PTE_U = 16, PTE_A = 64, PTE_D = 128;
const pteOf = (pa: number, flags: number) => ((Math.floor(pa / 4096) << 10) | flags) >>> 0;
const satpOfRoot = (root: number) => ((1 << 31) | Math.floor(root / 4096)) >>> 0;

/**
 * The S kernel (identity-mapped by a superpage) loops `iterations` times: calls F through both aliases
 * (F's results depend on the virtual pc: auipc, jal links, a pc-relative load), calls G through VA3, and
 * drops to the U task, which loads and stores through VA_UD and ecalls back. Along the way it flips VA3's
 * leaf between G1 and G2 (with sfence.vma, and without), switches satp between roots A and B, rewrites
 * G1's code through the identity alias, takes VA1's X away (F's call faults; the trap handler gives it
 * back), unmaps VA_UD under the U task (its load faults: scause, stval, sepc summed in s3) and takes the
 * U bit off its code page. x27 counts M timer interrupts, s4 page faults. Ends with ebreak -> finisher.
 */
/**
 * LR/SC and every AMO on the words at x[base] and x[base] + 4 (x[other] is set to the latter), with `k`
 * as an operand; results summed into x[sum]. One SC succeeds, one fails (reservation gone), one fails
 * (another address). Uses x6, x7.
 */
function atomics(a: Asm, base: number, other: number, k: number, sum: number): void {
  a.addi(other, base, 4);
  a.lr_w(6, base).addi(6, 6, 3).sc_w(7, 6, base).add(sum, sum, 7); //  sc succeeds: 0
  a.sc_w(7, 6, base).add(sum, sum, 7); //                              no reservation: 1
  a.lr_w(6, base).sc_w(7, 6, other).add(sum, sum, 7); //               another address: 1
  a.amoadd_w(6, k, base).add(sum, sum, 6).amoswap_w(6, k, other).add(sum, sum, 6);
  a.amoxor_w(6, k, base).add(sum, sum, 6).amoand_w(6, k, other).add(sum, sum, 6);
  a.amoor_w(6, k, base).add(sum, sum, 6).amomin_w(6, k, other).add(sum, sum, 6);
  a.amomax_w(6, k, base).add(sum, sum, 6).amominu_w(6, k, other).add(sum, sum, 6);
  a.amomaxu_w(6, k, base).add(sum, sum, 6).lr_w(6, other).add(sum, sum, 6);
}

function pagedProgram(iterations: number): Uint8Array {
  // (First, in M-mode with MPRV, a loop whose loads and stores go through the U bank.)
  const a = new Asm(RAM);
  // M-mode: trap vector, delegation of page faults and U ecalls to S, timer, PMP, satp; mret into S.
  a.la(5, 'mtrap').csrrw(0, 0x305, 5);
  a.li(5, (1 << 8) | (1 << 12) | (1 << 13) | (1 << 15)).csrrw(0, 0x302, 5); // medeleg
  a.la(5, 'strap').csrrw(0, 0x105, 5); //                                       stvec
  a.li(30, 0x0200bff8).lw(31, 0, 30).addi(31, 31, 40).li(30, 0x02004000).sw(0, 4, 30).sw(31, 0, 30);
  a.li(5, 0x80).csrrs(0, 0x304, 5); //                                          mie.MTIE
  a.li(5, 0xffffffff).csrrw(0, 0x3b0, 5).li(5, 0x1f).csrrw(0, 0x3a0, 5); //     PMP: all RWX
  a.li(5, satpOfRoot(ROOT_A)).csrrw(0, 0x180, 5);
  // Still in M, physical: 100 rounds of LR/SC and AMOs on RAM + 0x15000 (sum in s9).
  a.li(25, 0).li(23, 100).li(26, RAM + 0x15000);
  a.label('matom');
  atomics(a, 26, 5, 23, 25);
  a.addi(23, 23, -1).bne(23, 0, 'matom');
  // Still in M: 200 rounds of loads and stores through VA_UD with MPRV (MPP = U: as U, through Sv32),
  // compiled M-mode code whose data is translated; the sum in s8.
  a.li(5, 3 << 11).csrrc(0, 0x300, 5).li(5, 1 << 17).csrrs(0, 0x300, 5);
  a.li(6, VA_UD).li(7, 200).li(24, 0);
  a.label('mprv').lw(28, 8, 6).add(24, 24, 28).addi(28, 28, 5).sw(28, 8, 6).addi(7, 7, -1).bne(7, 0, 'mprv');
  a.li(6, VA_UD + 64).amoadd_w(7, 24, 6).add(24, 24, 7); //         and an AMO through the U bank
  a.li(5, 1 << 17).csrrc(0, 0x300, 5).li(5, 1 << 11).csrrs(0, 0x300, 5); //     MPRV off, MPP = S
  a.la(5, 'smain').csrrw(0, 0x341, 5).mret();
  // M trap: timer interrupts re-arm and return; anything else ends the run through the finisher.
  a.label('mtrap').csrrs(30, 0x342, 0).bge(30, 0, 'mexc');
  a.li(30, 0x0200bff8).lw(31, 0, 30).addi(31, 31, 40).li(30, 0x02004000).sw(31, 0, 30);
  a.addi(27, 27, 1).mret();
  a.label('mexc').li(30, 0x100000).li(31, 0x5555).sw(31, 0, 30);
  // S kernel. s0 iteration, s1 F sums, s2 G sums, s3 fault records, s4 faults, s5 U results, s6 limit.
  a.label('smain').li(8, 0).li(9, 0).li(18, 0).li(19, 0).li(20, 0).li(21, 0).li(22, iterations);
  a.label('loop');
  a.li(5, VA1).jalr(1, 5, 0).add(9, 9, 10); //                  F through VA1
  a.li(5, VA2).jalr(1, 5, 0).add(9, 9, 10); //                  F through VA2
  a.li(5, VA3).jalr(1, 5, 0).add(18, 18, 10); //                G through VA3
  // Every 8th iteration: VA3's leaf flips between G1 and G2; with sfence.vma when bit 3 of s0 is set.
  a.andi(6, 8, 7).bne(6, 0, 'noflip');
  a.li(7, LEAF_VA3).lw(6, 0, 7).li(5, pteOf(G1_PA, 0) ^ pteOf(G2_PA, 0)).xor(6, 6, 5).sw(6, 0, 7);
  a.andi(6, 8, 8).beq(6, 0, 'noflip').li(5, VA3).sfence_vma(5, 0);
  a.label('noflip');
  // Every 16th iteration (offset 5): satp switches root (A <-> B), with sfence.vma.
  a.andi(6, 8, 15).li(5, 5).bne(6, 5, 'nosatp');
  a.csrrs(6, 0x180, 0).li(5, satpOfRoot(ROOT_A) ^ satpOfRoot(ROOT_B)).xor(6, 6, 5).csrrw(0, 0x180, 6).sfence_vma(0, 0);
  a.label('nosatp');
  // Every 4th iteration (offset 2): G1's addi immediate := s0 & 31, stored through the identity alias.
  a.andi(6, 8, 3).li(5, 2).bne(6, 5, 'nosmc');
  a.andi(6, 8, 31).slli(6, 6, 20).li(5, rv.addi(10, 0, 0)).or(6, 6, 5).li(7, G1_PA).sw(6, 0, 7);
  a.label('nosmc');
  // Every 16th iteration (offset 9): VA1 loses X (sfence.vma), so the next call faults.
  a.andi(6, 8, 15).li(5, 9).bne(6, 5, 'nox');
  a.li(7, LEAF_VA1).lw(6, 0, 7).andi(6, 6, ~PTE_X).sw(6, 0, 7).sfence_vma(0, 0);
  a.li(7, VA1).lw(6, 32, 7); //                                  VA1 is still readable: cached for loads
  a.label('nox');
  // Every 8th iteration (offset 3): VA_UD unmapped (no sfence: the store is seen by the cache).
  a.andi(6, 8, 7).li(5, 3).bne(6, 5, 'nounmap');
  a.li(7, LEAF_UD).lw(6, 0, 7).andi(6, 6, ~PTE_V).sw(6, 0, 7);
  a.label('nounmap');
  // Every 16th iteration (offset 12): the U code page loses U.
  a.andi(6, 8, 15).li(5, 12).bne(6, 5, 'nouoff');
  a.li(7, LEAF_U).lw(6, 0, 7).andi(6, 6, ~PTE_U).sw(6, 0, 7).sfence_vma(0, 0);
  a.label('nouoff');
  // To the U task (SPP = U), back by its ecall.
  a.li(5, 1 << 8).csrrc(0, 0x100, 5).li(5, U_ENTRY).csrrw(0, 0x141, 5).sret();
  a.label('back').add(21, 21, 11);
  a.li(26, RAM + 0x15100);
  atomics(a, 26, 5, 8, 25); //                                  S: through the identity superpage
  a.addi(8, 8, 1).bne(8, 22, 'loop');
  a.ebreak();
  // S trap handler: ecall from U -> back; fetch fault -> give VA1 its X, or the U page its U; load or
  // store fault -> map VA_UD again. Each fault adds scause, stval and sepc to s3 and counts in s4.
  a.label('strap').csrrs(28, 0x142, 0).li(29, 8).bne(28, 29, 'sfault');
  a.j('back');
  a.label('sfault').addi(20, 20, 1).add(19, 19, 28);
  a.csrrs(29, 0x143, 0).add(19, 19, 29).csrrs(29, 0x141, 0).slli(29, 29, 1).add(19, 19, 29);
  a.li(29, 12).bne(28, 29, 'sdata');
  a.csrrs(29, 0x143, 0).li(28, U_ENTRY).beq(29, 28, 'ufix');
  a.li(28, LEAF_VA1).lw(29, 0, 28).ori(29, 29, PTE_X).sw(29, 0, 28).sfence_vma(0, 0).sret();
  a.label('ufix').li(28, LEAF_U).lw(29, 0, 28).ori(29, 29, PTE_U).sw(29, 0, 28).sfence_vma(0, 0).sret();
  a.label('sdata').li(28, LEAF_UD).lw(29, 0, 28).ori(29, 29, PTE_V).sw(29, 0, 28).sret();
  const code = a.bytes();
  if (code.length > 0x10000) throw new Error('pagedProgram: kernel code overlaps F');
  return code;
}

/** F (at any alias): a0 = 8 + its own virtual address + the word at F+32, with an in-page loop. */
function fPage(): Uint8Array {
  const f = new Asm(0);
  f.auipc(6, 0).jal(7, 'f2'); //           t1 = F's va, t2 = F+8
  f.label('f2').sub(10, 7, 6).add(10, 10, 6).lw(28, 32, 6).add(10, 10, 28);
  f.li(29, 3).label('f3').addi(10, 10, 1).addi(29, 29, -1).bne(29, 0, 'f3');
  f.jalr(0, 1, 0);
  while (f.offset < 32) f.nop();
  f.word(0x1234);
  return f.bytes();
}

/** G1 / G2: a0 = a constant (G1's is rewritten by the kernel), G2 adds its own virtual address. */
const gPage = (k: number, pcRelative: boolean) => {
  const g = new Asm(0).addi(10, 0, k);
  if (pcRelative) g.auipc(6, 0).add(10, 10, 6);
  return g.jalr(0, 1, 0).bytes();
};

/**
 * The U task's two pages (8 KiB from VA_U): 40 times load, add, store through VA_UD, a loop that falls
 * through from the first page into the second and branches back; a1 = the sum; ecall.
 */
function uPages(): Uint8Array {
  const u = new Asm(VA_U);
  while (u.here < U_ENTRY) u.nop();
  u.li(5, VA_UD).li(6, 0).li(7, 40).li(11, 0);
  u.label('u').lw(28, 0, 5).add(11, 11, 28).addi(28, 28, 3).sw(28, 0, 5).lw(29, 4, 5).add(11, 11, 29);
  u.amoadd_w(29, 6, 5).add(11, 11, 29).lr_w(28, 5).addi(28, 28, 1).sc_w(29, 28, 5).add(11, 11, 29);
  u.addi(6, 6, 1).bne(6, 7, 'u');
  u.ecall();
  const b = u.bytes();
  if (b.length <= 0x1000) throw new Error('uPages: the loop must reach the second page');
  const out = new Uint8Array(0x2000);
  out.set(b);
  return out;
}

/** Loads pagedProgram and builds roots A and B (RAM identity superpage without U in both). */
function setupPaged(m: Machine, iterations: number): void {
  m.writeMemory(RAM, pagedProgram(iterations));
  m.writeMemory(F_PA, fPage());
  m.writeMemory(G1_PA, gPage(1, false));
  m.writeMemory(G2_PA, gPage(100, true));
  const u = uPages();
  m.writeMemory(U_PA, u.subarray(0, 0x1000));
  m.writeMemory(U2_PA, u.subarray(0x1000));
  m.writeMemory(UD_PA, new Uint8Array(4096).fill(7));
  m.writeMemory(ROOT_A, new Uint8Array(0x10000));
  const w = (addr: number, v: number) => m.writeMemory(addr, Uint8Array.of(v, v >>> 8, v >>> 16, v >>> 24));
  const table = (i: number) => ROOT_A + 0x1000 * i;
  w(ROOT_A + (RAM >>> 22) * 4, pteOf(RAM, PTE_V | PTE_R | PTE_W | PTE_X));
  w(ROOT_A + (VA1 >>> 22) * 4, pteOf(table(1), PTE_V));
  w(ROOT_A + (VA2 >>> 22) * 4, pteOf(table(2), PTE_V));
  w(ROOT_A + (VA3 >>> 22) * 4, pteOf(table(3), PTE_V));
  w(ROOT_A + (VA_U >>> 22) * 4, pteOf(table(4), PTE_V));
  w(LEAF_VA1, pteOf(F_PA, PTE_V | PTE_R | PTE_X));
  w(LEAF(2, VA2), pteOf(F_PA, PTE_V | PTE_R | PTE_X | PTE_A));
  w(LEAF_VA3, pteOf(G1_PA, PTE_V | PTE_X | PTE_A));
  w(LEAF_U, pteOf(U_PA, PTE_V | PTE_R | PTE_X | PTE_U));
  w(LEAF_U + 4, pteOf(U2_PA, PTE_V | PTE_R | PTE_X | PTE_U));
  w(LEAF_UD, pteOf(UD_PA, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D));
  // Root B: root A's entries, but VA3 through a table of its own that maps G2.
  m.writeMemory(ROOT_B, m.readMemory(ROOT_A, 4096));
  m.writeMemory(B_TABLE, new Uint8Array(4096));
  w(ROOT_B + (VA3 >>> 22) * 4, pteOf(B_TABLE, PTE_V));
  w(B_TABLE + ((VA3 >>> 12) & 0x3ff) * 4, pteOf(G2_PA, PTE_V | PTE_X));
  m.pc = RAM;
}

describe.skipIf(!HAS_JIT)('block compiler under Sv32 translation', () => {
  it('S and U code run compiled through aliases, remaps (PTE + sfence.vma, PTE alone, satp), lost X and U, unmapped data, code and page-table stores: the interpreter\'s state at every stop', async () => {
    const iterations = 2000;
    const r = await inStep({ memory: RAM_SIZE, clock: 'virtual' }, (m) => setupPaged(m, iterations), budgets(29, 400, 7_919));
    expect(r.last).toMatchObject({ kind: 'exit', code: 0 });
    expect(r.stops).toBeGreaterThan(150);
    // What the guest saw, on the JIT machine (equal to the interpreter's by the in-step comparison).
    const m = new Machine({ memory: RAM_SIZE, clock: 'virtual', engine: 'jit' });
    try {
      setupPaged(m, iterations);
      expect(await m.run({ maxInstructions: 50_000_000 })).toMatchObject({ kind: 'exit', code: 0 });
      expect(m.getRegister(8), 'iterations').toBe(iterations);
      // Faults: VA1's X every 16 iterations, the U page's U every 16, VA_UD every 8.
      const faults = m.getRegister(20);
      expect(faults).toBeGreaterThanOrEqual(2 * Math.floor(iterations / 16) + Math.floor(iterations / 8) - 2);
      expect(m.getRegister(27), 'timer interrupts').toBeGreaterThan(10);
      // MPRV: 200 rounds over the word at VA_UD + 8 (0x07070707, +5 a round), then amoadd's old value.
      expect(m.getRegister(24) >>> 0).toBe((200 * 0x07070707 + 5 * (199 * 200) / 2 + 0x07070707) >>> 0);
      // F's sums differ between its aliases only by the pc: both were called `iterations` times each.
      const s = m.jitStats()!;
      expect(s.translatedBlocks).toBeGreaterThan(10);
      expect(s.translatedInstructions).toBeGreaterThan(s.instructions / 2);
      expect(s.invalidated, 'G1 rewritten under its compiled block').toBeGreaterThan(0);
    } finally {
      m.close();
    }
  }, 120_000);
  it('code that remaps its own page after a full sfence.vma fetches from the new page at the next instruction, on both engines', async () => {
    // P at VA_P: sfence.vma (every cached translation dropped), then a store of VA_P's leaf PTE (now to
    // Q, whose code differs only in two immediates) and an in-page jump. The fence ends the block and
    // the next fetch walks again, so the store to the leaf is seen and the instruction after it comes
    // from Q in either engine: a0 = 10 + 40.
    const VA_P = 0x40055000, P_PA = RAM + 0x20000, Q_PA = RAM + 0x21000, ROOT = RAM + 0xd0000, TABLE = RAM + 0xd1000;
    const leaf = TABLE + ((VA_P >>> 12) & 0x3ff) * 4;
    const page = (one: number, two: number) => {
      const c = new Asm(VA_P);
      c.li(10, 0).li(5, leaf).li(6, pteOf(Q_PA, PTE_V | PTE_R | PTE_X | PTE_A)).sfence_vma(0, 0).sw(6, 0, 5);
      c.addi(10, 10, one).j('l').nop().nop();
      c.label('l').addi(10, 10, two).ebreak();
      return c.bytes();
    };
    for (const engine of ENGINES) {
      const m = new Machine({ memory: RAM_SIZE, clock: 'virtual', engine });
      try {
        const a = new Asm(RAM);
        a.li(5, 0xffffffff).csrrw(0, 0x3b0, 5).li(5, 0x1f).csrrw(0, 0x3a0, 5);
        a.li(5, satpOfRoot(ROOT)).csrrw(0, 0x180, 5).li(5, 3 << 11).csrrc(0, 0x300, 5).li(5, 1 << 11).csrrs(0, 0x300, 5);
        a.li(5, VA_P).csrrw(0, 0x341, 5).mret();
        m.writeMemory(RAM, a.bytes());
        m.writeMemory(P_PA, page(1, 2));
        m.writeMemory(Q_PA, page(10, 40));
        const w = (addr: number, v: number) => m.writeMemory(addr, Uint8Array.of(v, v >>> 8, v >>> 16, v >>> 24));
        m.writeMemory(ROOT, new Uint8Array(0x2000));
        w(ROOT + (RAM >>> 22) * 4, pteOf(RAM, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D));
        w(ROOT + (VA_P >>> 22) * 4, pteOf(TABLE, PTE_V));
        w(leaf, pteOf(P_PA, PTE_V | PTE_R | PTE_X | PTE_A));
        m.pc = RAM;
        expect(await m.run({ maxInstructions: 1000 })).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
        expect(m.getRegister(10), engine).toBe(50);
      } finally {
        m.close();
      }
    }
  });

  it('a paged run recorded on either engine (real clock: timer interrupts inside compiled S and U blocks) replays on the other', async () => {
    const run = async (engine: Engine, batches?: Uint8Array[]) => {
      const m = new Machine({ memory: RAM_SIZE, clock: 'real', engine });
      try {
        setupPaged(m, 3000);
        const { result, batches: out } = await runLogged(m, batches, { hashInterval: 50_000 });
        return { result, hash: m.stateHash(), batches: out, ticks: m.getRegister(27), faults: m.getRegister(20), stats: m.jitStats() };
      } finally {
        m.close();
      }
    };
    for (const [from, to] of [['interp', 'jit'], ['jit', 'interp']] as const) {
      const rec = await run(from);
      expect(rec.result, `recorded on ${from}`).toMatchObject({ kind: 'exit', code: 0 });
      expect(rec.ticks, 'timer interrupts were taken').toBeGreaterThan(0);
      const rep = await run(to, rec.batches);
      expect(rep.result, `replayed on ${to}`).toMatchObject({ kind: 'exit', code: 0, instret: rec.result.instret });
      expect(rep.ticks).toBe(rec.ticks);
      expect(rep.faults).toBe(rec.faults);
      expect(rep.hash).toBe(rec.hash);
      expect((from === 'jit' ? rec : rep).stats!.translatedInstructions).toBeGreaterThan(0);
    }
  }, 120_000);
});

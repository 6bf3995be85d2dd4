// The guest watchdog (WATCHDOG_BASE): a 32-bit store at its base is a pet the host counts (HA VM
// monitoring's guest heartbeat); every other access reads 0 and changes nothing, so it is no input to
// the guest and a recording replays to the same state whatever the host counted.
import { afterEach, describe, expect, it } from 'vitest';
import { Machine, WATCHDOG_BASE } from '../../src/index.js';
import { R, rv } from '../helpers/asm.js';
import { minimalElf } from '../helpers/tiny-elf.js';

const machines: Machine[] = [];
afterEach(() => {
  while (machines.length) machines.pop()!.close();
});

/** Pets 3 times, makes 3 accesses that are not pets, reads the register, and exits with what it read. */
const PROGRAM = [
  rv.lui(R.t0, WATCHDOG_BASE >>> 12), // lui  t0, 0x102        (the watchdog)
  rv.addi(R.t1, R.zero, 7), //          li   t1, 7
  rv.sw(R.t1, 0, R.t0), //              sw   t1, 0(t0)        pet
  rv.sw(R.zero, 0, R.t0), //            sw   zero, 0(t0)      pet
  rv.sh(R.t1, 0, R.t0), //              sh   t1, 0(t0)        not a pet (16-bit)
  rv.sw(R.t1, 4, R.t0), //              sw   t1, 4(t0)        not a pet (not the base)
  rv.sb(R.t1, 0x7ff, R.t0), //          sb   t1, 0x7ff(t0)    not a pet
  rv.sw(R.t1, 0, R.t0), //              sw   t1, 0(t0)        pet
  rv.lw(R.a0, 0, R.t0), //              lw   a0, 0(t0)        reads 0
  rv.lw(R.a1, 4, R.t0), //              lw   a1, 4(t0)        reads 0
  rv.or(R.a0, R.a0, R.a1), //           or   a0, a0, a1
  rv.lui(R.t2, 0x100), //               lui  t2, 0x100        (test finisher)
  rv.slli(R.a0, R.a0, 16), //           slli a0, a0, 16
  rv.addi(R.a2, R.zero, 0x555), //      li   a2, 0x555
  rv.slli(R.a3, R.a2, 4), //            slli a3, a2, 4
  rv.or(R.a3, R.a3, R.a2), //           or   a3, a3, a2       0x5555
  rv.beq(R.a0, R.zero, 16), //          beq  a0, zero, +16    read 0: pass
  rv.lui(R.a4, 0x3), //                 lui  a4, 0x3
  rv.addi(R.a4, R.a4, 0x333), //        addi a4, a4, 0x333    0x3333: fail …
  rv.or(R.a3, R.a0, R.a4), //           or   a3, a0, a4       … with exit code (what it read)
  rv.sw(R.a3, 0, R.t2), //              sw   a3, 0(t2)
];

describe('guest watchdog', () => {
  it('counts the 32-bit stores at its base as pets, nothing else, and reads as 0', async () => {
    const m = new Machine({ memory: 1 << 20 });
    machines.push(m);
    expect(m.watchdogPets).toBe(0n);
    m.load(minimalElf(PROGRAM));
    expect(await m.run()).toMatchObject({ kind: 'exit', code: 0 });
    expect(m.watchdogPets).toBe(3n);
  });

  it('is no input to the guest: a run cut short and resumed ends in the state of one run straight through', async () => {
    const a = new Machine({ memory: 1 << 20 });
    const b = new Machine({ memory: 1 << 20 });
    machines.push(a, b);
    a.load(minimalElf(PROGRAM));
    b.load(minimalElf(PROGRAM));
    // Interrupted mid-way on one machine, straight through on the other: the same end state.
    expect(await a.run({ maxInstructions: 5 })).toMatchObject({ kind: 'budget' });
    expect(a.watchdogPets).toBe(2n);
    expect(await a.run()).toMatchObject({ kind: 'exit', code: 0 });
    expect(await b.run()).toMatchObject({ kind: 'exit', code: 0 });
    expect(a.stateHash()).toBe(b.stateHash());
    expect([a.watchdogPets, b.watchdogPets]).toEqual([3n, 3n]);
  });
});

// The Machine façade: exit reasons, console, counters, the vCPU thread's independence from the
// event loop, stop/close, options validation and state errors.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Machine, MachineStateError, OptionError } from '../../src/index.js';
import { Asm } from '../helpers/asm.js';

const guest = (name: string) => readFileSync(new URL(`../../guest/bin/${name}.elf`, import.meta.url));
const machines: Machine[] = [];
function make(opts: ConstructorParameters<typeof Machine>[0] = {}): Machine {
  const m = new Machine({ memory: 1 << 20, ...opts });
  machines.push(m);
  return m;
}
afterEach(() => {
  while (machines.length) machines.pop()!.close();
});

/** An endless loop: `1: addi t0, t0, 1; j 1b`. */
function spin(): Uint8Array {
  const a = new Asm();
  a.label('top');
  a.addi(5, 5, 1);
  a.jal(0, 'top');
  return a.bytes();
}

describe('Machine', () => {
  it('runs hello to exit code 0 and emits its console output in order', async () => {
    const m = make();
    m.load(guest('hello'));
    const out: Buffer[] = [];
    m.on('console', (c) => out.push(Buffer.from(c)));
    const r = await m.run();
    expect(r.kind).toBe('exit');
    if (r.kind === 'exit') {
      expect(r.code).toBe(0);
      expect(r.via).toBe('finisher');
    }
    expect(Buffer.concat(out).toString()).toBe('Hello from lockstep!\n');
    expect(r.instret).toBe(m.counters.instret);
  });

  it('numbers the console stream: every byte counts, a snapshot restore keeps the count, a set count continues', async () => {
    const m = make();
    m.load(guest('hello'));
    const snap = m.snapshot();
    expect(m.consolePosition).toBe(0n);
    let seen = 0;
    m.on('console', (c) => (seen += c.length));
    await m.run();
    expect(seen).toBe('Hello from lockstep!\n'.length);
    expect(m.consolePosition).toBe(BigInt(seen));
    // A restore rewinds the guest, not the stream: its bytes are new bytes of the same stream.
    m.restore(snap);
    expect(m.consolePosition).toBe(BigInt(seen));
    m.consolePosition = 1000n;
    await m.run();
    expect(seen).toBe(2 * 'Hello from lockstep!\n'.length);
    expect(m.consolePosition).toBe(1000n + BigInt(seen / 2));
    expect(() => (m.consolePosition = -1n)).toThrow(OptionError);
    expect(() => (m.consolePosition = 1n << 64n)).toThrow(OptionError);
  });

  it('reports semihosting exits as such', async () => {
    const m = make();
    m.load(guest('semihost'));
    const r = await m.run();
    expect(r).toMatchObject({ kind: 'exit', code: 0, via: 'semihosting' });
  });

  it('stops at exactly the instruction budget, then continues to the same end as an uninterrupted run', async () => {
    const whole = make();
    whole.load(guest('hello'));
    const end = await whole.run();
    const m = make();
    m.load(guest('hello'));
    const first = await m.run({ maxInstructions: 57 });
    expect(first.kind).toBe('budget');
    expect(first.instret).toBe(57n);
    const second = await m.run({ untilInstret: 100n });
    expect(second).toMatchObject({ kind: 'budget', instret: 100n });
    const rest = await m.run();
    expect(rest.kind).toBe('exit');
    expect(rest.instret).toBe(end.instret);
    expect(rest.branches).toBe(end.branches);
  });

  it('keeps the event loop free while a guest runs: a timer fires and its callback stops the guest', async () => {
    const m = make();
    m.writeMemory(0x80000000, spin());
    let ticks = 0;
    const timer = setInterval(() => {
      ticks++;
      // Once the guest has run (a loaded host may not schedule its thread for a while) and the loop
      // has ticked a few times beside it.
      if (ticks >= 3 && m.progress > 0n) m.stop();
    }, 5);
    const r = await m.run();
    clearInterval(timer);
    expect(r.kind).toBe('stopped');
    expect(ticks).toBeGreaterThanOrEqual(3);
    expect(r.instret).toBeGreaterThan(0n);
    // Stopped at an instruction boundary: the loop counter agrees with the instruction count.
    expect(BigInt(m.getRegister(5))).toBe((r.instret + 1n) / 2n);
  });

  it('reports a trap with no handler with its cause, pc and tval', async () => {
    const m = make();
    m.writeMemory(0x80000000, new Uint8Array([0x13, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])); // nop; <illegal>
    const r = await m.run();
    expect(r).toMatchObject({ kind: 'trap', cause: 2, pc: 0x80000004, tval: 0xffffffff, instret: 1n });
  });

  it('halts when the guest waits for an interrupt that nothing can raise', async () => {
    const m = make();
    m.writeMemory(0x80000000, new Uint8Array([0x73, 0x00, 0x50, 0x10])); // wfi
    const r = await m.run();
    expect(r.kind).toBe('halted');
    if (r.kind === 'halted') expect(r.reason).toMatch(/wfi/);
  });

  it('throws a busy error for state access during a run and accepts it again afterwards', async () => {
    const m = make();
    m.writeMemory(0x80000000, spin());
    const p = m.run();
    expect(() => m.counters).toThrow(MachineStateError);
    expect(() => m.readMemory(0x80000000, 4)).toThrowError(/running/);
    expect(() => m.run()).toThrow(expect.objectContaining({ code: 'ERR_LOCKSTEP_MACHINE_BUSY' }));
    m.stop();
    const r = await p;
    expect(r.kind).toBe('stopped');
    expect(m.counters.instret).toBe(r.instret);
  });

  it('rejects a pending run when closed, and refuses use after close', async () => {
    const m = new Machine({ memory: 1 << 20 });
    m.writeMemory(0x80000000, spin());
    const p = m.run();
    m.close();
    await expect(p).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_MACHINE_CLOSED' });
    expect(() => m.pc).toThrow(/closed/);
    m.close(); // idempotent
  });

  it('validates options with the field name in the error', () => {
    expect(() => new Machine({ memory: 1000 })).toThrow(OptionError);
    expect(() => new Machine({ memory: 1000 })).toThrow(/^memory:/);
    expect(() => new Machine({ clock: 'wall' as never })).toThrow(/^clock:/);
    const m = make();
    expect(() => m.run({ maxInstructions: -1 })).toThrow(/maxInstructions/);
  });

  it('refuses memory access outside RAM', () => {
    const m = make();
    expect(() => m.writeMemory(0x80000000 + (1 << 20) - 2, new Uint8Array(4))).toThrow(RangeError);
    expect(() => m.readMemory(0x10000000, 4)).toThrow(RangeError);
  });

  it('with the real clock, mtime follows the host clock', async () => {
    const m = make({ clock: 'real' });
    // lw a0, 0(t0) with t0 = CLINT mtime; then spin a while; lw a1, 0(t0); ebreak
    const a = new Asm();
    a.lui(5, 0x0200c); // t0 = 0x0200c000
    a.addi(5, 5, -8); //  t0 = 0x0200bff8 (mtime)
    a.lw(10, 0, 5);
    a.lui(6, 0x2000); // t1 = 0x02000000 iterations
    a.label('loop');
    a.addi(6, 6, -1);
    a.bne(6, 0, 'loop');
    a.lw(11, 0, 5);
    a.ebreak();
    m.writeMemory(0x80000000, a.bytes());
    const started = process.hrtime.bigint();
    const r = await m.run();
    const hostTicks = Number(process.hrtime.bigint() - started) / 100; // 10 MHz ticks
    expect(r).toMatchObject({ kind: 'trap', cause: 3 });
    const delta = (m.getRegister(11) - m.getRegister(10)) >>> 0;
    expect(delta).toBeGreaterThan(0);
    expect(delta).toBeLessThanOrEqual(hostTicks);
  });

  it('with the virtual clock, mtime is a pure function of instret', async () => {
    const results: number[] = [];
    for (let i = 0; i < 2; i++) {
      const m = make();
      const a = new Asm();
      a.lui(6, 0x10); // 65536 iterations
      a.label('loop');
      a.addi(6, 6, -1);
      a.bne(6, 0, 'loop');
      a.lui(5, 0x0200c);
      a.addi(5, 5, -8);
      a.lw(10, 0, 5);
      a.ebreak();
      m.writeMemory(0x80000000, a.bytes());
      const r = await m.run();
      expect(r.kind).toBe('trap');
      results.push(m.getRegister(10));
      // 1 + 2 * 65536 + 2 instructions retired before the load: floor(131075 / 100).
      expect(m.getRegister(10)).toBe(Math.floor(131075 / 100));
    }
    expect(results[0]).toBe(results[1]);
  });

  it('delivers UART input to a guest that polls the receiver', async () => {
    const m = make();
    // t0 = UART; loop: lbu t1, 5(t0); andi t1, t1, 1; beqz t1, loop; lbu a0, 0(t0); ebreak
    const a = new Asm();
    a.lui(5, 0x10000);
    a.label('poll');
    a.lbu(6, 5, 5);
    a.andi(6, 6, 1);
    a.beq(6, 0, 'poll');
    a.lbu(10, 0, 5);
    a.ebreak();
    m.writeMemory(0x80000000, a.bytes());
    const p = m.run({ maxInstructions: 50_000_000 });
    m.input('Z');
    const r = await p;
    expect(r).toMatchObject({ kind: 'trap', cause: 3 });
    expect(m.getRegister(10)).toBe('Z'.charCodeAt(0));
  });

  it('runs many machines side by side, each on its own thread', async () => {
    const ms = Array.from({ length: 4 }, () => make());
    for (const m of ms) m.load(guest('hello'));
    const rs = await Promise.all(ms.map((m) => m.run()));
    for (const r of rs) expect(r).toMatchObject({ kind: 'exit', code: 0 });
    expect(new Set(rs.map((r) => r.instret)).size).toBe(1);
  });
});

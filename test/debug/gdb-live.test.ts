// `lockstep run --gdb` driven by Debian's gdb-multiarch in batch mode: breakpoints at a function,
// registers and state equal to a plain run's at the same instret, memory reads and writes that the guest
// sees, a watchpoint on a global, stepi, and continue to the guest's exit.
import { afterEach, describe, expect, it } from 'vitest';
import { Machine } from '../../src/index.js';
import { ABI, gdbBatch, infoRegisters, printed, startLockstep, type LockstepGdb } from '../helpers/gdb.js';
import { guestElf } from '../helpers/replay.js';

const ELF = 'guest/bin/recurse.elf';
const recurse = guestElf('recurse');
const running: LockstepGdb[] = [];
afterEach(() => {
  for (const r of running.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
});

async function live(): Promise<LockstepGdb> {
  const l = await startLockstep(['run', ELF, '--gdb', '127.0.0.1:0']);
  running.push(l);
  return l;
}

/** A plain machine (no debugger) run to `instret`: its registers, pc and state hash. */
async function plainAt(instret: bigint): Promise<{ regs: Uint32Array; pc: number; hash: bigint }> {
  const m = new Machine();
  try {
    m.load(recurse);
    const r = await m.run({ untilInstret: instret });
    expect(r.instret).toBe(instret);
    return { regs: m.registers(), pc: m.pc, hash: m.stateHash() };
  } finally {
    m.close();
  }
}

describe('lockstep run --gdb', () => {
  it('stops at a breakpoint on a function with the registers and state of a plain run at that instret', async () => {
    const l = await live();
    const { stdout, stderr: monitor } = await gdbBatch(l.port, ELF, ['break fib', 'continue', 'monitor instret', 'monitor hash', 'info registers', 'kill']);
    expect(stdout).toMatch(/Breakpoint 1, 0x[0-9a-f]+ in fib \(\)/);
    // gdb prints what a monitor command answers on stderr.
    const instret = BigInt(printed(monitor, 'instret')[0]!);
    const hash = BigInt(printed(monitor, 'hash')[0]!);
    const regs = infoRegisters(stdout);
    const plain = await plainAt(instret);
    expect(hash).toBe(plain.hash);
    expect(regs.get('pc')).toBe(plain.pc);
    for (let i = 1; i < 32; i++) expect(regs.get(ABI[i]!), ABI[i]).toBe(plain.regs[i]);
    const { status, stderr } = await l.exited;
    expect(status).toBe(130);
    expect(stderr).toMatch(/the debugger killed the guest/);
  });

  it('reads and writes guest memory, and the guest computes with what was written', async () => {
    const l = await live();
    const { stdout } = await gdbBatch(l.port, ELF, [
      'break main',
      'continue',
      'printf "BEFORE=%u\\n", *(unsigned int *)&calls',
      'set {unsigned int}&calls = 1000000',
      'printf "AFTER=%u\\n", *(unsigned int *)&calls',
      'x/1xw &calls',
      'delete',
      'continue',
    ]);
    const before = Number(printed(stdout, 'BEFORE')[0]);
    expect(printed(stdout, 'AFTER')).toEqual(['1000000']);
    expect(stdout).toMatch(/0x[0-9a-f]+ <calls>:\s+0x000f4240/);
    expect(stdout).toMatch(/exited normally/);
    const { status, stdout: guestOut } = await l.exited;
    expect(status).toBe(0);
    // The plain run counts 40569320 calls from 0; this one counted on from 1000000.
    expect(before).toBe(0);
    expect(guestOut).toContain(`recurse: ${40569320 + 1000000} calls`);
  });

  it('stops after the store a watchpoint on a global watches, steps one instruction, and runs on to the exit', async () => {
    const l = await live();
    const { stdout, stderr: monitor } = await gdbBatch(l.port, ELF, [
      'watch *(unsigned int *)&calls',
      'continue',
      'monitor instret',
      'monitor hash',
      'printf "CALLS=%u\\n", *(unsigned int *)&calls',
      'stepi',
      'monitor instret',
      'delete',
      'continue',
    ]);
    expect(stdout).toMatch(/Hardware watchpoint 1: \*\(unsigned int \*\)&calls/);
    expect(stdout).toMatch(/Old value = 0\s+New value = 1/);
    const [atWatch, afterStep] = printed(monitor, 'instret').map((t) => BigInt(t));
    expect(afterStep).toBe(atWatch! + 1n);
    const plain = await plainAt(atWatch!);
    expect(BigInt(printed(monitor, 'hash')[0]!)).toBe(plain.hash);
    // The store has happened when the watchpoint reports: memory holds the new value.
    expect(printed(stdout, 'CALLS')).toEqual(['1']);
    expect(stdout).toMatch(/\[Inferior 1 \(Remote target\) exited normally\]/);
    const { status, stdout: guestOut } = await l.exited;
    expect(status).toBe(0);
    expect(guestOut).toContain('recurse: 40569320 calls');
  });

  it('reports the target description: CSRs by name and the privilege mode', async () => {
    const l = await live();
    const { stdout } = await gdbBatch(l.port, ELF, ['stepi', 'info registers mtvec misa mhartid', 'p $priv', 'kill']);
    expect(stdout).toMatch(/^misa\s+0x40141105/m);
    expect(stdout).toMatch(/^mhartid\s+0x0/m);
    expect(stdout).toMatch(/\$1 = 3|\$1 = prv:3 \[Machine\]/);
    await l.exited;
  });

  it('reads and writes memory by virtual address through the page tables when paging is on', async () => {
    // paging.elf's S-mode kernel maps a 4 MiB superpage at 0xc0000000 onto RAM, and nothing at 0x40000000
    // when probe_load first runs.
    const l = await startLockstep(['run', 'guest/bin/paging.elf', '--gdb', '127.0.0.1:0']);
    running.push(l);
    const { stdout, stderr } = await gdbBatch(l.port, 'guest/bin/paging.elf', [
      'break probe_load',
      'continue',
      'printf "PRIV=%d\\n", $priv',
      'printf "SUPER=%x\\n", *(unsigned int *)0xc0000000',
      'set {unsigned int}0xc0000ffc = 0x1234abcd',
      'printf "PHYS=%x\\n", *(unsigned int *)0x80000ffc',
      // Last: gdb prints the address on stdout and the error on stderr, without a newline between.
      'x/wx 0x40000000',
      'kill',
    ]);
    expect(printed(stdout, 'PRIV')).toEqual(['1']);
    // The first word of RAM: `csrr t0, mhartid` at _start.
    expect(printed(stdout, 'SUPER')).toEqual(['f14022f3']);
    expect(`${stdout}${stderr}`).toMatch(/Cannot access memory at address 0x40000000/);
    expect(printed(stdout, 'PHYS')).toEqual(['1234abcd']);
    await l.exited;
  });
});

// `lockstep debug <run.log> --gdb` driven by gdb-multiarch: reverse-stepi back to the previous pc and
// instret, reverse-continue to the previous breakpoint and watchpoint hits, reverse-finish, with the
// guest state identical to a forward replay to the same instret; and debugging never changes what the
// log replays. The timer guest's recording (real clock) carries clock reads and timer interrupts, so
// restoring a checkpoint mid-log must skip exactly the events before it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LogReader, Machine, Replayer } from '../../src/index.js';
import { root } from '../helpers/ft-pair.js';
import { gdbBatch, printed, startLockstep, type LockstepGdb } from '../helpers/gdb.js';
import { guestElf } from '../helpers/replay.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-gdb-'));
const running: LockstepGdb[] = [];
afterEach(() => {
  for (const r of running.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const TIMER = 'guest/bin/timer.elf';
const RECURSE = 'guest/bin/recurse.elf';
const logs: Record<string, string> = {};

beforeAll(() => {
  for (const [name, elf, extra] of [
    ['timer', TIMER, ['--clock', 'real']],
    ['recurse', RECURSE, ['--max-instructions', '2000000']],
  ] as const) {
    const log = join(tmp, `${name}.log`);
    const r = spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'record', elf, '-o', log, ...extra], { cwd: root, encoding: 'utf8', timeout: 240_000 });
    expect(r.stderr).not.toMatch(/error/i);
    logs[name] = log;
  }
});

async function debug(name: 'timer' | 'recurse', interval: number): Promise<LockstepGdb> {
  const elf = name === 'timer' ? TIMER : RECURSE;
  const l = await startLockstep(['debug', logs[name]!, elf, '--gdb', '127.0.0.1:0', '--checkpoint-interval', String(interval)]);
  running.push(l);
  return l;
}

/** The state hash of a forward replay of `name`'s log, stopped at `instret`. */
async function replayedHashAt(name: 'timer' | 'recurse', instret: bigint): Promise<bigint> {
  const reader = LogReader.open(logs[name]!);
  const batches = [...reader.batches()].map((b) => b.bytes);
  const meta = reader.meta;
  reader.close();
  const m = new Machine({ memory: meta.memory, clock: meta.clock });
  try {
    m.load(guestElf(name));
    const rep = new Replayer(m);
    for (const b of batches) rep.feed(b);
    rep.end();
    const r = await m.run({ untilInstret: instret });
    expect(r.instret).toBe(instret);
    return m.stateHash();
  } finally {
    m.close();
  }
}

const hashes = (monitor: string) => printed(monitor, 'hash').map((h) => BigInt(h));
const instrets = (monitor: string) => printed(monitor, 'instret').map((h) => BigInt(h));

describe('lockstep debug --gdb (a recorded run)', () => {
  it('advertises reverse execution, and reverse-stepi returns to the previous pc, instret and state', async () => {
    const l = await debug('timer', 100);
    const { stdout, stderr } = await gdbBatch(l.port, TIMER, [
      'break ls_trap_handler',
      'continue',
      'stepi',
      'stepi',
      'printf "PC=%x\\n", $pc',
      'monitor instret',
      'monitor hash',
      'stepi',
      'printf "PC=%x\\n", $pc',
      'reverse-stepi',
      'printf "PC=%x\\n", $pc',
      'monitor instret',
      'monitor hash',
    ]);
    const pcs = printed(stdout, 'PC');
    expect(pcs[2]).toBe(pcs[0]);
    expect(pcs[1]).not.toBe(pcs[0]);
    const [before, after] = instrets(stderr);
    expect(after).toBe(before);
    const [h1, h2] = hashes(stderr);
    expect(h2).toBe(h1);
    expect(h1).toBe(await replayedHashAt('timer', before!));
    await l.exited;
  });

  it('reverse-continue stops at the previous breakpoint hits, each in the state the forward pass had there, then at the start', async () => {
    const l = await debug('timer', 100);
    const { stdout, stderr } = await gdbBatch(l.port, TIMER, [
      'break ls_trap_handler',
      'continue',
      'monitor instret',
      'monitor hash',
      'continue',
      'monitor instret',
      'monitor hash',
      'continue',
      'monitor instret',
      'reverse-continue',
      'monitor instret',
      'monitor hash',
      'reverse-continue',
      'monitor instret',
      'monitor hash',
      'reverse-continue',
      'monitor instret',
      'monitor checkpoints',
    ]);
    const [i1, i2, i3, r2, r1, start] = instrets(stderr);
    const [h1, h2, rh2, rh1] = hashes(stderr);
    expect(i1! < i2! && i2! < i3!).toBe(true);
    expect(r2).toBe(i2);
    expect(r1).toBe(i1);
    expect(rh2).toBe(h2);
    expect(rh1).toBe(h1);
    expect(start).toBe(0n);
    expect(stdout).toMatch(/No more reverse-execution history/);
    // The hits lie beyond several checkpoints: the reverse runs restored snapshots taken mid-log.
    expect(printed(stderr, 'checkpoints')[0]!.split(',').length).toBeGreaterThan(2);
    await l.exited;
  });

  it('reverse-continue to a watchpoint stops before the write, with gdb showing the value going back', async () => {
    const l = await debug('timer', 100);
    const { stdout, stderr } = await gdbBatch(l.port, TIMER, [
      'watch *(unsigned int *)&ticks',
      'continue',
      'continue',
      'monitor instret',
      'continue',
      'reverse-continue',
      'printf "TICKS=%u\\n", *(unsigned int *)&ticks',
      'monitor instret',
      'monitor hash',
      'continue',
      'printf "TICKS=%u\\n", *(unsigned int *)&ticks',
    ]);
    expect(stdout).toMatch(/Old value = 2\s+New value = 3/);
    expect(stdout).toMatch(/Old value = 3\s+New value = 2/);
    expect(printed(stdout, 'TICKS')).toEqual(['2', '3']);
    const [second, back] = instrets(stderr);
    // Back before the third write: past the second one (which gdb stopped just after) by the handler's run.
    expect(back! > second!).toBe(true);
    expect(hashes(stderr)[0]).toBe(await replayedHashAt('timer', back!));
    await l.exited;
  });

  it('reverse-finish goes back to the call, and continue replays on to the recorded exit', async () => {
    const l = await debug('timer', 100);
    const { stdout, stderr } = await gdbBatch(l.port, TIMER, ['break ls_puts', 'continue', 'monitor instret', 'reverse-finish', 'monitor instret', 'x/i $pc', 'delete', 'continue']);
    const [hit, call] = instrets(stderr);
    expect(call).toBe(hit! - 1n);
    expect(stdout).toMatch(/=> 0x[0-9a-f]+ <main\+\d+>:\s+jal\s+0x[0-9a-f]+ <ls_puts>/);
    expect(stdout).toMatch(/exited normally/);
    const { status, stdout: guestOut } = await l.exited;
    expect(status).toBe(0);
    expect(guestOut).toContain('timer:');
  });

  it('walks back over many checkpoints of a long run, to the same states as a forward replay', async () => {
    const l = await debug('recurse', 64);
    const { stderr } = await gdbBatch(l.port, RECURSE, [
      'break fib',
      ...Array.from({ length: 6 }, () => ['continue', 'monitor instret', 'monitor hash']).flat(),
      ...Array.from({ length: 3 }, () => ['reverse-continue', 'monitor instret', 'monitor hash']).flat(),
    ]);
    const is = instrets(stderr);
    const hs = hashes(stderr);
    expect(is.slice(6)).toEqual([is[4], is[3], is[2]]);
    expect(hs.slice(6)).toEqual([hs[4], hs[3], hs[2]]);
    // A forward stop at a breakpoint is a stop before its instruction: a plain replay to that instret
    // (no interrupt at that boundary in this guest) is in the same state.
    expect(hs[3]).toBe(await replayedHashAt('recurse', is[3]!));
    await l.exited;
  });

  it('refuses to change a recording: memory and register writes fail, and the replay still ends verified', async () => {
    const l = await debug('timer', 100);
    const { stdout, stderr } = await gdbBatch(l.port, TIMER, ['break main', 'continue', 'set {unsigned int}&ticks = 5', 'set $a0 = 7', 'delete', 'continue']);
    expect(`${stdout}${stderr}`).toMatch(/Cannot access memory|E03|Could not write register/);
    expect(stdout).toMatch(/exited normally/);
    await l.exited;
    const replay = spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'replay', logs.timer!, TIMER], { cwd: root, encoding: 'utf8', timeout: 240_000 });
    expect(replay.status).toBe(0);
  });
});

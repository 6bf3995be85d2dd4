// A clone the pre-copy cannot converge on: memtouch rewrites a word of every page of 48 MiB over and over,
// far faster than a round sends them. The primary's policy ends the rounds (at most 8, the guest slowed as
// they fail), the stop-and-copy takes the rest, and the pair then hands over at one state.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, Machine, type GoLiveReport } from '../../src/index.js';
import { parseElf } from '../../src/machine/elf.js';
import { until } from '../helpers/wait.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-clone-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const MEMTOUCH = readFileSync(new URL('../../guest/bin/memtouch.elf', import.meta.url));
const RAM = 64 << 20;
/** FtPrimary's bound: 8 pre-copy rounds; the report counts the stop-and-copy as one more. */
const MAX_ROUNDS = 8;

describe('clone of a running primary', () => {
  it('a guest that dirties pages faster than the pre-copy sends them is cloned after at most 8 rounds and the stop-and-copy; a test failover hands over at one state', async () => {
    const key = randomBytes(32);
    const dir = mkdtempSync(join(tmp, 'arb-'));
    const machine = new Machine({ memory: RAM, clock: 'real' });
    machine.load(MEMTOUCH);
    // Until stopped: its round count is a patchable variable.
    machine.writeMemory(parseElf(MEMTOUCH, { base: 0x8000_0000, size: RAM }).symbols.get('memtouch_rounds')!, Uint8Array.of(0xff, 0xff, 0xff, 0x7f));
    const primary = new FtPrimary({ machine, vmId: 'memtouch', key, arbiter: new FileArbiter({ dir }), timeoutMs: 30_000 });
    cleanups.push(() => machine.close(), () => primary.stop());
    const addr = await primary.start();
    // The guest must have rewritten its pages before the clone begins: a loaded machine may not have run
    // the vCPU yet, and a first round over untouched (zero) pages would converge at once. One round of
    // memtouch is ~100 000 instructions; wait for three.
    await until('memtouch to have rewritten its pages', () => machine.progress > 300_000n, { everyMs: 10 });
    const secondary = new FtSecondary({ vmId: 'memtouch', key, arbiter: new FileArbiter({ dir }), join: addr, timeoutMs: 30_000, createMachine: () => new Machine({ memory: RAM, clock: 'real' }) });
    cleanups.push(() => secondary.machine?.close(), () => secondary.stop(), () => secondary.primary?.stop());
    const cloned = new Promise<{ rounds: number; pages: number }>((r) => primary.once('cloned', r));
    const lockstep = new Promise<void>((r) => secondary.once('lockstep', () => r()));
    await secondary.start();
    const report = await cloned;
    // Every round finds memtouch's pages written again: none converges, the policy's bound ends them.
    expect(report.rounds, 'the pre-copy rounds and the stop-and-copy').toBe(MAX_ROUNDS + 1);
    expect(report.pages, 'every round sends the 12 288 pages memtouch rewrites').toBeGreaterThanOrEqual(MAX_ROUNDS * 12_288);
    await lockstep;
    const live = new Promise<GoLiveReport>((r) => secondary.once('go-live', r));
    await primary.testFailover();
    const handover = await live;
    expect(handover.stateHash).toBe(machine.stateHash());
    expect(handover.instret).toBe(machine.counters.instret);
  });
});

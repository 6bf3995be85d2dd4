// Lag control and back-pressure (DESIGN §3): a secondary that replays slowly makes the primary slow
// down, smoothly and with the lag bounded; a logging channel that stops moving fills the log ring and
// stalls the guest — and nothing is dropped: after the stall the pair hands over at one identical state.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, KvClient, LoadGenerator, Machine, attachVmNetwork, type GoLiveReport } from '../../src/index.js';
import { internal } from '../../src/machine/machine.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-lag-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const elf = (n: string) => readFileSync(new URL(`../../guest/bin/${n}.elf`, import.meta.url));
let dirs = 0;
const arbiterDir = () => mkdtempSync(join(tmp, `arb-${dirs++}-`));

describe('lag control', () => {
  it('a slow secondary makes the primary slow down and keeps the lockstep interval bounded', async () => {
    const key = randomBytes(32);
    const dir = arbiterDir();
    const machine = new Machine({ clock: 'real' });
    machine.load(elf('mixed'));
    const primary = new FtPrimary({ machine, vmId: 'lag', key, arbiter: new FileArbiter({ dir }), lagTargetMs: 50, maxLagMs: 300, heartbeatMs: 20, timeoutMs: 5000 });
    const addr = await primary.start();
    // The secondary replays at a fifth of full speed, as on a host with four times the load.
    const secondary = new FtSecondary({ vmId: 'lag', key, arbiter: new FileArbiter({ dir }), join: addr, heartbeatMs: 20, timeoutMs: 5000, replayThrottle: 0.8, createMachine: () => new Machine({ clock: 'real' }) });
    const cloned = new Promise((r) => primary.once('cloned', r));
    await secondary.start();
    await cloned;
    let maxThrottle = 0;
    const lags: number[] = [];
    const sampler = setInterval(() => {
      const s = primary.stats();
      maxThrottle = Math.max(maxThrottle, s.throttle);
      lags.push(s.lagSeconds * 1000);
    }, 20);
    const [pEnd, sEnd] = await Promise.all([new Promise((r) => primary.once('ended', r)), new Promise((r) => secondary.once('ended', r))]);
    clearInterval(sampler);
    expect(pEnd).toMatchObject({ kind: 'exit' });
    expect(sEnd).toMatchObject({ kind: 'exit' });
    expect(maxThrottle).toBeGreaterThan(0.5); // the primary was braked hard
    // Uncontrolled, a secondary at 20 % speed falls ~0.8 s behind per second of run; controlled, the
    // interval stays near the 300 ms maximum.
    const sorted = [...lags].sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length * 0.9)]!).toBeLessThan(600);
    expect(secondary.machine!.stateHash()).toBe(machine.stateHash());
    await primary.stop();
    await secondary.stop();
    machine.close();
    secondary.machine!.close();
  }, 60_000);

  it('a logging channel that stops moving stalls the guest once the ring is full; nothing is dropped', async () => {
    const key = randomBytes(32);
    const dir = arbiterDir();
    const spec = { net: true as const };
    // No disk: kvserver serves from memory when told so (both halves get the same command line).
    const cmdline = 'kvserver.storage=memory';
    const machine = new Machine({ clock: 'real', devices: spec, cmdline });
    machine.load(elf('kvserver'));
    const primary = new FtPrimary({ machine, vmId: 'stall', key, arbiter: new FileArbiter({ dir }), maxUnackedBytes: 16 * 1024, ringBytes: 64 * 1024, heartbeatMs: 50, timeoutMs: 20_000 });
    const addr = await primary.start();
    const proxy = await TcpProxy.start('127.0.0.1', addr.port);
    const secondary = new FtSecondary({ vmId: 'stall', key, arbiter: new FileArbiter({ dir }), join: { host: '127.0.0.1', port: proxy.port }, heartbeatMs: 50, timeoutMs: 20_000, createMachine: () => new Machine({ clock: 'real', devices: spec, cmdline }) });
    const cloned = new Promise((r) => primary.once('cloned', r));
    await secondary.start();
    await cloned;
    const net = await attachVmNetwork(machine, { id: 'stall', guest: '', memory: machine.memory, clock: 'real', net: { backend: 'udp', hostPort: 0, guestPort: 11211 } });
    const load = new LoadGenerator({ endpoints: [{ host: '127.0.0.1', port: net.port! }], clients: 8, setRatio: 1, keys: 50, durationMs: 60_000, timeoutMs: 100, retries: 200 });
    const running = load.run();
    await new Promise((r) => setTimeout(r, 300));
    proxy.stall();
    // Unacknowledged log passes 16 KiB, the recorder stops draining, the 64 KiB ring fills: the vCPU waits.
    const progress = () => machine[internal].native.progress();
    // Clients keep retrying (every 100 ms), so a guest that could run would move; it does not.
    let still = 0;
    let last = progress();
    for (let i = 0; i < 150 && still < 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const now = progress();
      still = now === last && primary.stats().unackedBytes > 16 * 1024 ? still + 1 : 0;
      last = now;
    }
    expect(still).toBe(5);
    proxy.flow();
    await new Promise((r) => setTimeout(r, 500));
    load.stop();
    const result = await running;
    expect(result.acknowledged).toBeGreaterThan(0);
    expect(result.violationCount).toBe(0);
    // Hand over: the secondary goes live exactly where the primary stopped, with the same state.
    const live = new Promise<GoLiveReport>((r) => secondary.once('go-live', r));
    await primary.testFailover();
    const report = await live;
    expect(report.stateHash).toBe(machine.stateHash());
    const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port: net.port! }], timeoutMs: 100, retries: 5 });
    void c;
    await c.close();
    net.close();
    await secondary.primary?.stop();
    await proxy.close();
    machine.close();
    secondary.machine!.close();
  }, 60_000);
});

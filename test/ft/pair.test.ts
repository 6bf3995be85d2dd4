// The library classes in one process: FtPrimary and FtSecondary over a real loopback channel, the
// output rule as seen by an embedder ('console' only once acknowledged), losing the secondary, and the
// lockstep:ft:* diagnostics channels.
import diagnosticsChannel from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, Machine, describeStatus, type RunResult } from '../../src/index.js';
import { startControlServer } from '../../src/ft/control-server.js';
import { callControl } from '../../src/ft/control-client.js';
import { until } from '../helpers/wait.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-pair-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const echo = readFileSync(new URL('../../guest/bin/echo.elf', import.meta.url));
/** Halves here part by closing the channel; a loaded machine must not make them fail over on a pause. */
const SLOW_HOST_TIMEOUT_MS = 30_000;

describe('FtPrimary / FtSecondary in one process', () => {
  it('clones, keeps the console behind acknowledgements, survives the loss of the secondary, and publishes diagnostics', async () => {
    const seen: Record<string, unknown[]> = { state: [], clone: [], failover: [] };
    const subs = (['state', 'clone', 'failover'] as const).map((k) => {
      const fn = (m: unknown) => seen[k]!.push(m);
      diagnosticsChannel.subscribe(`lockstep:ft:${k}`, fn);
      return () => diagnosticsChannel.unsubscribe(`lockstep:ft:${k}`, fn);
    });
    const key = randomBytes(32);
    const machine = new Machine({ clock: 'real' });
    machine.load(echo);
    // Powered on protected: the echo guest runs for 200 ms of guest time, which must not pass before
    // the test's input arrives on a loaded machine.
    const primary = new FtPrimary({ machine, vmId: 'echo', key, arbiter: new FileArbiter({ dir: tmp }), timeoutMs: SLOW_HOST_TIMEOUT_MS, awaitSecondary: true });
    const statuses: string[] = [];
    primary.on('status', (s) => statuses.push(describeStatus(s)));
    const cloned = new Promise((r) => primary.once('cloned', r));
    // Listened for from the start: on a loaded host the guest's 200 ms may run out while the test still
    // waits for the secondary's loss (the event would then be missed and the test wait forever).
    const ended = new Promise<RunResult>((r) => primary.once('ended', r));
    const addr = await primary.start();
    expect(primary.epoch).toBe(1);
    const secondary = new FtSecondary({ vmId: 'echo', key, arbiter: new FileArbiter({ dir: tmp }), join: addr, timeoutMs: SLOW_HOST_TIMEOUT_MS, createMachine: () => new Machine({ clock: 'real' }) });
    await secondary.start();
    await cloned;
    expect(primary.status).toEqual({ protected: true });
    const out: string[] = [];
    machine.on('console', (b) => out.push(Buffer.from(b).toString('latin1')));
    machine.input('ab\n');
    await until("the guest's answer to be released once the secondary acknowledged it", () => out.join('').includes('AB'));
    // The secondary leaves without a word: the primary wins epoch 2 and goes on alone.
    const lost = new Promise<string>((r) => primary.once('secondary-lost', r));
    await secondary.stop();
    await lost;
    expect(primary.epoch).toBe(2);
    expect(primary.status).toEqual({ protected: false, reason: 'needs-secondary' });
    expect((await ended).kind).toBe('exit');
    expect(out.join('')).toMatch(/echo: 3 bytes, 1 lines/);
    expect(statuses).toContain('Protected');
    expect(statuses).toContain('Not Protected (need secondary VM)');
    expect(seen.clone!.length).toBe(1);
    expect(seen.failover).toEqual([expect.objectContaining({ vm: 'echo', epoch: 2 })]);
    expect(seen.state!.length).toBeGreaterThanOrEqual(2);
    for (const u of subs) u();
    await primary.stop();
    machine.close();
    secondary.machine?.close();
  });

  it('operations through the control API: disable and enable FT, suspend, migrate the secondary; a request signed with another key is refused', async () => {
    const key = randomBytes(32);
    const dir = mkdtempSync(join(tmp, 'ops-'));
    const kv = readFileSync(new URL('../../guest/bin/kvserver.elf', import.meta.url));
    const machine = new Machine({ clock: 'real', devices: { net: true } });
    machine.load(kv);
    const primary = new FtPrimary({ machine, vmId: 'ops', key, arbiter: new FileArbiter({ dir }), timeoutMs: SLOW_HOST_TIMEOUT_MS });
    const addr = await primary.start();
    const control = await startControlServer(() => primary, key);
    const call = async (op: string, pairKey: Uint8Array = key) => {
      const res = await callControl(control.url, pairKey, op === 'status' ? 'GET' : 'POST', `/ft/${op}`);
      return { code: res.status, body: res.body };
    };
    const joinAs = (name: string) => {
      const s = new FtSecondary({ vmId: 'ops', key, arbiter: new FileArbiter({ dir }), join: addr, timeoutMs: SLOW_HOST_TIMEOUT_MS, createMachine: () => new Machine({ clock: 'real', devices: { net: true } }) });
      s.on('warning', () => {});
      return { name, s, left: new Promise<string>((r) => s.once('left', r)) };
    };
    const protectedAgain = () => new Promise((r) => primary.once('cloned', r));
    // Signed with another key: 401, nothing happens.
    expect((await call('disable', randomBytes(32))).code).toBe(401);
    let a = joinAs('a');
    let cloned = protectedAgain();
    await a.s.start();
    await cloned;
    expect((await call('status')).body.status).toBe('Protected');
    // FT off: the secondary is dismissed (it does not go live), joins are refused, status says disabled.
    expect((await call('disable')).body.status).toBe('Not Protected (disabled)');
    expect(await a.left).toMatch(/FT turned off/);
    const refused = joinAs('refused');
    await refused.s.start();
    expect(await refused.left).toMatch(/disabled/);
    // FT on again: a secondary joins and the VM is protected.
    expect((await call('enable')).body.status).toBe('Not Protected (need secondary VM)');
    a = joinAs('a2');
    cloned = protectedAgain();
    await a.s.start();
    await cloned;
    // Migrate: the newcomer is cloned while this one protects the VM, then this one is dismissed; the
    // status never leaves Protected.
    const during: string[] = [];
    primary.on('status', (st) => during.push(describeStatus(st)));
    expect((await call('migrate-secondary')).code).toBe(200);
    const b = joinAs('b');
    const moved = new Promise((r) => primary.once('moved', r));
    await b.s.start();
    expect(await a.left).toMatch(/moved/);
    await moved;
    expect(primary.status).toEqual({ protected: true });
    expect(during).toEqual([]);
    // Suspend: like off, shown as suspended. An operation that does not fit the state is a 409.
    expect((await call('suspend')).body.status).toBe('Not Protected (FT suspended)');
    expect((await call('test-failover')).code).toBe(409);
    expect(primary.epoch).toBeGreaterThanOrEqual(4); // every dismissal fenced the old secondary out
    await control.close();
    await primary.stop();
    machine.close();
    for (const x of [a, b, refused]) x.s.machine?.close();
  });
});

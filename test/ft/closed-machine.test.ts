// A library user who closes a machine under a running FT half (Machine.close() without stop()) gets a
// 'halted' event with a coded error — never an exception thrown from a timer of FtPrimary or FtSecondary.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArbiter, FtError, FtPrimary, FtSecondary, Machine } from '../../src/index.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { until } from '../helpers/wait.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-closed-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const mixed = readFileSync(new URL('../../guest/bin/mixed.elf', import.meta.url));

/** A protected pair running the mixed guest (long enough to be closed under), through a proxy. */
async function pair(name: string) {
  const key = randomBytes(32);
  const dir = mkdtempSync(join(tmp, `${name}-`));
  const machine = new Machine({ clock: 'real' });
  machine.load(mixed);
  const primary = new FtPrimary({ machine, vmId: name, key, arbiter: new FileArbiter({ dir }), heartbeatMs: 10, timeoutMs: 30_000 });
  const addr = await primary.start();
  const proxy = await TcpProxy.start('127.0.0.1', addr.port);
  const viaProxy = { host: '127.0.0.1', port: proxy.port };
  const secondary = new FtSecondary({ vmId: name, key, arbiter: new FileArbiter({ dir }), join: viaProxy, heartbeatMs: 10, timeoutMs: 30_000, createMachine: () => new Machine({ clock: 'real' }) });
  const cloned = new Promise((r) => primary.once('cloned', r));
  await secondary.start();
  await cloned;
  return { machine, primary, secondary, proxy };
}

function halted(emitter: FtPrimary | FtSecondary): Promise<[string, FtError | undefined]> {
  return new Promise((resolve) => (emitter as FtPrimary).once('halted', (reason, error) => resolve([reason, error])));
}

describe('a machine closed under an FT half', () => {
  it('the primary halts with ERR_LOCKSTEP_FT_MACHINE_CLOSED, also when closed while the guest is stopped; its timers throw nothing', async () => {
    const { machine, primary, secondary, proxy } = await pair('closed-p');
    secondary.on('warning', () => {});
    // A test failover stops the guest and waits for acknowledgements, which the partition holds back:
    // the machine is idle, the primary's heartbeat timer keeps running — and the machine is closed.
    proxy.partition();
    const failover = primary.testFailover().then(
      () => 'handed over',
      (err: unknown) => err,
    );
    await until('the guest to be stopped for the test failover', () => !machine.running);
    const stopped = halted(primary);
    machine.close(); // no primary.stop() first
    const [reason, error] = await stopped;
    expect(error).toBeInstanceOf(FtError);
    expect(error?.code).toBe('ERR_LOCKSTEP_FT_MACHINE_CLOSED');
    expect(reason).toMatch(/closed while its primary ran/);
    expect(primary.status).toEqual({ protected: false, reason: 'vm-not-running' });
    expect(primary.stats().heldOutputs).toBe(0);
    expect(await failover).toMatchObject({ code: 'ERR_LOCKSTEP_FT_STATE' });
    await primary.stop();
    await secondary.stop();
    secondary.machine?.close();
    await proxy.close();
  });

  it('the secondary halts with ERR_LOCKSTEP_FT_MACHINE_CLOSED; its timers throw nothing', async () => {
    const { machine, primary, secondary, proxy } = await pair('closed-s');
    primary.on('warning', () => {});
    const stopped = halted(secondary);
    secondary.machine!.close();
    const [reason, error] = await stopped;
    expect(error?.code).toBe('ERR_LOCKSTEP_FT_MACHINE_CLOSED');
    expect(reason).toMatch(/closed while its secondary ran/);
    expect(secondary.phase).toBe('halted');
    await primary.stop();
    machine.close();
    await proxy.close();
  });

  it('a primary given a closed machine refuses to start', async () => {
    const machine = new Machine({ clock: 'real' });
    machine.load(mixed);
    machine.close();
    const primary = new FtPrimary({ machine, vmId: 'closed-early', key: randomBytes(32), arbiter: new FileArbiter({ dir: tmp }) });
    await expect(primary.start()).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_FT_MACHINE_CLOSED' });
  });
});

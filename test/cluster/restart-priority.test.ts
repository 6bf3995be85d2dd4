// HA restart priority under a real manager and agents: three VMs without FT lose their host; the
// high-priority one is restarted first and the low one only once the high one runs again (vSphere's
// "start the next priority when the previous is powered on"), although their ids sort the other way; a
// VM whose priority is disabled is not restarted. In-process agents and manager on a directory store.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import type { RestartPriority } from '../../src/cluster/manager/priority.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { KVSERVER, freeUdpPort, runCli, until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const MiB = 2 ** 20;

describe('HA restart priority', () => {
  let tmp: string;
  let spec: string;
  let store: DirStore;
  const agents = new Map<string, Agent>();
  let manager: Manager;
  const events: ClusterEvent[] = [];
  /** Whether the high-priority VM ran on a2 when the low one's restart was ordered. */
  let highRunningWhenLowOrdered: boolean | undefined;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-restart-priority-'));
    spec = `dir:${join(tmp, 'store')}`;
    expect((await runCli(['cluster', 'init', '--store', spec])).code).toBe(0);
    store = await DirStore.open({ dir: join(tmp, 'store') });
    // a2 joins only after the VMs run on a1, so that a1 holds them all.
    agents.set('a1', await Agent.start({ id: 'a1', store, token: TOKEN, dir: join(tmp, 'a1'), capacity: { mips: 1000, memoryBytes: 256 * MiB, logBandwidth: 125e6 } }));
    manager = await Manager.start({ store, id: 'm1', token: TOKEN });
    manager.on('event', (e) => {
      events.push(e);
      if (e.kind === 'start-primary' && e.vm === 'a-low' && /^restarting/.test(e.message)) {
        highRunningWhenLowOrdered = agents.get('a2')?.list().some((x) => x.vmId === 'c-high' && x.running && x.state === 'running');
      }
    });
  });

  afterAll(async () => {
    await manager?.stop();
    for (const a of agents.values()) await a.close();
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function createVm(id: string, restartPriority: RestartPriority): Promise<void> {
    const path = join(tmp, `${id}.json`);
    const image = join(tmp, `${id}.img`);
    writeFileSync(image, Buffer.alloc(4 << 20));
    const port = await freeUdpPort();
    writeFileSync(path, JSON.stringify({ vm: { id, guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: port, guestPort: 11211 } } }, ft: { enabled: false } }));
    await store.put(KEYS.desired(id), desiredVm((await loadConfig(path)).config, { restartPriority }) as unknown as JsonValue);
  }

  it('restarts the high-priority VM first, the low one after it runs, and not the disabled one', async () => {
    await createVm('a-low', 'low');
    await createVm('b-off', 'disabled');
    await createVm('c-high', 'high');
    for (const vm of ['a-low', 'b-off', 'c-high']) {
      await until(`${vm} running on a1`, 120_000, async () => {
        const v = pairView(vm, await readInventory(store));
        return v.status === 'running' && v.primary?.host === 'a1' ? true : undefined;
      }).catch(async (err: Error) => {
        // What the cluster saw of it: its record and the manager's events about it (refused starts back off).
        const said = events.filter((e) => e.vm === vm).map((e) => `${e.kind}: ${e.message}`);
        throw new Error(`${err.message}; ${pairView(vm, await readInventory(store)).text}; events: ${said.join(' | ')}`);
      });
    }
    // The manager has seen them run (a pass after they did): what goes down now is restarted.
    const seen = manager.passes;
    await until('two more passes', 60_000, async () => (manager.passes >= seen + 2 ? true : undefined));
    agents.set('a2', await Agent.start({ id: 'a2', store, token: TOKEN, dir: join(tmp, 'a2'), capacity: { mips: 1000, memoryBytes: 256 * MiB, logBandwidth: 125e6 } }));
    await until('a2 live', 60_000, async () => ((await readInventory(store)).hosts.has('a2') ? true : undefined));

    // The host is lost: its agent stops every VM and leaves.
    const lost = agents.get('a1')!;
    agents.delete('a1');
    await lost.close();

    for (const vm of ['c-high', 'a-low']) {
      await until(`${vm} running again on a2`, 180_000, async () => {
        const v = pairView(vm, await readInventory(store));
        return v.status === 'running' && v.primary?.host === 'a2' ? true : undefined;
      });
    }
    const restarts = events.filter((e) => e.kind === 'start-primary' && /^restarting/.test(e.message)).map((e) => e.vm);
    expect(restarts).toEqual(['c-high', 'a-low']);
    expect(highRunningWhenLowOrdered).toBe(true);
    const disabled = await until('the disabled VM reported', 60_000, async () => events.find((e) => e.kind === 'restart-disabled' && e.vm === 'b-off'));
    expect(disabled.message).toBe('b-off is down and its restart priority is disabled: HA does not restart it');
    const status = await runCli(['cluster', 'status', '--store', spec]);
    // Down with the host it was lost with (once the manager saw the host go), or just down.
    expect(status.stdout).toMatch(/\nb-off +- +- +- +- +- +disabled +- +Down(: lost with host a1 at .*\(its agent stopped and left the cluster\); restart priority disabled: HA does not restart it| \(not running; restart priority disabled: HA does not restart it\))\n/);
    expect(status.stdout).toMatch(/\nc-high +a2 +- +- +- +- +high /);
  });
});

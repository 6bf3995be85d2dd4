// Issue 14: load balancing (automatic, the default) moves a VM without FT by live migration, never by a
// restart. Two such VMs start while one host is live; a second host joins, the balancer recommends
// moving one, and the manager live-migrates it: a migration target goes live there, the VM is started
// once only, and it keeps what was written to it. In-process agents and manager on a directory store,
// the built CLI for the VM processes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairViews, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { KvClient } from '../../src/client/memcached-udp.js';
import { KVSERVER, freeUdpPort, until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const capacity = { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 };

describe('balancing a VM without FT', () => {
  let tmp: string;
  let store: DirStore;
  const agents: Agent[] = [];
  let manager: Manager;
  const events: ClusterEvent[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-balance-solo-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    agents.push(await Agent.start({ id: 'a1', store, token: TOKEN, dir: join(tmp, 'a1'), capacity }));
    manager = await Manager.start({ store, id: 'm1', token: TOKEN, balanceIntervalMs: 1_000 });
    manager.on('event', (e) => events.push(e));
  });

  afterAll(async () => {
    await manager?.stop();
    for (const a of agents) await a.close();
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function createVm(id: string): Promise<number> {
    const port = await freeUdpPort();
    const path = join(tmp, `${id}.json`);
    writeFileSync(join(tmp, `${id}.img`), Buffer.alloc(4 << 20));
    writeFileSync(path, JSON.stringify({ vm: { id, guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: join(tmp, `${id}.img`) }, net: { backend: 'udp', hostPort: port, guestPort: 11211 } } }, ft: { enabled: false, timeoutMs: 5_000, heartbeatMs: 100 } }));
    const d = { ...desiredVm((await loadConfig(path)).config), demand: { mips: 300, memoryBytes: 16 * 2 ** 20, logBandwidth: 0 } };
    await store.put(KEYS.desired(id), d as unknown as JsonValue);
    return port;
  }

  it('live-migrates one of two VMs to a host that joins, without restarting it', async () => {
    const ports = new Map([['s1', await createVm('s1')], ['s2', await createVm('s2')]]);
    await until('both running on a1', 120_000, async () => {
      const v = pairViews(await readInventory(store));
      return v.filter((x) => x.status === 'running' && x.primary?.host === 'a1').length === 2 ? true : undefined;
    });
    // Something written to each before the move must be there after it.
    for (const [id, port] of ports) {
      const kv = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 300, retries: 20 });
      expect(await kv.set('before', id)).toBe('stored');
      await kv.close();
    }
    agents.push(await Agent.start({ id: 'a2', store, token: TOKEN, dir: join(tmp, 'a2'), capacity }));
    const moved = await until('one VM running on a2', 180_000, async () => {
      const v = pairViews(await readInventory(store)).find((x) => x.status === 'running' && x.primary?.host === 'a2' && x.others.length === 0);
      return v;
    });
    const told = events.map((e) => `${e.kind} ${e.vm ?? ''}: ${e.message}`).join('\n');
    expect(moved.primary!.startedAs, told).toBe('secondary'); // a migration's target, not a new start
    expect(events.filter((e) => e.kind === 'migrate-vm' && e.vm === moved.vm).map((e) => e.message), told).toEqual([expect.stringMatching(/^balancing: .*live migration without a restart \(FT off\)/)]);
    expect(events.filter((e) => e.kind === 'start-primary').map((e) => e.vm).sort(), told).toEqual(['s1', 's2']);
    expect(events.filter((e) => e.kind === 'recommendation-skipped'), told).toEqual([]);
    const kv = new KvClient({ endpoints: [{ host: '127.0.0.1', port: ports.get(moved.vm)! }], timeoutMs: 300, retries: 20 });
    try {
      expect(Buffer.from((await kv.get('before'))!.value).toString()).toBe(moved.vm);
    } finally {
      await kv.close();
    }
  }, 400_000);
});

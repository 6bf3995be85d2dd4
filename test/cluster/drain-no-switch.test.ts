// Issue 14: a maintenance drain never drops an FT VM's protection on its own. When the primary on the
// host being drained cannot be armed for its live migration, the manager does not switch it to its
// secondary (which would leave the VM unprotected until a new secondary is in lockstep): the drain waits
// with a `maintenance-blocked` event naming the VM and the reason, and tries again. A real manager on a
// directory store; the agents are stand-ins that record every request and refuse to arm a migration.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEYS, defaultCompatId, type ClusterEvent, type DesiredVm, type HostRecord, type InstanceRecord, type MaintenanceRequest } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';

type Request = { method: string; url: string; body: unknown };

/** An agent stand-in: records every request; refuses to arm a migration (as a primary with no operations API would be), accepts the rest. */
async function standIn(requests: Request[]): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body: text === '' ? undefined : (JSON.parse(text) as unknown) });
      const refuse = req.url?.endsWith('/migrate') === true;
      res.writeHead(refuse ? 409 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(refuse ? { error: { code: 'not-ready', message: 'the primary of v serves no operations API: it cannot be migrated' } } : {}));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function hostRecord(id: string, api: string): HostRecord {
  return { id, api, ftHost: '127.0.0.1', capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 }, groups: [], compatId: defaultCompatId(), maxFtVms: 4, pid: 1, startedAt: 0, version: '0' };
}

function record(host: string, o: Partial<InstanceRecord>): InstanceRecord {
  return { vmId: 'v', host, role: 'primary', startedAs: 'primary', state: 'running', pid: 1, incarnation: `v-${host}`, epoch: 2, listen: { host: '127.0.0.1', port: 7001 }, join: null, protected: true, status: 'Protected', lastEvent: 'status', startedAt: 1, updatedAt: 1, stats: null, ...o };
}

describe('a maintenance drain whose primary cannot be armed', () => {
  let tmp: string;
  let store: DirStore;
  let manager: Manager;
  const agents: Server[] = [];
  const requests: Request[] = [];
  const events: ClusterEvent[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-drain-no-switch-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    for (const h of ['h1', 'h2', 'h3']) {
      const a = await standIn(requests);
      agents.push(a.server);
      await store.put(KEYS.host(h), hostRecord(h, a.url) as unknown as JsonValue);
    }
    const desired: DesiredVm = { id: 'v', config: {} as JsonValue, ft: true, demand: { mips: 10, memoryBytes: 2 ** 24, logBandwidth: 1e6 }, vcpus: 1, rules: [], createdAt: 1 };
    await store.put(KEYS.desired('v'), desired as unknown as JsonValue);
    await store.put(KEYS.instance('v', 'h1'), record('h1', {}) as unknown as JsonValue);
    await store.put(KEYS.instance('v', 'h2'), record('h2', { role: 'secondary', startedAs: 'secondary', epoch: null, listen: null, join: '127.0.0.1:7001', status: 'Protected (in lockstep with the primary)' }) as unknown as JsonValue);
  });

  afterAll(async () => {
    await manager?.stop();
    for (const a of agents) await new Promise((r) => a.close(r));
    await store.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('is not switched to its secondary: the drain waits, says which VM and why, and the VM stays protected where it is', async () => {
    manager = await Manager.start({ store, id: 'm1', token: TOKEN, intervalMs: 100 });
    manager.on('event', (e) => events.push(e));
    await until('the manager leads', 60_000, async () => (manager.isLeader ? true : undefined));
    const req: MaintenanceRequest = { on: true, at: Date.now(), by: 'test' };
    await store.put(KEYS.maintenanceRequest('h1'), req as unknown as JsonValue);
    // The drain's decision: it waits (blocked), or it switches the VM (the fallback this replaces).
    await until('the drain to decide', 60_000, async () => (events.some((e) => e.vm === 'v' && (e.kind === 'maintenance-blocked' || e.kind === 'switch-primary')) ? true : undefined));
    await manager.reconcile();
    const told = events.map((e) => `${e.kind}: ${e.message}`).join('\n');
    const blocked = events.find((e) => e.kind === 'maintenance-blocked' && e.vm === 'v');
    expect(blocked, told).toBeDefined();
    // It was asked to arm the primary for a live migration, and nothing else: no failover, no stop.
    expect(requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`), told).toEqual(requests.filter((r) => r.method !== 'GET').map(() => 'POST /v1/vms/v/migrate'));
    expect(requests.some((r) => r.url === '/v1/vms/v/migrate'), told).toBe(true);
    expect(events.filter((e) => e.kind === 'switch-primary' || e.kind === 'stop' || e.kind === 'stop-secondary'), told).toEqual([]);
    expect(blocked!.host).toBe('h1');
    expect(blocked!.message).toMatch(/^the primary of v cannot leave h1: it cannot be armed for a live migration \(.*serves no operations API.*\)\. It is not switched to its secondary, which would leave v unprotected/);
    expect(blocked!.message).toMatch(/lockstep cluster maintenance h1 off/);
    expect((await store.get(KEYS.maintenance('h1')))?.value).toMatchObject({ on: true, state: 'entering' });
  });
});

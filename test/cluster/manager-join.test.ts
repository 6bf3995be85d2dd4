// Issue 14, bug 3: after an old primary resumes (SIGCONT) its record comes back, under its old epoch,
// before it notices it lost and halts — and under load the current primary's record may be missing for a
// moment. The manager must never start a secondary that joins such a superseded primary: the join
// target is the holder of the VM's current epoch (by the arbiter, and by the highest epoch seen). And a
// VM left with no primary on record at all (a migration target never recorded) is reported, not acted
// on. A real manager on a directory store; the agents are stand-ins that record every request.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KEYS, defaultCompatId, type ClusterEvent, type DesiredVm, type HostRecord, type InstanceRecord } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { FileArbiter } from '../../src/ft/arbiter-file.js';
import { until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';

/** An agent stand-in: every request is recorded and refused (nothing is started). */
async function fakeAgent(requests: Array<{ method: string; url: string; host: string; body: unknown }>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', body: text === '' ? undefined : (JSON.parse(text) as unknown) });
      res.writeHead(409, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not-ready', message: 'a stand-in starts nothing' } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function hostRecord(id: string, api: string): HostRecord {
  return { id, api, ftHost: '127.0.0.1', capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 }, groups: [], compatId: defaultCompatId(), maxFtVms: 4, pid: 1, startedAt: 0, version: '0' };
}

function primaryRecord(vm: string, host: string, epoch: number, port: number, o: Partial<InstanceRecord> = {}): InstanceRecord {
  return { vmId: vm, host, role: 'primary', startedAs: 'primary', state: 'running', pid: 1, incarnation: `${vm}-${host}`, epoch, listen: { host: '127.0.0.1', port }, join: null, protected: false, status: 'Not Protected (need secondary VM)', lastEvent: 'status', startedAt: 1, updatedAt: 1, stats: null, ...o };
}

describe('the join target of a new secondary', () => {
  let tmp: string;
  let store: DirStore;
  let manager: Manager | undefined;
  let agents: Server[];
  const requests: Array<{ method: string; url: string; host: string; body: unknown }> = [];
  const events: ClusterEvent[] = [];

  beforeEach(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-join-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    agents = [];
    requests.length = 0;
    events.length = 0;
    for (const h of ['h1', 'h2', 'h3']) {
      const a = await fakeAgent(requests);
      agents.push(a.server);
      await store.put(KEYS.host(h), hostRecord(h, a.url) as unknown as JsonValue);
    }
  });

  afterEach(async () => {
    await manager?.stop();
    manager = undefined;
    for (const a of agents) await new Promise((r) => a.close(r));
    await store.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  function desired(config: JsonValue): DesiredVm {
    return { id: 'v', config, ft: true, demand: { mips: 10, memoryBytes: 2 ** 24, logBandwidth: 1e6 }, vcpus: 1, rules: [], createdAt: 1 };
  }

  const secondaryStarts = () => requests.filter((r) => r.method === 'POST' && r.url === '/v1/vms' && (r.body as { role?: string }).role === 'secondary');

  async function startManager(): Promise<Manager> {
    const m = await Manager.start({ store, id: 'm1', token: TOKEN, intervalMs: 100 });
    m.on('event', (e) => events.push(e));
    await until('the manager leads', 60_000, async () => (m.isLeader ? true : undefined));
    return m;
  }

  it('does not join a resumed primary whose epoch the arbiter has moved past', async () => {
    const dir = join(tmp, 'arbiter');
    mkdirSync(dir);
    const arbiter = new FileArbiter({ dir });
    await arbiter.claim('v', 1, 'old-primary');
    await arbiter.claim('v', 2, 'promoted-secondary');
    await arbiter.close();
    await store.put(KEYS.desired('v'), desired({ ft: { arbiter: { backend: 'file', dir } } } as JsonValue) as unknown as JsonValue);
    // Only the old primary's record is visible (the promoted one's flapped out under load).
    await store.put(KEYS.instance('v', 'h1'), primaryRecord('v', 'h1', 1, 7001) as unknown as JsonValue);
    manager = await startManager();
    await until('a decision on the resumed primary', 60_000, async () => (events.some((e) => e.kind === 'join-superseded' && e.vm === 'v') || secondaryStarts().length > 0 ? true : undefined));
    expect(secondaryStarts()).toEqual([]);
    await manager.reconcile();
    expect(events.find((e) => e.kind === 'join-superseded')?.message).toMatch(/primary on h1 runs under epoch 1, but the arbiter holds epoch 2 \(promoted-secondary\)/);
    expect(secondaryStarts()).toEqual([]);
  });

  it('gives a new secondary at once to a primary that lost its secondary under an earlier epoch, while the dead one is still listed', async () => {
    await store.put(KEYS.desired('v'), desired({} as JsonValue) as unknown as JsonValue);
    // A protected pair whose secondary's record does not say it is in lockstep (as the agents publish it
    // when the secondary reports no lockstep event).
    const secondary = { ...primaryRecord('v', 'h2', 0, 0), role: 'secondary', startedAs: 'secondary', state: 'joined', epoch: null, listen: null, join: '127.0.0.1:7001', protected: false, status: 'cloned; replaying' };
    await store.put(KEYS.instance('v', 'h1'), primaryRecord('v', 'h1', 2, 7001, { protected: true, status: 'Protected' }) as unknown as JsonValue);
    await store.put(KEYS.instance('v', 'h2'), secondary as unknown as JsonValue);
    manager = await startManager();
    await manager.reconcile();
    const passes = manager.passes;
    // h2 dies: the primary claims epoch 3 and runs alone; h2's record lives out its TTL.
    await store.put(KEYS.instance('v', 'h1'), primaryRecord('v', 'h1', 3, 7001) as unknown as JsonValue);
    await until('a secondary start, or ten passes without one', 60_000, async () => (secondaryStarts().length > 0 || manager!.passes > passes + 10 ? true : undefined));
    // The stand-ins refuse every start, so the manager may try more than once: each try joins the
    // primary, on h3 — never on the dead secondary's host h2.
    const starts = secondaryStarts();
    expect(starts.length).toBeGreaterThan(0);
    expect(new Set(starts.map((r) => (r.body as { join?: string }).join))).toEqual(new Set(['127.0.0.1:7001']));
    const apiOf = (i: number) => `127.0.0.1:${(agents[i]!.address() as AddressInfo).port}`;
    expect(new Set(starts.map((r) => r.host))).toEqual(new Set([apiOf(2)]));
  });

  it('leaves alone a secondary its primary is cloning again under a later epoch', async () => {
    await store.put(KEYS.desired('v'), desired({} as JsonValue) as unknown as JsonValue);
    const secondary = { ...primaryRecord('v', 'h2', 0, 0), role: 'secondary', startedAs: 'secondary', state: 'joined', epoch: null, listen: null, join: '127.0.0.1:7001', protected: false, status: 'cloned; replaying' };
    await store.put(KEYS.instance('v', 'h1'), primaryRecord('v', 'h1', 2, 7001, { protected: true, status: 'Protected' }) as unknown as JsonValue);
    await store.put(KEYS.instance('v', 'h2'), secondary as unknown as JsonValue);
    manager = await startManager();
    await manager.reconcile();
    const passes = manager.passes;
    await store.put(KEYS.instance('v', 'h1'), primaryRecord('v', 'h1', 3, 7001, { status: 'Not Protected (starting)' }) as unknown as JsonValue);
    await until('ten more passes', 60_000, async () => (manager!.passes > passes + 10 ? true : undefined));
    await manager.reconcile();
    expect(secondaryStarts()).toEqual([]);
  });

  it('does not join a primary below an epoch it has already seen, even without an arbiter to ask', async () => {
    await store.put(KEYS.desired('v'), desired({} as JsonValue) as unknown as JsonValue);
    // The promoted primary (epoch 2) on h2, protected by a secondary on h3.
    await store.put(KEYS.instance('v', 'h2'), primaryRecord('v', 'h2', 2, 7002, { protected: true, status: 'Protected' }) as unknown as JsonValue);
    await store.put(KEYS.instance('v', 'h3'), { ...primaryRecord('v', 'h3', 2, 0), role: 'secondary', startedAs: 'secondary', state: 'joined', listen: null, join: '127.0.0.1:7002', protected: true, status: 'Protected' } as unknown as JsonValue);
    manager = await startManager();
    await manager.reconcile();
    const passes = manager.passes;
    // Then the old primary (epoch 1) resumes on h1 while the records of h2 and h3 are missing.
    await store.delete(KEYS.instance('v', 'h2'));
    await store.delete(KEYS.instance('v', 'h3'));
    await store.put(KEYS.instance('v', 'h1'), primaryRecord('v', 'h1', 1, 7001) as unknown as JsonValue);
    await until('a decision on the resumed primary', 60_000, async () => (events.some((e) => e.kind === 'join-superseded' && e.vm === 'v') || secondaryStarts().length > 0 ? true : undefined));
    expect(secondaryStarts()).toEqual([]);
    await until('another pass', 60_000, async () => (manager!.passes > passes + 2 ? true : undefined));
    await manager.reconcile();
    expect(events.find((e) => e.kind === 'join-superseded')?.message).toMatch(/primary on h1 runs under epoch 1, but epoch 2 was seen/);
    expect(secondaryStarts()).toEqual([]);
  });

  it('says a VM left with no primary on record — a migration target never recorded — is missing its primary, once that has held, and starts nothing', async () => {
    await store.put(KEYS.desired('v'), desired({} as JsonValue) as unknown as JsonValue);
    // The old primary's record went (Agent #handedOn) and the target's never came: only the secondary,
    // following the target's address, is on record.
    await store.put(KEYS.instance('v', 'h2'), { ...primaryRecord('v', 'h2', 1, 0), role: 'secondary', startedAs: 'secondary', state: 'joined', epoch: null, listen: null, join: '127.0.0.1:7009', protected: true, status: 'Protected (in lockstep with the primary)' } as unknown as JsonValue);
    manager = await Manager.start({ store, id: 'm1', token: TOKEN, intervalMs: 100, flapGraceMs: 300 });
    manager.on('event', (e) => events.push(e));
    const said = await until('the missing primary reported', 60_000, async () => events.find((e) => e.kind === 'primary-missing' && e.vm === 'v'));
    expect([said.host, said.message]).toEqual([
      'h2',
      'v has no primary on record (its secondary on h2 follows 127.0.0.1:7009: Protected (in lockstep with the primary)): its primary\'s host died or a migration\'s target never appeared; its secondary goes live by itself if the primary is gone, and the VM is re-protected then',
    ]);
    await manager.reconcile();
    expect(requests.filter((r) => r.method !== 'GET')).toEqual([]);
    expect(events.filter((e) => e.kind === 'primary-missing')).toHaveLength(1);
  });
});

// How the manager (and `cluster status`, and the tests' checker) reads the store: which record is a VM's
// primary, which its secondary, which are left-overs or lost, and the placement snapshot built from it.
import { describe, expect, it } from 'vitest';
import { Placement } from '../../src/cluster/placement/index.js';
import { buildSnapshot, pairView, parseInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type DesiredVm, type HostRecord, type InstanceRecord } from '../../src/cluster/manager/layout.js';
import type { JsonValue, StoreEntry } from '../../src/cluster/store/store.js';

function host(id: string, groups: string[] = []): HostRecord {
  return { id, api: `http://127.0.0.1:1${id.slice(1)}`, ftHost: '127.0.0.1', capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 }, groups, compatId: 'c1', maxFtVms: 4, pid: 1, startedAt: 0, version: '0' };
}

function inst(vm: string, h: string, o: Partial<InstanceRecord>): InstanceRecord {
  return {
    vmId: vm,
    host: h,
    role: 'primary',
    startedAs: o.role ?? 'primary',
    state: 'running',
    pid: 1,
    incarnation: `${vm}-${h}`,
    epoch: 1,
    listen: null,
    join: null,
    protected: false,
    status: 'Not Protected (need secondary VM)',
    lastEvent: 'status',
    startedAt: 1,
    updatedAt: 1,
    stats: null,
    ...o,
  };
}

function desired(id: string, o: Partial<DesiredVm> = {}): DesiredVm {
  return { id, config: {}, ft: true, demand: { mips: 100, memoryBytes: 2 ** 24, logBandwidth: 1e6 }, vcpus: 1, rules: [], createdAt: 0, ...o };
}

function inventory(hosts: HostRecord[], vms: DesiredVm[], records: InstanceRecord[], extra: Array<[string, unknown]> = []) {
  let rev = 1;
  const entries: StoreEntry[] = [
    ...hosts.map((h) => [KEYS.host(h.id), h] as [string, unknown]),
    ...vms.map((d) => [KEYS.desired(d.id), d] as [string, unknown]),
    ...records.map((r) => [KEYS.instance(r.vmId, r.host), r] as [string, unknown]),
    ...extra,
  ].map(([key, value]) => ({ key, value: value as JsonValue, revision: ++rev, createRevision: rev }));
  return parseInventory(entries);
}

const P1 = { host: '127.0.0.1', port: 7001 };
const P2 = { host: '127.0.0.1', port: 7002 };

describe('pair views', () => {
  it('a live migration’s source, kept as at the hand-over beside its target, is a left-over, not lost: its host is fine', () => {
    const inv = inventory([host('h1'), host('h2'), host('h3')], [desired('v')], [
      inst('v', 'h1', { listen: P1, protected: true, status: 'Protected', lastEvent: 'migrated' }),
      inst('v', 'h3', { listen: P2, protected: true, epoch: 2, startedAs: 'secondary', status: 'Protected (the secondary follows this migrated primary)', lastEvent: 'go-live' }),
      inst('v', 'h2', { role: 'secondary', state: 'joined', join: '127.0.0.1:7002', protected: true, status: 'Protected (in lockstep)' }),
    ]);
    const v = pairView('v', inv);
    expect([v.primary?.host, v.secondary?.host, v.status, v.others.map((r) => r.host), v.lost]).toEqual(['h3', 'h2', 'protected', ['h1'], []]);
    // A superseded primary that did not migrate is lost (its host probably failed).
    const failed = inventory([host('h1'), host('h2'), host('h3')], [desired('v')], [
      inst('v', 'h1', { listen: P1, protected: true, status: 'Protected' }),
      inst('v', 'h3', { listen: P2, protected: false, epoch: 2 }),
    ]);
    expect(pairView('v', failed).lost.map((r) => r.host)).toEqual(['h1']);
  });

  it('a primary and the secondary joined to its channel on another live host make a protected pair', () => {
    const inv = inventory([host('h1'), host('h2')], [desired('v')], [
      inst('v', 'h1', { listen: P1, protected: true, status: 'Protected' }),
      inst('v', 'h2', { role: 'secondary', state: 'joined', join: '127.0.0.1:7001', protected: true, status: 'Protected (in lockstep)' }),
    ]);
    const v = pairView('v', inv);
    expect([v.primary?.host, v.secondary?.host, v.status, v.protected, v.others, v.lost]).toEqual(['h1', 'h2', 'protected', true, [], []]);
  });

  it('after a failover the highest epoch is the primary; the old primary still listed is lost, not protected', () => {
    const inv = inventory([host('h1'), host('h2')], [desired('v')], [
      inst('v', 'h1', { listen: P1, protected: true, status: 'Protected', epoch: 1 }),
      inst('v', 'h2', { role: 'primary', startedAs: 'secondary', listen: P2, epoch: 2, join: '127.0.0.1:7001' }),
    ]);
    const v = pairView('v', inv);
    expect([v.primary?.host, v.secondary, v.status, v.protected, v.epoch]).toEqual(['h2', undefined, 'not-protected', false, 2]);
    expect(v.lost.map((r) => r.host)).toEqual(['h1']);
  });

  it('a secondary still claiming lockstep with a primary that runs alone is lost; one being cloned is not', () => {
    const stale = inventory([host('h1'), host('h2')], [desired('v')], [
      inst('v', 'h1', { listen: P1 }),
      inst('v', 'h2', { role: 'secondary', state: 'joined', join: '127.0.0.1:7001', protected: true }),
    ]);
    const a = pairView('v', stale);
    expect([a.secondary, a.lost.map((r) => r.host), a.status]).toEqual([undefined, ['h2'], 'not-protected']);
    const cloning = inventory([host('h1'), host('h2')], [desired('v')], [
      inst('v', 'h1', { listen: P1, status: 'Not Protected (starting)' }),
      inst('v', 'h2', { role: 'secondary', state: 'joined', join: '127.0.0.1:7001', protected: false }),
    ]);
    const b = pairView('v', cloning);
    expect([b.secondary?.host, b.lost, b.status]).toEqual(['h2', [], 'not-protected']);
  });

  it('records on hosts the store reports dead, or on their way out, are never a half of the pair', () => {
    const inv = inventory([host('h2')], [desired('v')], [
      inst('v', 'h1', { listen: P1, protected: true, status: 'Protected' }),
      inst('v', 'h2', { role: 'secondary', state: 'joined', join: '127.0.0.1:7001', protected: true }),
    ]);
    const v = pairView('v', inv);
    expect([v.primary, v.secondary, v.status]).toEqual([undefined, undefined, 'going-live']);
    const leaving = inventory([host('h1')], [desired('v')], [inst('v', 'h1', { listen: P1, state: 'stopping' })]);
    expect(pairView('v', leaving).status).toBe('down');
  });
});

describe('placement snapshot from the store', () => {
  it('carries hosts, maintenance, pairs and rules; a must rule without a live host of its group blocks the VM', () => {
    const inv = inventory(
      [host('h1', ['a']), host('h2', ['a']), host('h3')],
      [desired('v', { rules: [{ type: 'must', hostGroup: 'a' }] }), desired('w', { rules: [{ type: 'must', hostGroup: 'gone' }] }), desired('x', { rules: [{ type: 'should', hostGroup: 'gone' }] })],
      [inst('v', 'h1', { listen: P1, protected: true, status: 'Protected' }), inst('v', 'h2', { role: 'secondary', state: 'joined', join: '127.0.0.1:7001', protected: true })],
      [
        [KEYS.maintenance('h3'), { on: true, state: 'entering', since: 0, manager: 'm', token: 1 }],
        [`${KEYS.rulesPrefix}apart`, { kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['v', 'w', 'nope'] }],
      ],
    );
    const views = new Map(['v', 'w', 'x'].map((vm) => [vm, pairView(vm, inv)]));
    const { snapshot, blocked, dropped } = buildSnapshot(inv, views, { baseline: 'c1', closed: new Map([['h2', 'its agent could not be reached']]) });
    // A closed host takes nothing, for its own reason: it is not in maintenance mode.
    expect(snapshot.hosts.map((h) => [h.id, h.maintenance, h.unavailable])).toEqual([['h1', false, undefined], ['h2', false, 'its agent could not be reached'], ['h3', true, undefined]]);
    expect(snapshot.vms.find((v) => v.id === 'v')).toMatchObject({ host: 'h1', secondaryHost: 'h2' });
    expect([...blocked.keys()]).toEqual(['w']);
    expect(dropped).toEqual(['rule x#0: no live host is in group gone']);
    expect(snapshot.rules?.find((r) => r.id === 'apart')?.vms).toEqual(['v', 'w']);
    // And it is a valid snapshot: the audit finds nothing broken.
    expect(new Placement(snapshot).audit().hard).toEqual([]);
  });
});

describe('snapshot demand', () => {
  it('uses what a primary measurably uses when it is more than declared (MIPS, log bandwidth), else the declaration', () => {
    const busy = { mips: 640, lagMs: 1, logBandwidth: 5e6, failovers: 0 };
    const idle = { mips: 3, lagMs: 0, logBandwidth: 100, failovers: 0 };
    const inv = inventory([host('h1'), host('h2')], [desired('a'), desired('b')], [
      inst('a', 'h1', { listen: P1, stats: busy }),
      inst('b', 'h2', { listen: P2, stats: idle }),
    ]);
    const views = new Map(['a', 'b'].map((id) => [id, pairView(id, inv)]));
    const { snapshot } = buildSnapshot(inv, views);
    const demand = Object.fromEntries(snapshot.vms.map((v) => [v.id, v.demand]));
    expect(demand.a).toMatchObject({ mips: 640, logBandwidth: 5e6, memoryBytes: 2 ** 24 });
    expect(demand.b).toMatchObject({ mips: 100, logBandwidth: 1e6 });
  });
});

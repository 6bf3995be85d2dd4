// `lockstep cluster rule|group`: VM-VM and VM-host rules and host groups from the command line instead of
// writing the store by hand — written as the placement engine reads them, listed, removed, and refused
// (nothing written) when they name a VM, group or host the cluster does not know. Store groups join the
// agents' --groups in the placement snapshot and in status. The built CLI against a directory store;
// host records written as agents would.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { buildSnapshot, pairViews, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type HostRecord } from '../../src/cluster/manager/layout.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { kvConfig } from '../helpers/ft-pair.js';
import { runCli } from '../helpers/cluster.js';

function hostRecord(id: string, groups: string[] = []): HostRecord {
  return { id, api: 'http://127.0.0.1:9', ftHost: '127.0.0.1', capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 }, groups, compatId: 'c1', maxFtVms: 4, pid: 1, startedAt: 0, version: '0' };
}

describe('lockstep cluster rule and group', () => {
  let tmp: string;
  let spec: string;
  let store: DirStore;
  const cli = (...args: string[]) => runCli(['cluster', ...args, '--store', spec]);

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-drs-cli-'));
    spec = `dir:${join(tmp, 'store')}`;
    expect((await runCli(['cluster', 'init', '--store', spec])).code).toBe(0);
    store = await DirStore.open({ dir: join(tmp, 'store') });
    await store.put(KEYS.host('h1'), hostRecord('h1', ['rack-1']) as unknown as JsonValue);
    await store.put(KEYS.host('h2'), hostRecord('h2') as unknown as JsonValue);
    const config = (await loadConfig((await kvConfig(tmp, { name: 'kv.json' })).path)).config;
    for (const id of ['kv1', 'kv2']) {
      const d = desiredVm(config);
      await store.put(KEYS.desired(id), { ...d, id } as unknown as JsonValue);
    }
  });

  afterAll(async () => {
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('adds, lists and removes VM-VM and VM-host rules as the placement engine reads them', async () => {
    const anti = await cli('rule', 'add', 'apart', '--type', 'anti-affinity', '--vms', 'kv1,kv2', '--hard');
    expect(anti.code, anti.stderr).toBe(0);
    expect(anti.stdout).toBe('rule apart: kv1,kv2 anti-affinity (hard) added\n');
    expect((await store.get(KEYS.rule('apart')))?.value).toEqual({ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['kv1', 'kv2'] });
    const must = await cli('rule', 'add', 'on-rack-1', '--type', 'should', '--vms', 'kv1', '--group', 'rack-1');
    expect(must.code, must.stderr).toBe(0);
    expect((await cli('rule', 'list')).stdout).toBe('apart: kv1,kv2 anti-affinity (hard)\non-rack-1: kv1 should rack-1\n');
    const inv = await readInventory(store);
    const snap = buildSnapshot(inv, new Map(pairViews(inv).map((v) => [v.vm, v]))).snapshot;
    expect(snap.rules?.map((r) => r.id).sort()).toEqual(['apart', 'on-rack-1']);
    expect((await cli('status')).stdout).toMatch(/\nrules:\n {2}apart: kv1,kv2 anti-affinity \(hard\)\n {2}on-rack-1: kv1 should rack-1\n/);

    // A second add of the same id needs --replace; rm removes it.
    expect((await cli('rule', 'add', 'apart', '--type', 'affinity', '--vms', 'kv1,kv2')).code).toBe(65);
    const replaced = await cli('rule', 'add', 'apart', '--type', 'affinity', '--vms', 'kv1,kv2', '--replace');
    expect(replaced.stdout).toBe('rule apart: kv1,kv2 affinity (soft) replaced\n');
    expect((await cli('rule', 'rm', 'apart')).code).toBe(0);
    expect(await store.get(KEYS.rule('apart'))).toBeNull();
    const gone = await cli('rule', 'rm', 'apart');
    expect([gone.code, gone.stderr]).toEqual([65, 'lockstep cluster rule rm: no rule apart (rules: on-rack-1)\n']);
  });

  it('refuses rules that name an unknown VM or group, or are malformed, and writes nothing', async () => {
    const before = (await store.list('')).map((e) => e.key);
    const vm = await cli('rule', 'add', 'r', '--type', 'affinity', '--vms', 'kv1,kv9');
    expect([vm.code, vm.stderr]).toEqual([65, 'lockstep cluster rule add: no VM kv9 in the cluster (VMs: kv1, kv2); nothing written\n']);
    const group = await cli('rule', 'add', 'r', '--type', 'must', '--vms', 'kv1', '--group', 'rack-9');
    expect(group.code).toBe(65);
    expect(group.stderr).toMatch(/no host group rack-9 \(groups: rack-1; lockstep cluster group add defines one\)/);
    expect((await cli('rule', 'add', 'r', '--type', 'near', '--vms', 'kv1,kv2')).code).toBe(64);
    expect((await cli('rule', 'add', 'r', '--type', 'affinity', '--vms', 'kv1')).stderr).toMatch(/a VM-VM rule needs at least two VMs/);
    expect((await cli('rule', 'add', 'r', '--type', 'must', '--vms', 'kv1', '--group', 'rack-1', '--hard')).stderr).toMatch(/--hard is for VM-VM rules; must is hard by its type/);
    expect((await store.list('')).map((e) => e.key)).toEqual(before);
  });

  it('keeps host groups in the store, which placement and status see besides the agents’ --groups', async () => {
    const add = await cli('group', 'add', 'site-a', 'h1', 'h2');
    expect([add.code, add.stdout]).toEqual([0, 'group site-a: h1 h2\n']);
    const unknown = await cli('group', 'add', 'site-a', 'h7');
    expect([unknown.code, unknown.stderr]).toEqual([65, 'lockstep cluster group add: no host h7 in the cluster (live hosts: h1, h2); nothing written\n']);
    expect((await cli('group', 'list')).stdout).toBe('rack-1: h1 (declared by agents)\nsite-a: h1 h2\n');
    // A rule may name it now, and the placement snapshot puts the hosts in it.
    expect((await cli('rule', 'add', 'in-a', '--type', 'must', '--vms', 'kv2', '--group', 'site-a')).code).toBe(0);
    let inv = await readInventory(store);
    let snap = buildSnapshot(inv, new Map(pairViews(inv).map((v) => [v.vm, v]))).snapshot;
    expect(snap.hosts.map((h) => [h.id, h.groups])).toEqual([
      ['h1', ['rack-1', 'site-a']],
      ['h2', ['site-a']],
    ]);
    expect((await cli('status')).stdout).toMatch(/\nh1 +yes .* rack-1,site-a /);
    const rm = await cli('group', 'rm', 'site-a', 'h2');
    expect(rm.stdout).toBe('group site-a: h1\n');
    expect((await cli('group', 'rm', 'site-a')).stdout).toBe('group site-a removed\n');
    expect(await store.get(KEYS.group('site-a'))).toBeNull();
    inv = await readInventory(store);
    snap = buildSnapshot(inv, new Map(pairViews(inv).map((v) => [v.vm, v]))).snapshot;
    expect(snap.hosts.map((h) => h.groups)).toEqual([['rack-1'], []]);
    // FT Metro: the halves of kv1 in rack-1 and site-b, never both in one.
    expect((await cli('group', 'add', 'site-b', 'h2')).code).toBe(0);
    const split = await cli('rule', 'add', 'metro', '--type', 'ft-split', '--vms', 'kv1', '--group', 'rack-1', '--group', 'site-b');
    expect([split.code, split.stdout]).toEqual([0, 'rule metro: kv1 ft-split rack-1|site-b added\n']);
    expect((await store.get(KEYS.rule('metro')))?.value).toEqual({ kind: 'ft-split', id: 'metro', vms: ['kv1'], hostGroups: ['rack-1', 'site-b'] });
    expect((await cli('rule', 'add', 'm2', '--type', 'ft-split', '--vms', 'kv1', '--group', 'rack-1')).stderr).toMatch(/ft-split takes two or more different --group/);
    inv = await readInventory(store);
    expect(buildSnapshot(inv, new Map(pairViews(inv).map((v) => [v.vm, v]))).snapshot.rules?.find((r) => r.id === 'metro')).toEqual({ kind: 'ft-split', id: 'metro', vms: ['kv1'], hostGroups: ['rack-1', 'site-b'] });
    const agentGroup = await cli('group', 'rm', 'rack-1');
    expect([agentGroup.code, agentGroup.stderr]).toEqual([65, 'lockstep cluster group rm: no group rack-1 in the store (it is declared by agents: lockstep agent --groups)\n']);
  });
});

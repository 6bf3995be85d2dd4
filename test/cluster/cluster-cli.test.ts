// `lockstep cluster` refuses orders it cannot honour (issue 14, bugs 4, 6 and 8): a maintenance
// request for a host the cluster does not know records nothing, `off` forgets a host that is gone, a
// mistyped dir: store is not silently created, --replace of a running VM is refused instead of printing
// success, and an FT VM over every host's FT vCPU cap is refused at create-vm. The built CLI against a
// directory store; host and instance records are written as agents would.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEYS, type HostRecord, type InstanceRecord } from '../../src/cluster/manager/layout.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { kvConfig } from '../helpers/ft-pair.js';
import { killGroups, runCli, startAgent, tokenFile, until, type GroupProc } from '../helpers/cluster.js';

function hostRecord(id: string, over: Partial<HostRecord> = {}): HostRecord {
  return { id, api: 'http://127.0.0.1:9', ftHost: '127.0.0.1', capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 }, groups: [], compatId: 'c1', maxFtVms: 4, pid: 1, startedAt: 0, version: '0', ...over };
}

function instance(vm: string, host: string): InstanceRecord {
  return { vmId: vm, host, role: 'primary', startedAs: 'primary', state: 'running', pid: 1, incarnation: 'x', epoch: 1, listen: { host: '127.0.0.1', port: 7001 }, join: null, protected: false, status: 'Not Protected (need secondary VM)', lastEvent: 'status', startedAt: 1, updatedAt: 1, stats: null };
}

describe('lockstep cluster refusals', () => {
  let tmp: string;
  let spec: string;
  let store: DirStore;
  let vmPath: string;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-cluster-cli-'));
    spec = `dir:${join(tmp, 'store')}`;
    const init = await runCli(['cluster', 'init', '--store', spec]);
    expect(init.code, init.stderr).toBe(0);
    store = await DirStore.open({ dir: join(tmp, 'store') });
    vmPath = (await kvConfig(tmp, { name: 'kv.json' })).path;
  });

  afterAll(async () => {
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses a dir: store path that is not a lockstep store, and creates nothing', async () => {
    const missing = join(tmp, 'stroe');
    const r = await runCli(['cluster', 'status', '--store', `dir:${missing}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`dir:${missing}: ${missing} does not exist`);
    expect(r.stderr).toContain('lockstep cluster init');
    expect(existsSync(missing)).toBe(false);
    // An existing directory that is not a store is refused too.
    const plain = await runCli(['cluster', 'status', '--store', `dir:${tmp}`]);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/is not a lockstep store/);
  });

  it('refuses maintenance of a host it does not know, naming it, and records nothing', async () => {
    await store.put(KEYS.host('h1'), hostRecord('h1') as unknown as JsonValue);
    const before = (await store.list('')).map((e) => e.key);
    const r = await runCli(['cluster', 'maintenance', 'hx9', 'on', '--store', spec]);
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/no host hx9 in the cluster \(live hosts: h1\)/);
    expect((await store.list('')).map((e) => e.key)).toEqual(before);
    const status = await runCli(['cluster', 'status', '--store', spec]);
    expect(status.stdout).toMatch(/1 of 1 hosts live/);
  });

  it('forgets a host that is gone when its maintenance is turned off (no phantom row)', async () => {
    // A request left by an older lockstep for a host that never existed, and a manager's `off` record
    // of a host that is gone.
    await store.put(KEYS.maintenanceRequest('ghost'), { on: true, at: 1, by: 'cli' });
    await store.put(KEYS.maintenance('gone'), { on: false, state: 'off', since: 1, manager: 'm', token: 1 });
    let status = await runCli(['cluster', 'status', '--store', spec, '--json']);
    let hosts = (JSON.parse(status.stdout) as { hosts: Array<{ id: string }> }).hosts.map((h) => h.id);
    expect(hosts).toEqual(['ghost', 'h1']);
    const off = await runCli(['cluster', 'maintenance', 'ghost', 'off', '--store', spec]);
    expect(off.code, off.stderr).toBe(0);
    expect(off.stdout).toMatch(/no longer listed/);
    status = await runCli(['cluster', 'status', '--store', spec, '--json']);
    hosts = (JSON.parse(status.stdout) as { hosts: Array<{ id: string }> }).hosts.map((h) => h.id);
    expect(hosts).toEqual(['h1']);
    expect(await store.get(KEYS.maintenanceRequest('ghost'))).toBeNull();
  });

  it('refuses --replace of a VM that runs, and replaces one that runs nowhere', async () => {
    const created = await runCli(['cluster', 'create-vm', vmPath, '--store', spec]);
    expect(created.code, created.stderr).toBe(0);
    const rev = (await store.get(KEYS.desired('kv-test')))!.revision;
    await store.put(KEYS.instance('kv-test', 'h1'), instance('kv-test', 'h1') as unknown as JsonValue);
    const refused = await runCli(['cluster', 'create-vm', vmPath, '--replace', '--mips', '200', '--store', spec]);
    expect(refused.code).toBe(65);
    expect(refused.stderr).toMatch(/VM kv-test runs \(primary on h1\); --replace only replaces a VM that runs nowhere/);
    expect(refused.stdout).toBe('');
    expect((await store.get(KEYS.desired('kv-test')))!.revision).toBe(rev);
    await store.delete(KEYS.instance('kv-test', 'h1'));
    const replaced = await runCli(['cluster', 'create-vm', vmPath, '--replace', '--mips', '200', '--store', spec]);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(((await store.get(KEYS.desired('kv-test')))!.value as { demand: { mips: number } }).demand.mips).toBe(200);
  });

  it('refuses an FT VM with more vCPUs than every live host’s FT vCPU cap', async () => {
    await store.delete(KEYS.desired('kv-test'));
    const refused = await runCli(['cluster', 'create-vm', vmPath, '--vcpus', '9', '--store', spec]);
    expect(refused.code).toBe(65);
    expect(refused.stderr).toMatch(/FT VM with 9 vCPUs, more than the FT vCPU cap of every live host \(the largest is 8\)/);
    expect(await store.get(KEYS.desired('kv-test'))).toBeNull();
    // A host whose agent raised the cap (or lifted it: 0) takes it.
    await store.put(KEYS.host('h2'), hostRecord('h2', { maxFtVcpus: 0 }) as unknown as JsonValue);
    const accepted = await runCli(['cluster', 'create-vm', vmPath, '--vcpus', '9', '--store', spec]);
    expect(accepted.code, accepted.stderr).toBe(0);
  });
});

describe('lockstep agent FT caps', () => {
  let tmp: string;
  const procs: GroupProc[] = [];

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-agent-caps-'));
  });

  afterAll(async () => {
    await killGroups(procs);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('takes --max-ft-vms 0 (no limit) and --max-ft-vcpus, and publishes them in its host record', async () => {
    const spec = `dir:${join(tmp, 'store')}`;
    expect((await runCli(['cluster', 'init', '--store', spec])).code).toBe(0);
    const token = tokenFile(tmp);
    procs.push(await startAgent({ id: 'c1', store: spec, tokenFile: token.path, dir: join(tmp, 'c1'), maxFtVms: 0, maxFtVcpus: 16 }));
    const store = await DirStore.open({ dir: join(tmp, 'store') });
    try {
      const rec = await until('the host record', 60_000, async () => (await store.get(KEYS.host('c1')))?.value as unknown as HostRecord | undefined);
      expect([rec.maxFtVms, rec.maxFtVcpus]).toEqual([0, 16]);
    } finally {
      await store.close();
    }
  });
});

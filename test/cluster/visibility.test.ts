// What `lockstep cluster status`, `events` and `maintenance --wait` tell an operator (issue 14,
// visibility): per FT pair the vLockstep interval and log bandwidth, per host its FT VMs and FT vCPUs
// against the caps, soft rules broken, "protected" counted over FT VMs only; a host that died shown with
// the reason and what it ran, the VM that went down with it saying so; events one line each with the
// detail in --json; `maintenance --wait` printing its progress and the blocking reason. The built CLI on a
// directory store: first records written as agents would (rendering only), then a real agent process,
// SIGKILLed, and an in-process manager.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent, type HostRecord, type InstanceRecord } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { kvConfig } from '../helpers/ft-pair.js';
import { KVSERVER, freeUdpPort, killGroups, runCli, startAgent, tokenFile, until, type GroupProc } from '../helpers/cluster.js';

function hostRecord(id: string, over: Partial<HostRecord> = {}): HostRecord {
  return { id, api: 'http://127.0.0.1:9', ftHost: '127.0.0.1', capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 }, groups: [], compatId: 'c1', maxFtVms: 4, pid: 1, startedAt: 0, version: '0', ...over };
}

function instance(vm: string, host: string, over: Partial<InstanceRecord>): InstanceRecord {
  return { vmId: vm, host, role: 'primary', startedAs: 'primary', state: 'running', pid: 1, incarnation: `${vm}-${host}`, epoch: 3, listen: { host: '127.0.0.1', port: 7001 }, join: null, protected: true, status: 'Protected', lastEvent: 'status', startedAt: 1, updatedAt: 1, stats: null, ...over };
}

describe('cluster status, rendered', () => {
  let tmp: string;
  let spec: string;
  let store: DirStore;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-visibility-'));
    spec = `dir:${join(tmp, 'store')}`;
    expect((await runCli(['cluster', 'init', '--store', spec])).code).toBe(0);
    store = await DirStore.open({ dir: join(tmp, 'store') });
  });

  afterAll(async () => {
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('shows the pair’s interval and log bandwidth, the hosts’ FT caps, soft rules broken, and counts protection over FT VMs', async () => {
    await store.put(KEYS.host('h1'), hostRecord('h1', { groups: ['rack-1'] }) as unknown as JsonValue);
    await store.put(KEYS.host('h2'), hostRecord('h2', { groups: ['rack-2'], maxFtVms: 0, maxFtVcpus: 16 }) as unknown as JsonValue);
    const ft = desiredVm((await loadConfig((await kvConfig(tmp, { name: 'kv.json' })).path)).config, { vcpus: 2, rules: [{ type: 'should', hostGroup: 'rack-2' }] });
    await store.put(KEYS.desired(ft.id), ft as unknown as JsonValue);
    const plainPath = join(tmp, 'plain.json');
    writeFileSync(plainPath, JSON.stringify({ vm: { id: 'plain', guest: KVSERVER, ramMiB: 16, clock: 'real' }, ft: { enabled: false } }));
    const plain = desiredVm((await loadConfig(plainPath)).config);
    await store.put(KEYS.desired('plain'), plain as unknown as JsonValue);
    await store.put(KEYS.instance(ft.id, 'h1'), instance(ft.id, 'h1', { stats: { mips: 50, lagMs: 2.5, logBandwidth: 1_250_000, failovers: 0 } }) as unknown as JsonValue);
    await store.put(KEYS.instance(ft.id, 'h2'), instance(ft.id, 'h2', { role: 'secondary', startedAs: 'secondary', state: 'joined', listen: null, join: '127.0.0.1:7001', status: 'Protected (in lockstep with the primary)' }) as unknown as JsonValue);
    await store.put(KEYS.instance('plain', 'h2'), instance('plain', 'h2', { protected: false, status: 'Running (FT off)', epoch: null, listen: null }) as unknown as JsonValue);

    const r = await runCli(['cluster', 'status', '--store', spec]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^cluster: 2 of 2 hosts live, 2 VMs \(1 FT, 1 of them protected\)/);
    expect(out).toMatch(/\nHOST +LIVE +MAINTENANCE +CPU +MEM +FT VMS +FT VCPUS +GROUPS/);
    expect(out).toMatch(/\nh1 +yes +off +\S+ +\S+ +1\/4 +2\/8 +rack-1 /);
    expect(out).toMatch(/\nh2 +yes +off +\S+ +\S+ +1\/∞ +2\/16 +rack-2 /);
    expect(out).toMatch(/\nkv-test +h1 +h2 +3 +2\.5 ms +1\.25 MB\/s +medium +should:rack-2 +Protected/);
    expect(out).toMatch(/\nplain +h2 +- +- +- +- +medium +- +Running \(FT off\)/);
    expect(out).toMatch(/\nsoft rules broken \(preferences; balancing repairs them when it can\):\n {2}primary of kv-test on h1: soft rule kv-test#0: kv-test should run in host group rack-2, h1 is not in it\n/);
    const json = JSON.parse((await runCli(['cluster', 'status', '--json', '--store', spec])).stdout) as { hosts: Array<{ id: string; ft: unknown }>; vms: Array<{ id: string; primary: { stats: unknown } | null }> };
    expect(json.hosts.find((h) => h.id === 'h2')?.ft).toEqual({ vms: 1, maxVms: 0, vcpus: 2, maxVcpus: 16 });
    expect(json.vms.find((v) => v.id === 'kv-test')?.primary?.stats).toEqual({ mips: 50, lagMs: 2.5, logBandwidth: 1_250_000, failovers: 0 });
  });
});

describe('a host that dies, and a drain that cannot finish', () => {
  let tmp: string;
  let spec: string;
  let store: DirStore;
  let token: { path: string; token: string };
  let manager: Manager;
  const procs: GroupProc[] = [];
  const events: ClusterEvent[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-visibility-live-'));
    spec = `dir:${join(tmp, 'store')}`;
    expect((await runCli(['cluster', 'init', '--store', spec])).code).toBe(0);
    store = await DirStore.open({ dir: join(tmp, 'store') });
    token = tokenFile(tmp);
    procs.push(await startAgent({ id: 'h1', store: spec, tokenFile: token.path, dir: join(tmp, 'h1') }));
    manager = await Manager.start({ store, id: 'm1', token: token.token });
    manager.on('event', (e) => events.push(e));
  });

  afterAll(async () => {
    await killGroups(procs);
    await manager?.stop();
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('prints the drain’s progress and why it is blocked, then shows the dead host with the reason and the VM it took down', async () => {
    const path = join(tmp, 'solo.json');
    writeFileSync(join(tmp, 'solo.img'), Buffer.alloc(4 << 20));
    writeFileSync(path, JSON.stringify({ vm: { id: 'solo', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: join(tmp, 'solo.img') }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } }, ft: { enabled: false } }));
    expect((await runCli(['cluster', 'create-vm', path, '--store', spec])).code).toBe(0);
    await until('solo running', 120_000, async () => (pairView('solo', await readInventory(store)).status === 'running' ? true : undefined));

    // The only host: its VM has nowhere to go, so the drain cannot finish. The wait runs out (the manager,
    // in this process, says why it is blocked at its first pass after the request: well within 10 s).
    const wait = await runCli(['cluster', 'maintenance', 'h1', 'on', '--wait', '--timeout', '10', '--store', spec]);
    expect(wait.code).toBe(75);
    const lines = wait.stdout.trim().split('\n');
    expect(lines[0]).toBe('maintenance mode on requested for h1');
    expect(lines).toContain('h1: maintenance entering; 1 half(s) left (solo(P)); every FT VM protected');
    expect(lines[lines.length - 1]).toMatch(/^h1: maintenance entering; 1 half\(s\) left \(solo\(P\)\); every FT VM protected; blocked: the vm of solo cannot leave h1: /);
    expect(wait.stderr).toMatch(/did not enter maintenance mode within 10 s \(last: h1: maintenance entering; .*; blocked: the vm of solo cannot leave h1/);
    expect((await runCli(['cluster', 'maintenance', 'h1', 'off', '--store', spec])).code).toBe(0);

    procs[0]!.killGroup('SIGKILL');
    const lost = await until('the host recorded lost', 60_000, async () => events.find((e) => e.kind === 'host-lost' && e.host === 'h1'));
    // Closed first, most likely: the manager tried to restart solo there once its record had expired.
    expect(lost.message).toMatch(/^host h1 is gone: its record expired: the agent stopped renewing it \(the host or its agent died, or it is cut off from the store\)(; before that it was closed: .*)?; it ran solo\(P\)$/);
    const status = await until('status shows the lost host', 60_000, async () => {
      const r = await runCli(['cluster', 'status', '--store', spec]);
      return /\nhosts lost:\n/.test(r.stdout) ? r.stdout : undefined;
    });
    expect(status).toMatch(/\n {2}h1: gone since \S+ \S+: its record expired: .*; it ran solo\(P\) \(lockstep cluster maintenance h1 off forgets it\)\n/);
    expect(status).toMatch(/\nh1 +no +off /);
    expect(status).toMatch(/\nsolo +- +- +- +- +- +medium +- +Down: lost with host h1 at \S+ \S+ \(its record expired: .*\); (HA restarts it|then failed to start \d+ time\(s\), last on h1: .*)$/m);

    // Events: one line each; the detail (an unplaceable's host-by-host reasons, say) in --json. The
    // manager stops first, so that the two reads see the same log.
    await manager.stop();
    const text = (await runCli(['cluster', 'events', '--limit', '50', '--store', spec])).stdout.trimEnd().split('\n');
    const full = JSON.parse((await runCli(['cluster', 'events', '--limit', '50', '--json', '--store', spec])).stdout) as ClusterEvent[];
    expect(text).toHaveLength(full.length);
    for (const l of text) expect(l).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} {2}\S+ {2}\S+/);
    const multi = full.findIndex((e) => e.message.includes('\n'));
    if (multi >= 0) expect(text[multi]).toMatch(/ …$/);

    // Taking a lost host out of maintenance forgets it.
    expect((await runCli(['cluster', 'maintenance', 'h1', 'off', '--store', spec])).code).toBe(0);
    expect((await runCli(['cluster', 'status', '--store', spec])).stdout).not.toMatch(/hosts lost/);
  });
});

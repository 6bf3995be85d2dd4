// HA admission control ("host failures cluster tolerates") under a real manager and agents: with one
// host failure tolerated, a VM that would leave too little failover capacity is refused by `cluster
// create-vm` (nothing written; the VM that runs counts even while its record is missing for a moment on
// a loaded machine) and, when its record gets into the store anyway, never started by the
// manager — an `admission-refused` event and the reason in `cluster status` — until the policy allows it.
// In-process agents and manager on a directory store, the built CLI, VMs without FT (kvserver).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { KVSERVER, freeUdpPort, runCli, until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const MiB = 2 ** 20;

describe('HA admission control', () => {
  let tmp: string;
  let spec: string;
  let store: DirStore;
  const agents: Agent[] = [];
  let manager: Manager;
  const events: ClusterEvent[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-ha-admission-'));
    spec = `dir:${join(tmp, 'store')}`;
    const init = await runCli(['cluster', 'init', '--store', spec]);
    expect(init.code, init.stderr).toBe(0);
    store = await DirStore.open({ dir: join(tmp, 'store') });
    // Two hosts of 64 MiB: with VMs of 40 MiB each holds one slot; after losing one, one slot is left.
    for (const id of ['a1', 'a2']) agents.push(await Agent.start({ id, store, token: TOKEN, dir: join(tmp, id), capacity: { mips: 1000, memoryBytes: 64 * MiB, logBandwidth: 125e6 } }));
    manager = await Manager.start({ store, id: 'm1', token: TOKEN });
    manager.on('event', (e) => events.push(e));
  });

  afterAll(async () => {
    await manager?.stop();
    for (const a of agents) await a.close();
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function vmFile(id: string): Promise<string> {
    const path = join(tmp, `${id}.json`);
    const image = join(tmp, `${id}.img`);
    writeFileSync(image, Buffer.alloc(4 << 20));
    const port = await freeUdpPort();
    writeFileSync(path, JSON.stringify({ vm: { id, guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: port, guestPort: 11211 } } }, ft: { enabled: false } }));
    return path;
  }

  it('refuses at create-vm, and the manager does not power on, a VM the failover capacity cannot take', async () => {
    const set = await runCli(['cluster', 'ha', '--host-failures', '1', '--store', spec]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/^host failures tolerated: 1\n/);

    const first = await runCli(['cluster', 'create-vm', await vmFile('vm1'), '--memory-mib', '40', '--store', spec]);
    expect(first.code, first.stderr).toBe(0);
    await until('vm1 running', 120_000, async () => (pairView('vm1', await readInventory(store)).status === 'running' ? true : undefined));

    const path2 = await vmFile('vm2');
    const refused = await runCli(['cluster', 'create-vm', path2, '--memory-mib', '40', '--store', spec]);
    expect(refused.code).toBe(65);
    expect(refused.stderr).toMatch(
      /VM vm2 refused: HA admission control \(1 host failure tolerated\): after losing a1, 1 slot\(s\) would remain for the 2 VM half\(s\) that must run with vm2/,
    );
    expect(await store.get(KEYS.desired('vm2'))).toBeNull();

    // Written past the CLI (an older one, or a race between two): the manager refuses to start it.
    const d = desiredVm((await loadConfig(path2)).config, { memoryBytes: 40 * MiB });
    await store.put(KEYS.desired('vm2'), d as unknown as JsonValue);
    const ev = await until('an admission-refused event', 60_000, async () => events.find((e) => e.kind === 'admission-refused' && e.vm === 'vm2'));
    expect(ev.message).toMatch(/^vm2 is not powered on: HA admission control \(1 host failure tolerated\): after losing a1/);
    // Passes go on; it stays down.
    const passes = manager.passes;
    await until('three more passes', 60_000, async () => (manager.passes >= passes + 3 ? true : undefined));
    expect(events.filter((e) => e.vm === 'vm2' && e.kind === 'start-primary')).toEqual([]);
    const status = await runCli(['cluster', 'status', '--store', spec]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/vm2 .*Down: not powered on — HA admission control \(1 host failure tolerated\): after losing/);
    // The desired state (vm1 and vm2) does not have the failover capacity the policy asks for.
    expect(status.stdout).toMatch(/\nHA admission control: NOT MET — \(1 host failure tolerated\): after losing a1, 1 slot\(s\) would remain for the 2 VM half\(s\) that must run \(slot/);
    const json = JSON.parse((await runCli(['cluster', 'status', '--json', '--store', spec])).stdout) as { ha: { hostFailures: number; ok: boolean } };
    expect([json.ha.hostFailures, json.ha.ok]).toEqual([1, false]);

    // With admission control off, the same VM is powered on.
    const off = await runCli(['cluster', 'ha', '--host-failures', '0', '--store', spec]);
    expect(off.code, off.stderr).toBe(0);
    await until('vm2 running once admission control is off', 120_000, async () => (pairView('vm2', await readInventory(store)).status === 'running' ? true : undefined));
  });
});

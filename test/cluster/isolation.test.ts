// Host isolation (vSphere HA's isolation response): a host whose agent is cut off from the store (a
// partitioned link to etcd, nothing closed) while its VM without FT keeps running. The manager sees the
// VM's record expire and restarts it on another host from the same disk; the isolated copy must be
// dead before that, or two copies of the VM serve and write at once. Real etcd, two in-process agents
// (one reaching etcd through a fault-injecting proxy), an in-process manager.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { EtcdStore } from '../../src/cluster/store/etcd-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { KVSERVER, freeUdpPort, until } from '../helpers/cluster.js';
import { etcdAvailability, startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const available = etcdAvailability();

describe.skipIf(!available.ok)('a host cut off from the store', () => {
  let tmp: string;
  let etcd: EtcdServer;
  let proxy: TcpProxy;
  const stores: EtcdStore[] = [];
  const agents: Agent[] = [];
  let manager: Manager;
  const events: { at: number; e: ClusterEvent }[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-isolation-'));
    etcd = await startEtcd();
    proxy = await TcpProxy.start('127.0.0.1', Number(new URL(etcd.endpoint).port));
    const open = async (endpoint: string) => {
      const s = await EtcdStore.open({ endpoints: [endpoint] });
      stores.push(s);
      return s;
    };
    const capacity = { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 };
    // h1 reaches etcd only through the proxy; h2 (started in the test) and the manager directly.
    agents.push(await Agent.start({ id: 'h1', store: await open(`http://127.0.0.1:${proxy.port}`), token: TOKEN, dir: join(tmp, 'h1'), capacity }));
    manager = await Manager.start({ store: await open(etcd.endpoint), id: 'm1', token: TOKEN });
    manager.on('event', (e) => events.push({ at: performance.now(), e }));
    capacityOfH2 = capacity;
  });
  let capacityOfH2: { mips: number; memoryBytes: number; logBandwidth: number };

  afterAll(async () => {
    await manager?.stop();
    for (const a of agents) await a.close();
    proxy?.heal();
    for (const s of stores) await s.close();
    await proxy?.close();
    await etcd?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('powers its VM without FT off before the manager restarts that VM elsewhere', async () => {
    const store = stores[1]!; // the manager's
    const path = join(tmp, 'solo.json');
    const image = join(tmp, 'solo.img');
    writeFileSync(image, Buffer.alloc(4 << 20));
    writeFileSync(path, JSON.stringify({ vm: { id: 'solo', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } }, ft: { enabled: false } }));
    // Only h1 is there at first, so the VM runs on the host about to be cut off.
    await store.put(KEYS.desired('solo'), desiredVm((await loadConfig(path)).config) as unknown as JsonValue);
    const first = await until('solo running', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      return v.status === 'running' && v.primary !== undefined ? v.primary : undefined;
    });
    expect(first.host).toBe('h1');
    agents.push(await Agent.start({ id: 'h2', store: await (async () => {
      const s = await EtcdStore.open({ endpoints: [etcd.endpoint] });
      stores.push(s);
      return s;
    })(), token: TOKEN, dir: join(tmp, 'h2'), capacity: capacityOfH2 }));

    const h1 = agents[0]!;
    await until('h1 knows h2', 60_000, async () => (h1.peers.includes('h2') ? true : undefined));
    const exited = new Promise<number>((resolve) => h1.once('vm-exited', () => resolve(performance.now())));
    const isolated = new Promise<string>((resolve) => h1.once('isolated', (_vm, response) => resolve(response)));
    proxy.partition();
    expect(await isolated).toBe('power-off');
    const exitedAt = await exited;
    // The manager restarts it on the host that can still reach the store, after the copy on h1 died.
    let seen = '';
    const restartAt = await until('solo restarted on h2', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      seen = `${v.text}; events: ${events.map((x) => `${x.e.kind} ${x.e.message}`).join(' | ')}`;
      if (v.status !== 'running' || v.primary?.host !== 'h2') return undefined;
      return events.find((x) => x.e.kind === 'start-primary' && x.e.vm === 'solo' && x.e.host === 'h2')?.at;
    }).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${seen}`);
    });
    expect(restartAt).toBeGreaterThan(exitedAt);
    // Its first try on h2 worked: the copy on h1 no longer held the VM's UDP port (with the VM left
    // running, as leave-powered-on does, every start on h2 fails on that port here — on separate machines
    // it would succeed, and two copies would serve). A try on h1 meanwhile is refused: it is isolated.
    const failed = events.filter((x) => x.e.kind === 'start-failed' && x.e.vm === 'solo').map((x) => x.e.message);
    expect(failed.filter((m) => !m.includes('on h1') || !m.includes('cannot reach the store'))).toEqual([]);
    expect(h1.list().filter((v) => v.vmId === 'solo' && v.running)).toEqual([]);
  });

  it('leaves it running when the store is down for every host: nobody could restart it', async () => {
    const h2 = agents[1]!;
    const running = () => h2.list().filter((v) => v.vmId === 'solo' && v.running).length;
    expect(running()).toBe(1);
    proxy.heal(); // h1 answers too, and cannot reach the store either once etcd is down
    let downs = 0;
    const thrice = new Promise<void>((resolve) =>
      h2.on('cut-off', (vm, why) => {
        if (vm === 'solo' && why === 'store-down' && ++downs === 3) resolve();
      }),
    );
    const isolatedToo = new Promise<string>((resolve) => h2.once('isolated', (vm) => resolve(vm)));
    await etcd.stop();
    await Promise.race([thrice, isolatedToo.then((vm) => Promise.reject(new Error(`${vm} was powered off with the store down for everyone`)))]);
    expect(running()).toBe(1);
    await etcd.restart();
    // Its record comes back and the cluster sees it where it was.
    await until('solo seen running on h2 again', 120_000, async () => {
      const v = pairView('solo', await readInventory(stores[1]!));
      return v.status === 'running' && v.primary?.host === 'h2' ? true : undefined;
    });
    expect(running()).toBe(1);
  });
});

// Host isolation (vSphere HA's isolation response): a host whose agent is cut off from the store (a
// partitioned link to etcd, nothing closed) while its VM without FT keeps running. The manager sees the
// VM's record expire and restarts it on another host from the same disk; the isolated copy must be
// dead before that, or two copies of the VM serve and write at once. Real etcd, two in-process agents
// (one reaching etcd through a fault-injecting proxy), an in-process manager.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import { EtcdStore } from '../../src/cluster/store/etcd-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { KVSERVER, freeUdpPort, killGroups, startAgent, tokenFile, until, type GroupProc } from '../helpers/cluster.js';
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
    const failed = events.filter((x) => x.e.kind === 'start-failed' && x.e.vm === 'solo' && x.e.host === 'h2').map((x) => x.e.message);
    expect(failed).toEqual([]);
    expect(h1.list().filter((v) => v.vmId === 'solo' && v.running)).toEqual([]);
  });

  it('leaves it running when the store is down for every host: nobody could restart it', async () => {
    const h2 = agents[1]!;
    const running = () => h2.list().filter((v) => v.vmId === 'solo' && v.running).length;
    expect(running()).toBe(1);
    proxy.heal(); // h1 answers too, and cannot reach the store either once etcd is down
    // And a healthy host, its record renewed just before etcd stops: its lease outlives the store by up
    // to its TTL (8 s), longer than h2's VM record (5 s). Asked, it must say what it finds then.
    const s3 = await EtcdStore.open({ endpoints: [etcd.endpoint] });
    stores.push(s3);
    agents.push(await Agent.start({ id: 'h3', store: s3, token: TOKEN, dir: join(tmp, 'h3'), capacity: capacityOfH2 }));
    await until('h2 knows h3', 60_000, async () => (h2.peers.includes('h3') ? true : undefined));
    let downs = 0;
    const whys: string[] = []; // what h2 found each time its VM's record went unrenewed
    const thrice = new Promise<void>((resolve) =>
      h2.on('cut-off', (vm, why) => {
        whys.push(why);
        if (vm === 'solo' && why === 'store-down' && ++downs === 3) resolve();
      }),
    );
    const isolatedToo = new Promise<string>((resolve) => h2.once('isolated', (vm) => resolve(vm)));
    await etcd.stop();
    await Promise.race([thrice, isolatedToo.then((vm) => Promise.reject(new Error(`${vm} was powered off with the store down for everyone (h2 found: ${whys.join(', ')})`)))]);
    expect(running()).toBe(1);
    await etcd.restart();
    // Its record comes back and the cluster sees it where it was.
    await until('solo seen running on h2 again', 120_000, async () => {
      const v = pairView('solo', await readInventory(stores[1]!));
      return v.status === 'running' && v.primary?.host === 'h2' ? true : undefined;
    });
    expect(running(), `h2 found: ${whys.join(', ')}`).toBe(1);
  });
});

describe('an agent that stops (SIGSTOP) while its VM without FT runs on', () => {
  let tmp: string;
  let store: DirStore;
  let manager: Manager;
  const agents: GroupProc[] = [];
  const events: { at: number; e: ClusterEvent }[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-fence-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    const token = tokenFile(tmp);
    agents.push(await startAgent({ id: 'a1', store: `dir:${join(tmp, 'store')}`, tokenFile: token.path, dir: join(tmp, 'a1') }));
    manager = await Manager.start({ store, id: 'm1', token: token.token });
    manager.on('event', (e) => events.push({ at: performance.now(), e }));
  });

  afterAll(async () => {
    for (const a of agents) if (a.alive()) a.killGroup('SIGCONT');
    await manager?.stop();
    await killGroups(agents);
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('the VM ends itself when its lease from the agent runs out, before the manager restarts it elsewhere', async () => {
    const path = join(tmp, 'solo.json');
    const image = join(tmp, 'solo.img');
    writeFileSync(image, Buffer.alloc(4 << 20));
    writeFileSync(path, JSON.stringify({ vm: { id: 'solo', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } }, ft: { enabled: false } }));
    await store.put(KEYS.desired('solo'), desiredVm((await loadConfig(path)).config) as unknown as JsonValue);
    const first = await until('solo running on a1', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      return v.status === 'running' && v.primary !== undefined ? v.primary : undefined;
    });
    expect(first.host).toBe('a1');
    agents.push(await startAgent({ id: 'a2', store: `dir:${join(tmp, 'store')}`, tokenFile: join(tmp, 'agent.token'), dir: join(tmp, 'a2') }));

    // Only the agent stops; its VM process (another pid in its group) runs on, and nothing can kill it
    // from outside: the agent does not answer, and its records expire.
    process.kill(agents[0]!.child.pid!, 'SIGSTOP');
    const dead = (pid: number) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z'); // a zombie: the stopped agent cannot reap it
      } catch {
        return true;
      }
    };
    const deadAt = await until('the VM process on a1 ended', 120_000, async () => (dead(first.pid) ? performance.now() : undefined), 20);
    let seen: unknown;
    const restartAt = await until('solo restarted on a2', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      seen = v;
      if (v.status !== 'running' || v.primary?.host !== 'a2') return undefined;
      return events.find((x) => x.e.kind === 'start-primary' && x.e.vm === 'solo' && x.e.host === 'a2')?.at;
    }).catch((err: Error) => {
      // (Seen once in a full suite at load 13.) Say what the cluster looked like.
      throw new Error(`${err.message}; last view ${JSON.stringify(seen)}; manager events ${JSON.stringify(events.slice(-15).map((x) => x.e))}`);
    });
    expect(restartAt).toBeGreaterThan(deadAt);
    const failed = events.filter((x) => x.e.kind === 'start-failed' && x.e.vm === 'solo' && x.e.host === 'a2');
    expect(failed.map((x) => x.e.message)).toEqual([]);
  });
});

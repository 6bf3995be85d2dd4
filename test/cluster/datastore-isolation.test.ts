// Datastore heartbeats tell a host cut off from the store from a dead one (vSphere HA's second channel).
// Real etcd, in-process agents (h1 reaches etcd only through a fault-injecting proxy) and manager, all
// given one datastore directory, and a VM without FT (a kvserver) on h1:
// - leave-powered-on: the VM runs on, unseen by the store; its heartbeat lists it, so the manager neither
//   restarts it elsewhere nor fences it, says the host is partitioned (event, `cluster status`), and sees
//   it again when the store is back;
// - power-off (the default): the heartbeat says the VM was powered off, and the manager restarts it on
//   h2 at once, without waiting for the record's lease to run out.
// And with agent processes on a directory store: an agent SIGKILLed with its process group stops its
// heartbeat, and its VM is restarted elsewhere as before.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, type IsolationResponse } from '../../src/cluster/agent/agent.js';
import { heartbeatPath, parseHeartbeat } from '../../src/cluster/datastore/heartbeat.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { readEvents } from '../../src/cluster/manager/events.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import { EtcdStore } from '../../src/cluster/store/etcd-store.js';
import type { ClusterStore, JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { KVSERVER, freeUdpPort, killGroups, runCli, startAgent, startManager, tokenFile, until, type GroupProc } from '../helpers/cluster.js';
import { etcdAvailability, startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const available = etcdAvailability();
const CAPACITY = { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 };

/** A kvserver VM without FT, desired in the store. */
async function soloVm(tmp: string, store: ClusterStore): Promise<void> {
  const path = join(tmp, 'solo.json');
  const image = join(tmp, 'solo.img');
  writeFileSync(image, Buffer.alloc(4 << 20));
  writeFileSync(path, JSON.stringify({ vm: { id: 'solo', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } }, ft: { enabled: false } }));
  await store.put(KEYS.desired('solo'), desiredVm((await loadConfig(path)).config) as unknown as JsonValue);
}

/** etcd, h1 behind a proxy, a manager, the VM running on h1, then h2: all with one datastore. */
function isolatedCluster(response: IsolationResponse) {
  const c = {
    tmp: '',
    datastore: '',
    etcd: undefined as unknown as EtcdServer,
    proxy: undefined as unknown as TcpProxy,
    stores: [] as EtcdStore[],
    agents: [] as Agent[],
    manager: undefined as unknown as Manager,
    events: [] as { at: number; e: ClusterEvent }[],
    warnings: [] as string[],
    first: undefined as unknown as { host: string; pid: number },
  };
  const open = async (endpoint: string) => {
    const s = await EtcdStore.open({ endpoints: [endpoint] });
    c.stores.push(s);
    return s;
  };
  beforeAll(async () => {
    c.tmp = mkdtempSync(join(tmpdir(), 'lockstep-dsiso-'));
    c.datastore = join(c.tmp, 'datastore');
    c.etcd = await startEtcd();
    c.proxy = await TcpProxy.start('127.0.0.1', Number(new URL(c.etcd.endpoint).port));
    const h1 = await Agent.start({ id: 'h1', store: await open(`http://127.0.0.1:${c.proxy.port}`), token: TOKEN, dir: join(c.tmp, 'h1'), capacity: CAPACITY, isolationResponse: response, datastore: c.datastore });
    h1.on('warning', (m) => c.warnings.push(`h1: ${m}`));
    c.agents.push(h1);
    const store = await open(c.etcd.endpoint);
    c.manager = await Manager.start({ store, id: 'm1', token: TOKEN, datastore: c.datastore });
    c.manager.on('event', (e) => c.events.push({ at: performance.now(), e }));
    c.manager.on('warning', (m) => c.warnings.push(`m1: ${m}`));
    // Only h1 is there at first, so the VM runs on the host about to be cut off.
    await soloVm(c.tmp, store);
    c.first = await until('solo running on h1', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      return v.status === 'running' && v.primary !== undefined ? { host: v.primary.host, pid: v.primary.pid } : undefined;
    });
    expect(c.first.host).toBe('h1');
    const h2 = await Agent.start({ id: 'h2', store: await open(c.etcd.endpoint), token: TOKEN, dir: join(c.tmp, 'h2'), capacity: CAPACITY, datastore: c.datastore });
    c.agents.push(h2);
    await until('h1 knows h2', 60_000, async () => (h1.peers.includes('h2') ? true : undefined));
  });
  afterAll(async () => {
    await c.manager?.stop();
    c.proxy?.heal();
    for (const a of c.agents) await a.close();
    for (const s of c.stores) await s.close();
    await c.proxy?.close();
    await c.etcd?.dispose();
    if (c.tmp !== '') rmSync(c.tmp, { recursive: true, force: true });
  });
  return c;
}

const said = (events: { e: ClusterEvent }[]) => events.map((x) => `${x.e.kind} ${x.e.vm ?? ''}@${x.e.host ?? ''}: ${x.e.message}`).join('\n  ');

describe.skipIf(!available.ok)('a host cut off from the store whose datastore heartbeat goes on (leave-powered-on)', () => {
  const c = isolatedCluster('leave-powered-on');

  it('keeps its VM running there: no copy elsewhere, no fence, a host-partitioned event and status; seen again when the store is back', async () => {
    const [h1, h2] = c.agents as [Agent, Agent];
    const store = c.stores[1]!; // the manager's
    const isolated = new Promise<string>((resolve) => h1.once('isolated', (_vm, response) => resolve(response)));
    const cutAt = performance.now();
    c.proxy.partition();
    expect(await isolated).toBe('leave-powered-on');
    // What the manager does once the VM's record is gone and its restart grace has passed: hold the
    // restart (its heartbeat lists it), or — without datastore heartbeats — restart it on h2.
    const decided = await until('the manager decides about solo', 120_000, async () =>
      c.events.find((x) => x.at > cutAt && x.e.vm === 'solo' && (x.e.kind === 'restart-held' || x.e.kind === 'start-primary' || x.e.kind === 'fence')),
    );
    expect(decided.e.kind, said(c.events)).toBe('restart-held');
    expect(decided.e.host).toBe('h1');
    // Once h1's host record is gone too, the host is reported partitioned, not dead.
    const partitioned = await until('a host-partitioned event for h1', 120_000, async () => c.events.find((x) => x.e.kind === 'host-partitioned' && x.e.host === 'h1'));
    expect(partitioned.e.message).toMatch(/h1 is cut off from the store, not dead: .*lockstep-heartbeats\/h1\.json still changes .*it runs solo\(P\)/);
    const status = await until('cluster status shows h1 partitioned', 120_000, async () => {
      const r = await runCli(['cluster', 'status', '--store', `etcd:${c.etcd.endpoint}`]);
      return /h1: partitioned since/.test(r.stdout) && /Running unseen on h1/.test(r.stdout) ? r.stdout : undefined;
    });
    expect(status).toMatch(/^h1\s+partitioned\s/m);
    expect(status).toMatch(/its datastore heartbeat lists solo\(P\), not restarted elsewhere/);

    const healAt = performance.now();
    // The link is back. The partition dropped bytes mid-stream, so the connections it cut are reset, as
    // TCP would have ended them over a longer outage; the agent's etcd client connects again.
    c.proxy.heal();
    c.proxy.reset();
    // Its records come back: the cluster sees the VM where it ran all along.
    const backAt = await until('solo seen running on h1 again, h1 back', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      return v.status === 'running' && v.primary?.host === 'h1' && c.events.some((x) => x.e.kind === 'host-back' && x.e.host === 'h1') ? performance.now() : undefined;
    });
    expect(pairView('solo', await readInventory(store)).primary?.pid).toBe(c.first.pid);
    expect(h1.list().filter((v) => v.vmId === 'solo' && v.running).map((v) => v.pid)).toEqual([c.first.pid]);
    // Never a second copy, never a fence.
    expect(h2.list().filter((v) => v.vmId === 'solo')).toEqual([]);
    expect(c.events.filter((x) => x.at > cutAt && x.e.vm === 'solo' && ['start-primary', 'fence', 'start-failed'].includes(x.e.kind)), said(c.events)).toEqual([]);
    // The heartbeat was written and read without trouble throughout.
    expect(c.warnings.filter((w) => /cannot write|treated as no heartbeat|datastore heartbeats:/.test(w))).toEqual([]);
    console.log(`datastore-isolation: cut off → restart held ${Math.round(decided.at - cutAt)} ms, host-partitioned ${Math.round(partitioned.at - cutAt)} ms; healed → seen again ${Math.round(backAt - healAt)} ms`);
  });
});

describe.skipIf(!available.ok)('a host cut off from the store that powers its VM off (the default isolation response)', () => {
  const c = isolatedCluster('power-off');

  it('has the VM restarted elsewhere as soon as its heartbeat says it was powered off, not when the record expires', async () => {
    const [h1] = c.agents as [Agent, Agent];
    const store = c.stores[1]!;
    // When the store drops h1's record of the VM (its lease ran out).
    let recordGoneAt: number | undefined;
    const unwatch = await store.watch(KEYS.instance('solo', 'h1'), (e) => {
      if (e.type === 'delete') recordGoneAt ??= performance.now();
    });
    const exited = new Promise<number>((resolve) => h1.once('vm-exited', () => resolve(performance.now())));
    const isolated = new Promise<string>((resolve) => h1.once('isolated', (_vm, response) => resolve(response)));
    c.proxy.partition();
    expect(await isolated).toBe('power-off');
    const exitedAt = await exited;
    let seen = '';
    const restartAt = await until('solo restarted on h2', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      seen = `${v.text}; events:\n  ${said(c.events)}`;
      if (v.status !== 'running' || v.primary?.host !== 'h2') return undefined;
      return c.events.find((x) => x.e.kind === 'start-primary' && x.e.vm === 'solo' && x.e.host === 'h2')?.at;
    }).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${seen}`);
    });
    expect(restartAt).toBeGreaterThan(exitedAt);
    // The manager learnt it from the datastore, not from the record's expiry.
    const off = c.events.find((x) => x.e.kind === 'isolation-powered-off' && x.e.vm === 'solo' && x.e.host === 'h1');
    expect(off, said(c.events)).toBeDefined();
    expect(off!.at).toBeLessThanOrEqual(restartAt);
    expect(c.events.filter((x) => x.e.kind === 'start-failed' && x.e.vm === 'solo').map((x) => x.e.message)).toEqual([]);
    expect(h1.list().filter((v) => v.vmId === 'solo' && v.running)).toEqual([]);
    await until("h1's record of solo expired", 120_000, async () => recordGoneAt);
    await unwatch();
    // A figure, not a budget: how much sooner than before (the record's expiry, then 2 s) it restarted.
    console.log(`datastore-isolation: solo powered off on h1 → restart ordered on h2 ${Math.round(restartAt - exitedAt)} ms; the record on h1 expired ${Math.round(recordGoneAt! - restartAt)} ms after the restart was ordered`);
  });
});

describe('an agent that dies (SIGKILL of its process group) with datastore heartbeats', () => {
  let tmp: string;
  let store: DirStore;
  const procs: GroupProc[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-dsdead-'));
    await runCli(['cluster', 'init', '--store', `dir:${join(tmp, 'store')}`]);
    store = await DirStore.open({ dir: join(tmp, 'store') });
  });

  afterAll(async () => {
    await killGroups(procs);
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('is dead to the manager once its heartbeat stops: the VM is restarted elsewhere, no partition reported', async () => {
    const token = tokenFile(tmp);
    const datastore = join(tmp, 'datastore');
    const spec = `dir:${join(tmp, 'store')}`;
    const a1 = await startAgent({ id: 'a1', store: spec, tokenFile: token.path, dir: join(tmp, 'a1'), extra: ['--datastore', datastore] });
    procs.push(a1);
    procs.push(await startManager('m1', spec, token.path, ['--datastore', datastore]));
    await soloVm(tmp, store);
    const first = await until('solo running on a1', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      return v.status === 'running' && v.primary !== undefined ? v.primary : undefined;
    });
    expect(first.host).toBe('a1');
    // Its heartbeat lists it.
    const beat = await until('a1 heartbeat lists solo', 60_000, async () => {
      const p = parseHeartbeat(readFileSync(heartbeatPath(datastore, 'a1'), 'utf8'), 'a1.json', 'a1');
      return p.ok && p.beat.halves.some((h) => h.vm === 'solo') ? p.beat : undefined;
    });
    procs.push(await startAgent({ id: 'a2', store: spec, tokenFile: token.path, dir: join(tmp, 'a2'), extra: ['--datastore', datastore] }));
    a1.killGroup('SIGKILL');
    await a1.exited();
    await until('solo restarted on a2', 120_000, async () => {
      const v = pairView('solo', await readInventory(store));
      return v.status === 'running' && v.primary?.host === 'a2' ? true : undefined;
    });
    // The file is still there, listing the VM: the manager judged it stale, not missing.
    const left = parseHeartbeat(readFileSync(heartbeatPath(datastore, 'a1'), 'utf8'), 'a1.json', 'a1');
    expect(left.ok && left.beat.incarnation === beat.incarnation && left.beat.halves.some((h) => h.vm === 'solo')).toBe(true);
    const events = await readEvents(store);
    expect(events.filter((e) => e.kind === 'start-primary' && e.vm === 'solo' && e.host === 'a2')).toHaveLength(1);
    expect(events.filter((e) => ['host-partitioned', 'restart-held', 'heartbeat-invalid'].includes(e.kind)).map((e) => e.message)).toEqual([]);
  });
});

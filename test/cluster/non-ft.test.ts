// Issue 14, bug 1: a VM with `ft.enabled: false` runs under the cluster — the agent runs it alone
// (`lockstep agent run-vm`: its devices and network, no arbiter, no secondary), it answers on its UDP
// port, and status says it runs. A VM whose start keeps failing is reported with the reason and backed
// off (a `failures/<vm>` record, `start-failed` events), never "starting" forever; once it can start it
// runs and the record goes. An in-process agent and manager on a directory store.
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent, type StartFailure } from '../../src/cluster/manager/layout.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { KvClient } from '../../src/client/memcached-udp.js';
import { KVSERVER, freeUdpPort, until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';

describe('a VM without FT under the cluster', () => {
  let tmp: string;
  let store: DirStore;
  let agent: Agent;
  let manager: Manager;
  const events: ClusterEvent[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-nonft-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    agent = await Agent.start({ id: 'a1', store, token: TOKEN, dir: join(tmp, 'a1'), capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 } });
    manager = await Manager.start({ store, id: 'm1', token: TOKEN });
    manager.on('event', (e) => events.push(e));
  });

  afterAll(async () => {
    await manager?.stop();
    await agent?.close();
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function createVm(id: string, udpPort: number): Promise<void> {
    const path = join(tmp, `${id}.json`);
    const image = join(tmp, `${id}.img`);
    writeFileSync(image, Buffer.alloc(4 << 20));
    writeFileSync(path, JSON.stringify({ vm: { id, guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: udpPort, guestPort: 11211 } } }, ft: { enabled: false } }));
    const d = desiredVm((await loadConfig(path)).config);
    expect(d.ft).toBe(false);
    await store.put(KEYS.desired(id), d as unknown as JsonValue);
  }

  it('starts it alone on a host, reports it running, and it serves on its UDP port', async () => {
    const port = await freeUdpPort();
    await createVm('plain', port);
    const v = await until('plain running', 120_000, async () => {
      const pv = pairView('plain', await readInventory(store));
      return pv.status === 'running' ? pv : undefined;
    });
    expect([v.primary?.host, v.secondary, v.text]).toEqual(['a1', undefined, 'Running (FT off)']);
    expect(agent.list().find((x) => x.vmId === 'plain')?.events.some((e) => e.event === 'listening')).toBe(true);
    const kv = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 500, retries: 20 });
    try {
      expect(await kv.set('k', 'v1')).toBe('stored');
      expect(Buffer.from((await kv.get('k'))!.value).toString()).toBe('v1');
    } finally {
      await kv.close();
    }
    expect(events.filter((e) => e.vm === 'plain' && (e.kind === 'start-failed' || e.kind === 'start-secondary'))).toEqual([]);
  });

  it('reports a VM that cannot start with the reason, backs off, and starts it once it can', async () => {
    // Its UDP port is held by someone else: every start fails until it is released.
    const holder = dgram.createSocket('udp4');
    await new Promise<void>((r) => holder.bind(0, '127.0.0.1', () => r()));
    const port = holder.address().port;
    let released = false;
    try {
      await createVm('blocked', port);
      await until('two failed starts', 120_000, async () => (events.filter((e) => e.vm === 'blocked' && e.kind === 'start-failed').length >= 2 ? true : undefined));
      const failure = (await store.get(KEYS.failure('blocked')))?.value as unknown as StartFailure;
      expect(failure.attempts).toBeGreaterThanOrEqual(2);
      expect(failure.reason).toMatch(new RegExp(`127\\.0\\.0\\.1:${port} is in use`));
      expect(failure.retryAt).toBeGreaterThan(failure.at);
      const failed = events.filter((e) => e.vm === 'blocked' && e.kind === 'start-failed');
      expect(failed[0]?.message).toMatch(/failed to start on a1 \(1 time\(s\) in a row\).*is in use.*next attempt in 2000 ms/);
      expect(failed[1]?.message).toMatch(/\(2 time\(s\) in a row\).*next attempt in 4000 ms/);
      // Every attempt is one start and one recorded failure: no retries behind the backoff's back.
      const starts = events.filter((e) => e.vm === 'blocked' && e.kind === 'start-primary').length;
      expect(starts - events.filter((e) => e.vm === 'blocked' && e.kind === 'start-failed').length).toBeLessThanOrEqual(1);
      const down = pairView('blocked', await readInventory(store));
      if (down.status === 'down') expect(down.text).toMatch(/^Down: failed to start \d+ time\(s\), last on a1: .*is in use/);
      holder.close();
      released = true;
      await until('blocked running once its port is free', 180_000, async () => (pairView('blocked', await readInventory(store)).status === 'running' ? true : undefined));
      await until('its failure record gone', 30_000, async () => ((await store.get(KEYS.failure('blocked'))) === null ? true : undefined));
    } finally {
      if (!released) holder.close();
    }
  });
});

// A migrated primary's record and a target that never shows up in the store: the agent keeps the old
// primary's record (it said Protected at the hand-over) only until the target's record appears or a short
// bound passes after the process ended, then drops it and says so (a `migration-unconfirmed` event),
// rather than leaving a record that claims protection for a VM whose primary nobody can see. In-process
// agents on a directory store; the pair and the target are real processes, the target started by hand
// (not through an agent), so no record of it is ever written.
import { readFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, HAND_ON_MAX_MS } from '../../src/cluster/agent/agent.js';
import { AgentClient } from '../../src/cluster/agent/client.js';
import { channelOf, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type InstanceRecord } from '../../src/cluster/manager/layout.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { kvConfig, processScope } from '../helpers/ft-pair.js';
import { until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const capacity = { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 };

describe('agent: a migrated primary whose target never appears in the store', () => {
  const scope = processScope('handon');
  let store: DirStore;
  const agents: Agent[] = [];

  beforeAll(async () => {
    mkdirSync(join(scope.tmp, 'store'), { recursive: true });
    store = await DirStore.open({ dir: join(scope.tmp, 'store') });
    for (const id of ['a1', 'a2']) agents.push(await Agent.start({ id, store, token: TOKEN, dir: join(scope.tmp, id), capacity }));
  });

  afterAll(async () => {
    for (const a of agents) await a.close();
    await store?.close();
  });

  it('drops the old primary’s record once the bound has passed after the hand-over, with a migration-unconfirmed event, instead of keeping it Protected', async () => {
    const cfg = await kvConfig(scope.tmp);
    const config = JSON.parse(readFileSync(cfg.path, 'utf8')) as JsonValue;
    const [c1, c2] = agents.map((a) => new AgentClient({ url: a.url, token: TOKEN, timeoutMs: 30_000 }));
    const primary = await c1!.start({ vmId: 'kv-test', role: 'primary', config, waitMs: 60_000 });
    const join_ = channelOf(primary)!;
    await c2!.start({ vmId: 'kv-test', role: 'secondary', config, join: join_, waitMs: 60_000 });
    const record = async (host: string) => (await store.get(KEYS.instance('kv-test', host)))?.value as unknown as InstanceRecord | undefined;
    await until('the pair protected in the store', 60_000, async () => ((await record('a1'))?.protected === true && (await record('a2'))?.role === 'secondary' ? true : undefined));

    // Armed, then a target that joins as a process of its own: it goes live, but no agent publishes it.
    await c1!.migrate('kv-test');
    const target = scope.start('target', ['secondary', cfg.path, '--join', join_, '--listen', '127.0.0.1:0']);
    await target.wait('go-live', undefined, 60_000);
    const source = await until('the old primary handed over and exited', 60_000, async () => {
      const v = (await c1!.list()).find((x) => x.vmId === 'kv-test');
      return v !== undefined && !v.running ? v : undefined;
    });
    expect(source.events.some((e) => e.event === 'migrated' && e.follower === true)).toBe(true);

    await until('the old primary’s record dropped', 30_000, async () => ((await record('a1')) === undefined ? true : undefined));
    const inv = await readInventory(store);
    const said = inv.events.filter((e) => e.kind === 'migration-unconfirmed');
    expect(said.map((e) => [e.vm, e.host])).toEqual([['kv-test', 'a1']]);
    expect(said[0]!.message).toBe(
      `the primary of kv-test on a1 handed over to its migration's target, but no record of the target as primary appeared within ${HAND_ON_MAX_MS} ms: the target died or is cut off from the store. The old primary's record is dropped; its secondary goes live by itself if the target is gone`,
    );
  }, 300_000);
});

// Issue 14, bug 7: on a loaded machine an agent can stall for seconds (here: its process is stopped
// with SIGSTOP while its VM halves run on). Its records must outlive such a stall, and the manager must
// not take a record missing for a moment as a finding: no false secondary-invisible, unplaceable,
// maintenance-blocked or down (a restart, a new secondary, a stop) — asserted on the manager's events.
// Two agent processes, a real FT pair, an in-process manager, a directory store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/cluster/agent/client.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairView, readInventory } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { kvConfig } from '../helpers/ft-pair.js';
import { killGroups, startAgent, tokenFile, until, type GroupProc } from '../helpers/cluster.js';

/**
 * How long the agent is stopped: 2.5 times the instance TTL lockstep used to have (1 s, which such a
 * stall outlived), half the one it has now. A stimulus, not a wait for a result.
 */
const STALL_MS = 2_500;

/** Events that would be false here: nothing failed, only an agent was slow. */
const FALSE_KINDS = new Set(['secondary-invisible', 'unplaceable', 'maintenance-blocked', 'start-primary', 'start-secondary', 'stop', 'stop-secondary', 'fence', 'start-failed']);

describe('records under a stalled agent', () => {
  let tmp: string;
  let store: DirStore;
  let manager: Manager;
  let token: { path: string; token: string };
  const agents = new Map<string, GroupProc>();
  const events: ClusterEvent[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-liveness-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    token = tokenFile(tmp);
    for (const id of ['s1', 's2']) agents.set(id, await startAgent({ id, store: `dir:${join(tmp, 'store')}`, tokenFile: token.path, dir: join(tmp, id) }));
    manager = await Manager.start({ store, id: 'm1', token: token.token });
    manager.on('event', (e) => events.push(e));
  });

  afterAll(async () => {
    for (const a of agents.values()) a.killGroup('SIGCONT');
    await manager?.stop();
    await killGroups([...agents.values()]);
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('a stalled agent of a protected pair raises no false event and the pair stays protected', async () => {
    const cfg = await kvConfig(tmp, {});
    await store.put(KEYS.desired('kv-test'), desiredVm((await loadConfig(cfg.path)).config) as unknown as JsonValue);
    const before = await until('kv-test protected', 180_000, async () => {
      const v = pairView('kv-test', await readInventory(store));
      return v.status === 'protected' ? v : undefined;
    });
    const from = events.length;
    const host = before.secondary!.host;
    const api = (await readInventory(store)).hosts.get(host)!.api;
    const agent = agents.get(host)!;
    agent.child.kill('SIGSTOP'); // the agent only: its halves run on, as they would beside a busy agent
    try {
      await new Promise((r) => setTimeout(r, STALL_MS));
    } finally {
      agent.child.kill('SIGCONT');
    }
    // Once the agent answers again, let the manager look a few more times before judging.
    await until(`agent ${host} answers again`, 60_000, async () => ((await new AgentClient({ url: api, token: token.token }).host().catch(() => undefined)) !== undefined ? true : undefined));
    const passes = manager.passes;
    await until('five more manager passes', 60_000, async () => (manager.passes >= passes + 5 ? true : undefined));
    await manager.reconcile();
    const falseEvents = events.slice(from).filter((e) => FALSE_KINDS.has(e.kind));
    expect(falseEvents.map((e) => `${e.kind}: ${e.message}`)).toEqual([]);
    const after = pairView('kv-test', await readInventory(store));
    expect([after.status, after.primary?.host, after.secondary?.host]).toEqual(['protected', before.primary!.host, before.secondary!.host]);
  });
});

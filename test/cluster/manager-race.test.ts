// Two managers racing on one cluster (processes, real etcd): only the leader acts — every action in the
// event log is the leader's; when the leader is SIGKILLed the other takes over with a higher fencing
// token, re-protects a VM after a host loss, and agents refuse the old leader's token.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/cluster/agent/client.js';
import { KEYS, MANAGER_ELECTION, type ManagerEpoch } from '../../src/cluster/manager/layout.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { StoreChecker, allProtected, kvVmConfig, look, runCli, startAgent, startManager, tokenFile, until, type GroupProc } from '../helpers/cluster.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the manager race test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('two managers', () => {
  const fixture = etcdCluster('lockstep-managers-');

  it('race: only the leader acts; the other takes over when it is SIGKILLed, with a higher token the agents enforce', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const agents = new Map<string, GroupProc>();
    await Promise.all(
      ['h1', 'h2', 'h3'].map(async (id) => {
        const p = await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id) });
        procs.push(p);
        agents.set(id, p);
      }),
    );
    // Both start at once.
    const managers = new Map<string, GroupProc>();
    await Promise.all(
      ['m1', 'm2'].map(async (id) => {
        const p = await startManager(id, spec, tok.path);
        procs.push(p);
        managers.set(id, p);
      }),
    );
    const checker = new StoreChecker(store);
    try {
      const first = await until('a fenced leader', 10_000, async () => {
        const leader = await store.leader(MANAGER_ELECTION);
        const epoch = (await store.get(KEYS.managerEpoch))?.value as unknown as ManagerEpoch | undefined;
        return leader !== null && epoch?.manager === leader.candidateId && epoch.token === leader.token ? epoch : undefined;
      });
      const leaderId = first.manager;
      const otherId = leaderId === 'm1' ? 'm2' : 'm1';
      const vm = await kvVmConfig(tmp, 'kv1', etcd.endpoint);
      expect((await runCli(['cluster', 'create-vm', vm.path, '--store', spec])).code).toBe(0);
      await until('kv1 protected', 30_000, async () => {
        const { inv, views } = await look(store);
        return views.length === 1 && allProtected(inv, views) ? true : undefined;
      });
      let { inv, views } = await look(store);
      const actions = () => inv.events.filter((e) => e.action === true);
      expect(actions().length).toBeGreaterThanOrEqual(2); // the primary and the secondary started
      expect(new Set(actions().map((e) => e.by))).toEqual(new Set([leaderId]));
      expect(actions().every((e) => e.token === first.token)).toBe(true);
      expect(managers.get(otherId)!.events.some((e) => e.event === 'elected')).toBe(false);

      // The leader dies; the other is elected, fences manager/epoch with a higher token, and acts.
      const killedAt = Date.now();
      const t0 = performance.now();
      managers.get(leaderId)!.killGroup('SIGKILL');
      const second = await until(`${otherId} fenced as leader`, 15_000, async () => {
        const epoch = (await store.get(KEYS.managerEpoch))?.value as unknown as ManagerEpoch | undefined;
        return epoch?.manager === otherId ? epoch : undefined;
      });
      const takeoverMs = performance.now() - t0;
      expect(second.token).toBeGreaterThan(first.token);

      // A host loss after the takeover: the new leader gives kv1 a new secondary.
      const secondaryHost = views[0]!.secondary!.host;
      agents.get(secondaryHost)!.killGroup('SIGKILL');
      checker.killed(secondaryHost);
      await until('kv1 protected again', 30_000, async () => {
        const l = await look(store);
        return allProtected(l.inv, l.views, new Set([secondaryHost])) ? true : undefined;
      });
      ({ inv, views } = await look(store));
      const later = actions().filter((e) => e.t >= killedAt);
      expect(later.length).toBeGreaterThanOrEqual(1);
      expect(new Set(later.map((e) => e.by))).toEqual(new Set([otherId]));
      expect(later.every((e) => e.token === second.token)).toBe(true);
      expect(actions().filter((e) => e.by === leaderId && e.t >= killedAt)).toEqual([]);
      console.log(`${leaderId} (token ${first.token}) SIGKILLed; ${otherId} fenced the store with token ${second.token} after ${takeoverMs.toFixed(0)} ms`);

      // The agent that started the new secondary has seen the new token: the old leader's is refused.
      const newHost = views[0]!.secondary!.host;
      const api = inv.hosts.get(newHost)!.api;
      const stale = new AgentClient({ url: api, token: tok.token, fence: () => ({ token: first.token, manager: leaderId }) });
      const refused = await stale.stop('kv1').then(
        () => 'accepted',
        (e: { status: number; apiCode: string }) => `${e.status} ${e.apiCode}`,
      );
      expect(refused).toBe('409 stale-fence');
      expect((await look(store)).views[0]!.protected).toBe(true);

      checker.stop();
      expect(checker.violations).toEqual([]);
    } finally {
      checker.stop();
    }
  }, 600_000);
});

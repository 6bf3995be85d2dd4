// Defragmentation by the manager (automatic automation, the default): an FT VM that no host can take
// only for want of room — two hosts at their FT VM cap, a third without the memory — gets room made by
// a live migration of another FT VM's primary (its secondary following, no protection gap), and is then
// placed and protected. Agents and a manager as processes on a real etcd; the layout is started through
// the agents before the manager runs; a write load on the VM that is moved.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/cluster/agent/client.js';
import { buildSnapshot, channelOf } from '../../src/cluster/manager/inventory.js';
import { Placement } from '../../src/cluster/placement/index.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { kvVmConfig, look, runCli, sampleStore, startAgent, startManager, tokenFile, until, vmProtected, writeLoad } from '../helpers/cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the defragmentation test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('manager defragmentation', () => {
  const fixture = etcdCluster('lockstep-defrag-');

  it('live-migrates a primary off a host at its FT VM cap to make room for an unplaceable FT VM, which is then placed and protected; the moved VM protected at every sample', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    // h1-h3: two FT halves each; h4: room for a 16 MiB half, not for f2's 64 MiB.
    await Promise.all(
      ['h1', 'h2', 'h3', 'h4'].map(async (id) => procs.push(await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id), maxFtVms: 2, ...(id === 'h4' ? { memoryMiB: 40 } : {}) }))),
    );
    const ports = new Map<string, number>();
    for (const id of ['f1', 'g1', 'f2']) {
      const vm = await kvVmConfig(tmp, id, etcd.endpoint);
      ports.set(id, vm.udpPort);
      expect((await runCli(['cluster', 'create-vm', vm.path, '--store', spec, ...(id === 'f2' ? ['--memory-mib', '64'] : [])])).code).toBe(0);
    }
    // Both primaries on h1, both secondaries on h2 (at their caps), before any manager runs.
    const { inv } = await look(store);
    const agent = (h: string) => new AgentClient({ url: inv.hosts.get(h)!.api, token: tok.token, timeoutMs: 30_000 });
    for (const vm of ['f1', 'g1']) {
      const config = inv.desired.get(vm)!.config;
      const primary = await agent('h1').start({ vmId: vm, role: 'primary', config, waitMs: 60_000 });
      await agent('h2').start({ vmId: vm, role: 'secondary', config, join: channelOf(primary)!, waitMs: 60_000 });
    }
    await until('f1 and g1 protected', 60_000, async () => {
      const { views } = await look(store);
      return ['f1', 'g1'].every((vm) => views.find((v) => v.vm === vm)?.protected === true) ? true : undefined;
    });

    // A write load on f1, the VM the plan moves (a live migration's follower needs a guest that runs).
    const load = writeLoad(ports.get('f1')!);
    const sampler = sampleStore(store, vmProtected('f1'));
    const { samples } = sampler;
    let done;
    try {
      await until('writes acknowledged', 60_000, async () => (load.acked.size > 0 ? true : undefined));
      procs.push(await startManager('m1', spec, tok.path));
      done = await until('f2 placed and protected, f1 and g1 protected', 180_000, async () => {
        const l = await look(store);
        return ['f1', 'g1', 'f2'].every((vm) => l.views.find((v) => v.vm === vm)?.protected === true) && l.views.every((v) => v.others.length === 0) ? l : undefined;
      }, 200);
    } finally {
      await sampler.stop();
      await load.stop();
    }
    const told = done.inv.events.map((e) => `${e.kind} ${e.vm ?? ''}: ${e.message}`).join('\n');
    const f1 = done.views.find((v) => v.vm === 'f1')!;
    expect([f1.primary!.host, f1.secondary!.host], told).toEqual(['h4', 'h2']);
    const moves = done.inv.events.filter((e) => e.kind === 'migrate-primary' || e.kind === 'move-secondary' || e.kind === 'switch-primary');
    expect(moves.map((e) => [e.kind, e.vm]), told).toEqual([['migrate-primary', 'f1']]);
    expect(moves[0]!.message).toMatch(/^defragmentation for f2, which no host can take for want of room: migrate f1 h1 → h4 makes room for f2 on h3 \(its secondary on h1\); move 1 of 1: /);
    expect(samples.filter((s) => !s.ok).map((s) => s.why), told).toEqual([]);
    // No rule or cap broken at the end: f2's secondary did not land beside f1's follower on h2 (at its cap).
    expect(new Placement(buildSnapshot(done.inv, new Map(done.views.map((v) => [v.vm, v]))).snapshot).audit().hard, told).toEqual([]);
    expect(samples.length).toBeGreaterThan(10);
    const wrong = await load.lost();
    expect(wrong).toEqual([]);
    const f2 = done.views.find((v) => v.vm === 'f2')!;
    console.log(`defragmentation: f1 h1 → h4, f2 placed ${f2.primary!.host}/${f2.secondary!.host}; ${samples.length} samples of f1, none unprotected`);
  }, 600_000);
});

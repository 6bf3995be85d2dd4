// Legacy mode (no compatibility baseline, as vSphere before 5): an FT VM's primary powers on only on its
// registered host, its secondary is placed automatically, and the pair is never moved by load balancing,
// even by an automatic manager and with empty hosts next to a loaded one.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { etcdAvailability } from '../helpers/etcd.js';
import { StoreChecker, allProtected, kvVmConfig, look, runCli, startAgent, startManager, tokenFile, until } from '../helpers/cluster.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the legacy-mode test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('manager in legacy mode', () => {
  const fixture = etcdCluster('lockstep-legacy-');

  it('powers primaries on their registered host only and never balances FT pairs', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const agent = async (id: string) => procs.push(await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id) }));
    await Promise.all(['h1', 'h2'].map(agent));
    procs.push(await startManager('m-legacy', spec, tok.path, ['--mode', 'legacy', '--automation', 'automatic', '--balance-interval-ms', '300']));
    const checker = new StoreChecker(store);
    try {
      for (const id of ['kv1', 'kv2']) {
        const vm = await kvVmConfig(tmp, id, etcd.endpoint);
        expect((await runCli(['cluster', 'create-vm', vm.path, '--store', spec, '--registered-host', 'h2', '--mips', '400'])).code).toBe(0);
      }
      const views = await until('both VMs protected', 30_000, async () => {
        const { inv, views } = await look(store);
        return views.length === 2 && allProtected(inv, views) ? views : undefined;
      });
      // Both primaries on their registered host; the secondaries wherever the rules allow (h1).
      expect(views.map((v) => [v.vm, v.primary?.host, v.secondary?.host])).toEqual([
        ['kv1', 'h2', 'h1'],
        ['kv2', 'h2', 'h1'],
      ]);
      // Empty hosts join; an automatic manager in integrated mode would spread the halves now. This one
      // says, on a balance pass that saw all four hosts, that it leaves both FT VMs where they are.
      await Promise.all(['h3', 'h4'].map(agent));
      const pass = await until('a balance pass over the four hosts', 30_000, async () => (await look(store)).inv.events.find((e) => e.kind === 'balance-disabled' && e.message.startsWith('load balancing over 4 host(s)')));
      expect(pass.message).toMatch(/leaves 2 FT VM\(s\) where they are: kv1: FT VM disabled for load balancing \(legacy mode: no compatibility baseline\) \| kv2: /);
      const l = await look(store);
      expect(l.inv.events.filter((e) => e.action === true && (e.kind === 'move-secondary' || e.kind === 'switch-primary'))).toEqual([]);
      expect(l.views.map((v) => [v.vm, v.primary?.host, v.secondary?.host])).toEqual([
        ['kv1', 'h2', 'h1'],
        ['kv2', 'h2', 'h1'],
      ]);
      checker.stop();
      expect(checker.violations).toEqual([]);
    } finally {
      checker.stop();
    }
  }, 600_000);
});

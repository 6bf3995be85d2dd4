// Separate disks in a cluster: each half has an image of its own (the agent makes the secondary's, the
// clone fills it). SIGKILL of the primary's host: the VM keeps every acknowledged write — now served from
// the former secondary's own image — and regains a secondary, cloned onto a fresh image elsewhere.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KvClient } from '../../src/index.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { StoreChecker, allProtected, kvVmConfig, look, runCli, startAgent, startManager, tokenFile, until, type GroupProc } from '../helpers/cluster.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the separate-disk cluster test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('cluster with separate disks', () => {
  const fixture = etcdCluster('lockstep-sepcluster-');

  it('a host death loses no acknowledged write and the VM is protected again with its own disks', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const agents = new Map<string, GroupProc>();
    for (const id of ['h1', 'h2', 'h3']) {
      const p = await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id) });
      agents.set(id, p);
      procs.push(p);
    }
    procs.push(await startManager('m1', spec, tok.path));
    const checker = new StoreChecker(store);
    try {
      const vm = await kvVmConfig(tmp, 'kv1', etcd.endpoint);
      const cfg = JSON.parse(readFileSync(vm.path, 'utf8')) as { vm: { devices: { disk: Record<string, unknown> } } };
      cfg.vm.devices.disk.mode = 'separate';
      writeFileSync(vm.path, JSON.stringify(cfg));
      expect((await runCli(['cluster', 'create-vm', vm.path, '--store', spec])).code).toBe(0);
      const [first] = await until('kv1 protected', 30_000, async () => {
        const { inv, views } = await look(store);
        return views.length === 1 && allProtected(inv, views) ? views : undefined;
      });
      const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port: vm.udpPort }], timeoutMs: 100, retries: 100 });
      for (let i = 0; i < 20; i++) expect(await c.set(`k${i}`, `v${i}`)).toBe('stored');
      const dead = first!.primary!.host;
      agents.get(dead)!.killGroup('SIGKILL');
      checker.killed(dead);
      const [after] = await until('kv1 protected again without the dead host', 30_000, async () => {
        const { inv, views } = await look(store);
        return views.length === 1 && allProtected(inv, views, new Set([dead])) ? views : undefined;
      });
      expect([after!.primary!.host, after!.secondary!.host]).not.toContain(dead);
      for (let i = 0; i < 20; i++) expect((await c.get(`k${i}`))?.value.toString()).toBe(`v${i}`);
      // The survivor writes its own image: the dead primary's (the configured path) no longer changes.
      const original = join(tmp, 'kv1', 'kv.img');
      const before = readFileSync(original);
      for (let i = 0; i < 20; i++) expect(await c.set(`after${i}`, 'x')).toBe('stored');
      expect(readFileSync(original).equals(before)).toBe(true);
      await c.close();
      checker.stop();
      expect(checker.violations).toEqual([]);
    } finally {
      checker.stop();
    }
  }, 600_000);
});

// Maintenance of the host that runs a primary migrates the primary without a protection gap (agents and
// a manager as processes on a real etcd, an FT kvserver VM under a write load): the VM's secondary stays
// where it is and follows the migrated primary; the store, sampled every 50 ms through the drain, never
// shows the VM unprotected, and no acknowledged write is lost.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KvClient } from '../../src/index.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { kvVmConfig, look, runCli, startAgent, startManager, tokenFile, until } from '../helpers/cluster.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the drain test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('cluster: a drain migrates primaries without a protection gap', () => {
  const fixture = etcdCluster('lockstep-drain-migrate-');

  it('maintenance of the primary’s host: the primary migrates to the third host, the secondary follows it without a clone, the VM is protected at every sample, every acknowledged write reads back', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    // h1 is four times the others: the primary goes there, the secondary to h2 or h3.
    await Promise.all(
      ['h1', 'h2', 'h3'].map(async (id) => {
        const size = id === 'h1' ? 4 : 1;
        procs.push(await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id), mips: 1000 * size, memoryMiB: 1024 * size }));
      }),
    );
    procs.push(await startManager('m1', spec, tok.path));
    const vm = await kvVmConfig(tmp, 'kv1', etcd.endpoint);
    expect((await runCli(['cluster', 'create-vm', vm.path, '--store', spec])).code).toBe(0);
    const protectedView = async () => {
      const { views } = await look(store);
      const v = views.find((x) => x.vm === 'kv1');
      return v?.protected === true && v.primary !== undefined && v.secondary !== undefined ? v : undefined;
    };
    const first = await until('kv1 protected', 120_000, protectedView);
    expect(first.primary!.host).toBe('h1');
    const secondaryHost = first.secondary!.host;
    const third = secondaryHost === 'h2' ? 'h3' : 'h2';

    const client = new KvClient({ endpoints: [{ host: '127.0.0.1', port: vm.udpPort }], timeoutMs: 150, retries: 80 });
    const acked = new Map<string, number>();
    const sent = new Map<string, number>();
    let stop = false;
    const writing = (async () => {
      for (let n = 0; !stop && n < 100_000; n++) {
        const key = `k${n % 50}`;
        sent.set(key, n);
        try {
          if ((await client.set(key, `v${n}`)) === 'stored') acked.set(key, n);
        } catch {
          // unanswered: the read-back check allows it either way
        }
      }
    })();
    const samples: Array<{ at: number; ok: boolean; why: string }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          const { views } = await look(store);
          const v = views.find((x) => x.vm === 'kv1');
          samples.push({ at: performance.now(), ok: v?.protected === true, why: v === undefined ? 'no view' : `${v.status}: ${v.text}` });
        } catch (err) {
          samples.push({ at: performance.now(), ok: false, why: `read failed: ${(err as Error).message}` });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await until('writes acknowledged', 60_000, async () => (acked.size > 0 ? true : undefined));
      const m = await runCli(['cluster', 'maintenance', 'h1', 'on', '--wait', '--timeout', '90', '--store', spec], 100_000);
      expect(m.stderr).toBe('');
      expect(m.code).toBe(0);
      const after = await until('kv1 protected off h1', 60_000, async () => {
        const v = await protectedView();
        return v !== undefined && v.primary!.host !== 'h1' ? v : undefined;
      });
      expect(after.primary!.host).toBe(third);
      expect(after.secondary!.host).toBe(secondaryHost); // the same secondary: it followed
      const told = async () => JSON.stringify((await look(store)).inv.events.filter((e) => e.vm === 'kv1').map((e) => `${e.kind} ${e.host ?? ''}: ${e.message ?? ''}`));
      expect(after.secondary!.startedAt, await told()).toBe(first.secondary!.startedAt);
      sampling = false;
      await sampler;
      const bad = samples.filter((s) => !s.ok);
      let unprotectedMs = 0;
      for (let i = 1; i < samples.length; i++) if (!samples[i - 1]!.ok) unprotectedMs += samples[i]!.at - samples[i - 1]!.at;
      console.log(`drain of h1 (the primary's host): ${samples.length} samples, ${bad.length} unprotected (${(unprotectedMs / 1000).toFixed(2)} s); primary now on ${after.primary!.host}, secondary on ${after.secondary!.host}`);
      expect(samples.length).toBeGreaterThan(10);
      expect(bad.map((b) => b.why)).toEqual([]);
      const { inv } = await look(store);
      expect(inv.events.filter((e) => e.kind === 'migrate-primary' && e.vm === 'kv1').length).toBe(1);
      expect(inv.events.filter((e) => e.kind === 'switch-primary' && e.vm === 'kv1')).toEqual([]);
    } finally {
      sampling = false;
      await sampler;
      stop = true;
      await writing;
    }
    const wrong: string[] = [];
    for (const [key, n] of acked) {
      const got = await client.get(key);
      const m = got === null ? -1 : Number(got.value.toString().slice(1));
      if (!(m >= n && m <= sent.get(key)!)) wrong.push(`${key}: read ${got === null ? 'nothing' : got.value.toString()}, acknowledged v${n}`);
    }
    await client.close();
    expect(wrong).toEqual([]);
  }, 600_000);
});

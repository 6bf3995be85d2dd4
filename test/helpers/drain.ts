// A drain under a write load, shared by the cluster drain tests: three hosts (h1 four times the others,
// so the primary goes there), an FT kvserver VM, a writer whose acknowledged writes must read back, and a
// sampler of the VM's protection as the store shows it, every 50 ms from before the drain to after it.
import { join } from 'node:path';
import { expect } from 'vitest';
import type { PairView } from '../../src/cluster/manager/inventory.js';
import { kvVmConfig, look, runCli, sampleStore, startAgent, startManager, tokenFile, until, vmProtected, writeLoad, type Sample } from './cluster.js';
import type { EtcdClusterFixture } from './etcd-cluster.js';

/** What the drain left: the pair before and after, the samples taken through it, and the store's events. */
export interface DrainOutcome {
  first: PairView;
  after: PairView;
  samples: Sample[];
  /** Time the samples show the VM unprotected. */
  unprotectedMs: number;
  events: Awaited<ReturnType<typeof look>>['inv']['events'];
}

/**
 * Puts the host `host(first)` into maintenance with `--wait` while kv1 serves writes, waits until
 * `moved(view, first)` holds for a protected view, and checks that every acknowledged write reads back.
 */
export async function drainUnderLoad(fixture: EtcdClusterFixture, host: (first: PairView) => string, moved: (v: PairView, first: PairView) => boolean): Promise<DrainOutcome> {
  const { etcd, store, tmp, procs } = fixture;
  const spec = `etcd:${etcd.endpoint}`;
  const tok = tokenFile(tmp);
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
  const drained = host(first);

  const load = writeLoad(vm.udpPort);
  const sampler = sampleStore(store, vmProtected('kv1'));
  const { samples } = sampler;
  let after: PairView;
  try {
    await until('writes acknowledged', 60_000, async () => (load.acked.size > 0 ? true : undefined));
    const m = await runCli(['cluster', 'maintenance', drained, 'on', '--wait', '--timeout', '90', '--store', spec], 100_000);
    expect(m.stderr).toBe('');
    expect(m.code).toBe(0);
    after = await until(`kv1 protected after the drain of ${drained}`, 60_000, async () => {
      const v = await protectedView();
      return v !== undefined && moved(v, first) ? v : undefined;
    });
  } finally {
    await sampler.stop();
    await load.stop();
  }
  const wrong = await load.lost();
  expect(wrong).toEqual([]);
  let unprotectedMs = 0;
  for (let i = 1; i < samples.length; i++) if (!samples[i - 1]!.ok) unprotectedMs += samples[i]!.at - samples[i - 1]!.at;
  const { inv } = await look(store);
  console.log(`drain of ${drained}: ${samples.length} samples, ${samples.filter((s) => !s.ok).length} unprotected (${(unprotectedMs / 1000).toFixed(2)} s); primary now on ${after.primary!.host}, secondary on ${after.secondary!.host}`);
  return { first, after, samples, unprotectedMs, events: inv.events };
}

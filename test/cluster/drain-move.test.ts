// Maintenance of a host that runs a secondary moves it without a protection gap (agents and a manager as
// processes on a real etcd, an FT kvserver VM under a write load): the store, sampled every 50 ms
// through the drain, never shows the VM unprotected, and no acknowledged write is lost.
import { describe, expect, it } from 'vitest';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { drainUnderLoad } from '../helpers/drain.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the drain test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('cluster: a drain moves secondaries without a protection gap', () => {
  const fixture = etcdCluster('lockstep-drain-move-');

  it('maintenance of the secondary’s host: the VM is protected at every sample (0 unprotected seconds), the secondary ends on another host, every acknowledged write reads back', async () => {
    const d = await drainUnderLoad(fixture, (first) => first.secondary!.host, (v, first) => v.secondary!.host !== first.secondary!.host);
    expect(d.after.primary!.host).toBe('h1');
    expect(d.samples.length).toBeGreaterThan(10);
    expect(d.samples.filter((s) => !s.ok)).toEqual([]);
    const moves = d.events.filter((e) => e.kind === 'move-secondary' && e.vm === 'kv1');
    expect(moves.map((e) => e.message)).toEqual([expect.stringMatching(/without a protection gap/)]);
    expect(d.events.filter((e) => e.kind === 'stop-secondary' || e.kind === 'start-secondary').length).toBe(1); // only the first start
  }, 600_000);
});

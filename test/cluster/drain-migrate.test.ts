// Maintenance of the host that runs a primary migrates the primary without a protection gap (agents and
// a manager as processes on a real etcd, an FT kvserver VM under a write load): the VM's secondary stays
// where it is and follows the migrated primary; the store, sampled every 50 ms through the drain, never
// shows the VM unprotected, and no acknowledged write is lost.
import { describe, expect, it } from 'vitest';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { drainUnderLoad } from '../helpers/drain.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the drain test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('cluster: a drain migrates primaries without a protection gap', () => {
  const fixture = etcdCluster('lockstep-drain-migrate-');

  it('maintenance of the primary’s host: the primary migrates to the third host, the secondary follows it without a clone, the VM is protected at every sample, every acknowledged write reads back', async () => {
    const d = await drainUnderLoad(fixture, () => 'h1', (v) => v.primary!.host !== 'h1');
    const secondaryHost = d.first.secondary!.host;
    expect(d.after.primary!.host).toBe(secondaryHost === 'h2' ? 'h3' : 'h2');
    expect(d.after.secondary!.host).toBe(secondaryHost); // the same secondary: it followed
    const told = JSON.stringify(d.events.filter((e) => e.vm === 'kv1').map((e) => `${e.kind} ${e.host ?? ''}: ${e.message ?? ''}`));
    expect(d.after.secondary!.startedAt, told).toBe(d.first.secondary!.startedAt);
    expect(d.samples.length).toBeGreaterThan(10);
    expect(d.samples.filter((s) => !s.ok).map((b) => b.why)).toEqual([]);
    expect(d.events.filter((e) => e.kind === 'migrate-primary' && e.vm === 'kv1').length).toBe(1);
    expect(d.events.filter((e) => e.kind === 'switch-primary' && e.vm === 'kv1')).toEqual([]);
  }, 600_000);
});

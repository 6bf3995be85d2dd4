// `lockstep cluster ft <vm> <operation>`: vSphere's FT operations on a cluster VM through the manager and
// the primary's agent — test failover under a write load (nothing acknowledged lost, a new secondary
// afterwards), test restart secondary (the secondary cloned again, in lockstep), suspend (no secondary is
// started while suspended) and resume (protected again); and refusals that write nothing. Agents and a
// manager as processes on a real etcd, an FT kvserver.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KEYS } from '../../src/cluster/manager/layout.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { kvVmConfig, look, runCli, startAgent, startManager, tokenFile, until, writeLoad } from '../helpers/cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the cluster ft test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('lockstep cluster ft', () => {
  const fixture = etcdCluster('lockstep-cluster-ft-');

  it('test-failover, restart-secondary, suspend and resume through the manager; refusals write nothing', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const cli = (...args: string[]) => runCli(['cluster', ...args, '--store', spec], 150_000);
    await Promise.all(['h1', 'h2', 'h3'].map(async (id) => procs.push(await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id) }))));
    procs.push(await startManager('m1', spec, tok.path));
    const kv = await kvVmConfig(tmp, 'kv1', etcd.endpoint);
    expect((await cli('create-vm', kv.path)).code).toBe(0);
    const first = await until('kv1 protected', 120_000, async () => (await look(store)).views.find((x) => x.vm === 'kv1' && x.protected === true));
    const told = async () =>
      (await look(store)).inv.events
        .filter((e) => e.vm === 'kv1')
        .map((e) => `${e.kind}: ${e.message}`)
        .join('\n');

    // Refused by the CLI, nothing written.
    const keys = async () => (await store.list('')).filter((e) => !e.key.startsWith(KEYS.eventsPrefix)).map((e) => e.key);
    const before = await keys();
    const notSuspended = await cli('ft', 'kv1', 'resume');
    expect([notSuspended.code, notSuspended.stderr]).toEqual([65, expect.stringMatching(/^lockstep cluster ft: kv1 resume: FT is not suspended for kv1 \(.*\); nothing written\n$/)]);
    expect((await cli('ft', 'kv9', 'suspend')).stderr).toBe('lockstep cluster ft: kv9 suspend: no such VM in the cluster; nothing written\n');
    const unknown = await cli('ft', 'kv1', 'pause');
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toMatch(/unknown operation 'pause' \(test-failover, restart-secondary, suspend, resume\)/);
    expect(await keys()).toEqual(before);

    // Test failover under a write load: the secondary's host runs the primary, protected again by a new secondary.
    const load = writeLoad(kv.udpPort);
    let failover;
    try {
      await until('writes acknowledged', 60_000, async () => (load.acked.size > 0 ? true : undefined));
      failover = await cli('ft', 'kv1', 'test-failover', '--wait', '--timeout', '120');
    } finally {
      await load.stop();
    }
    expect([failover.code, failover.stderr], await told()).toEqual([0, '']);
    expect(failover.stdout).toMatch(new RegExp(`^test-failover of kv1 requested; the leading manager asks its primary on ${first.primary!.host}\\n`));
    expect(failover.stdout).toMatch(/test-failover of kv1: done\n$/);
    expect(await load.lost()).toEqual([]);
    const afterFailover = (await look(store)).views.find((x) => x.vm === 'kv1')!;
    expect(afterFailover.primary!.host).toBe(first.secondary!.host);
    expect(afterFailover.primary!.epoch).toBeGreaterThan(first.primary!.epoch!);

    // Test restart secondary: the secondary cloned again (its process's clone count goes up), in lockstep.
    const restart = await cli('ft', 'kv1', 'restart-secondary', '--wait', '--timeout', '120');
    expect([restart.code, restart.stderr], await told()).toEqual([0, '']);
    const afterRestart = (await look(store)).views.find((x) => x.vm === 'kv1')!;
    expect(afterRestart.protected).toBe(true);
    const cloned = (v: typeof afterRestart) => `${v.secondary!.incarnation}#${v.secondary!.clones ?? 0}`;
    expect(cloned(afterRestart)).not.toBe(cloned(afterFailover));

    // Suspend: the secondary goes and the manager starts none (it says why), until resume.
    const suspendAt = Date.now();
    const suspend = await cli('ft', 'kv1', 'suspend', '--wait', '--timeout', '120');
    expect([suspend.code, suspend.stderr], await told()).toEqual([0, '']);
    const held = await until('the manager holding back a secondary', 60_000, async () => (await look(store)).inv.events.find((e) => e.kind === 'ft-suspended' && e.vm === 'kv1' && e.t >= suspendAt));
    expect(held.message).toMatch(/^kv1: FT is suspended on its primary on h\d; no secondary is started until lockstep cluster ft kv1 resume$/);
    const status = await cli('status');
    expect(status.stdout).toMatch(/FT suspended/);
    expect((await look(store)).inv.events.filter((e) => e.vm === 'kv1' && e.kind === 'start-secondary' && e.t >= suspendAt)).toEqual([]);
    const again = await cli('ft', 'kv1', 'suspend');
    expect(again.stderr).toBe('lockstep cluster ft: kv1 suspend: FT is already suspended for kv1; nothing written\n');

    // Resume: protected again.
    const resume = await cli('ft', 'kv1', 'resume', '--wait', '--timeout', '120');
    expect([resume.code, resume.stderr], await told()).toEqual([0, '']);
    expect((await look(store)).views.find((x) => x.vm === 'kv1')!.protected).toBe(true);
  }, 600_000);
});

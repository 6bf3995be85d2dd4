// `lockstep cluster migrate`: the operator moves a VM's primary (or its secondary) through the manager,
// without a protection gap, to a host the placement rules allow — and is refused, with the broken rule
// named and nothing written, for one they do not, for an unknown host, and for the secondary of a VM
// without FT (it has none); such a VM itself is live-migrated, without a restart. Agents and a manager as
// processes on a real etcd, an FT kvserver under a write load sampled every 50 ms.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KEYS, type MigrateRequest } from '../../src/cluster/manager/layout.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { KVSERVER, freeUdpPort, kvVmConfig, look, runCli, sampleStore, startAgent, startManager, tokenFile, until, vmProtected, writeLoad } from '../helpers/cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the cluster migrate test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('lockstep cluster migrate', () => {
  const fixture = etcdCluster('lockstep-cluster-migrate-');

  it('moves the primary to the host asked for and the secondary to the best valid one, protected at every sample; refuses invalid targets and the secondary of a VM without FT with the reason, writing nothing; live-migrates the VM without FT', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const cli = (...args: string[]) => runCli(['cluster', ...args, '--store', spec], 150_000);
    await Promise.all(['h1', 'h2', 'h3'].map(async (id) => procs.push(await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id) }))));
    // Manual automation: the layout is the operator's (cluster migrate works in either).
    procs.push(await startManager('m1', spec, tok.path, ['--automation', 'manual']));
    const kv = await kvVmConfig(tmp, 'kv1', etcd.endpoint);
    expect((await cli('create-vm', kv.path)).code).toBe(0);
    const solo = join(tmp, 'solo1.json');
    writeFileSync(join(tmp, 'solo1.img'), Buffer.alloc(4 << 20));
    writeFileSync(solo, JSON.stringify({ vm: { id: 'solo1', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: join(tmp, 'solo1.img') }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } }, ft: { enabled: false, timeoutMs: 5_000, heartbeatMs: 100 } }));
    expect((await cli('create-vm', solo)).code).toBe(0);
    const first = await until('kv1 protected, solo1 running', 120_000, async () => {
      const { views } = await look(store);
      const v = views.find((x) => x.vm === 'kv1');
      return v?.protected === true && views.find((x) => x.vm === 'solo1')?.status === 'running' ? v : undefined;
    });
    const [p, s] = [first!.primary!.host, first!.secondary!.host];
    const third = ['h1', 'h2', 'h3'].find((h) => h !== p && h !== s)!;

    // Refused by the CLI, nothing written.
    const before = (await store.list('')).filter((e) => !e.key.startsWith(KEYS.eventsPrefix)).map((e) => e.key);
    const ontoSecondary = await cli('migrate', 'kv1', '--to', s);
    expect([ontoSecondary.code, ontoSecondary.stderr]).toEqual([65, `lockstep cluster migrate: ${s} cannot take the primary of kv1: anti-affinity with secondary kv1 on ${s} (invalid-target); nothing written\n`]);
    const unknown = await cli('migrate', 'kv1', '--to', 'h9');
    expect([unknown.code, unknown.stderr]).toEqual([65, 'lockstep cluster migrate: no host h9 in the cluster (live hosts: h1, h2, h3) (unknown-host); nothing written\n']);
    const nonFt = await cli('migrate', 'solo1', '--secondary');
    expect([nonFt.code, nonFt.stderr]).toEqual([65, 'lockstep cluster migrate: solo1 runs without FT: it has no secondary to migrate (migrate the VM itself, without --secondary) (no-ft-migration); nothing written\n']);
    expect((await cli('migrate', 'kv9')).stderr).toMatch(/no VM kv9 in the cluster \(VMs: kv1, solo1\)/);
    expect((await store.list('')).filter((e) => !e.key.startsWith(KEYS.eventsPrefix)).map((e) => e.key)).toEqual(before);

    // The manager checks again: a request written past the CLI is refused with the reason, and deleted.
    const sneaked: MigrateRequest = { vm: 'kv1', role: 'primary', to: s, at: Date.now(), by: 'test' };
    await store.put(KEYS.migrateRequest('kv1'), sneaked as unknown as JsonValue);
    const refused = await until('the manager refuses the request', 30_000, async () => (await look(store)).inv.events.find((e) => e.kind === 'migrate-refused' && e.vm === 'kv1'));
    expect(refused.message).toBe(`cluster migrate kv1 --to ${s} refused (invalid-target): ${s} cannot take the primary of kv1: anti-affinity with secondary kv1 on ${s}`);
    expect(await store.get(KEYS.migrateRequest('kv1'))).toBeNull();

    // Under a write load, sampled: the primary to the third host, then the secondary wherever is best.
    const load = writeLoad(kv.udpPort);
    const sampler = sampleStore(store, vmProtected('kv1'));
    const { samples } = sampler;
    let primaryRun;
    let secondaryRun;
    try {
      await until('writes acknowledged', 60_000, async () => (load.acked.size > 0 ? true : undefined));
      primaryRun = await cli('migrate', 'kv1', '--to', third, '--wait', '--timeout', '120');
      secondaryRun = await cli('migrate', 'kv1', '--secondary', '--wait', '--timeout', '120');
    } finally {
      await sampler.stop();
      await load.stop();
    }
    const { inv, views } = await look(store);
    const told = inv.events.filter((e) => e.vm === 'kv1').map((e) => `${e.kind}: ${e.message}`).join('\n');
    expect([primaryRun.code, primaryRun.stderr], told).toEqual([0, '']);
    expect(primaryRun.stdout).toMatch(new RegExp(`^live migration of the primary of kv1 requested: migrate the primary of kv1 ${p} → ${third} \\(its secondary stays on ${s}\\);`));
    expect(primaryRun.stdout).toMatch(new RegExp(`the primary of kv1 runs on ${third}; kv1 is protected\\n$`));
    expect([secondaryRun.code, secondaryRun.stderr], told).toEqual([0, '']);
    const after = views.find((x) => x.vm === 'kv1')!;
    // The secondary left s for the only other valid host: the primary's old one.
    expect([after.primary!.host, after.secondary!.host, after.protected]).toEqual([third, p, true]);
    expect(inv.events.filter((e) => e.kind === 'migrate-primary' && e.vm === 'kv1').map((e) => e.message.split(':')[0])).toEqual([`requested (cluster migrate kv1 --to ${third})`]);
    expect(inv.events.filter((e) => e.kind === 'switch-primary')).toEqual([]);
    // The old primary's record went as soon as the target's appeared (Agent #handedOn), not at a bound.
    expect(inv.events.filter((e) => e.kind === 'migration-unconfirmed')).toEqual([]);
    expect(samples.length).toBeGreaterThan(10);
    expect(samples.filter((x) => !x.ok).map((x) => x.why), told).toEqual([]);
    const wrong = await load.lost();
    expect(wrong).toEqual([]);
    console.log(`cluster migrate: primary ${p} → ${third}, secondary ${s} → ${p}; ${samples.length} samples, none unprotected; ${load.acked.size} keys acknowledged`);

    // The VM without FT: live-migrated by the manager (a migration target, not a restart).
    const soloFrom = views.find((x) => x.vm === 'solo1')!.primary!;
    const soloTo = ['h1', 'h2', 'h3'].find((h) => h !== soloFrom.host)!;
    const soloRun = await cli('migrate', 'solo1', '--to', soloTo, '--wait', '--timeout', '120');
    const soloTold = (await look(store)).inv.events.filter((e) => e.vm === 'solo1' || e.kind === 'action-failed').map((e) => `${e.kind}: ${e.message}`).join('\n');
    expect([soloRun.code, soloRun.stderr], soloTold).toEqual([0, '']);
    expect(soloRun.stdout).toMatch(new RegExp(`the VM of solo1 runs on ${soloTo}\\n$`));
    const moved = (await look(store)).views.find((x) => x.vm === 'solo1')!;
    expect([moved.status, moved.primary!.host, moved.primary!.startedAs], soloTold).toEqual(['running', soloTo, 'secondary']);
    expect(soloTold).toMatch(/migrate-vm: requested \(cluster migrate solo1 --to/);
    expect(soloTold.match(/^start-primary/gm)?.length ?? 0).toBe(1); // started once, never restarted
  }, 600_000);
});

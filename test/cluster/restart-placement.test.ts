// HA restart after a host death never picks the dead host: its host record outlives its instance records
// by 3 s (8 s against 5 s), so when the VM it ran is restarted (records gone, 2 s grace) the dead host
// still looks live — and, having just lost its VMs, the least loaded. The restart goes to a live host at
// the first attempt, with no failed start. Agents and a manager as processes on a real etcd; a VM without
// FT on h1 (the smallest id, which wins ties), SIGKILL of h1's process group.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { KVSERVER, freeUdpPort, look, runCli, startAgent, startManager, tokenFile, until } from '../helpers/cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the restart placement test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('HA restart placement after a host death', () => {
  const fixture = etcdCluster('lockstep-restart-placement-');

  it('restarts the VM of a SIGKILLed host on a live host at the first attempt, never on the dead one whose record has not expired yet', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const agents = new Map<string, (typeof procs)[number]>();
    await Promise.all(
      ['h1', 'h2'].map(async (id) => {
        const p = await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id) });
        agents.set(id, p);
        procs.push(p);
      }),
    );
    procs.push(await startManager('m1', spec, tok.path));
    const path = join(tmp, 'solo1.json');
    writeFileSync(join(tmp, 'solo1.img'), Buffer.alloc(4 << 20));
    writeFileSync(path, JSON.stringify({ vm: { id: 'solo1', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: join(tmp, 'solo1.img') }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } }, ft: { enabled: false } }));
    expect((await runCli(['cluster', 'create-vm', path, '--store', spec])).code).toBe(0);
    const first = await until('solo1 running', 60_000, async () => {
      const v = (await look(store)).views.find((x) => x.vm === 'solo1');
      return v?.status === 'running' ? v : undefined;
    });
    expect(first.primary!.host).toBe('h1');
    const killedAt = Date.now();
    agents.get('h1')!.killGroup('SIGKILL');
    const again = await until('solo1 running again', 60_000, async () => {
      const v = (await look(store)).views.find((x) => x.vm === 'solo1');
      return v?.status === 'running' && v.primary!.startedAt > killedAt ? v : undefined;
    });
    expect(again.primary!.host).toBe('h2');
    const events = (await look(store)).inv.events.filter((e) => e.t >= killedAt && (e.vm === 'solo1' || e.kind === 'action-failed'));
    const told = events.map((e) => `${e.kind} ${e.host ?? ''}: ${e.message}`).join('\n');
    // The first restart ordered went to h2: no start on h1 (each is said before it is ordered), no failed
    // start, no backoff. (An action-failed may be the first start's answer, cut by the kill.)
    expect(events.filter((e) => e.kind === 'start-primary').map((e) => e.host), told).toEqual(['h2']);
    expect(events.filter((e) => e.kind === 'start-failed'), told).toEqual([]);
  }, 300_000);
});

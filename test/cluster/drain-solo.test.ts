// Maintenance of the host of a VM without FT live-migrates it (issue 14): the manager hands a key made
// for the migration to both agents, the target goes live on the source's GO_LIVE, and the VM is never
// restarted — the same guest keeps counting instructions, its kvserver keeps every acknowledged write and
// applies no increment twice. Agents and a manager as processes on a real etcd, a verifying load and a
// probe that measures the longest time the client went without an answer.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/cluster/agent/client.js';
import { KvClient } from '../../src/index.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { KVSERVER, freeUdpPort, look, runCli, sampleStore, startAgent, startManager, tokenFile, until } from '../helpers/cluster.js';
import { verifyingLoads } from '../helpers/verifying-load.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the drain test of a VM without FT: ${etcdOk.why}`);

/** A client that reads one key in a loop and keeps the longest time between two answers. */
function outageProbe(udpPort: number) {
  const client = new KvClient({ endpoints: [{ host: '127.0.0.1', port: udpPort }], timeoutMs: 100, retries: 0 });
  let last = performance.now();
  let longest = 0;
  let answers = 0;
  let going = true;
  const loop = (async () => {
    for (let i = 0; going && i < 1_000_000; i++) {
      try {
        await client.get('probe');
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
        answers++;
      } catch {
        // unanswered: the gap grows until the next answer
      }
    }
  })();
  return {
    answers: () => answers,
    stop: async (): Promise<number> => {
      going = false;
      await loop;
      await client.close();
      return longest;
    },
  };
}

describe.skipIf(!etcdOk.ok)('cluster: a drain live-migrates a VM without FT', () => {
  const fixture = etcdCluster('lockstep-drain-solo-');

  it('maintenance of its host: the VM moves by live migration (no restart: the same guest keeps counting), every acknowledged write reads back, no increment is applied twice, and the migration key is left nowhere', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    await Promise.all(['h1', 'h2'].map(async (id) => procs.push(await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id) }))));
    procs.push(await startManager('m1', spec, tok.path));
    const udpPort = await freeUdpPort();
    const path = join(tmp, 'solo1.json');
    writeFileSync(join(tmp, 'solo1.img'), Buffer.alloc(4 << 20));
    // ft.timeoutMs as the cluster's FT test VMs have it: on this loaded 2-core machine the default 600 ms
    // silence can end a migration's target before the source's GO_LIVE reaches it (the VM is then down
    // and restarted by HA; seen once in ten runs — docs/cluster.md, "Not done").
    writeFileSync(path, JSON.stringify({ vm: { id: 'solo1', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: join(tmp, 'solo1.img') }, net: { backend: 'udp', hostPort: udpPort, guestPort: 11211 } } }, ft: { enabled: false, timeoutMs: 5_000, heartbeatMs: 100 } }));
    expect((await runCli(['cluster', 'create-vm', path, '--store', spec])).code).toBe(0);
    const first = await until('solo1 running', 120_000, async () => (await look(store)).views.find((v) => v.vm === 'solo1' && v.status === 'running'));
    const from = first.primary!.host;
    const to = from === 'h1' ? 'h2' : 'h1';
    const agentOf = async (host: string) => new AgentClient({ url: (await look(store)).inv.hosts.get(host)!.api, token: tok.token });
    const source = await agentOf(from);

    const load = verifyingLoads(udpPort, 80);
    const probe = outageProbe(udpPort);
    // The VM as the store shows it: running, or moving (its target among the other records); never down
    // and never restarted (a start-primary).
    const sampler = sampleStore(store, ({ views }) => {
      const v = views.find((x) => x.vm === 'solo1');
      return v !== undefined && (v.status === 'running' || v.status === 'starting' || v.status === 'going-live') ? [] : [v === undefined ? 'no view' : `${v.status}: ${v.text}`];
    });
    let sourceInstret = 0n;
    let drain;
    try {
      await until('the load to run', 60_000, async () => (load.progress() >= 20 && probe.answers() > 10 ? true : undefined));
      // The VM process reports its instret every second.
      sourceInstret = await until('the source to report its instret', 30_000, async () => {
        const n = BigInt((await source.get('solo1')).progress?.instret ?? '0');
        return n > 0n ? n : undefined;
      });
      drain = await runCli(['cluster', 'maintenance', from, 'on', '--wait', '--timeout', '90', '--store', spec], 100_000);
      const at = load.progress();
      await until('the target to serve the load', 60_000, async () => (load.progress() > at + 20 ? true : undefined));
    } finally {
      await sampler.stop();
    }
    const longestMs = await probe.stop();
    await load.verify();
    const { inv, views } = await look(store);
    // What the agents saw of every instance (the ended ones too): their last events and stderr lines.
    const instances = (await Promise.all(['h1', 'h2'].map(async (h) => (await agentOf(h)).list()))).flat();
    const told = [
      ...inv.events.filter((e) => e.vm === 'solo1' || e.host === from).map((e) => `${e.kind}: ${e.message}`),
      ...instances.map((i) => `${i.host} ${i.startedAs}→${i.role} ${JSON.stringify(i.exit)}: ${i.events.slice(-6).map((e) => `${e.event}${e.reason !== undefined ? `(${String(e.reason)})` : ''}`).join(' ')} | ${i.log.slice(-3).join(' / ')}`),
    ].join('\n');
    expect([drain.code, drain.stderr], told).toEqual([0, '']);
    const after = views.find((v) => v.vm === 'solo1')!;
    // A migration target that went live, not a new start: started as a secondary, never restarted.
    expect([after.status, after.primary!.host, after.primary!.startedAs], told).toEqual(['running', to, 'secondary']);
    expect(inv.events.filter((e) => e.vm === 'solo1' && e.kind === 'start-primary').length, told).toBe(1);
    expect(inv.events.filter((e) => e.vm === 'solo1' && e.kind === 'migrate-vm').map((e) => e.message), told).toEqual([expect.stringMatching(new RegExp(`^maintenance of ${from}: live migration of solo1 \\(FT off\\) to ${to}, without a restart`))]);
    const targetAgent = await agentOf(to);
    const target = await until('the target to report its instret', 30_000, async () => {
      const t = await targetAgent.get('solo1');
      return t.progress !== null ? t : undefined;
    });
    expect(target.events.some((e) => e.event === 'go-live' && /live migration/.test(String(e.reason))), JSON.stringify(target.events)).toBe(true);
    // The same guest: its instruction count went on from where the source had it (a restart starts at 0).
    expect(BigInt(target.progress!.instret)).toBeGreaterThan(sourceInstret);
    expect(samples(sampler.samples), told).toEqual([]);
    // The key files were read and deleted; the store never held a key.
    for (const h of ['h1', 'h2']) expect(readdirSync(join(tmp, h, 'vms', 'solo1')).filter((f) => f.startsWith('key-'))).toEqual([]);
    expect(JSON.stringify((await store.list('')).map((e) => e.value))).not.toMatch(/migrationKey|keyHex/);
    console.log(`drain of ${from} with solo1 (FT off): live-migrated to ${to}; longest time the client went without an answer ${longestMs.toFixed(0)} ms; ${sampler.samples.length} samples, none down`);
  }, 600_000);
});

function samples(s: { ok: boolean; why: string }[]): string[] {
  return s.filter((x) => !x.ok).map((x) => x.why);
}

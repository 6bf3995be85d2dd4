// The cluster end to end: four agents as separate processes (each its own process group: a "host"),
// one manager, a real etcd on loopback, two FT kvserver VMs under a client load. A host is SIGKILLed with
// everything on it; maintenance mode drains another; a checker samples the store every 100 ms throughout.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KvClient } from '../../src/index.js';
import { Placement } from '../../src/cluster/placement/index.js';
import { buildSnapshot } from '../../src/cluster/manager/inventory.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { StoreChecker, allProtected, kvVmConfig, look, lostWrites, runCli, startAgent, startManager, tokenFile, until, type GroupProc } from '../helpers/cluster.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the cluster tests: ${etcdOk.why}`);

/**
 * Writes `v<n>` to key `<prefix>-<n mod 100>` one write after another (each retried by the client) until
 * stopped (kvserver holds a few hundred keys); keeps, per key, the last acknowledged and the last sent n.
 */
function writer(port: number, prefix: string) {
  const KEYS = 100;
  const client = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 150, retries: 80 });
  const lastAcked = new Map<string, number>();
  const lastSent = new Map<string, number>();
  const errors: string[] = [];
  let acks = 0;
  let failed = 0;
  let stopped = false;
  const done = (async () => {
    // Bounded: stops when told to (the test always does), at most 100 000 writes.
    for (let n = 0; !stopped && n < 100_000; n++) {
      const key = `${prefix}-${n % KEYS}`;
      lastSent.set(key, n);
      try {
        if ((await client.set(key, `v${n}`)) === 'stored') {
          lastAcked.set(key, n);
          acks++;
        }
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push(`${key}: ${(err as Error).message}`);
      }
    }
  })();
  return {
    get acks() {
      return acks;
    },
    get failed() {
      return failed;
    },
    errors,
    async stop() {
      stopped = true;
      await done;
    },
    /** Every key reads back its last acknowledged value or a later one that was sent: nothing acknowledged is lost. */
    verify: (): Promise<string[]> => lostWrites(client, lastAcked, lastSent),
    close: () => client.close(),
  };
}

describe.skipIf(!etcdOk.ok)('cluster: agents and a manager as processes on a real etcd', () => {
  const fixture = etcdCluster('lockstep-cluster-');

  it('keeps two FT VMs answering and protected through the maintenance of a host, the SIGKILL of another and the maintenance of a third; the checker never sees a rule broken', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const agents = new Map<string, GroupProc>();
    // h1 is four times the others, so placement puts halves of both VMs there: its death hits both.
    await Promise.all(
      ['h1', 'h2', 'h3', 'h4'].map(async (id) => {
        const size = id === 'h1' ? 4 : 1;
        const p = await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id), mips: 1000 * size, memoryMiB: 1024 * size });
        procs.push(p);
        agents.set(id, p);
      }),
    );
    procs.push(await startManager('m1', spec, tok.path));
    const checker = new StoreChecker(store);
    const writers: Array<ReturnType<typeof writer>> = [];
    try {
      const vms = await Promise.all(['kv1', 'kv2'].map((id) => kvVmConfig(tmp, id, etcd.endpoint)));
      for (const v of vms) {
        const r = await runCli(['cluster', 'create-vm', v.path, '--store', spec]);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
      }
      await until('both VMs protected', 120_000, async () => {
        const { inv, views } = await look(store);
        return views.length === 2 && allProtected(inv, views) ? true : undefined;
      });
      for (const [i, v] of vms.entries()) writers.push(writer(v.udpPort, `w${i}`));
      await until('every VM to acknowledge writes', 120_000, async () => (writers.every((w) => w.acks > 0) ? true : undefined));

      const first = await look(store);
      const where = (views: typeof first.views) => views.map((v) => `${v.vm} ${v.primary?.host}/${v.secondary?.host}`).join(', ');
      // h1 is four times the others: placement put both primaries there.
      expect(first.views.map((v) => v.primary?.host)).toEqual(['h1', 'h1']);

      // Maintenance of h1: both primaries are live-migrated to another host, their secondaries follow
      // them (no gap, no new clone), nothing is left on h1.
      const acks0 = writers.map((w) => w.acks);
      const drainedAt = performance.now();
      const m = await runCli(['cluster', 'maintenance', 'h1', 'on', '--wait', '--timeout', '60', '--store', spec], 70_000);
      expect(m.stderr).toBe('');
      expect(m.code).toBe(0);
      const drained = await look(store);
      console.log(`${where(first.views)}: h1 drained in ${(performance.now() - drainedAt).toFixed(0)} ms; now ${where(drained.views)}`);
      for (const records of drained.inv.instances.values()) expect(records.filter((x) => x.host === 'h1')).toEqual([]);
      expect(allProtected(drained.inv, drained.views, new Set(['h1']))).toBe(true);
      const switches = drained.inv.events.filter((e) => e.kind === 'migrate-primary' || e.kind === 'switch-primary' || e.kind === 'switch-by-kill');
      expect(switches.map((e) => `${e.kind} ${e.vm}`).sort()).toEqual(['migrate-primary kv1', 'migrate-primary kv2']);
      writers.forEach((w, i) => expect(w.acks).toBeGreaterThan(acks0[i]!));

      // The host with the most halves (a primary among them, if there is one) dies with all it runs.
      const before = drained;
      const count = (h: string) => before.views.filter((v) => v.primary?.host === h || v.secondary?.host === h).length;
      const hasPrimary = (h: string) => before.views.some((v) => v.primary?.host === h);
      const victim = [...before.inv.hosts.keys()].sort((a, b) => count(b) - count(a) || Number(hasPrimary(b)) - Number(hasPrimary(a)))[0]!;
      const affected = before.views.filter((v) => v.primary?.host === victim || v.secondary?.host === victim).map((v) => v.vm);
      expect(affected.length).toBeGreaterThan(0);
      const acks1 = writers.map((w) => w.acks);
      const killedAt = performance.now();
      agents.get(victim)!.killGroup('SIGKILL');
      checker.killed(victim);
      await until(`${affected.join(', ')} protected again off ${victim}`, 120_000, async () => {
        const { inv, views } = await look(store);
        return allProtected(inv, views, new Set(['h1', victim])) ? true : undefined;
      });
      const reprotectMs = performance.now() - killedAt;
      const after = await look(store);
      console.log(`${where(before.views)}: host ${victim} SIGKILLed, ${affected.join(' and ')} protected again after ${reprotectMs.toFixed(0)} ms; now ${where(after.views)}`);
      // Every VM kept answering: writes were acknowledged after the kill, on each VM.
      await until('writes acknowledged on every VM after the kill', 120_000, async () => (writers.every((w, i) => w.acks > acks1[i]!) ? true : undefined));

      // The dead host's record expires (its lease: HOST_TTL_MS, 8 s), after its instances' (5 s).
      await until(`the host record of ${victim} expires`, 60_000, async () => ((await look(store)).inv.hosts.has(victim) ? undefined : true));

      // h1 back in service.
      const off = await runCli(['cluster', 'maintenance', 'h1', 'off', '--wait', '--timeout', '30', '--store', spec], 40_000);
      expect(off.code).toBe(0);

      // Every primary now is a secondary that went live; draining the host of one migrates it through
      // its operations API too (a hand-over, not a kill).
      const promoted = after.views.find((v) => v.primary?.startedAs === 'secondary')!;
      const second = promoted.primary!.host;
      const beforeDrain2 = await look(store);
      const m2 = await runCli(['cluster', 'maintenance', second, 'on', '--wait', '--timeout', '60', '--store', spec], 70_000);
      expect(m2.code).toBe(0);
      const drained2 = await look(store);
      console.log(`${where(after.views)}: ${second} drained; now ${where(drained2.views)}`);
      expect(allProtected(drained2.inv, drained2.views, new Set([victim, second]))).toBe(true);
      const switched = drained2.inv.events.filter((e) => (e.kind === 'migrate-primary' || e.kind === 'switch-primary' || e.kind === 'switch-by-kill') && e.host === second);
      // Both primaries may have gone live on the same host: the drain migrates every primary it finds there.
      const onSecond = beforeDrain2.views.filter((v) => v.primary?.host === second).map((v) => `migrate-primary ${v.vm}`);
      expect(onSecond).toContain(`migrate-primary ${promoted.vm}`);
      expect(switched.map((e) => `${e.kind} ${e.vm}`).sort()).toEqual(onSecond.sort());
      expect(drained2.inv.events.filter((e) => e.kind === 'switch-by-kill')).toEqual([]);

      // Acknowledged writes are all readable, on every VM, after a drain and a host loss.
      const acks2 = writers.map((w) => w.acks);
      await until('writes acknowledged on every VM after the second drain', 120_000, async () => (writers.every((w, i) => w.acks > acks2[i]!) ? true : undefined));
      for (const w of writers) await w.stop();
      for (const w of writers) expect(await w.verify()).toEqual([]);
      for (const w of writers) expect({ failed: w.failed, errors: w.errors }).toEqual({ failed: 0, errors: [] });

      // The placement audit of the final state: no hard rule broken.
      const final = await look(store);
      const views = new Map(final.views.map((v) => [v.vm, v]));
      const audit = new Placement(buildSnapshot(final.inv, views).snapshot).audit();
      expect(audit.hard).toEqual([]);
      expect(audit.unprotected).toEqual([]);

      // What the operator sees.
      const status = JSON.parse((await runCli(['cluster', 'status', '--json', '--store', spec])).stdout) as {
        hosts: Array<{ id: string; live: boolean; maintenance: string; lost: { reason: string; halves: string[] } | null }>;
        vms: Array<{ id: string; protected: boolean; primary: { host: string } | null; secondary: { host: string } | null }>;
        events: Array<{ kind: string }>;
      };
      expect(status.hosts.find((h) => h.id === 'h1')?.maintenance).toBe('off');
      expect(status.hosts.find((h) => h.id === second)?.maintenance).toBe('in');
      // The killed host is listed as lost, with the reason, until an operator forgets it.
      const dead = status.hosts.find((h) => h.id === victim);
      expect(dead?.live).toBe(false);
      expect(dead?.lost?.reason).toMatch(/^its record expired: the agent stopped renewing it/);
      expect(status.vms.map((v) => v.protected)).toEqual([true, true]);
      const text = await runCli(['cluster', 'status', '--store', spec]);
      expect(text.stdout).toMatch(/kv1 +h\d +h\d +\d+ +(\d+\.\d ms|-) +(\d+\.\d\d MB\/s|-) +medium +- +Protected/);
      expect(text.stdout).toMatch(new RegExp(`\\nhosts lost:\\n  ${victim}: gone since `));
      const events = await runCli(['cluster', 'events', '--limit', '200', '--json', '--store', spec]);
      const kinds = (JSON.parse(events.stdout) as Array<{ kind: string }>).map((e) => e.kind);
      if (process.env.LOCKSTEP_DEBUG) console.log((JSON.parse(events.stdout) as Array<{ kind: string; message: string; vm?: string; host?: string }>).map((e) => `${e.kind} ${e.vm ?? ""} ${e.host ?? ""} ${e.message.slice(0, 150)}`).join("\n"));
      expect(kinds).toEqual(expect.arrayContaining(['leader', 'vm-created', 'start-primary', 'start-secondary', 'maintenance-entering', 'maintenance-in', 'migrate-primary', 'maintenance-off']));

      checker.stop();
      console.log(`checker: ${checker.samples} samples, ${checker.errors} failed reads`);
      expect(checker.violations).toEqual([]);
      expect(checker.samples).toBeGreaterThan(30);
    } finally {
      checker.stop();
      for (const w of writers) {
        await w.stop();
        await w.close();
      }
    }
  }, 900_000);
});

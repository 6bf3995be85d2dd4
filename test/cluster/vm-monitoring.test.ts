// HA VM monitoring under a real manager and agents. Heartbeat mode: a VM whose process the test stops
// (SIGSTOP) stops reporting; it is reset — an event, a `monitoring/<vm>` record — and runs again as a new
// process, while an idle healthy VM beside it is never reset; once the reset limit is reached, it is
// only reported. Progress mode: a guest that waits in WFI for an interrupt that never comes (its process
// alive and reporting) is reset, and a guest woken by its timer every millisecond is not. Watchdog mode:
// a guest that pets its watchdog three times and then runs on (its timer ticking) is reset; one that
// never pets it is not. In-process agents and manager on a directory store, the built CLI; VMs without FT.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { desiredVm } from '../../src/cluster/manager/desired.js';
import { pairView, readInventory, type PairView } from '../../src/cluster/manager/inventory.js';
import { KEYS, type ClusterEvent, type MonitorRecord } from '../../src/cluster/manager/layout.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { loadConfig } from '../../src/config/index.js';
import { R, rv } from '../helpers/asm.js';
import { KVSERVER, freeUdpPort, runCli, until } from '../helpers/cluster.js';
import { minimalElf } from '../helpers/tiny-elf.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const MiB = 2 ** 20;
const MIE = 0x304;

/** Enables the machine external interrupt (MEIE) and waits in WFI forever: nothing ever raises one. */
const WEDGED = [
  rv.lui(R.t0, 1), //             lui   t0, 0x1
  rv.addi(R.t0, R.t0, -2048), //  addi  t0, t0, -2048   (0x800: MEIE)
  rv.csrrs(R.zero, MIE, R.t0), // csrs  mie, t0
  rv.wfi(), //                    wfi
  rv.jal(R.zero, -4), //          j     .-4
];

/** Arms the CLINT timer 1 ms ahead and sleeps in WFI, over and over: idle, but always retiring instructions. */
const TICKING = [
  rv.addi(R.t0, R.zero, 0x80), // li    t0, 0x80        (MTIE)
  rv.csrrs(R.zero, MIE, R.t0), // csrs  mie, t0
  rv.lui(R.t1, 0x0200c), //       lui   t1, 0x200c      (mtime at t1 - 8)
  rv.lui(R.t2, 0x02004), //       lui   t2, 0x2004      (mtimecmp)
  rv.lw(R.a0, -8, R.t1), //       lw    a0, -8(t1)      loop: mtime
  rv.lw(R.a1, -4, R.t1), //       lw    a1, -4(t1)
  rv.lui(R.a2, 0x3), //           lui   a2, 0x3         (12288 ticks of 10 MHz: ~1.2 ms)
  rv.add(R.a2, R.a0, R.a2), //    add   a2, a0, a2
  rv.sltu(R.a3, R.a2, R.a0), //   sltu  a3, a2, a0      (carry)
  rv.add(R.a3, R.a1, R.a3), //    add   a3, a1, a3
  rv.sw(R.a3, 4, R.t2), //        sw    a3, 4(t2)
  rv.sw(R.a2, 0, R.t2), //        sw    a2, 0(t2)
  rv.wfi(), //                    wfi
  rv.jal(R.zero, -36), //         j     loop
];

/** Pets the guest watchdog (0x0010_2000) three times, then runs on as TICKING does: alive, but no more pets. */
const PETS_THEN_TICKS = [
  rv.lui(R.t3, 0x102), //         lui   t3, 0x102       (the watchdog)
  rv.sw(R.zero, 0, R.t3), //      sw    zero, 0(t3)     pet
  rv.sw(R.zero, 0, R.t3), //      sw    zero, 0(t3)     pet
  rv.sw(R.zero, 0, R.t3), //      sw    zero, 0(t3)     pet
  ...TICKING,
];

/**
 * A cluster of its own: a directory store, two in-process agents, an in-process manager whose events are
 * collected. Each scenario below has one, so that they run at the same time (each spends most of its
 * time waiting out a failure interval) without one's HA settings or VMs touching another's.
 */
async function cluster(name: string) {
  const tmp = mkdtempSync(join(tmpdir(), `lockstep-vm-monitoring-${name}-`));
  const spec = `dir:${join(tmp, 'store')}`;
  expect((await runCli(['cluster', 'init', '--store', spec])).code).toBe(0);
  const store = await DirStore.open({ dir: join(tmp, 'store') });
  const agents: Agent[] = [];
  // A reset stops the VM's process: SIGTERM, then SIGKILL after the grace. A SIGSTOPped process never
  // acts on the SIGTERM, so the grace is always waited out; 1 s instead of the agent's default 5 s.
  for (const id of ['a1', 'a2']) agents.push(await Agent.start({ id, store, token: TOKEN, dir: join(tmp, id), capacity: { mips: 1000, memoryBytes: 512 * MiB, logBandwidth: 125e6 }, stopGraceMs: 1_000 }));
  const manager = await Manager.start({ store, id: 'm1', token: TOKEN });
  const events: ClusterEvent[] = [];
  manager.on('event', (e) => events.push(e));
  const stopped: number[] = [];

  async function createVm(id: string, guest: string | number[]): Promise<void> {
    const path = join(tmp, `${id}.json`);
    let vm: Record<string, unknown>;
    if (typeof guest === 'string') {
      const image = join(tmp, `${id}.img`);
      writeFileSync(image, Buffer.alloc(4 << 20));
      vm = { id, guest, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } };
    } else {
      const elf = join(tmp, `${id}.elf`);
      writeFileSync(elf, minimalElf(guest));
      vm = { id, guest: elf, ramMiB: 1, clock: 'real' };
    }
    writeFileSync(path, JSON.stringify({ vm, ft: { enabled: false } }));
    await store.put(KEYS.desired(id), desiredVm((await loadConfig(path)).config, { memoryBytes: 16 * MiB }) as unknown as JsonValue);
  }

  /** The VM runs and its agent has published at least one heartbeat. */
  async function beating(vm: string): Promise<PairView> {
    return until(`${vm} running with a heartbeat`, 120_000, async () => {
      const v = pairView(vm, await readInventory(store));
      return v.status === 'running' && (v.primary?.progress?.beats ?? 0) > 0 ? v : undefined;
    });
  }

  async function close(): Promise<void> {
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await manager.stop();
    for (const a of agents) await a.close();
    await store.close();
    rmSync(tmp, { recursive: true, force: true });
  }

  return { spec, store, events, stopped, createVm, beating, close };
}

/** Runs `body` on a cluster of its own, closed afterwards whatever happens. */
async function withCluster(name: string, body: (c: Awaited<ReturnType<typeof cluster>>) => Promise<void>): Promise<void> {
  const c = await cluster(name);
  try {
    await body(c);
  } finally {
    await c.close();
  }
}

// Concurrent: the three scenarios wait out their failure intervals side by side, each on its own cluster.
describe.concurrent('HA VM monitoring', () => {
  it('resets a VM whose process stops reporting, never an idle healthy one, and stops at the reset limit', () => withCluster('heartbeat', async ({ spec, store, events, stopped, createVm, beating }) => {
    const set = await runCli(['cluster', 'ha', '--vm-monitoring', 'heartbeat', '--failure-interval', '10', '--min-uptime', '0', '--max-resets', '1', '--store', spec]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/VM monitoring: heartbeat — reset after 10 s without a heartbeat, once up 0 s; at most 1 reset\(s\) per 1 h/);
    await createVm('frozen', KVSERVER);
    await createVm('healthy', KVSERVER);
    const before = await beating('frozen');
    await beating('healthy');

    const pid = before.primary!.pid;
    stopped.push(pid);
    process.kill(pid, 'SIGSTOP');
    const reset = await until('the frozen VM reset', 120_000, async () => events.find((e) => e.kind === 'monitor-reset' && e.vm === 'frozen'));
    expect(reset.message).toMatch(/^VM monitoring resets frozen on a\d \(1 of at most 1 in the window\): no heartbeat from its VM process for \d+\.\d s; it is stopped and restarted from its disk$/);
    const after = await until('the frozen VM running again as a new process', 120_000, async () => {
      const v = pairView('frozen', await readInventory(store));
      return v.status === 'running' && v.primary!.incarnation !== before.primary!.incarnation ? v : undefined;
    });
    expect(after.primary!.pid).not.toBe(pid);
    const rec = (await store.get(KEYS.monitoring('frozen')))?.value as unknown as MonitorRecord;
    expect(rec.resets).toHaveLength(1);
    expect(rec.reason).toMatch(/^no heartbeat from its VM process/);
    const status = await runCli(['cluster', 'status', '--store', spec]);
    expect(status.stdout).toMatch(/frozen .*Running \(FT off\); reset 1 time\(s\) by VM monitoring, last .*: no heartbeat from its VM process/);

    // The limit: one reset per hour. Stopped again, it is reported and left alone.
    await beating('frozen');
    stopped.push(after.primary!.pid);
    process.kill(after.primary!.pid, 'SIGSTOP');
    const limit = await until('the reset limit reported', 120_000, async () => events.find((e) => e.kind === 'monitor-limit' && e.vm === 'frozen'));
    expect(limit.message).toMatch(/makes no progress \(no heartbeat from its VM process for .*\), but VM monitoring reset it 1 time\(s\) in the last 3600\.0 s: not reset again$/);
    expect(events.filter((e) => e.kind === 'monitor-reset' && e.vm === 'frozen')).toHaveLength(1);
    expect(events.filter((e) => e.vm === 'healthy' && (e.kind === 'monitor-reset' || e.kind === 'monitor-limit'))).toEqual([]);
    expect(pairView('healthy', await readInventory(store)).primary?.pid).toBeDefined();
    await runCli(['cluster', 'delete-vm', 'frozen', '--store', spec]);
    await runCli(['cluster', 'delete-vm', 'healthy', '--store', spec]);
  }));

  it('in progress mode, resets a guest whose instret stops while it reports, not one its timer keeps running', () => withCluster('progress', async ({ spec, store, events, createVm, beating }) => {
    const set = await runCli(['cluster', 'ha', '--vm-monitoring', 'progress', '--failure-interval', '10', '--min-uptime', '0', '--max-resets', '3', '--store', spec]);
    expect(set.code, set.stderr).toBe(0);
    await createVm('wedged', WEDGED);
    await createVm('ticking', TICKING);
    const wedged = await beating('wedged');
    const ticking = await beating('ticking');
    const reset = await until('the wedged guest reset', 120_000, async () => events.find((e) => e.kind === 'monitor-reset' && e.vm === 'wedged'));
    expect(reset.message).toMatch(/its instructions retired have not advanced for \d+\.\d s \(stuck at \d+\)/);
    await until('the wedged guest running again as a new process', 120_000, async () => {
      const v = pairView('wedged', await readInventory(store));
      return v.status === 'running' && v.primary!.incarnation !== wedged.primary!.incarnation ? true : undefined;
    });
    const now = pairView('ticking', await readInventory(store));
    expect(now.primary?.incarnation).toBe(ticking.primary!.incarnation);
    expect(BigInt(now.primary!.progress!.instret)).toBeGreaterThan(BigInt(ticking.primary!.progress!.instret));
    expect(events.filter((e) => e.vm === 'ticking' && e.kind.startsWith('monitor-'))).toEqual([]);
  }));

  it('in watchdog mode, resets a running guest that stopped petting its watchdog, not one that never pet it', () => withCluster('watchdog', async ({ spec, store, events, createVm, beating }) => {
    const set = await runCli(['cluster', 'ha', '--vm-monitoring', 'watchdog', '--failure-interval', '10', '--min-uptime', '0', '--max-resets', '3', '--store', spec]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/VM monitoring: watchdog — reset after 10 s without a heartbeat or the guest watchdog's pets \(once it pets it\)/);
    await createVm('quiet', PETS_THEN_TICKS);
    await createVm('unarmed', TICKING);
    const quiet = await beating('quiet');
    const unarmed = await beating('unarmed');
    const reset = await until('the guest that stopped petting reset', 120_000, async () => events.find((e) => e.kind === 'monitor-reset' && e.vm === 'quiet'));
    const stuck = /its guest has not pet its watchdog for \d+\.\d s \(3 pets, instret (\d+)\)/.exec(reset.message);
    expect(stuck, reset.message).not.toBeNull();
    // It ran on after its last pet: its instructions advanced, so progress mode would not have caught it.
    expect(BigInt(stuck![1]!)).toBeGreaterThan(BigInt(quiet.primary!.progress!.instret));
    const again = await until('the quiet guest running again as a new process', 120_000, async () => {
      const v = pairView('quiet', await readInventory(store));
      return v.status === 'running' && v.primary!.incarnation !== quiet.primary!.incarnation ? v : undefined;
    });
    expect(again.primary!.pid).not.toBe(quiet.primary!.pid);
    const now = pairView('unarmed', await readInventory(store));
    expect(now.primary?.incarnation).toBe(unarmed.primary!.incarnation);
    expect(now.primary!.progress!.watchdog).toBe('0');
    expect(events.filter((e) => e.vm === 'unarmed' && e.kind.startsWith('monitor-'))).toEqual([]);
  }));
});

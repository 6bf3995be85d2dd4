// `lockstep cluster`: the operator's view of and orders to the cluster, through the store only (the
// manager carries the orders out): init, status, create-vm, delete-vm, maintenance, events, ha; rule,
// group, apply and migrate are in cluster-drs.ts.
import { parseArgs } from 'node:util';
import {
  DEFAULT_MAX_FT_VCPUS,
  EventWriter,
  KEYS,
  MANAGER_ELECTION,
  Placement,
  MIN_FAILURE_INTERVAL_MS,
  RESTART_PRIORITIES,
  VM_MONITORING_MODES,
  buildSnapshot,
  clusterAdmission,
  desiredVm,
  hostGroupsOf,
  hostLoads,
  maintenanceOf,
  openStore,
  pairViews,
  parseHostRule,
  readEvents,
  readInventory,
  restartPriorityOf,
  type ClusterEvent,
  type ClusterStore,
  type HaSettings,
  type Inventory,
  type JsonValue,
  type MaintenanceRequest,
  type RestartPriority,
  type VmMonitoringMode,
} from '../cluster/index.js';
import { loadConfig } from '../config/index.js';
import { nonNegative, positive } from './agent.js';
import { applyCommand, describeRule, groupCommand, migrateCommand, ruleCommand } from './cluster-drs.js';
import { ftCommand } from './cluster-ft.js';
import { UsageError } from './args.js';
import { EXIT, type CommandIo } from './io.js';

export const CLUSTER_HELP = `Usage: lockstep cluster <command> --store dir:<path>|etcd:<url>[,<url>...] [options]

Commands:
  init                                     create the store (dir: only; every other command refuses a
                                           dir: path that is not a lockstep store yet)
  status [--json]                          hosts (live, maintenance, load, FT halves and vCPUs against
                                           the caps, VM halves), VMs and their pairs (primary, secondary,
                                           epoch, vLockstep interval, log bandwidth, restart priority,
                                           protection, why a VM is down), HA, hosts lost and why, rules,
                                           hard and soft rules broken, recent events
  create-vm <vm.json|vm.yaml> [options]    add a VM to the desired state; the manager places and starts it
      --mips <n>                 CPU demand, MIPS (default 100)
      --memory-mib <n>           memory demand, MiB (default: the guest's RAM)
      --log-bandwidth <B>        FT logging bandwidth, bytes/s (default 1000000)
      --vcpus <n>                virtual CPUs (default 1)
      --rule <type>:<group>      VM-host rule (must, must-not, should, should-not); repeatable
      --registered-host <host>   legacy mode: the host its primary powers on on
      --restart-priority <p>     HA restart priority: high, medium (default), low, disabled. After
                                   a host loss, VMs are restarted and re-protected highest first (a
                                   VM waits while one of a higher priority is being started); a
                                   disabled VM is not restarted (it is still re-protected, last)
      --replace                  replace an existing VM of the same id that runs nowhere (refused
                                   while any instance of it runs: delete-vm it and wait first)
                                 An FT VM with more --vcpus than every live host's FT vCPU cap
                                 (agent --max-ft-vcpus, default 8) is refused, and so is a VM HA
                                 admission control refuses (see ha).
  delete-vm <vm>                           remove a VM from the desired state; the manager stops it
  maintenance <host> on|off [--wait] [--timeout <s>]
                                           ask the manager to drain the host (secondaries moved off, then
                                           primaries live-migrated, both without a protection gap) or to
                                           take it back;
                                           --wait prints its progress (halves left, the blocking reason)
                                           and returns once it is done (default timeout 120 s). A host
                                           the cluster does not know is refused; off for a host that is no
                                           longer live (lost) removes its row
  rule add <id> --type <t> --vms <a,b,...> [--group <g>]... [--hard] [--replace]
                                           a placement rule: VM-VM (--type affinity|anti-affinity; soft
                                           unless --hard; binds FT primaries), VM-host (--type must,
                                           must-not, should, should-not --group <g>; binds both halves) or
                                           FT Metro (--type ft-split --group <site> --group <site>: each
                                           half in one of the sites, never both in one). Unknown VMs or
                                           groups are refused
  rule list [--json] | rule rm <id>
  group add <g> <host>... | group rm <g> [<host>...] | group list [--json]
                                           host groups in the store (besides an agent's --groups): a
                                           host is in every group that lists it
  apply [--moves <n>]                      manual automation: the leading manager applies the next n
                                           (default 1) load-balancing recommendations once settled (with
                                           automatic automation, the default, it applies them itself)
  migrate <vm> [--to <host>] [--secondary] [--wait] [--timeout <s>]
                                           live-migrate the VM's primary (--secondary: its secondary) to
                                           the host, or to the best valid one without --to, with no
                                           protection gap: the secondary follows a migrated primary, a
                                           new secondary is in lockstep before the old one leaves. A
                                           target that breaks a rule or cap is refused with the reason,
                                           and so is an FT VM that is not protected. A VM without FT is
                                           live-migrated itself (no restart; no --secondary). --wait
                                           returns once it runs (protected) there (default 120 s)
  ft <vm> test-failover|restart-secondary|suspend|resume [--wait] [--timeout <s>]
                                           vSphere's FT operations on the VM's primary, through its
                                           agent: hand over to the secondary (a new one is started),
                                           clone the secondary again, suspend FT (the secondary is
                                           dismissed and none is started; status says FT suspended) or
                                           resume it. Refused, nothing written, when the VM's state does
                                           not allow it (not protected, no secondary, not suspended);
                                           --wait returns once done (default timeout 120 s)
  events [--limit <n>] [--json]            the cluster's recent events (default 20), one line each;
                                           --json for every event whole
  ha [--host-failures <n>] [--json]        the HA settings and the failover capacity; with options,
                                           change them. --host-failures: HA admission control, host
                                           failures the cluster tolerates (default 0: off). A VM is not
                                           powered on (create-vm refuses it; the manager does not start
                                           it) unless every VM of the desired state, it included, could be
                                           restarted and every FT VM re-protected after the loss of that
                                           many hosts
      --vm-monitoring off|heartbeat|progress|watchdog
                                 VM monitoring (default off): reset — stop and restart from its disk —
                                   a VM whose heartbeat (its process's report, every second) stops,
                                   or with progress also one whose instructions retired stop
                                   advancing (for guests that always run, e.g. with a timer tick),
                                   or with watchdog also one whose guest pets its watchdog (a
                                   32-bit store at 0x00102000) and then stops (guests that never
                                   pet it are judged by the heartbeat alone)
      --failure-interval <s>     without a heartbeat (progress, pets) this long: reset (default 30, min 10)
      --min-uptime <s>           not judged before it has run this long (default 120)
      --max-resets <n>           at most n resets of a VM (default 3) …
      --reset-window <s>         … within this window (default 3600)

Every command takes --store. Exit status: 0 done; 64 usage or configuration error (a dir: store
that does not exist); 65 a refused order (unknown host, VM, rule or group, a VM that exists or runs,
too many vCPUs, not enough failover capacity, a migration the rules refuse) or damaged records in the
store; 69 the store does not answer; 75 --wait ran out of time; 77 the store refused the credentials.
`;

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function time(t: number): string {
  return new Date(t).toISOString().replace('T', ' ').replace('Z', '');
}

/** Longest message shown on an event's line; `--json` gives the whole. */
const EVENT_TEXT = 200;

/** One line per event: its first line (an unplaceable's host-by-host detail is in `--json`), cut short. */
function eventLine(e: ClusterEvent): string {
  const first = e.message.split('\n', 1)[0]!;
  const more = first.length > EVENT_TEXT || first.length < e.message.length;
  return `${time(e.t)}  ${e.by}${e.token !== undefined ? `@${e.token}` : ''}  ${e.kind}${e.vm !== undefined ? ` ${e.vm}` : ''}${e.host !== undefined ? ` [${e.host}]` : ''}: ${first.slice(0, EVENT_TEXT)}${more ? ' …' : ''}`;
}

/** `2/4`; a cap of 0 is no limit. */
function ofCap(n: number, cap: number): string {
  return `${n}/${cap === 0 ? '∞' : cap}`;
}

/** Everything `status` shows, as plain data. */
export async function clusterStatus(store: ClusterStore, eventLimit = 10) {
  const inv = await readInventory(store);
  const leader = await store.leader(MANAGER_ELECTION).catch(() => null);
  const views = pairViews(inv);
  const loads = hostLoads(inv, views);
  // A host that is not live is listed while it is (or is asked to be) in maintenance mode; a record of
  // maintenance `off` for a host that is gone is history, not a host.
  const hostIds = [...new Set([...inv.hosts.keys(), ...inv.lostHosts.keys(), ...inv.maintenance.keys(), ...inv.requests.keys()])]
    .filter((id) => inv.hosts.has(id) || inv.lostHosts.has(id) || maintenanceOf(inv, id) !== 'off' || inv.requests.get(id)?.on === true)
    .sort();
  const hosts = hostIds.map((id) => {
    const h = inv.hosts.get(id);
    const l = loads.get(id);
    return {
      id,
      live: h !== undefined,
      maintenance: maintenanceOf(inv, id),
      maintenanceRequested: inv.requests.get(id)?.on ?? false,
      compatId: h?.compatId ?? null,
      api: h?.api ?? null,
      capacity: h?.capacity ?? null,
      groups: hostGroupsOf(inv, id),
      load: l !== undefined ? { cpu: l.cpu, memory: l.memory } : null,
      halves: l?.halves ?? [],
      lost: h === undefined ? (inv.lostHosts.get(id) ?? null) : null,
      ft: h === undefined ? null : { vms: l?.ftVms ?? 0, maxVms: h.maxFtVms, vcpus: l?.ftVcpus ?? 0, maxVcpus: typeof h.maxFtVcpus === 'number' ? h.maxFtVcpus : DEFAULT_MAX_FT_VCPUS },
    };
  });
  const half = (r: (typeof views)[number]['primary']) =>
    r === undefined ? null : { host: r.host, epoch: r.epoch, state: r.state, protected: r.protected, status: r.status, pid: r.pid, listen: r.listen, stats: r.stats };
  const vms = views.map((v) => ({
    id: v.vm,
    desired: v.desired !== undefined,
    ft: v.desired?.ft ?? null,
    status: v.status,
    protected: v.protected,
    text: v.text,
    epoch: v.epoch,
    primary: half(v.primary),
    secondary: half(v.secondary),
    others: v.others.map((r) => ({ host: r.host, role: r.role, state: r.state, epoch: r.epoch, hostLive: inv.hosts.has(r.host) })),
    demand: v.desired?.demand ?? null,
    rules: v.desired?.rules ?? [],
    restartPriority: v.desired !== undefined ? restartPriorityOf(v.desired.restartPriority) : null,
    monitoring: inv.monitoring.get(v.vm) ?? null,
  }));
  let audit: { hard: string[]; soft: string[] } | null = null;
  try {
    const built = buildSnapshot(inv, new Map(views.map((v) => [v.vm, v])));
    const a = new Placement(built.snapshot).audit();
    audit = { hard: a.hard.map((x) => `${x.role} of ${x.vm} on ${x.host}: ${x.rejection.message}`), soft: a.soft.map((x) => `${x.role} of ${x.vm} on ${x.violation.host}: ${x.violation.message}`) };
  } catch (err) {
    audit = { hard: [`cannot audit: ${(err as Error).message}`], soft: [] };
  }
  let ha: { hostFailures: number; ok: boolean; reason: string; slotsAfterFailure: number; halvesNeeded: number; lost: string[] } | { hostFailures: number; error: string };
  try {
    const a = clusterAdmission(inv);
    ha = { hostFailures: a.hostFailures, ok: a.ok, reason: a.reason, slotsAfterFailure: a.slotsAfterFailure, halvesNeeded: a.halvesNeeded, lost: a.lost };
  } catch (err) {
    ha = { hostFailures: inv.ha.hostFailures, error: (err as Error).message };
  }
  // A VM that went down with a host: say which, when, and why the host is gone. One that runs on a host
  // cut off from the store (its datastore heartbeat lists it) is not down: say where it runs unseen.
  for (const v of vms) {
    if (v.status !== 'down' || (inv.instances.get(v.id) ?? []).length > 0) continue;
    const unseen = [...inv.lostHosts.values()].find((l) => l.partitioned?.halves.some((x) => x.startsWith(`${v.id}(`)));
    if (unseen !== undefined) {
      v.text = `Running unseen on ${unseen.host}: that host is cut off from the store since ${time(unseen.partitioned!.since)}, and its datastore heartbeat lists ${v.id}; HA does not restart it while that goes on`;
      continue;
    }
    const lost = [...inv.lostHosts.values()].sort((a, b) => b.since - a.since).find((l) => l.halves.some((x) => x.startsWith(`${v.id}(`)));
    if (lost === undefined) continue;
    const next = inv.failures.has(v.id) ? v.text.replace(/^Down: /, 'then ') : v.restartPriority === 'disabled' ? 'restart priority disabled: HA does not restart it' : 'HA restarts it';
    v.text = `Down: lost with host ${lost.host} at ${time(lost.since)} (${lost.reason}); ${next}`;
  }
  // A VM that runs nowhere and has not failed to start: say so when admission control is what holds it.
  if (inv.ha.hostFailures > 0) {
    for (const v of vms) {
      const d = inv.desired.get(v.id);
      if (v.status !== 'down' || d === undefined || inv.failures.has(v.id) || (inv.instances.get(v.id) ?? []).length > 0 || v.text.startsWith('Down: lost with host')) continue;
      try {
        const a = clusterAdmission(inv, d);
        if (!a.ok) v.text = `Down: not powered on — ${a.reason}`;
      } catch {
        // an invalid snapshot is reported by the audit below
      }
    }
  }
  return {
    leader: leader === null ? null : { manager: leader.candidateId, token: leader.token },
    ha,
    vmMonitoring: inv.ha.vmMonitoring,
    fencedBy: inv.epoch?.value ?? null,
    hosts,
    vms,
    rules: inv.rules,
    audit,
    events: inv.events.slice(-eventLimit),
  };
}

async function status(store: ClusterStore, json: boolean, io: CommandIo): Promise<number> {
  const s = await clusterStatus(store);
  if (json) {
    io.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return EXIT.ok;
  }
  const live = s.hosts.filter((h) => h.live).length;
  // "Protected" is an FT word: count it against the FT VMs only.
  const ft = s.vms.filter((v) => v.ft === true);
  const prot = ft.filter((v) => v.protected).length;
  io.stdout.write(
    `cluster: ${live} of ${s.hosts.length} hosts live, ${s.vms.length} VMs (${ft.length} FT, ${prot} of them protected); leader ${s.leader === null ? 'none' : `${s.leader.manager} (token ${s.leader.token})`}\n\n`,
  );
  io.stdout.write(
    table([
      ['HOST', 'LIVE', 'MAINTENANCE', 'CPU', 'MEM', 'FT VMS', 'FT VCPUS', 'GROUPS', 'COMPAT', 'HALVES'],
      ...s.hosts.map((h) => [
        h.id,
        h.live ? 'yes' : h.lost?.partitioned ? 'partitioned' : 'no',
        h.maintenance === 'off' && h.maintenanceRequested ? 'requested' : h.maintenance,
        h.load !== null ? pct(h.load.cpu) : '-',
        h.load !== null ? pct(h.load.memory) : '-',
        h.ft !== null ? ofCap(h.ft.vms, h.ft.maxVms) : '-',
        h.ft !== null ? ofCap(h.ft.vcpus, h.ft.maxVcpus) : '-',
        h.groups.join(',') || '-',
        h.compatId ?? '-',
        h.halves.join(' ') || '-',
      ]),
    ]),
  );
  io.stdout.write('\n');
  io.stdout.write(
    table([
      ['VM', 'PRIMARY', 'SECONDARY', 'EPOCH', 'INTERVAL', 'LOG', 'RESTART', 'RULES', 'STATUS'],
      ...s.vms.map((v) => [
        v.id,
        v.primary?.host ?? '-',
        v.secondary?.host ?? '-',
        v.epoch === null ? '-' : String(v.epoch),
        // The vLockstep interval (the secondary's lag) and the log bandwidth, from the primary's figures.
        v.ft === true && v.primary?.stats != null ? `${v.primary.stats.lagMs.toFixed(1)} ms` : '-',
        v.ft === true && v.primary?.stats != null ? `${(v.primary.stats.logBandwidth / 1e6).toFixed(2)} MB/s` : '-',
        v.restartPriority ?? '-',
        v.rules.map((r) => `${r.type}:${r.hostGroup}`).join(',') || '-',
        `${v.text}${v.monitoring !== null ? `; reset ${v.monitoring.resets.length} time(s) by VM monitoring, last ${time(v.monitoring.resets[v.monitoring.resets.length - 1] ?? 0)}: ${v.monitoring.reason}` : ''}${v.others.length > 0 ? ` (also: ${v.others.map((o) => `${o.role}@${o.host}${o.hostLive ? '' : ' (dead host)'}`).join(', ')})` : ''}`,
      ]),
    ]),
  );
  io.stdout.write(`\n${haLine(s.ha)}\n${monitoringLine(s.vmMonitoring)}\n`);
  const lost = s.hosts.filter((h) => h.lost !== null);
  if (lost.length > 0) {
    io.stdout.write('\nhosts lost:\n');
    for (const h of lost) {
      const p = h.lost!.partitioned;
      if (p) io.stdout.write(`  ${h.id}: partitioned since ${time(p.since)} (cut off from the store, not dead): ${h.lost!.reason}; its datastore heartbeat lists ${p.halves.length > 0 ? p.halves.join(' ') : 'no VM half'}, not restarted elsewhere\n`);
      else io.stdout.write(`  ${h.id}: gone since ${time(h.lost!.since)}: ${h.lost!.reason}${h.lost!.halves.length > 0 ? `; it ran ${h.lost!.halves.join(' ')}` : ''} (lockstep cluster maintenance ${h.id} off forgets it)\n`);
    }
  }
  if (s.rules.length > 0) {
    io.stdout.write('\nrules:\n');
    for (const r of s.rules) io.stdout.write(`  ${describeRule(r)}\n`);
  }
  if (s.audit !== null && s.audit.hard.length > 0) {
    io.stdout.write('\nhard rules broken:\n');
    for (const m of s.audit.hard) io.stdout.write(`  ${m}\n`);
  }
  if (s.audit !== null && s.audit.soft.length > 0) {
    io.stdout.write('\nsoft rules broken (preferences; balancing repairs them when it can):\n');
    for (const m of s.audit.soft) io.stdout.write(`  ${m}\n`);
  }
  if (s.events.length > 0) {
    io.stdout.write('\nrecent events:\n');
    for (const e of s.events) io.stdout.write(`  ${eventLine(e)}\n`);
  }
  return EXIT.ok;
}

/** The status line of HA admission control. */
function haLine(ha: Awaited<ReturnType<typeof clusterStatus>>['ha']): string {
  if ('error' in ha) return `HA admission control: cannot compute (${ha.error})`;
  if (ha.hostFailures === 0) return 'HA admission control: off (lockstep cluster ha --host-failures <n> turns it on)';
  return `HA admission control: ${ha.ok ? 'ok' : 'NOT MET'} — ${ha.reason.replace(/^HA admission control /, '')}`;
}

function restartPriorityArg(text: string): RestartPriority {
  if (!RESTART_PRIORITIES.includes(text as RestartPriority)) throw new UsageError(`--restart-priority: must be one of ${RESTART_PRIORITIES.join(', ')}, got '${text}'`);
  return text as RestartPriority;
}

async function createVm(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      mips: { type: 'string' },
      'memory-mib': { type: 'string' },
      'log-bandwidth': { type: 'string' },
      vcpus: { type: 'string' },
      rule: { type: 'string', multiple: true },
      'registered-host': { type: 'string' },
      'restart-priority': { type: 'string' },
      replace: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('create-vm: expected one configuration file');
  const loaded = await loadConfig(positionals[0]!);
  for (const w of loaded.warnings) io.stderr.write(`WARNING: ${w}\n`);
  const d = desiredVm(loaded.config, {
    ...(values.mips !== undefined ? { mips: positive('mips', values.mips, 100, false) } : {}),
    ...(values['memory-mib'] !== undefined ? { memoryBytes: positive('memory-mib', values['memory-mib'], 1) * 2 ** 20 } : {}),
    ...(values['log-bandwidth'] !== undefined ? { logBandwidth: positive('log-bandwidth', values['log-bandwidth'], 1) } : {}),
    ...(values.vcpus !== undefined ? { vcpus: positive('vcpus', values.vcpus, 1) } : {}),
    rules: (values.rule ?? []).map(parseHostRule),
    ...(values['registered-host'] !== undefined ? { registeredHost: values['registered-host'] } : {}),
    ...(values['restart-priority'] !== undefined ? { restartPriority: restartPriorityArg(values['restart-priority']) } : {}),
  });
  const key = KEYS.desired(d.id);
  const inv = await readInventory(store);
  if (d.ft) {
    // The per-host FT vCPU cap: a VM over every host's cap would be accepted and unplaceable forever.
    const caps = [...inv.hosts.values()].map((h) => (typeof h.maxFtVcpus === 'number' ? h.maxFtVcpus : DEFAULT_MAX_FT_VCPUS));
    const fits = caps.length === 0 ? d.vcpus <= DEFAULT_MAX_FT_VCPUS : caps.some((c) => c === 0 || d.vcpus <= c);
    if (!fits) {
      const largest = caps.length === 0 ? DEFAULT_MAX_FT_VCPUS : Math.max(...caps);
      io.stderr.write(
        `lockstep cluster create-vm: VM ${d.id} is an FT VM with ${d.vcpus} vCPUs, more than the FT vCPU cap of ${caps.length === 0 ? `a host (default ${DEFAULT_MAX_FT_VCPUS}; no host is live)` : `every live host (the largest is ${largest})`}: no host could run either half. Use --vcpus ${largest} or fewer, or raise the cap (lockstep agent --max-ft-vcpus)\n`,
      );
      return EXIT.dataErr;
    }
  }
  if (inv.ha.hostFailures > 0) {
    const a = clusterAdmission(inv, d);
    if (!a.ok) {
      io.stderr.write(`lockstep cluster create-vm: VM ${d.id} refused: ${a.reason}. Add hosts, lower the VM's demand, or change the policy (lockstep cluster ha --host-failures <n>)\n`);
      return EXIT.dataErr;
    }
  }
  if (values.replace) {
    // Replacing the record of a running VM would change nothing that runs (the manager starts from the
    // desired state, it does not restart what runs): refuse rather than say it was done.
    const running = (inv.instances.get(d.id) ?? []).filter((r) => inv.hosts.has(r.host));
    if (running.length > 0) {
      io.stderr.write(
        `lockstep cluster create-vm: VM ${d.id} runs (${running.map((r) => `${r.role} on ${r.host}`).join(', ')}); --replace only replaces a VM that runs nowhere. Run lockstep cluster delete-vm ${d.id}, wait until status no longer lists it, then create-vm again\n`,
      );
      return EXIT.dataErr;
    }
    const cur = await store.get(key);
    if (!(await store.compareAndSet(key, cur?.revision ?? null, d as unknown as JsonValue))) {
      io.stderr.write(`lockstep cluster create-vm: VM ${d.id} changed while it was being replaced; try again\n`);
      return EXIT.dataErr;
    }
  } else if (!(await store.compareAndSet(key, null, d as unknown as JsonValue))) {
    io.stderr.write(`lockstep cluster create-vm: VM ${d.id} already exists; use --replace to replace it (only while it runs nowhere)\n`);
    return EXIT.dataErr;
  }
  await new EventWriter(store, 'cli').write({ kind: 'vm-created', vm: d.id, message: `VM ${d.id} ${values.replace ? 'replaced' : 'created'} (${d.ft ? 'FT' : 'not FT'}, ${d.demand.mips} MIPS, ${d.demand.memoryBytes / 2 ** 20} MiB${d.rules.length > 0 ? `, rules ${d.rules.map((r) => `${r.type}:${r.hostGroup}`).join(',')}` : ''})` });
  io.stdout.write(`VM ${d.id} ${values.replace ? 'replaced' : 'created'}; the manager places and starts it\n`);
  return EXIT.ok;
}

async function deleteVm(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new UsageError('delete-vm: expected a VM id');
  const vm = positionals[0]!;
  if (!(await store.delete(KEYS.desired(vm)))) {
    io.stderr.write(`lockstep cluster delete-vm: no VM ${vm}\n`);
    return EXIT.dataErr;
  }
  await new EventWriter(store, 'cli').write({ kind: 'vm-deleted', vm, message: `VM ${vm} deleted from the desired state` });
  io.stdout.write(`VM ${vm} deleted; the manager stops its halves\n`);
  return EXIT.ok;
}

async function maintenance(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { wait: { type: 'boolean' }, timeout: { type: 'string' } } });
  if (positionals.length !== 2 || (positionals[1] !== 'on' && positionals[1] !== 'off')) throw new UsageError('maintenance: expected <host> on|off');
  const [host, state] = positionals as [string, 'on' | 'off'];
  const on = state === 'on';
  const inv = await readInventory(store);
  const live = inv.hosts.has(host);
  const known = live || inv.maintenance.has(host) || inv.requests.has(host) || inv.lostHosts.has(host);
  if (!known) {
    // A typo must not become a host: nothing is recorded.
    const hosts = [...inv.hosts.keys()].sort();
    io.stderr.write(`lockstep cluster maintenance: no host ${host} in the cluster (live hosts: ${hosts.length > 0 ? hosts.join(', ') : 'none'}); nothing recorded\n`);
    return EXIT.dataErr;
  }
  if (!on && !live) {
    // A host that is gone: taking it out of maintenance forgets it (its request goes; the manager
    // records off and the row disappears from status).
    await store.delete(KEYS.maintenanceRequest(host));
    await store.delete(KEYS.lostHost(host));
    await new EventWriter(store, 'cli').write({ kind: 'maintenance-requested', host, message: `maintenance mode off requested for ${host}, which is not live: forgotten` });
    io.stdout.write(`maintenance mode off requested for ${host}; it is not live, so it is no longer listed\n`);
    return EXIT.ok;
  }
  const req: MaintenanceRequest = { on, at: Date.now(), by: 'cli' };
  await store.put(KEYS.maintenanceRequest(host), req as unknown as JsonValue);
  await new EventWriter(store, 'cli').write({ kind: 'maintenance-requested', host, message: `maintenance mode ${state} requested for ${host}` });
  io.stdout.write(`maintenance mode ${state} requested for ${host}\n`);
  if (!values.wait) return EXIT.ok;
  const timeoutMs = positive('timeout', values.timeout, 120, false) * 1000;
  const deadline = performance.now() + timeoutMs;
  let last = '';
  // Bounded: one look every 200 ms until the deadline.
  while (performance.now() < deadline) {
    const inv = await readInventory(store);
    const m = maintenanceOf(inv, host);
    const vms = pairViews(inv).filter((v) => v.desired !== undefined);
    const settled = vms.every((v) => v.status === 'protected' || !v.desired!.ft);
    // Progress, printed when it changes: what is left on the host, and why it cannot leave.
    const line = maintenanceProgress(inv, host, on, req.at);
    if (line !== last) io.stdout.write(`${line}\n`);
    last = line;
    if (on ? m === 'in' && settled : m === 'off') {
      io.stdout.write(on ? `${host} is in maintenance mode; ${vms.length} VM(s) ${settled ? 'protected elsewhere' : ''}\n` : `${host} is back in service\n`);
      return EXIT.ok;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  io.stderr.write(`lockstep cluster maintenance: ${host} did not ${on ? 'enter' : 'leave'} maintenance mode within ${timeoutMs / 1000} s (last: ${last}; is a manager running? see lockstep cluster status)\n`);
  return EXIT.budget;
}

/** One line of `maintenance --wait`: the host's state, the halves left on it, and the latest blocking reason. */
function maintenanceProgress(inv: Inventory, host: string, on: boolean, since: number): string {
  const m = maintenanceOf(inv, host);
  if (!on) return `${host}: maintenance ${m}`;
  const views = pairViews(inv);
  const left = hostLoads(inv, views).get(host)?.halves ?? [];
  const unprotected = views.filter((v) => v.desired?.ft === true && v.status !== 'protected').map((v) => v.vm);
  const blocked = [...inv.events].reverse().find((e) => e.host === host && e.kind === 'maintenance-blocked' && e.t >= since);
  return `${host}: maintenance ${m === 'off' ? 'requested' : m}; ${left.length} half(s) left${left.length > 0 ? ` (${left.join(' ')})` : ''}; ${unprotected.length === 0 ? 'every FT VM protected' : `not protected: ${unprotected.join(', ')}`}${blocked !== undefined ? `; blocked: ${blocked.message.split('\n', 1)[0]}` : ''}`;
}

async function events(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({ args, options: { limit: { type: 'string' }, json: { type: 'boolean' } } });
  const list = await readEvents(store, positive('limit', values.limit, 20));
  if (values.json) io.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
  else for (const e of list) io.stdout.write(`${eventLine(e)}\n`);
  return EXIT.ok;
}

/** `30 s`, `1 h`. */
function seconds(ms: number): string {
  return ms > 0 && ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : `${ms / 1000} s`;
}

function monitoringLine(m: HaSettings['vmMonitoring']): string {
  if (m.mode === 'off') return 'VM monitoring: off (lockstep cluster ha --vm-monitoring heartbeat|progress|watchdog turns it on)';
  const without = { heartbeat: 'a heartbeat', progress: 'a heartbeat or progress', watchdog: "a heartbeat or the guest watchdog's pets (once it pets it)" }[m.mode];
  return `VM monitoring: ${m.mode} — reset after ${seconds(m.failureIntervalMs)} without ${without}, once up ${seconds(m.minUptimeMs)}; at most ${m.maxResets} reset(s) per ${seconds(m.resetWindowMs)}`;
}

async function haCommand(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'host-failures': { type: 'string' },
      'vm-monitoring': { type: 'string' },
      'failure-interval': { type: 'string' },
      'min-uptime': { type: 'string' },
      'max-resets': { type: 'string' },
      'reset-window': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  let inv = await readInventory(store);
  const mode = values['vm-monitoring'];
  if (mode !== undefined && !VM_MONITORING_MODES.includes(mode as VmMonitoringMode)) throw new UsageError(`--vm-monitoring: must be one of ${VM_MONITORING_MODES.join(', ')}, got '${mode}'`);
  const m = inv.ha.vmMonitoring;
  const failureIntervalMs = values['failure-interval'] !== undefined ? positive('failure-interval', values['failure-interval'], 30, false) * 1000 : m.failureIntervalMs;
  if (failureIntervalMs < MIN_FAILURE_INTERVAL_MS) throw new UsageError(`--failure-interval: at least ${MIN_FAILURE_INTERVAL_MS / 1000} s (agents publish a VM's heartbeat every 5 s), got ${failureIntervalMs / 1000}`);
  const monitoring = {
    mode: (mode as VmMonitoringMode | undefined) ?? m.mode,
    failureIntervalMs: Math.round(failureIntervalMs),
    minUptimeMs: values['min-uptime'] !== undefined ? Math.round(Number(values['min-uptime']) * 1000) : m.minUptimeMs,
    maxResets: values['max-resets'] !== undefined ? nonNegative('max-resets', values['max-resets'], 3) : m.maxResets,
    resetWindowMs: values['reset-window'] !== undefined ? Math.round(positive('reset-window', values['reset-window'], 3600, false) * 1000) : m.resetWindowMs,
  };
  if (!Number.isSafeInteger(monitoring.minUptimeMs) || monitoring.minUptimeMs < 0) throw new UsageError(`--min-uptime: must be a non-negative number of seconds, got '${values['min-uptime']}'`);
  const changes = ['host-failures', 'vm-monitoring', 'failure-interval', 'min-uptime', 'max-resets', 'reset-window'].filter((k) => values[k as keyof typeof values] !== undefined);
  if (changes.length > 0) {
    const next: HaSettings = {
      ...inv.ha,
      hostFailures: values['host-failures'] !== undefined ? nonNegative('host-failures', values['host-failures'], 0) : inv.ha.hostFailures,
      vmMonitoring: monitoring,
      updatedAt: Date.now(),
      by: 'cli',
    };
    await store.put(KEYS.haSettings, next as unknown as JsonValue);
    await new EventWriter(store, 'cli').write({
      kind: 'ha-settings',
      message: `HA settings changed: host failures tolerated ${inv.ha.hostFailures} → ${next.hostFailures}; ${monitoringLine(next.vmMonitoring)}`,
    });
    inv = await readInventory(store);
  }
  const a = clusterAdmission(inv);
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ settings: inv.ha, admission: a }, null, 2)}\n`);
    return EXIT.ok;
  }
  io.stdout.write(`host failures tolerated: ${inv.ha.hostFailures}${inv.ha.hostFailures === 0 ? ' (admission control off)' : ''}\n`);
  io.stdout.write(`${monitoringLine(inv.ha.vmMonitoring)}\n`);
  if (a.hostFailures > 0) {
    io.stdout.write(`${haLine({ hostFailures: a.hostFailures, ok: a.ok, reason: a.reason, slotsAfterFailure: a.slotsAfterFailure, halvesNeeded: a.halvesNeeded, lost: a.lost })}\n`);
    io.stdout.write(`slots per host: ${a.hosts.map((h) => `${h.host} ${h.slots}${h.ftSlots !== h.slots ? ` (FT ${h.ftSlots})` : ''}`).join(', ') || 'no host in service'}\n`);
  }
  return EXIT.ok;
}

export async function clusterCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout.write(CLUSTER_HELP);
    return sub === undefined ? EXIT.usage : EXIT.ok;
  }
  // --store and --json are common to every subcommand; the rest is the subcommand's.
  const common = parseArgs({ args: rest, allowPositionals: true, strict: false, options: { store: { type: 'string' }, json: { type: 'boolean' } } });
  const storeSpec = common.values.store;
  if (typeof storeSpec !== 'string') throw new UsageError('--store dir:<path> or --store etcd:<url> is required');
  const own: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--store') i++;
    else if (a.startsWith('--store=')) continue;
    else if (a === '--json' && !['events', 'status', 'ha', 'rule', 'group'].includes(sub)) continue;
    else own.push(a);
  }
  const store = await openStore(storeSpec, { create: sub === 'init' });
  try {
    switch (sub) {
      case 'init': {
        parseArgs({ args: own, options: {} });
        io.stdout.write(`store ${storeSpec} is ready\n`);
        return EXIT.ok;
      }
      case 'status': {
        const { values } = parseArgs({ args: own, options: { json: { type: 'boolean' } } });
        return await status(store, values.json === true, io);
      }
      case 'create-vm':
        return await createVm(store, own, io);
      case 'delete-vm':
        return await deleteVm(store, own, io);
      case 'maintenance':
        return await maintenance(store, own, io);
      case 'events':
        return await events(store, own, io);
      case 'ha':
        return await haCommand(store, own, io);
      case 'rule':
        return await ruleCommand(store, own, io);
      case 'group':
        return await groupCommand(store, own, io);
      case 'apply':
        return await applyCommand(store, own, io);
      case 'migrate':
        return await migrateCommand(store, own, io);
      case 'ft':
        return await ftCommand(store, own, io);
      default:
        throw new UsageError(`unknown cluster command '${sub}' (init, status, create-vm, delete-vm, maintenance, events, ha, rule, group, apply, migrate, ft)`);
    }
  } finally {
    await store.close();
  }
}

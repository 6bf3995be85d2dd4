// `lockstep cluster rule|group|apply|migrate`: the DRS side of the cluster from the command line — VM-VM
// and VM-host rules, host groups, applying the balancer's recommendations in manual mode, and the
// operator's live migrations. Parses, checks against the store and writes it; the leading manager
// carries the rules and requests out.
import { parseArgs } from 'node:util';
import {
  EventWriter,
  KEYS,
  buildSnapshot,
  checkMigration,
  hostGroupsOf,
  pairViews,
  readInventory,
  type ApplyRequest,
  type MigrateRequest,
  type ClusterStore,
  type HostGroup,
  type Inventory,
  type JsonValue,
  type PlacementRule,
  type VmHostRuleType,
} from '../cluster/index.js';
import { positive } from './agent.js';
import { UsageError } from './args.js';
import { waitOnStore } from './cluster-wait.js';
import { EXIT, type CommandIo } from './io.js';

/** Rule and group names: what a store key segment may hold. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const VM_HOST_TYPES: readonly VmHostRuleType[] = ['must', 'must-not', 'should', 'should-not'];

function name(what: string, text: string | undefined): string {
  if (text === undefined || !NAME.test(text)) throw new UsageError(`${what}: expected a name of 1-64 characters [A-Za-z0-9._-], got '${text ?? ''}'`);
  return text;
}

/** Every group a host is in, by the agents' --groups or the store's groups. */
function knownGroups(inv: Inventory): Set<string> {
  const out = new Set<string>(inv.groups.keys());
  for (const h of inv.hosts.keys()) for (const g of hostGroupsOf(inv, h)) out.add(g);
  return out;
}

/** `rule-1: kv1,kv2 anti-affinity (hard)`, `r2: kv1 must rack-1`. */
export function describeRule(r: PlacementRule): string {
  if (r.kind === 'vm-host') return `${r.id}: ${r.vms.join(',')} ${r.type} ${r.hostGroup}`;
  if (r.kind === 'ft-split') return `${r.id}: ${r.vms.join(',')} ft-split ${r.hostGroups.join('|')}`;
  return `${r.id}: ${r.vms.join(',')} ${r.type}${r.hard ? ' (hard)' : ' (soft)'}`;
}

/** `rule add|list|rm`. */
export async function ruleCommand(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { type: { type: 'string' }, vms: { type: 'string' }, group: { type: 'string', multiple: true }, hard: { type: 'boolean' }, replace: { type: 'boolean' }, json: { type: 'boolean' } },
  });
  const [verb, idText] = positionals;
  const inv = await readInventory(store);
  if (verb === 'list') {
    if (values.json) io.stdout.write(`${JSON.stringify(inv.rules, null, 2)}\n`);
    else for (const r of [...inv.rules].sort((a, b) => (a.id < b.id ? -1 : 1))) io.stdout.write(`${describeRule(r)}\n`);
    return EXIT.ok;
  }
  if (verb === 'rm') {
    const id = name('rule rm', idText);
    if (!(await store.delete(KEYS.rule(id)))) {
      io.stderr.write(`lockstep cluster rule rm: no rule ${id}${inv.rules.length > 0 ? ` (rules: ${inv.rules.map((r) => r.id).sort().join(', ')})` : ''}\n`);
      return EXIT.dataErr;
    }
    await new EventWriter(store, 'cli').write({ kind: 'rule-removed', message: `rule ${id} removed` });
    io.stdout.write(`rule ${id} removed\n`);
    return EXIT.ok;
  }
  if (verb !== 'add' || positionals.length !== 2) throw new UsageError('rule: expected add <id> --type <t> --vms <a,b> [--group <g>] [--hard], list, or rm <id>');
  const id = name('rule add', idText);
  const type = values.type;
  const vms = (values.vms ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (vms.length === 0) throw new UsageError('rule add: --vms <vm,vm,...> is required');
  if (new Set(vms).size !== vms.length) throw new UsageError(`rule add: --vms lists a VM twice (${vms.join(',')})`);
  let rule: PlacementRule;
  const groups = values.group ?? [];
  if (type === 'affinity' || type === 'anti-affinity') {
    if (groups.length > 0) throw new UsageError('rule add: --group is for VM-host and ft-split rules');
    if (vms.length < 2) throw new UsageError(`rule add: a VM-VM rule needs at least two VMs, got ${vms.join(',')}`);
    rule = { kind: 'vm-vm', id, type, hard: values.hard === true, vms };
  } else if (VM_HOST_TYPES.includes(type as VmHostRuleType)) {
    if (values.hard) throw new UsageError(`rule add: --hard is for VM-VM rules; ${type} is ${type === 'must' || type === 'must-not' ? 'hard' : 'soft'} by its type`);
    if (groups.length !== 1) throw new UsageError(`rule add: a VM-host rule takes one --group, got ${groups.length}`);
    rule = { kind: 'vm-host', id, type: type as VmHostRuleType, vms, hostGroup: name('--group', groups[0]) };
  } else if (type === 'ft-split') {
    if (values.hard) throw new UsageError('rule add: --hard is for VM-VM rules; ft-split is hard by its type');
    if (groups.length < 2 || new Set(groups).size !== groups.length) throw new UsageError(`rule add: ft-split takes two or more different --group (the sites), got ${groups.join(', ') || 'none'}`);
    rule = { kind: 'ft-split', id, vms, hostGroups: groups.map((g) => name('--group', g)) };
  } else {
    throw new UsageError(`rule add: --type must be affinity, anti-affinity, ${VM_HOST_TYPES.join(', ')}, ft-split; got '${type ?? ''}'`);
  }
  // Refused, with nothing written, when it names what the cluster does not know: a typo is not a rule.
  const unknown = vms.filter((vm) => !inv.desired.has(vm));
  if (unknown.length > 0) {
    io.stderr.write(`lockstep cluster rule add: no VM ${unknown.join(', ')} in the cluster (VMs: ${[...inv.desired.keys()].sort().join(', ') || 'none'}); nothing written\n`);
    return EXIT.dataErr;
  }
  const missing = (rule.kind === 'vm-host' ? [rule.hostGroup] : rule.kind === 'ft-split' ? rule.hostGroups : []).filter((g) => !knownGroups(inv).has(g));
  if (missing.length > 0) {
    io.stderr.write(`lockstep cluster rule add: no host group ${missing.join(', ')} (groups: ${[...knownGroups(inv)].sort().join(', ') || 'none'}; lockstep cluster group add defines one); nothing written\n`);
    return EXIT.dataErr;
  }
  const key = KEYS.rule(id);
  const cur = await store.get(key);
  if (cur !== null && !values.replace) {
    io.stderr.write(`lockstep cluster rule add: rule ${id} exists; use --replace to replace it\n`);
    return EXIT.dataErr;
  }
  if (!(await store.compareAndSet(key, cur?.revision ?? null, rule as unknown as JsonValue))) {
    io.stderr.write(`lockstep cluster rule add: rule ${id} changed meanwhile; try again\n`);
    return EXIT.dataErr;
  }
  await new EventWriter(store, 'cli').write({ kind: 'rule-added', message: `rule ${describeRule(rule)} ${cur !== null ? 'replaced' : 'added'}` });
  io.stdout.write(`rule ${describeRule(rule)} ${cur !== null ? 'replaced' : 'added'}\n`);
  return EXIT.ok;
}

/** `group add|rm|list`. */
export async function groupCommand(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const [verb, groupText, ...hosts] = positionals;
  const inv = await readInventory(store);
  if (verb === 'list') {
    // Every group: the store's, and those agents declare (--groups), with the hosts in each.
    const all = new Map<string, Set<string>>();
    for (const g of inv.groups.values()) all.set(g.name, new Set(g.hosts));
    for (const h of inv.hosts.values()) for (const g of h.groups) (all.get(g) ?? all.set(g, new Set()).get(g)!).add(h.id);
    const list = [...all].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([g, hs]) => ({ name: g, hosts: [...hs].sort(), stored: inv.groups.has(g) }));
    if (values.json) io.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
    else for (const g of list) io.stdout.write(`${g.name}: ${g.hosts.join(' ') || '-'}${g.stored ? '' : ' (declared by agents)'}\n`);
    return EXIT.ok;
  }
  if (verb !== 'add' && verb !== 'rm') throw new UsageError('group: expected add <group> <host>..., rm <group> [<host>...], or list');
  const group = name(`group ${verb}`, groupText);
  for (const h of hosts) name(`group ${verb}`, h);
  const key = KEYS.group(group);
  const cur = await store.get(key);
  const members = new Set((cur?.value as unknown as HostGroup | undefined)?.hosts ?? []);
  if (verb === 'add') {
    if (hosts.length === 0) throw new UsageError('group add: expected <group> <host>...');
    const known = new Set([...inv.hosts.keys(), ...inv.maintenance.keys(), ...inv.lostHosts.keys()]);
    const unknown = hosts.filter((h) => !known.has(h));
    if (unknown.length > 0) {
      io.stderr.write(`lockstep cluster group add: no host ${unknown.join(', ')} in the cluster (live hosts: ${[...inv.hosts.keys()].sort().join(', ') || 'none'}); nothing written\n`);
      return EXIT.dataErr;
    }
    for (const h of hosts) members.add(h);
  } else if (hosts.length === 0) {
    if (cur === null) {
      io.stderr.write(`lockstep cluster group rm: no group ${group} in the store${[...inv.hosts.values()].some((h) => h.groups.includes(group)) ? ' (it is declared by agents: lockstep agent --groups)' : ''}\n`);
      return EXIT.dataErr;
    }
    members.clear();
  } else {
    for (const h of hosts) members.delete(h);
  }
  const next: HostGroup = { name: group, hosts: [...members].sort() };
  const ok = next.hosts.length === 0 ? cur === null || (await store.delete(key)) : await store.compareAndSet(key, cur?.revision ?? null, next as unknown as JsonValue);
  if (!ok) {
    io.stderr.write(`lockstep cluster group ${verb}: group ${group} changed meanwhile; try again\n`);
    return EXIT.dataErr;
  }
  const text = next.hosts.length === 0 ? `group ${group} removed` : `group ${group}: ${next.hosts.join(' ')}`;
  await new EventWriter(store, 'cli').write({ kind: 'group-changed', message: text });
  io.stdout.write(`${text}\n`);
  return EXIT.ok;
}

/** `apply [--moves <n>]`: the leading manager applies the balancer's next recommendations. */
export async function applyCommand(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({ args, options: { moves: { type: 'string' } } });
  const req: ApplyRequest = { moves: positive('moves', values.moves, 1), at: Date.now(), by: 'cli' };
  await store.put(KEYS.applyRequest, req as unknown as JsonValue);
  await new EventWriter(store, 'cli').write({ kind: 'apply-requested', message: `apply the next ${req.moves} load-balancing recommendation(s)` });
  io.stdout.write(`the leading manager applies the next ${req.moves} load-balancing recommendation(s) once the cluster is settled (lockstep cluster events shows them)\n`);
  return EXIT.ok;
}

/**
 * `migrate <vm> [--to <host>] [--secondary] [--wait] [--timeout <s>]`: checked here against the
 * placement rules (refused with the broken rule or cap, nothing written), then written as
 * `requests/migrate/<vm>` for the leading manager, which checks again and carries it out without a
 * protection gap (a VM without FT: without a restart). `--wait` returns once the half runs protected on
 * its new host — a VM without FT: runs there — or the manager refused.
 */
export async function migrateCommand(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { to: { type: 'string' }, secondary: { type: 'boolean' }, wait: { type: 'boolean' }, timeout: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError('migrate: expected <vm> [--to <host>] [--secondary]');
  const vm = positionals[0]!;
  if (values.to !== undefined) name('migrate --to', values.to);
  const role = values.secondary ? 'secondary' : 'primary';
  const inv = await readInventory(store);
  const views = pairViews(inv);
  const ft = views.find((v) => v.vm === vm)?.desired?.ft !== false;
  const half = values.secondary ? 'secondary' : ft ? 'primary' : 'VM';
  const check = checkMigration(views, buildSnapshot(inv, new Map(views.map((v) => [v.vm, v]))).snapshot, { vm, role, ...(values.to !== undefined ? { to: values.to } : {}) });
  if (!check.ok) {
    io.stderr.write(`lockstep cluster migrate: ${check.reason} (${check.code}); nothing written\n`);
    return EXIT.dataErr;
  }
  const req: MigrateRequest = { vm, role, ...(values.to !== undefined ? { to: values.to } : {}), at: Date.now(), by: 'cli' };
  await store.put(KEYS.migrateRequest(vm), req as unknown as JsonValue);
  await new EventWriter(store, 'cli').write({ kind: 'migrate-requested', vm, message: `live migration of the ${half} of ${vm} from ${check.from}${values.to !== undefined ? ` to ${values.to}` : ''} requested (planned: ${check.message})` });
  io.stdout.write(`live migration of the ${half} of ${vm} requested: ${check.message}; the leading manager carries it out ${ft ? 'without a protection gap' : 'without a restart'}\n`);
  if (!values.wait) return EXIT.ok;
  const timeoutMs = positive('timeout', values.timeout, 120, false) * 1000;
  return waitOnStore(
    store,
    io,
    timeoutMs,
    (now) => {
      const since = (kind: string) => [...now.events].reverse().find((e) => e.kind === kind && e.vm === vm && e.t >= req.at);
      const refused = since('migrate-refused');
      const v = pairViews(now).find((x) => x.vm === vm);
      const at = values.secondary ? v?.secondary?.host : v?.primary?.host;
      const line = `${vm}: ${half} on ${at ?? 'none'}; ${v?.text ?? 'no record'}${now.migrateRequests.has(vm) ? '; request pending' : ''}`;
      if (refused !== undefined) return { line, failed: `lockstep cluster migrate: ${refused.message}` };
      // A target that could not be started: over once nothing of it is left running.
      const failed = since('migrate-failed');
      if (failed !== undefined && v !== undefined && v.others.length === 0 && v.primary?.host === check.from) return { line, failed: `lockstep cluster migrate: ${failed.message}` };
      const moved = at !== undefined && (values.to !== undefined ? at === values.to : at !== check.from);
      // Over when the VM is protected there and nothing of the operation is left (the old half's record).
      if (moved && (ft ? v?.protected === true : v?.status === 'running') && v!.others.length === 0 && !now.migrateRequests.has(vm)) {
        return { line, exit: EXIT.ok, done: `the ${half} of ${vm} runs on ${at}${ft ? `; ${vm} is protected` : ''}` };
      }
      return { line };
    },
    (last) => `lockstep cluster migrate: the ${half} of ${vm} did not move within ${timeoutMs / 1000} s (last: ${last}; is a manager running? see lockstep cluster events)`,
  );
}

// HA restart priority (vSphere's high / medium / low / disabled): the order in which the manager restarts
// VMs that lost their hosts and re-protects FT VMs that lost a half. Pure functions; no I/O, no clock.

/** A VM's restart priority. `disabled`: HA does not restart it (it is still re-protected, last). */
export type RestartPriority = 'high' | 'medium' | 'low' | 'disabled';

/** The priorities, highest first. */
export const RESTART_PRIORITIES: readonly RestartPriority[] = ['high', 'medium', 'low', 'disabled'];

/** The priority of a VM that does not say (vSphere's default). */
export const DEFAULT_RESTART_PRIORITY: RestartPriority = 'medium';

/** Higher is sooner. */
export function priorityRank(p: RestartPriority): number {
  return p === 'high' ? 3 : p === 'medium' ? 2 : p === 'low' ? 1 : 0;
}

/** A stored value as a priority, the default when absent or unknown. */
export function restartPriorityOf(value: unknown): RestartPriority {
  return RESTART_PRIORITIES.includes(value as RestartPriority) ? (value as RestartPriority) : DEFAULT_RESTART_PRIORITY;
}

/** VM ids sorted for the manager's pass: highest priority first, then by id (plain string order). */
export function restartOrder<T extends { vm: string; priority: RestartPriority }>(vms: readonly T[]): T[] {
  return [...vms].sort((a, b) => priorityRank(b.priority) - priorityRank(a.priority) || (a.vm < b.vm ? -1 : a.vm > b.vm ? 1 : 0));
}

/**
 * The restarts (or re-protections) a VM of priority `priority` must wait for: those of a higher
 * priority still under way — ordered and not yet powered on. vSphere's "start the next priority when
 * the previous ones are powered on"; a higher-priority VM that cannot be placed at all is not under way
 * and holds nothing up. Sorted by id.
 */
export function waitsFor(priority: RestartPriority, underWay: ReadonlyMap<string, RestartPriority>): string[] {
  const r = priorityRank(priority);
  return [...underWay]
    .filter(([, p]) => priorityRank(p) > r)
    .map(([vm]) => vm)
    .sort();
}

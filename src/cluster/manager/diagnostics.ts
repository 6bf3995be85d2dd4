// The cluster's diagnostics channels: what agents and managers publish for an embedder to log or count,
// without a forced logger. Names only; publishers check `hasSubscribers` first.
import diagnostics from 'node:diagnostics_channel';
import type { ClusterEvent } from './layout.js';

/**
 * Subscribe with `diagnostics_channel.subscribe(name, fn)`:
 *
 * - `lockstep:cluster:event` — a {@link ClusterEvent} a manager wrote to the cluster's log;
 * - `lockstep:cluster:leader` — `{ manager, token, leads, reason? }` when a manager starts or stops acting;
 * - `lockstep:cluster:vm` — `{ host, vm, role, what: 'started' | 'exited', view }` from an agent;
 * - `lockstep:cluster:api` — `{ host, method, path, status, code?, manager? }` for every control API request an
 *   agent answered (refusals included: a 401 is worth an alert).
 */
export const CLUSTER_CHANNELS = {
  event: diagnostics.channel('lockstep:cluster:event'),
  leader: diagnostics.channel('lockstep:cluster:leader'),
  vm: diagnostics.channel('lockstep:cluster:vm'),
  api: diagnostics.channel('lockstep:cluster:api'),
} as const;

// Publishes a pair's life on the lockstep:ft:* diagnostics channels (src/observability): state changes,
// failovers, clones, halts, warnings. Costs nothing when nobody subscribes; never logs by itself.
import { ftChannels } from '../observability/index.js';
import { describeStatus } from './control.js';
import type { FtPrimary } from './primary.js';
import type { FtSecondary } from './secondary.js';

/** Called by FtPrimary's constructor. */
export function publishPrimary(p: FtPrimary): void {
  const vm = p.vmId;
  p.on('status', (s) => ftChannels.state.hasSubscribers && ftChannels.state.publish({ vm, role: 'primary', state: describeStatus(s) }));
  p.on('cloned', (c) => ftChannels.clone.hasSubscribers && ftChannels.clone.publish({ vm, phase: 'done', rounds: c.rounds, pages: c.pages, bytes: c.bytes, pauseMs: c.pauseMs, totalMs: c.totalMs }));
  p.on('secondary-lost', (reason) => ftChannels.failover.hasSubscribers && ftChannels.failover.publish({ vm, epoch: p.epoch, reason: `secondary lost: ${reason}` }));
  p.on('halted', (reason) => ftChannels.halt.hasSubscribers && ftChannels.halt.publish({ vm, role: 'primary', reason }));
  p.on('warning', (message) => ftChannels.warning.hasSubscribers && ftChannels.warning.publish({ vm, message }));
}

/** Called by FtSecondary's constructor. */
export function publishSecondary(s: FtSecondary): void {
  const vm = s.vmId;
  s.on('lockstep', () => ftChannels.state.hasSubscribers && ftChannels.state.publish({ vm, role: 'secondary', state: 'in lockstep' }));
  s.on('go-live', (g) => ftChannels.failover.hasSubscribers && ftChannels.failover.publish({ vm, epoch: g.epoch, reason: g.reason, outageMs: g.ms }));
  s.on('halted', (reason) => ftChannels.halt.hasSubscribers && ftChannels.halt.publish({ vm, role: 'secondary', reason }));
  s.on('left', (reason) => ftChannels.state.hasSubscribers && ftChannels.state.publish({ vm, role: 'secondary', state: 'left', detail: reason }));
  s.on('warning', (message) => ftChannels.warning.hasSubscribers && ftChannels.warning.publish({ vm, message }));
}

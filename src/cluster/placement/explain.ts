// Human-readable explanations of placement answers: which host won and with what score, which hosts
// were rejected and for which reasons and numbers. Formats only; decides nothing.
import type { AuditResult } from './audit.js';
import type { BalanceResult } from './balance.js';
import type { EvacuationPlan } from './evacuate.js';
import { formatFigure, formatLoad } from './format.js';
import type { Candidate, HostScore, PlaceResult, PlacementPlan, SecondaryResult } from './place.js';
import type { Spread } from './state.js';

/** Every answer the placement engine gives. */
export type PlacementAnswer = PlaceResult | SecondaryResult | PlacementPlan | BalanceResult | EvacuationPlan | AuditResult;

/** Options of {@link explain}. */
export interface ExplainOptions {
  /**
   * Hosts listed one by one per candidate list (default 50); the rest are summed up by reason. Pass
   * `Infinity` for all of them.
   */
  maxHosts?: number;
  /** Recommendations / steps / findings listed one by one (default 200); the rest are counted. */
  maxItems?: number;
}

function score(s: HostScore): string {
  return `soft ${s.soft}, imbalance ${s.imbalanceDelta >= 0 ? '+' : ''}${formatFigure(s.imbalanceDelta)}, load after cpu ${formatLoad(s.cpuAfter)} mem ${formatLoad(s.memoryAfter)}`;
}

function spread(s: Spread): string {
  return `${formatFigure(s.combined)} (cpu ${formatFigure(s.cpu)}, mem ${formatFigure(s.memory)}, ${s.hosts} hosts)`;
}

function candidates(title: string, list: readonly Candidate[], maxHosts: number, out: string[]): void {
  const rejected = list.filter((c) => !c.ok).length;
  out.push(`${title}: ${list.length} hosts, ${list.length - rejected} valid, ${rejected} rejected`);
  list.slice(0, maxHosts).forEach((c) => {
    out.push(c.ok ? `  ${c.host}: valid — ${score(c.score)}` : `  ${c.host}: rejected — ${c.rejections.map((r) => r.message).join('; ')}`);
  });
  const rest = list.slice(maxHosts);
  if (rest.length === 0) return;
  const byCode = new Map<string, number>();
  let ok = 0;
  for (const c of rest) {
    if (c.ok) ok++;
    else for (const r of c.rejections) byCode.set(r.code, (byCode.get(r.code) ?? 0) + 1);
  }
  const parts = [...byCode].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([k, n]) => `${k} ×${n}`);
  out.push(`  … ${rest.length} more hosts: ${ok} valid${parts.length ? `; rejections: ${parts.join(', ')}` : ''}`);
}

/** `1 step`, `3 steps`. */
function count(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

function items<T>(list: readonly T[], max: number, line: (x: T, i: number) => string, out: string[]): void {
  list.slice(0, max).forEach((x, i) => out.push(line(x, i)));
  if (list.length > max) out.push(`  … and ${list.length - max} more`);
}

/**
 * A multi-line explanation of any placement answer: the decision, the rule or number behind it, and
 * per host why it was or was not chosen. Never empty.
 */
export function explain(answer: PlacementAnswer, options: ExplainOptions = {}): string {
  const maxHosts = options.maxHosts ?? 50;
  const maxItems = options.maxItems ?? 200;
  const out: string[] = [];
  switch (answer.kind) {
    case 'placed':
      out.push(`${answer.vm} → ${answer.host} (${answer.mode} mode): ${score(answer.score)}`);
      for (const s of answer.soft) out.push(`  still breaks ${s.message}`);
      out.push(`spread after: ${spread(answer.spreadAfter)}`);
      candidates('candidates', answer.candidates, maxHosts, out);
      break;
    case 'placed-pair':
      out.push(`${answer.vm} (FT, ${answer.mode} mode): primary → ${answer.primary.host}, secondary → ${answer.secondary.host}`);
      out.push(`  primary on ${answer.primary.host}: ${score(answer.primary.score)}`);
      for (const s of answer.primary.soft) out.push(`    still breaks ${s.message}`);
      out.push(`  secondary on ${answer.secondary.host}: ${score(answer.secondary.score)}`);
      for (const s of answer.secondary.soft) out.push(`    still breaks ${s.message}`);
      out.push(`spread after: ${spread(answer.spreadAfter)}`);
      candidates('primary candidates', answer.candidates.primary, maxHosts, out);
      candidates(`secondary candidates (primary on ${answer.primary.host})`, answer.candidates.secondary, maxHosts, out);
      break;
    case 'unplaceable':
      out.push(`${answer.vm}: no valid host for the ${answer.role} (${answer.mode} mode): ${answer.reason}`);
      candidates(answer.primaryHost ? `${answer.role} candidates (primary on ${answer.primaryHost})` : `${answer.role} candidates`, answer.candidates, maxHosts, out);
      break;
    case 'secondary-placed':
      if (answer.failover)
        out.push(`${answer.vm}: ${answer.failover.lostHost} lost; the secondary on ${answer.failover.newPrimaryHost} goes live as the primary`);
      out.push(`${answer.vm}: new secondary → ${answer.host} (primary on ${answer.primaryHost}, ${answer.mode} mode): ${score(answer.score)}`);
      for (const s of answer.soft) out.push(`  still breaks ${s.message}`);
      out.push(`spread after: ${spread(answer.spreadAfter)}`);
      candidates('secondary candidates', answer.candidates, maxHosts, out);
      break;
    case 'already-protected':
      out.push(`${answer.vm}: already protected (primary on ${answer.primaryHost}, secondary on ${answer.secondaryHost}); nothing to place`);
      break;
    case 'no-live-half':
      out.push(`${answer.vm}: ${answer.reason}`);
      break;
    case 'placement-plan':
      out.push(
        `power-on plan (${answer.mode} mode): ${count(answer.placements.length, 'VM')} placed, ${answer.unplaceable.length} unplaceable; spread ${spread(answer.spreadBefore)} → ${spread(answer.spreadAfter)}`,
      );
      items(
        answer.placements,
        maxItems,
        (p) =>
          `  ${p.vm} → ${p.host}${p.secondaryHost ? ` (secondary ${p.secondaryHost})` : ''}: soft ${p.soft}, imbalance ${p.imbalanceDelta >= 0 ? '+' : ''}${formatFigure(p.imbalanceDelta)} (${p.searched === 'window' ? 'least loaded hosts' : 'all hosts'} scored)`,
        out,
      );
      for (const u of answer.unplaceable) out.push(explain(u, options).replace(/^/gm, '  '));
      break;
    case 'balance': {
      out.push(`load balancing (${answer.mode} mode): ${count(answer.recommendations.length, 'move')}; spread ${spread(answer.spreadBefore)} → ${spread(answer.spreadAfter)}`);
      const o = answer.options;
      out.push(`  threshold: net benefit ≥ ${formatFigure(o.minBenefit)}, migration cost ${formatFigure(o.costPerGiB)} per GiB; at most ${o.maxMoves} moves`);
      items(answer.recommendations, maxItems, (r, i) => `  ${i + 1}. ${r.message}`, out);
      out.push(`stopped: ${answer.stop.message}`);
      if (answer.frozen.length) {
        out.push(`not moved (${answer.frozen.length}):`);
        items(answer.frozen, maxItems, (f) => `  ${f.message}`, out);
      }
      const r = answer.remaining;
      if (r.hard.length || r.soft.length || r.overcommitted.length) {
        out.push(`still broken after the moves: ${r.hard.length} hard, ${r.soft.length} soft, ${r.overcommitted.length} overcommitted`);
        items(r.hard, maxItems, (h) => `  hard: ${h.vm} (${h.role}) on ${h.host}: ${h.rejection.message}`, out);
        items(r.soft, maxItems, (s) => `  soft: ${s.vm} (${s.role}): ${s.violation.message}`, out);
        items(r.overcommitted, maxItems, (x) => `  ${x.message}`, out);
      }
      break;
    }
    case 'evacuation':
      out.push(
        `evacuation of ${answer.host} (${answer.mode} mode): ${count(answer.steps.length, 'step')}, ${count(answer.blocked.length, 'half', 'halves')} cannot leave${answer.complete ? ' — complete' : ' — INCOMPLETE'}; spread ${spread(answer.spreadBefore)} → ${spread(answer.spreadAfter)}`,
      );
      items(answer.steps, maxItems, (s, i) => `  ${i + 1}. ${s.message}`, out);
      for (const b of answer.blocked) {
        out.push(`cannot evacuate ${b.vm} (${b.role}): ${b.reason}`);
        if (b.candidates.length) candidates('  candidates', b.candidates, maxHosts, out);
      }
      break;
    case 'audit':
      out.push(
        `audit (${answer.mode} mode): ${answer.hard.length} hard rule violations, ${answer.soft.length} soft, ${answer.overcommitted.length} overcommitted; spread ${spread(answer.spread)}`,
      );
      items(answer.hard, maxItems, (h) => `  hard: ${h.vm} (${h.role}) on ${h.host}: ${h.rejection.message}`, out);
      items(answer.soft, maxItems, (s) => `  soft: ${s.vm} (${s.role}): ${s.violation.message}`, out);
      items(answer.overcommitted, maxItems, (x) => `  ${x.message}`, out);
      if (answer.unprotected.length) out.push(`  not protected (one half runs): ${answer.unprotected.join(', ')}`);
      if (answer.down.length) out.push(`  FT VMs not running: ${answer.down.join(', ')}`);
      if (answer.disabled.length) out.push(`  disabled for load balancing (legacy mode): ${answer.disabled.join(', ')}`);
      break;
  }
  return out.join('\n');
}

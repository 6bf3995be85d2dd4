// Applies an answer (placements, recommended moves, an evacuation plan) to a snapshot, giving the
// snapshot the cluster would have after carrying it out. Pure: returns a new snapshot, never mutates.
import type { BalanceResult, Move } from './balance.js';
import { PlacementInputError } from './errors.js';
import type { EvacuationPlan } from './evacuate.js';
import type { ClusterSnapshot, VmSpec } from './model.js';
import type { PlaceResult, PlacementPlan, SecondaryResult } from './place.js';

/** Any answer {@link applyAnswer} knows how to apply. */
export type ApplicableAnswer = PlaceResult | SecondaryResult | PlacementPlan | BalanceResult | EvacuationPlan;

function edit(snapshot: ClusterSnapshot): { vms: VmSpec[]; at: (id: string, field: string) => VmSpec } {
  const vms = snapshot.vms.map((v) => ({ ...v }));
  const byId = new Map(vms.map((v, i) => [v.id, i]));
  return {
    vms,
    at(id, field) {
      const i = byId.get(id);
      if (i === undefined) throw new PlacementInputError(field, `unknown VM "${id}"`);
      return vms[i]!;
    },
  };
}

/**
 * The snapshot after the moves, applied in order. Each move must match the snapshot it meets (a
 * `from` that is not where the half is means the plan is stale): a {@link PlacementInputError}
 * naming `moves[i]` otherwise.
 */
export function applyMoves(snapshot: ClusterSnapshot, moves: readonly Move[]): ClusterSnapshot {
  const e = edit(snapshot);
  moves.forEach((m, i) => {
    const f = `moves[${i}]`;
    const v = e.at(m.vm, `${f}.vm`);
    if (m.kind === 'migrate') {
      if (v.host !== m.from) throw new PlacementInputError(`${f}.from`, `${m.vm} is on ${v.host ?? 'no host'}, not ${m.from}: the plan is stale`);
      v.host = m.to;
    } else if (m.kind === 'move-secondary') {
      if (v.secondaryHost !== m.from)
        throw new PlacementInputError(`${f}.from`, `the secondary of ${m.vm} is on ${v.secondaryHost ?? 'no host'}, not ${m.from}: the plan is stale`);
      v.secondaryHost = m.to;
    } else {
      if (v.host !== m.from || v.secondaryHost !== m.newPrimaryHost)
        throw new PlacementInputError(f, `${m.vm} runs on ${v.host ?? 'no host'} / ${v.secondaryHost ?? 'no host'}, not ${m.from} / ${m.newPrimaryHost}: the plan is stale`);
      v.host = m.newPrimaryHost;
      v.secondaryHost = m.newSecondaryHost;
    }
  });
  return { ...snapshot, vms: e.vms };
}

/**
 * The snapshot after carrying out an answer: placements set `host` / `secondaryHost`, a failover makes
 * the old secondary's host the primary's, moves and evacuation steps are applied in order, and a
 * complete evacuation puts the host in maintenance mode. Answers that change nothing (unplaceable,
 * already protected) return an equal copy.
 */
export function applyAnswer(snapshot: ClusterSnapshot, answer: ApplicableAnswer): ClusterSnapshot {
  switch (answer.kind) {
    case 'balance':
      return applyMoves(snapshot, answer.recommendations.map((r) => r.move));
    case 'evacuation': {
      const next = applyMoves(snapshot, answer.steps.map((s) => s.move));
      if (!answer.complete) return next;
      return { ...next, hosts: next.hosts.map((h) => (h.id === answer.host ? { ...h, maintenance: true } : h)) };
    }
    case 'placed':
    case 'placed-pair':
    case 'secondary-placed':
    case 'placement-plan': {
      const e = edit(snapshot);
      const entries: readonly { vm: string; host: string; secondaryHost?: string }[] =
        answer.kind === 'placement-plan'
          ? answer.placements
          : answer.kind === 'placed'
            ? [{ vm: answer.vm, host: answer.host }]
            : answer.kind === 'placed-pair'
              ? [{ vm: answer.vm, host: answer.primary.host, secondaryHost: answer.secondary.host }]
              : [{ vm: answer.vm, host: answer.primaryHost, secondaryHost: answer.host }];
      for (const p of entries) {
        const v = e.at(p.vm, 'answer.vm');
        v.host = p.host;
        if (p.secondaryHost !== undefined) v.secondaryHost = p.secondaryHost;
        else delete v.secondaryHost;
      }
      return { ...snapshot, vms: e.vms };
    }
    default:
      return { ...snapshot, vms: snapshot.vms.map((v) => ({ ...v })) };
  }
}

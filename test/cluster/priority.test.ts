// HA restart priority, the pure part: the order of the manager's pass and who waits for whom.
import { describe, expect, it } from 'vitest';
import { restartOrder, restartPriorityOf, waitsFor, type RestartPriority } from '../../src/cluster/manager/priority.js';

describe('restart priority', () => {
  it('orders VMs highest priority first, then by id', () => {
    const vms: { vm: string; priority: RestartPriority }[] = [
      { vm: 'a', priority: 'low' },
      { vm: 'b', priority: 'disabled' },
      { vm: 'c', priority: 'high' },
      { vm: 'd', priority: 'medium' },
      { vm: 'B', priority: 'high' },
    ];
    expect(restartOrder(vms).map((v) => v.vm)).toEqual(['B', 'c', 'd', 'a', 'b']);
    expect(restartOrder([...vms].reverse()).map((v) => v.vm)).toEqual(['B', 'c', 'd', 'a', 'b']);
  });

  it('makes a VM wait only for restarts of a higher priority under way', () => {
    const underWay = new Map<string, RestartPriority>([
      ['h2', 'high'],
      ['m1', 'medium'],
      ['h1', 'high'],
    ]);
    expect(waitsFor('high', underWay)).toEqual([]);
    expect(waitsFor('medium', underWay)).toEqual(['h1', 'h2']);
    expect(waitsFor('low', underWay)).toEqual(['h1', 'h2', 'm1']);
    expect(waitsFor('disabled', underWay)).toEqual(['h1', 'h2', 'm1']);
    expect(waitsFor('low', new Map())).toEqual([]);
  });

  it('reads an absent or unknown stored priority as medium (vSphere’s default)', () => {
    expect([restartPriorityOf(undefined), restartPriorityOf('urgent'), restartPriorityOf('low')]).toEqual(['medium', 'medium', 'low']);
  });
});

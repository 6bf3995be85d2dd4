// Snapshot validation: every bad input is a PlacementInputError (a LockstepError with a stable code)
// that names the bad field in the caller's own indices; operations reject unknown ids the same way.
import { describe, expect, it } from 'vitest';
import { LockstepError } from '../../../src/errors.js';
import { type ClusterSnapshot, Placement, PlacementInputError } from '../../../src/cluster/placement/index.js';
import { ftVm, host, vm } from './helpers.js';

function fieldOf(snap: unknown): string {
  try {
    new Placement(snap as ClusterSnapshot);
  } catch (e) {
    expect(e).toBeInstanceOf(PlacementInputError);
    expect(e).toBeInstanceOf(LockstepError);
    expect((e as PlacementInputError).code).toBe('ERR_LOCKSTEP_PLACEMENT_INVALID');
    expect((e as Error).name).toBe('PlacementInputError');
    expect((e as Error).message.startsWith(`${(e as PlacementInputError).field}: `)).toBe(true);
    return (e as PlacementInputError).field;
  }
  throw new Error('snapshot was accepted');
}

const base = (): ClusterSnapshot => ({ hosts: [host('h1'), host('h2', { groups: ['g'] })], vms: [vm('a'), ftVm('b')] });

describe('snapshot validation', () => {
  it('accepts a well-formed snapshot and derives the mode from the compatibility baseline', () => {
    expect(new Placement(base()).mode).toBe('legacy');
    expect(new Placement({ ...base(), compatBaseline: 'rv32imac-v1' }).mode).toBe('integrated');
  });

  it('names a duplicate host id and where it was seen first', () => {
    const s = base();
    s.hosts = [...s.hosts, host('h1')];
    expect(fieldOf(s)).toBe('hosts[2].id');
    expect(() => new Placement(s)).toThrow(/duplicate host id "h1" \(also hosts\[0\]\)/);
  });

  it('names a duplicate VM id and a duplicate rule id', () => {
    expect(fieldOf({ ...base(), vms: [vm('a'), vm('a')] })).toBe('vms[1].id');
    const r = { kind: 'vm-vm', id: 'r', type: 'affinity', hard: true, vms: ['a', 'b'] } as const;
    expect(fieldOf({ ...base(), rules: [r, r] })).toBe('rules[1].id');
  });

  it('rejects negative, zero, fractional and non-numeric capacities, naming the field', () => {
    const bad = (capacity: object): unknown => ({ ...base(), hosts: [host('h1'), { ...host('h2'), capacity: { ...host('h2').capacity, ...capacity } }] });
    expect(fieldOf(bad({ memoryBytes: -1 }))).toBe('hosts[1].capacity.memoryBytes');
    expect(fieldOf(bad({ mips: 0 }))).toBe('hosts[1].capacity.mips');
    expect(fieldOf(bad({ logBandwidth: -5 }))).toBe('hosts[1].capacity.logBandwidth');
    expect(fieldOf(bad({ memoryBytes: 1.5 }))).toBe('hosts[1].capacity.memoryBytes');
    expect(fieldOf(bad({ mips: '100' }))).toBe('hosts[1].capacity.mips');
    expect(fieldOf(bad({ mips: Number.POSITIVE_INFINITY }))).toBe('hosts[1].capacity.mips');
  });

  it('rejects negative demand, a zero vCPU count and a negative FT cap', () => {
    expect(fieldOf({ ...base(), vms: [vm('a', { memGiB: -1 })] })).toBe('vms[0].demand.memoryBytes');
    expect(fieldOf({ ...base(), vms: [vm('a', { vcpus: 0 })] })).toBe('vms[0].vcpus');
    expect(fieldOf({ ...base(), hosts: [host('h1', { maxFtVms: -1 })] })).toBe('hosts[0].maxFtVms');
    expect(fieldOf({ ...base(), options: { maxFtVcpusPerHost: 2.5 } })).toBe('options.maxFtVcpusPerHost');
    expect(fieldOf({ ...base(), options: { overcommit: { memory: 0 } } })).toBe('options.overcommit.memory');
  });

  it('names an unknown host in a VM', () => {
    expect(fieldOf({ ...base(), vms: [vm('a', { host: 'nope' })] })).toBe('vms[0].host');
    expect(fieldOf({ ...base(), vms: [ftVm('a', { host: 'h1', secondaryHost: 'nope' })] })).toBe('vms[0].secondaryHost');
    expect(fieldOf({ ...base(), vms: [ftVm('a', { registeredHost: 'h9' })] })).toBe('vms[0].registeredHost');
  });

  it('refuses a secondary on a non-FT VM, a secondary without a primary, and a pair on one host', () => {
    expect(fieldOf({ ...base(), vms: [vm('a', { host: 'h1', secondaryHost: 'h2' })] })).toBe('vms[0].secondaryHost');
    expect(fieldOf({ ...base(), vms: [ftVm('a', { secondaryHost: 'h2' })] })).toBe('vms[0].secondaryHost');
    expect(() => new Placement({ ...base(), vms: [ftVm('a', { host: 'h1', secondaryHost: 'h1' })] })).toThrow(/must never share a host/);
  });

  it('names an unknown VM or host group in a rule, a VM listed twice, and a one-VM VM-VM rule', () => {
    expect(fieldOf({ ...base(), rules: [{ kind: 'vm-vm', id: 'r', type: 'affinity', hard: true, vms: ['a', 'zz'] }] })).toBe('rules[0].vms[1]');
    expect(fieldOf({ ...base(), rules: [{ kind: 'vm-host', id: 'r', type: 'must', vms: ['a'], hostGroup: 'nowhere' }] })).toBe('rules[0].hostGroup');
    expect(fieldOf({ ...base(), rules: [{ kind: 'vm-vm', id: 'r', type: 'affinity', hard: true, vms: ['a', 'a'] }] })).toBe('rules[0].vms[1]');
    expect(fieldOf({ ...base(), rules: [{ kind: 'vm-vm', id: 'r', type: 'affinity', hard: true, vms: ['a'] }] })).toBe('rules[0].vms');
    expect(fieldOf({ ...base(), rules: [{ kind: 'vm-host', id: 'r', type: 'may', vms: ['a'], hostGroup: 'g' }] })).toBe('rules[0].type');
    expect(fieldOf({ ...base(), rules: [{ kind: 'vm-vm', id: 'r', type: 'affinity', vms: ['a', 'b'] }] })).toBe('rules[0].hard');
    expect(fieldOf({ ...base(), rules: [{ kind: 'vm-pool', id: 'r', vms: ['a'] }] })).toBe('rules[0].kind');
  });

  it('rejects a snapshot that is not one', () => {
    expect(fieldOf(null)).toBe('snapshot');
    expect(fieldOf({ hosts: [], vms: 'x' })).toBe('vms');
    expect(fieldOf({ hosts: [{ id: '' }], vms: [] })).toBe('hosts[0].id');
  });

  it('operations name an unknown VM or host as their argument', () => {
    const p = new Placement(base());
    expect(() => p.place('ghost')).toThrow(PlacementInputError);
    expect(() => p.place('ghost')).toThrow(/^vm: unknown VM "ghost"/);
    expect(() => p.evacuate('h9')).toThrow(/^host: unknown host "h9"/);
    expect(() => p.placeSecondary('a')).toThrow(/not an FT VM/);
    expect(() => p.balance({ maxMoves: -1 })).toThrow(/^balance\.maxMoves:/);
    expect(() => p.placeAll({ window: 1.5 })).toThrow(/^window:/);
  });

  it('refuses to place a VM that already runs, pointing at the operation that fits', () => {
    const p = new Placement({ hosts: [host('h1'), host('h2')], vms: [vm('a', { host: 'h1' }), ftVm('b', { host: 'h1' })] });
    expect(() => p.place('a')).toThrow(/already runs on h1/);
    expect(() => p.place('b')).toThrow(/placeSecondary/);
  });

  it('does not mutate the snapshot it is given', () => {
    const s = base();
    const copy = JSON.stringify(s);
    const p = new Placement(s);
    p.placeAll();
    p.balance();
    p.evacuate('h1');
    expect(JSON.stringify(s)).toBe(copy);
  });
});

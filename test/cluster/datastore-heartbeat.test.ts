// Datastore heartbeats, the parts without a cluster: the file parser against malformed and hostile
// input, the freshness judge (by the caller's clock only), and the writer (atomic replacement, a rising
// sequence, failures reported and survived).
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  HEARTBEAT_DIR,
  HeartbeatJudge,
  HeartbeatWriter,
  MAX_HEARTBEAT_BYTES,
  heartbeatPath,
  parseHeartbeat,
  readHeartbeats,
  type DatastoreHeartbeat,
} from '../../src/cluster/datastore/heartbeat.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-dshb-'));
afterAll(() => {
  try {
    chmodSync(join(tmp, 'ro', HEARTBEAT_DIR), 0o755);
  } catch {
    // not made
  }
  rmSync(tmp, { recursive: true, force: true });
});

const GOOD: DatastoreHeartbeat = {
  format: 'lockstep-datastore-heartbeat',
  version: 1,
  host: 'h1',
  incarnation: '0123456789abcdef',
  seq: 7,
  periodMs: 1000,
  halves: [{ vm: 'kv1', role: 'primary' }, { vm: 'kv2', role: 'secondary' }],
  poweredOff: [{ vm: 'solo', role: 'primary', incarnation: 'a1b2c3d4e5f6' }],
};
const beat = (over: Partial<DatastoreHeartbeat> = {}): DatastoreHeartbeat => ({ ...GOOD, ...over });

describe('the heartbeat file parser', () => {
  it('reads a well-formed heartbeat whole', () => {
    const p = parseHeartbeat(JSON.stringify(GOOD), '/ds/h1.json', 'h1');
    expect(p).toEqual({ ok: true, beat: GOOD });
  });

  const cases: [string, string, RegExp][] = [
    ['an empty file', '', /empty file/],
    ['truncated JSON', JSON.stringify(GOOD).slice(0, 40), /not JSON .*truncated/],
    ['a JSON array', '[1,2]', /not a JSON object/],
    ['null', 'null', /not a JSON object/],
    ['another format', JSON.stringify({ ...GOOD, format: 'vsphere-ha' }), /format: expected "lockstep-datastore-heartbeat", got "vsphere-ha"/],
    ['a newer version', JSON.stringify({ ...GOOD, version: 2 }), /version: this build reads version 1, got 2/],
    ['another host than its name', JSON.stringify({ ...GOOD, host: 'h2' }), /named for h1 but says "h2"/],
    ['a seq that is a string', JSON.stringify({ ...GOOD, seq: '8' }), /seq: expected a positive integer, got "8"/],
    ['a seq beyond safe integers', JSON.stringify({ ...GOOD, seq: 2 ** 60 }), /seq: expected a positive integer/],
    ['a negative seq', JSON.stringify({ ...GOOD, seq: -1 }), /seq: expected a positive integer, got -1/],
    ['no incarnation', JSON.stringify({ ...GOOD, incarnation: undefined }), /incarnation: expected 8-64 hex digits, got nothing/],
    ['a period of zero', JSON.stringify({ ...GOOD, periodMs: 0 }), /periodMs: expected a positive number, got 0/],
    ['halves that are an object', JSON.stringify({ ...GOOD, halves: { vm: 'kv1' } }), /halves: expected an array/],
    ['a half with a path for a VM id', JSON.stringify({ ...GOOD, halves: [{ vm: '../../etc/passwd', role: 'primary' }] }), /halves\[0\]\.vm: not a VM id: "\.\.\/\.\.\/etc\/passwd"/],
    ['a half with an unknown role', JSON.stringify({ ...GOOD, halves: [{ vm: 'kv1', role: 'witness' }] }), /halves\[0\]\.role: expected primary or secondary, got "witness"/],
    ['a powered-off half without incarnation', JSON.stringify({ ...GOOD, poweredOff: [{ vm: 'kv1', role: 'primary' }] }), /poweredOff\[0\]\.incarnation/],
    ['too many halves', JSON.stringify({ ...GOOD, halves: Array.from({ length: 5000 }, () => ({ vm: 'kv1', role: 'primary' })) }), /halves: 5000 entries, more than 4096/],
    ['a hostile long value', JSON.stringify({ ...GOOD, format: 'x'.repeat(100_000) }), /got "x{59}…/],
  ];
  for (const [what, text, problem] of cases) {
    it(`refuses ${what}, naming the file, as no heartbeat`, () => {
      const p = parseHeartbeat(text, '/ds/lockstep-heartbeats/h1.json', 'h1');
      expect(p.ok).toBe(false);
      if (p.ok) return;
      expect(p.problem).toMatch(/^datastore heartbeat \/ds\/lockstep-heartbeats\/h1\.json: /);
      expect(p.problem).toMatch(problem);
      expect(p.problem).toMatch(/treated as no heartbeat$/);
      expect(p.problem.length).toBeLessThan(400);
    });
  }

  it('reads a directory of files: good ones by host, the others as problems, writes in progress ignored', async () => {
    const ds = join(tmp, 'read');
    const dir = join(ds, HEARTBEAT_DIR);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'h1.json'), JSON.stringify(GOOD));
    writeFileSync(join(dir, 'h2.json'), JSON.stringify(GOOD)); // says h1
    writeFileSync(join(dir, 'h3.json'), '{"format":'); // truncated
    writeFileSync(join(dir, 'h4.json'), Buffer.alloc(MAX_HEARTBEAT_BYTES + 1, 0x20)); // too large
    mkdirSync(join(dir, 'h5.json')); // not a file
    execFileSync('mkfifo', [join(dir, 'h6.json')]); // would block a plain read forever
    writeFileSync(join(dir, '.h1.1234.tmp'), 'half a write');
    writeFileSync(join(dir, 'not a host!.json'), JSON.stringify(GOOD));
    const { beats, problems } = await readHeartbeats(ds);
    expect([...beats.keys()]).toEqual(['h1']);
    expect(problems.get('h2')).toMatch(/h2\.json: host: the file is named for h2 but says "h1"/);
    expect(problems.get('h3')).toMatch(/h3\.json: not JSON/);
    expect(problems.get('h4')).toMatch(/h4\.json: .*more than 262144/);
    expect(problems.get('h5')).toMatch(/h5\.json: not a regular file/);
    expect(problems.get('h6')).toMatch(/h6\.json: not a regular file/);
    expect(problems.get('not a host!')).toMatch(/not a host id/);
    expect(problems.size).toBe(6);
    // No directory yet: no heartbeats, no problem.
    expect(await readHeartbeats(join(tmp, 'nothing-here'))).toEqual({ beats: new Map(), problems: new Map() });
  });
});

describe('the freshness judge', () => {
  it('says alive only after it saw the sequence change, and stale a window after the last change', () => {
    const j = new HeartbeatJudge(3_000);
    expect(j.verdict('h1', 0).state).toBe('missing');
    j.observe('h1', beat({ seq: 1 }), 0);
    // First sight: the file may be old. Not judged until it changes or a window has passed.
    expect(j.verdict('h1', 0).state).toBe('unknown');
    j.observe('h1', beat({ seq: 1 }), 1_000);
    expect(j.verdict('h1', 1_000).state).toBe('unknown');
    j.observe('h1', beat({ seq: 2 }), 1_500);
    expect(j.verdict('h1', 1_500)).toMatchObject({ state: 'alive', sinceChangeMs: 0 });
    j.observe('h1', beat({ seq: 2 }), 4_000);
    expect(j.verdict('h1', 4_400)).toMatchObject({ state: 'alive', sinceChangeMs: 2_900 });
    j.observe('h1', beat({ seq: 2 }), 4_500);
    expect(j.verdict('h1', 4_500)).toMatchObject({ state: 'stale', sinceChangeMs: 3_000 });
    // It beats again: alive again.
    j.observe('h1', beat({ seq: 3 }), 5_000);
    expect(j.verdict('h1', 5_000).state).toBe('alive');
    // Never changing from the first sight: stale once read a window later.
    j.observe('h2', beat({ host: 'h2' }), 0);
    j.observe('h2', beat({ host: 'h2' }), 3_000);
    expect(j.verdict('h2', 3_000).state).toBe('stale');
  });

  it('never calls a heartbeat stale without a read a window after its last change (a starved judge)', () => {
    const j = new HeartbeatJudge(3_000);
    j.observe('h1', beat({ seq: 1 }), 0);
    j.observe('h1', beat({ seq: 2 }), 500);
    // The judge's own process did not run for 10 s: it read nothing since. Not alive, not stale either.
    expect(j.verdict('h1', 10_500).state).toBe('unknown');
    j.observe('h1', beat({ seq: 9 }), 10_600); // it had gone on beating
    expect(j.verdict('h1', 10_600).state).toBe('alive');
  });

  it('takes a new incarnation as a change, a lower sequence of the same one not', () => {
    const j = new HeartbeatJudge(3_000);
    j.observe('h1', beat({ seq: 50 }), 0);
    j.observe('h1', beat({ seq: 40 }), 1_000); // an old copy put back
    expect(j.verdict('h1', 1_000).state).toBe('unknown');
    j.observe('h1', beat({ seq: 40 }), 3_000);
    expect(j.verdict('h1', 3_000).state).toBe('stale');
    j.observe('h1', beat({ seq: 1, incarnation: 'ffffffffffffffff' }), 3_100); // the agent restarted
    expect(j.verdict('h1', 3_100)).toMatchObject({ state: 'alive', beat: { seq: 1, incarnation: 'ffffffffffffffff' } });
  });

  it('takes an unreadable read as no sign of life, and a missing file as no heartbeat at once', () => {
    const j = new HeartbeatJudge(3_000);
    j.observe('h1', beat({ seq: 1 }), 0);
    j.observe('h1', beat({ seq: 2 }), 1_000);
    j.observe('h1', 'unreadable', 2_000);
    // The last valid contents, still within the window of their change.
    expect(j.verdict('h1', 2_000)).toMatchObject({ state: 'alive', beat: { seq: 2 } });
    j.observe('h1', 'unreadable', 4_000);
    expect(j.verdict('h1', 4_000).state).toBe('stale');
    j.observe('h1', 'missing', 4_100);
    expect(j.verdict('h1', 4_100)).toEqual({ state: 'missing', beat: undefined, sinceChangeMs: undefined });
    expect(j.hosts()).toEqual([]);
    expect(() => new HeartbeatJudge(0)).toThrow(/windowMs must be a positive number/);
  });
});

describe('the heartbeat writer', () => {
  it('replaces its file whole with a rising sequence and what the host runs, and removes it on stop', async () => {
    const ds = join(tmp, 'write');
    let halves = [{ vm: 'kv1', role: 'primary' as const }];
    const troubles: string[] = [];
    const w = new HeartbeatWriter({ datastore: ds, host: 'h1', periodMs: 20, contents: () => ({ halves, poweredOff: [] }), onTrouble: (m) => troubles.push(m) });
    await w.start();
    const read = () => parseHeartbeat(readFileSync(heartbeatPath(ds, 'h1'), 'utf8'), 'h1.json', 'h1');
    const first = read();
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    // The period may have passed already on a loaded machine: seq 1 or more.
    expect(first.beat).toMatchObject({ host: 'h1', periodMs: 20, halves: [{ vm: 'kv1', role: 'primary' }], poweredOff: [] });
    expect(first.beat.seq).toBeGreaterThanOrEqual(1);
    halves = [];
    w.changed();
    // Every read on the way sees a whole heartbeat (rename), and the sequence only rises.
    let last = first.beat.seq;
    for (let i = 0; i < 200; i++) {
      const p = read();
      expect(p.ok).toBe(true);
      if (!p.ok) return;
      expect(p.beat.seq).toBeGreaterThanOrEqual(last);
      last = p.beat.seq;
      if (p.beat.halves.length === 0 && p.beat.seq >= 5) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(last).toBeGreaterThanOrEqual(5);
    await w.stop();
    expect(existsSync(heartbeatPath(ds, 'h1'))).toBe(false);
    expect(readdirSync(join(ds, HEARTBEAT_DIR))).toEqual([]); // no temporary file left
    expect(troubles).toEqual([]);
  });

  it('reports a write it cannot make once, keeps trying, and says when it works again', async () => {
    if (process.getuid?.() === 0) return; // root writes anywhere
    const ds = join(tmp, 'ro');
    mkdirSync(join(ds, HEARTBEAT_DIR), { recursive: true });
    chmodSync(join(ds, HEARTBEAT_DIR), 0o555);
    const troubles: { m: string; ok: boolean }[] = [];
    let recovered!: () => void;
    const back = new Promise<void>((r) => (recovered = r));
    const w = new HeartbeatWriter({
      datastore: ds,
      host: 'h1',
      periodMs: 10,
      contents: () => ({ halves: [], poweredOff: [] }),
      onTrouble: (m, ok) => {
        troubles.push({ m, ok });
        if (ok) recovered();
      },
    });
    await w.start(); // does not throw
    expect(troubles).toHaveLength(1);
    expect(troubles[0]!.m).toMatch(/datastore heartbeat .*h1\.json: cannot write \(EACCES/);
    // Several periods fail, said once.
    const seq = w.seq;
    for (let i = 0; i < 500 && w.seq < seq + 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(w.seq).toBeGreaterThanOrEqual(seq + 3);
    expect(troubles).toHaveLength(1);
    chmodSync(join(ds, HEARTBEAT_DIR), 0o755);
    await back;
    expect(troubles[1]!.m).toMatch(/written again/);
    await w.stop();
  });
});

// Standby processes: an agent keeps one `lockstep standby` process ready (Node, lockstep and the addon
// loaded), and the next VM half started on its host is that process — its pid is the standby's — told
// its command on stdin; another standby is started once the half is up. A standby that dies unused is
// reported and replaced; with standbys off, halves are spawned as before. `lockstep standby` itself: a
// first line that is not a request is a usage error, stdin closed first is a clean exit. (A VM without
// FT started from a standby still obeys its lease: test/cluster/isolation.test.ts.)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { AgentClient } from '../../src/cluster/agent/client.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { kvConfig } from '../helpers/ft-pair.js';
import { CLI } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';
const CAPACITY = { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 };

/** The pid of the next standby process `agent` starts. */
const nextStandby = (agent: Agent) => new Promise<number>((resolve) => agent.once('standby', resolve));
/** The next warning of `agent`. */
const nextWarning = (agent: Agent) => new Promise<string>((resolve) => agent.once('warning', resolve));

describe('standby processes', () => {
  let tmp: string;
  let store: DirStore;
  let config: JsonValue;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-standby-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    const cfg = await kvConfig(tmp, {});
    config = JSON.parse(readFileSync(cfg.path, 'utf8')) as JsonValue;
  });

  afterAll(async () => {
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('the next half started is the standby process, and another standby follows once it is up', async () => {
    let agent: Agent | undefined;
    const standbys: number[] = [];
    try {
      agent = await Agent.start({ id: 'a1', store, token: TOKEN, dir: join(tmp, 'a1'), capacity: CAPACITY });
      agent.on('standby', (pid) => standbys.push(pid));
      const ready = agent.standbyPid;
      expect(ready).toBeGreaterThan(0);
      const client = new AgentClient({ url: agent.url, token: TOKEN });
      const another = nextStandby(agent);
      const view = await client.start({ vmId: 'kv-test', role: 'primary', config, waitMs: 60_000 });
      expect([view.state, view.pid]).toEqual(['running', ready]);
      // Its events came through as from any half: it listens, and it is published.
      expect(view.listen?.port).toBeGreaterThan(0);
      const replacement = await another;
      expect(replacement).not.toBe(ready);
      expect(agent.standbyPid).toBe(replacement);
      await client.stop('kv-test');
      expect((await client.get('kv-test')).running).toBe(false);
    } finally {
      await agent?.close();
    }
    // Closing the agent ended the standby it held.
    expect(standbys.length).toBe(1);
    expect(() => process.kill(standbys[0]!, 0)).toThrow();
  }, 120_000);

  it('a standby that dies unused is reported and replaced', async () => {
    const agent = await Agent.start({ id: 'a2', store, token: TOKEN, dir: join(tmp, 'a2'), capacity: CAPACITY });
    try {
      const pid = agent.standbyPid!;
      const warned = nextWarning(agent);
      const replaced = nextStandby(agent);
      process.kill(pid, 'SIGKILL');
      expect(await warned).toMatch(/^the standby process exited \(SIGKILL\); VM halves start as new processes until another is ready$/);
      const fresh = await replaced;
      expect(fresh).not.toBe(pid);
      // Meanwhile and after, halves start (here from the new standby).
      const view = await new AgentClient({ url: agent.url, token: TOKEN }).start({ vmId: 'kv-test', role: 'primary', config, waitMs: 60_000 });
      expect([view.state, view.pid]).toEqual(['running', fresh]);
    } finally {
      await agent.close();
    }
  }, 120_000);

  it('with standbys off, a half is a process of its own', async () => {
    const agent = await Agent.start({ id: 'a3', store, token: TOKEN, dir: join(tmp, 'a3'), capacity: CAPACITY, standby: false });
    try {
      expect(agent.standbyPid).toBeUndefined();
      const view = await new AgentClient({ url: agent.url, token: TOKEN }).start({ vmId: 'kv-test', role: 'primary', config, waitMs: 60_000 });
      expect(view.state).toBe('running');
      expect(agent.standbyPid).toBeUndefined();
    } finally {
      await agent.close();
    }
  }, 120_000);
});

describe('lockstep standby', () => {
  const standby = (input: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, 'standby'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(input);
    });

  it('runs the command of its first line; refuses what is not a primary or secondary request; exits 0 on an empty stdin', async () => {
    const help = await standby(`${JSON.stringify({ argv: ['secondary', '--help'] })}\n`);
    expect([help.code, help.stdout.split('\n')[0]]).toEqual([0, 'Usage: lockstep secondary <vm.json|vm.yaml> --join <host:port> [options]']);
    const run = await standby(`${JSON.stringify({ argv: ['run', 'x.elf'] })}\n`);
    expect([run.code, run.stderr]).toEqual([64, "lockstep standby: runs primary or secondary, not 'run'\nRun 'lockstep standby --help' for usage.\n"]);
    const junk = await standby('nope\n');
    expect([junk.code, junk.stderr]).toEqual([64, 'lockstep standby: the first line on stdin is not JSON ("nope")\nRun \'lockstep standby --help\' for usage.\n']);
    expect((await standby('')).code).toBe(0);
  }, 120_000);

  it('names what is wrong with a request that is JSON but not a command line', async () => {
    for (const [line, why] of [
      ['{"argv":[]}', 'the first line must be {"argv": ["primary"|"secondary", ...], "cwd"?: "<dir>"}'],
      ['{"argv":["primary",3]}', 'the first line must be {"argv": ["primary"|"secondary", ...], "cwd"?: "<dir>"}'],
      ['{"argv":["primary"],"cwd":5}', 'cwd must be a string'],
    ] as const) {
      const r = await standby(`${line}\n`);
      expect([r.code, r.stderr], line).toEqual([64, `lockstep standby: ${why}\nRun 'lockstep standby --help' for usage.\n`]);
    }
  }, 120_000);
});

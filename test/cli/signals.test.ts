// SIGUSR1 must never open Node's inspector (code execution for anyone who can signal the process):
// every lockstep process takes SIGUSR1/SIGUSR2 from its first statement, ignores them (logged) where
// it has no use for them, and a primary — started as one or promoted from a secondary — runs its
// operations on them.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { exited, killAll, kvConfig, launch, root, type Proc } from '../helpers/ft-pair.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-signals-'));
const procs: Proc[] = [];
afterEach(() => killAll(procs.splice(0)));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const INSPECTOR = /Debugger listening/;

describe('user signals', () => {
  // The `lockstep` executable (dist/cli/lockstep.cjs) runs `run` from its own bundled copy of signals.ts
  // and hands `record` to the ES modules, whose copy must name the verb in the guard the executable set.
  it.each([
    ['dist/cli/main.js', 'run', []],
    ['dist/cli/lockstep.cjs', 'run', []],
    ['dist/cli/lockstep.cjs', 'record', ['-o', join(tmp, 'record.log')]],
  ])('%s %s ignores SIGUSR1 and SIGUSR2 with a line on stderr, and never opens the inspector', async (entry, verb, extra) => {
    const child = spawn(process.execPath, [join(root, entry), verb, 'guest/bin/kvserver.elf', ...extra, '--clock', 'real', '--net', 'udp:0:11211'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      let err = '';
      const waitFor = (re: RegExp) =>
        new Promise<void>((resolve, reject) => {
          const check = () => {
            if (re.test(err)) resolve();
            else if (child.exitCode !== null) reject(new Error(`exited (${child.exitCode}) without ${re}: ${err}`));
          };
          child.stderr!.on('data', (d: Buffer) => {
            err += d.toString();
            check();
          });
          child.once('exit', check);
          check();
        });
      await waitFor(/udp 127\.0\.0\.1:\d+ -> guest/);
      child.kill('SIGUSR1');
      await waitFor(new RegExp(`SIGUSR1 ignored: lockstep ${verb} has no operation for it`));
      child.kill('SIGUSR2');
      await waitFor(new RegExp(`SIGUSR2 ignored: lockstep ${verb} has no operation for it`));
      expect(err).not.toMatch(INSPECTOR);
      expect(child.exitCode).toBeNull();
      child.kill('SIGINT');
      expect(await new Promise((r) => child.once('exit', (code) => r(code)))).toBe(130);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('a secondary ignores them (logged); promoted to primary it runs its operations on them, and never opens the inspector', async () => {
    const dir = join(tmp, 'promoted');
    mkdirSync(dir);
    const cfg = await kvConfig(dir);
    const primary = launch('primary', ['primary', cfg.path]);
    procs.push(primary);
    const l = await primary.wait('listening');
    const secondary = launch('secondary', ['secondary', cfg.path, '--join', `127.0.0.1:${String(l.port)}`]);
    procs.push(secondary);
    await primary.wait('status', (e) => e.protected === true);
    secondary.child.kill('SIGUSR1');
    const ignored = await secondary.wait('signal', (e) => e.signal === 'SIGUSR1');
    expect(ignored.action).toBe('ignored');
    primary.child.kill('SIGKILL');
    await secondary.wait('listening', (e) => Number(e.epoch) === 2);
    // The promoted primary: SIGUSR1 is a test failover (refused: it has no secondary yet), SIGUSR2 a
    // restart of the secondary (refused likewise). Before, SIGUSR1 opened the inspector here.
    secondary.child.kill('SIGUSR1');
    const failover = await secondary.wait('signal', (e) => e.signal === 'SIGUSR1' && e.action !== 'ignored');
    expect(failover.action).toBe('test-failover');
    await secondary.wait('warning', (e) => /test failover: .*protected/.test(String(e.message)));
    secondary.child.kill('SIGUSR2');
    expect((await secondary.wait('signal', (e) => e.signal === 'SIGUSR2')).action).toBe('test-restart-secondary');
    expect(secondary.log.filter((line) => INSPECTOR.test(line))).toEqual([]);
    expect(secondary.child.exitCode).toBeNull();
    secondary.child.kill('SIGTERM');
    expect(await exited(secondary)).toBe(130);
  });
});

// What a command loads: `lockstep run` and `import 'lockstep'` leave the FT pair, the cluster and their
// etcd/gRPC clients unloaded until something uses them (the CLI's start time is mostly module loading).
// Traced with a module-resolution hook in a child process, on the built package.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const register = join(root, 'test', 'helpers', 'trace-modules', 'register.mjs');
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-startup-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** The modules `args` (a node command line) loads: ES module URLs and CommonJS paths. */
function loaded(args: string[]): string[] {
  const trace = join(tmp, `trace-${n++}.txt`);
  const r = spawnSync(process.execPath, ['--import', register, ...args], { env: { ...process.env, LOCKSTEP_TRACE_MODULES: trace }, encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return readFileSync(trace, 'utf8').trim().split('\n');
}
const heavy = (mods: string[]) => mods.filter((m) => /\/dist\/(ft|cluster\/(manager|agent|store\/etcd-store))|node_modules\/(etcd3|@grpc)\//.test(m));

describe('startup loads only what the command needs', () => {
  it('lockstep run hello.elf: the guest runs, and neither the FT pair, the cluster nor etcd3/gRPC is loaded', () => {
    const mods = loaded([join(root, 'dist', 'cli', 'main.js'), 'run', join(root, 'guest', 'bin', 'hello.elf')]);
    expect(mods.some((m) => m.endsWith('/dist/cli/run.js'))).toBe(true);
    expect(heavy(mods)).toEqual([]);
  });

  it("import 'lockstep' does not load etcd3 or gRPC until an etcd store or arbiter is made", () => {
    const lib = join(root, 'dist', 'index.js');
    const mods = loaded(['--input-type=module', '-e', `await import(${JSON.stringify(lib)});`]);
    expect(mods.some((m) => m.endsWith('/dist/index.js'))).toBe(true);
    expect(mods.filter((m) => /node_modules\/(etcd3|@grpc)\//.test(m))).toEqual([]);
    // …and it is loaded when one is made.
    const made = loaded(['--input-type=module', '-e', `const l = await import(${JSON.stringify(lib)}); await new l.EtcdArbiter({ endpoints: ['http://127.0.0.1:1'] }).close();`]);
    expect(made.some((m) => /node_modules\/etcd3\//.test(m))).toBe(true);
  });
});

// What a command loads: `lockstep run` and `import 'lockstep'` leave the FT pair, the cluster, their
// etcd/gRPC clients, prom-client, yaml and Ajv unloaded until something uses them (the CLI's start time is
// mostly module loading); Ajv is never loaded at run time (the schema is compiled at build time). The
// `lockstep` executable (package.json's bin, one CommonJS file) runs `run` without loading any ES module
// of the package. Traced in a child process on the built package: a module-resolution hook,
// require.cache and moduleLoadList.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const register = join(root, 'test', 'helpers', 'trace-modules', 'register.mjs');
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-startup-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** The modules `args` (a node command line) loads: ES module URLs and CommonJS paths; and its stdout. */
function traced(args: string[], status = 0): { mods: string[]; stdout: string } {
  const trace = join(tmp, `trace-${n++}.txt`);
  const r = spawnSync(process.execPath, ['--import', register, ...args], { env: { ...process.env, LOCKSTEP_TRACE_MODULES: trace }, encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(status);
  return { mods: readFileSync(trace, 'utf8').trim().split('\n'), stdout: r.stdout };
}
const loaded = (args: string[], status = 0): string[] => traced(args, status).mods;
/** The `lockstep` executable as npm installs it: package.json's bin. */
const bin = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: { lockstep: string } }).bin.lockstep);
/** Packages a plain run or import must not load: the etcd client and its gRPC stack, metrics, YAML, Ajv. */
const PACKAGES = /node_modules\/(etcd3|@grpc|prom-client|yaml|ajv)\//;
const heavy = (mods: string[]) => mods.filter((m) => /\/dist\/(ft|cluster\/(manager|agent|store\/etcd-store))/.test(m) || PACKAGES.test(m));
const packages = (mods: string[]) => mods.filter((m) => PACKAGES.test(m));

describe('startup loads only what the command needs', () => {
  it('lockstep run hello.elf: the guest runs; neither the FT pair, the cluster, etcd3/gRPC, prom-client, yaml, Ajv nor zlib/crypto/dgram is loaded', () => {
    const mods = loaded([join(root, 'dist', 'cli', 'main.js'), 'run', join(root, 'guest', 'bin', 'hello.elf')]);
    expect(mods.some((m) => m.endsWith('/dist/cli/run.js'))).toBe(true);
    expect(heavy(mods)).toEqual([]);
    // Built-ins only a Linux boot (gzip, sha256) or --net udp (sockets, DNS) needs.
    expect(mods.filter((m) => /^builtin:(crypto|zlib|dns\/promises|dgram)$/.test(m))).toEqual([]);
  });

  it('the lockstep executable runs hello.elf from its one file: no ES module of the package, nothing from node_modules, only the addon', () => {
    const { mods, stdout } = traced([bin, 'run', join(root, 'guest', 'bin', 'hello.elf')]);
    expect(stdout).toBe('Hello from lockstep!\n');
    // The hook sees the entry itself (as file: and cjs:); everything else of ours would be a second file.
    const ours = mods.filter((m) => !m.startsWith('builtin:') && !m.startsWith('node:') && m !== `cjs:${bin}` && m !== pathToFileURL(bin).href);
    expect(ours).toEqual([`cjs:${join(root, 'build', 'Release', 'lockstep.node')}`]);
    expect(mods.filter((m) => /^builtin:(crypto|zlib|dns\/promises|dgram)$/.test(m))).toEqual([]);
  });

  it("the executable's file holds the run path only: neither the FT pair, the cluster, the configuration, the log nor the other verbs", () => {
    const map = JSON.parse(readFileSync(`${bin}.map`, 'utf8')) as { sources: string[] };
    // Its source map leads back to the TypeScript (through tsc's maps).
    expect(map.sources).toContain('../../src/cli/run.ts');
    expect(map.sources).toContain('../../src/machine/machine.ts');
    expect(map.sources.filter((f) => /\/src\/(ft|cluster|config\/(?!address)|log|protocol|observability|client)\/|\/src\/cli\/(main|commands|record|ft|agent|manager|cluster|demo)\.ts$/.test(f))).toEqual([]);
  });

  it('the executable hands the other verbs to the ES modules', () => {
    const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
    const { mods, stdout } = traced([bin, '--version']);
    expect(stdout).toBe(`${version}\n`);
    expect(mods).toContain(pathToFileURL(join(root, 'dist', 'cli', 'commands.js')).href);
    // A usage error of another verb keeps its exit status through the hand-over.
    expect(loaded([bin, 'record'], 64)).toContain(pathToFileURL(join(root, 'dist', 'cli', 'record.js')).href);
  });

  it('lockstep run --linux loads zlib and crypto when it needs them', () => {
    // The counterpart of the lazy built-ins: the committed guest's gzip'd kernel is unpacked and its
    // sha256 checked (the run then stops on its budget, exit status 75, as booted Linux would not end).
    const mods = loaded([join(root, 'dist', 'cli', 'main.js'), 'run', '--linux', '--max-instructions', '1000'], 75);
    expect(mods).toContain('builtin:zlib');
    expect(mods).toContain('builtin:crypto');
  });

  it("import 'lockstep' loads neither etcd3/gRPC, prom-client, yaml nor Ajv; etcd3 only once an etcd arbiter is made", () => {
    const lib = join(root, 'dist', 'index.js');
    const mods = loaded(['--input-type=module', '-e', `await import(${JSON.stringify(lib)});`]);
    expect(mods.some((m) => m.endsWith('/dist/index.js'))).toBe(true);
    expect(packages(mods)).toEqual([]);
    // …and it is loaded when one is made.
    const made = loaded(['--input-type=module', '-e', `const l = await import(${JSON.stringify(lib)}); await new l.EtcdArbiter({ endpoints: ['http://127.0.0.1:1'] }).close();`]);
    expect(made.some((m) => /node_modules\/etcd3\//.test(m))).toBe(true);
  });

  it('checking a YAML configuration loads yaml, and never Ajv (the schema is compiled at build time)', () => {
    const lib = join(root, 'dist', 'index.js');
    const yamlText = 'vm: {id: a, guest: g.elf}\nft: {enabled: false, heartbeatMs: 50, timeoutMs: 150}\n';
    const mods = loaded([
      '--input-type=module',
      '-e',
      `const l = await import(${JSON.stringify(lib)}); const { config } = l.parseConfig(${JSON.stringify(yamlText)}, 'yaml', 'vm.yaml', '/'); if (config.ft.timeoutMs !== 150) process.exit(3); try { l.validateConfig({ vm: {} }, 'x', '/'); process.exit(4); } catch {}`,
    ]);
    expect(mods.some((m) => /node_modules\/yaml\//.test(m))).toBe(true);
    expect(mods.filter((m) => /node_modules\/ajv\//.test(m))).toEqual([]);
  });
});

// lockstep installed without its optional peer prom-client (a copy of dist/ beside every dependency but
// that one): importing it and commands without metrics work; asking for metrics is a coded error naming
// the package, before anything is opened.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvConfig, root } from '../helpers/ft-pair.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-no-prom-'));
const pkg = join(tmp, 'lockstep');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  mkdirSync(pkg);
  // Real files, not links: Node resolves a module's dependencies from its real path.
  cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
  for (const f of ['package.json', 'binding.gyp']) cpSync(join(root, f), join(pkg, f));
  symlinkSync(join(root, 'build'), join(pkg, 'build'));
  mkdirSync(join(pkg, 'node_modules'));
  for (const dep of readdirSync(join(root, 'node_modules'))) {
    if (dep !== 'prom-client' && dep !== '.bin') symlinkSync(join(root, 'node_modules', dep), join(pkg, 'node_modules', dep));
  }
});

/** Runs node in the copy; resolves with its exit status and output. */
function node(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: pkg, timeout: 120_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: unknown }).code as number | null) ?? null : 0, stdout, stderr });
    });
  });
}

const cli = (...args: string[]) => node([join(pkg, 'dist', 'cli', 'main.js'), ...args]);

describe('without prom-client installed', () => {
  it('the copy really lacks it', async () => {
    const r = await node(['-e', "require.resolve('prom-client')"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Cannot find module 'prom-client'");
  });

  it('the library imports, and createFtMetrics throws ERR_LOCKSTEP_PACKAGE_MISSING naming the package', async () => {
    const script = `
      const lockstep = await import('./dist/index.js');
      try {
        lockstep.createFtMetrics({});
        console.log('no error');
      } catch (err) {
        console.log(JSON.stringify({ code: err.code, packageName: err.packageName, message: err.message, isMissing: err instanceof lockstep.MissingPackageError }));
      }`;
    const r = await node(['--input-type=module', '-e', script]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { code: string; packageName: string; message: string; isMissing: boolean };
    expect(out).toEqual({
      code: 'ERR_LOCKSTEP_PACKAGE_MISSING',
      packageName: 'prom-client',
      message: 'Prometheus metrics need the npm package prom-client, which is not installed: run `npm install prom-client` beside lockstep',
      isMissing: true,
    });
  });

  it('the CLI runs a guest', async () => {
    const r = await cli('run', join(root, 'guest', 'bin', 'hello.elf'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Hello');
  });

  it('a primary or secondary whose configuration asks for metrics stops with the error, having claimed nothing', async () => {
    const dir = join(tmp, 'pair');
    mkdirSync(dir);
    const cfg = await kvConfig(dir, { metrics: true });
    const message = 'Prometheus metrics need the npm package prom-client, which is not installed: run `npm install prom-client` beside lockstep';
    const primary = await cli('primary', cfg.path);
    expect([primary.code, primary.stderr]).toEqual([64, `lockstep primary: ${message}\n`]);
    const secondary = await cli('secondary', cfg.path, '--join', '127.0.0.1:9');
    expect([secondary.code, secondary.stderr]).toEqual([64, `lockstep secondary: ${message}\n`]);
    // No epoch was claimed: the arbiter's directory is as kvConfig left it.
    expect(readdirSync(join(dir, 'arbiter'))).toEqual([]);
  });
});

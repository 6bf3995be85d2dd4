// What `npm pack` ships, and an install from it on a machine without a compiler: the prebuilt addon
// is picked up (native/install.cjs) and the CLI runs a guest with it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-pack-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) => spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });

describe('the npm package', () => {
  it('holds the library, the CLI, the addon sources and guests, and nothing test-only or stray', () => {
    const r = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], ROOT);
    expect(r.status, r.stderr).toBe(0);
    const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    const top = new Set(files.map((f) => f.split('/')[0]));
    expect([...top].sort()).toEqual(['README.md', 'binding.gyp', 'dist', 'guest', 'native', 'package.json', 'src']);
    for (const needed of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/cli/lockstep.cjs', 'dist/cli/lockstep.cjs.map', 'native/install.cjs', 'native/prebuild.mjs', 'native/binding/addon.cc', 'guest/bin/hello.elf', 'guest/linux/bin/Image.gz', 'guest/linux/bin/rootfs.cpio.gz']) {
      expect(files, needed).toContain(needed);
    }
    // No test-only native code (test/native stays in the repository), no build products or logs.
    expect(files.filter((f) => /probe|channel_binding|\.o$|\.log$|^build\/|node_modules/.test(f))).toEqual([]);
    // Nothing compiled from a source that is gone: every dist module has its source.
    const stray = files.filter((f) => f.startsWith('dist/') && f.endsWith('.js') && !existsSync(join(ROOT, f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'))));
    expect(stray).toEqual([]);
  });

  it('installs from the tarball with no compiler on PATH when a prebuilt addon is in it, and runs a guest', () => {
    const packed = run('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp], ROOT);
    expect(packed.status, packed.stderr).toBe(0);
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'))!;
    expect(run('tar', ['-xzf', join(tmp, tarball), '-C', tmp], tmp).status).toBe(0);
    const pkg = join(tmp, 'package');
    // The linux-x64 prebuild as `npm pack` makes it (prepack), here from this checkout's build.
    const pre = run(process.execPath, [join(ROOT, 'native', 'prebuild.mjs'), '--from-build', '--arch', 'x64', '--out', join(pkg, 'native')], ROOT);
    expect(pre.status, pre.stderr).toBe(0);
    // The checkout's dependencies stand in for the registry: this machine may be offline.
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    // A PATH with node and nothing else: no g++, make or python3.
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    const env = { PATH: bin, HOME: tmp };
    expect(existsSync(join(pkg, 'build'))).toBe(false);

    const install = run(process.execPath, [join(pkg, 'native', 'install.cjs')], pkg, env);
    expect(install.status, install.stderr).toBe(0);
    expect(install.stdout).toContain(`using the prebuilt addon ${join(pkg, 'native', 'prebuilds', 'linux-x64', 'lockstep.napi.glibc.node')}`);
    expect(existsSync(join(pkg, 'build'))).toBe(false); // nothing was compiled

    // The executable (package.json's bin, one bundled file) and the CLI's ES modules alike.
    const binFile = (JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { bin: { lockstep: string } }).bin.lockstep;
    for (const entry of [binFile, 'dist/cli/main.js']) {
      const hello = run(process.execPath, [join(pkg, entry), 'run', join(pkg, 'guest', 'bin', 'hello.elf')], pkg, env);
      expect(hello.status, `${entry}: ${hello.stderr}`).toBe(0);
      expect(hello.stdout).toContain('Hello');
    }
  });

  it('builds from source when no prebuilt addon fits, and says what building needs when it cannot', () => {
    const pkg = join(tmp, 'package');
    rmSync(join(pkg, 'native', 'prebuilds'), { recursive: true, force: true });
    rmSync(join(pkg, 'node_modules'), { recursive: true, force: true });
    mkdirSync(join(pkg, 'node_modules'));
    symlinkSync(join(ROOT, 'node_modules', 'node-gyp-build'), join(pkg, 'node_modules', 'node-gyp-build'));
    // Neither node-gyp nor a compiler here: the install fails, naming what a source build needs.
    const install = run(process.execPath, [join(pkg, 'native', 'install.cjs')], pkg, { PATH: join(tmp, 'bin'), HOME: tmp });
    expect(install.status).not.toBe(0);
    expect(install.stderr).toContain('no prebuilt addon for linux-x64');
    expect(install.stderr).toContain('python3, make and a C++20 compiler');
  });
});

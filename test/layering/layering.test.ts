// The layering rules of the source tree, checked on the files themselves: only src/machine/ (and
// src/native/) reach the raw addon, errors are not routed by message text, and the CLI's helpers are
// not a library for tests.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p, ext));
    else if (ext.test(e.name)) out.push(p);
  }
  return out;
}

/** Lines of `dir`'s files matching `pattern`, as `path:line: text`, outside the paths `allowed` accepts. */
function offending(dir: string, pattern: RegExp, allowed: (path: string) => boolean, ext = /\.ts$/): string[] {
  const hits: string[] = [];
  for (const f of files(dir, ext)) {
    if (allowed(f)) continue;
    readFileSync(join(ROOT, f), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (pattern.test(line)) hits.push(`${relative(ROOT, join(ROOT, f))}:${i + 1}: ${line.trim()}`);
      });
  }
  return hits;
}

describe('layering', () => {
  it('nothing outside src/machine/ reaches a machine’s internals or the raw addon object', () => {
    const inMachine = (f: string) => f.startsWith(join('src', 'machine'));
    expect(offending('src', /\[internal\]|internal\]\.native/, inMachine)).toEqual([]);
    expect(offending('src', /from '\.\.\/native\/addon\.js'|from '\.\/native\/addon\.js'/, inMachine)).toEqual([]);
  });

  it('the native page-record size is not spelled out in src/ft or src/log', () => {
    expect(offending(join('src', 'ft'), /\b4100\b/, () => false)).toEqual([]);
    expect(offending(join('src', 'log'), /\b4100\b/, () => false)).toEqual([]);
  });

  it('no native error is told apart by its message text', () => {
    // A regular expression tested against an error's message is how routing by text looks.
    expect(offending('src', /\/[^/\n]+\/\.test\((err|error|e)\b.*message|\/[^/\n]+\/\.test\(message\)/, () => false)).toEqual([]);
  });

  it('tests and benchmarks take no helpers from the CLI', () => {
    expect(offending('test', /from '[./]*src\/cli\//, () => false)).toEqual([]);
    expect(offending('bench', /src\/cli\/|dist', 'cli', 'demo/, () => false)).toEqual([]);
  });

  it('the shipped addon carries no test-only native code, and a package without test/ builds without it', () => {
    type Target = { target_name: string; sources: string[] };
    const gyp = JSON.parse(readFileSync(join(ROOT, 'binding.gyp'), 'utf8')) as { variables: Record<string, string>; targets: Target[]; conditions: [string, { targets: Target[] }][] };
    expect(gyp.targets.map((t) => t.target_name)).toEqual(['lockstep']);
    expect(gyp.targets[0]!.sources.filter((s) => !s.startsWith('native/'))).toEqual([]);
    // The test targets exist only where their sources do (test/native is not in the package).
    expect(gyp.variables['lockstep_tests%']).toContain("existsSync('test/native')");
    const [condition, { targets }] = gyp.conditions.find(([c]) => c.startsWith('lockstep_tests'))!;
    expect(condition).toBe('lockstep_tests==1');
    expect(targets.find((t) => t.target_name === 'lockstep_test')?.sources).toContain('test/native/ring_probe.cc');
    expect(readdirSync(join(ROOT, 'native', 'binding'))).toEqual(['addon.cc']);
  });
});

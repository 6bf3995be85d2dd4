// `lockstep demo --linux`: as root, the whole demo (namespaces, Linux + kvd as an FT pair, TCP clients,
// two SIGKILLs) ends with a clean summary and leaves no namespace behind; without root it says it needs
// root and exits 77; --kills without --linux is a usage error.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from '../helpers/ft-pair.js';

const bin = join(root, 'dist', 'cli', 'main.js');
const isRoot = process.getuid?.() === 0;
const hasIp = spawnSync('ip', ['-V']).status === 0;

function demo(args: string[], options: { uid?: number; gid?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [bin, 'demo', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('lockstep demo --linux', () => {
  it.skipIf(!isRoot || !hasIp || process.platform !== 'linux')(
    'as root: two failovers, nothing lost or applied twice, no connection reset, the namespaces removed',
    async () => {
      const r = await demo(['--linux', '--kills', '2', '--kill-after', '0.5', '--after', '0.5']);
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/acknowledged writes {4}[1-9]\d*, lost: 0\n/);
      expect(r.stdout).toMatch(/increments {13}[1-9]\d*, applied twice: 0\n/);
      expect(r.stdout).toMatch(/connections reset {6}0 of 4 /);
      expect(r.stdout.match(/went live at epoch/g)).toHaveLength(2);
      const tag = /network namespaces (lsA\S+) /.exec(r.stdout)![1]!;
      expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).not.toContain(tag);
    },
    600_000,
  );

  it('without root: says it needs root and exits 77', async () => {
    // As root, the check is seen by running the demo as nobody.
    const r = await demo(['--linux'], isRoot ? { uid: 65534, gid: 65534 } : {});
    expect(r.code, r.stderr).toBe(77);
    expect(r.stderr).toContain('needs root');
    expect(r.stdout).toBe('');
  });

  it('--kills without --linux is a usage error', async () => {
    const r = await demo(['--kills', '3']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('--kills: only with --linux');
  });
});

// Locates the repository root (the package named "lockstep") from a compiled bench file, so the
// benchmark works whatever the current directory is.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const name = (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name;
      if (name === 'lockstep') return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('bench: cannot find the lockstep package root above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** The repository root. */
export const ROOT = findRoot();
/** Directory of the compiled bench entry points (this file's directory). */
export const BUILD_DIR = dirname(fileURLToPath(import.meta.url));
export const GUEST_BIN = join(ROOT, 'guest', 'bin');
export const RESULTS_DIR = join(ROOT, 'bench', 'results');

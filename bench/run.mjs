// `npm run bench` entry point: compiles the TypeScript benchmark (bench/tsconfig.json → bench/build/,
// and dist/ first if it was never built), then runs it with plain node. Arguments pass through.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function compile(project) {
  const r = spawnSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`bench: tsc -p ${project} failed\n`);
    process.exit(r.status ?? 1);
  }
}

if (!existsSync(join(root, 'dist', 'index.js'))) compile('tsconfig.build.json');
compile(join('bench', 'tsconfig.json'));
// `npm run bench -- record [...]` runs the record/replay benchmark instead of the interpreter one,
// `npm run bench -- io [...]` the I/O one (kvserver, network receive, block), `npm run bench -- linux` the
// Linux guest's (boot vs QEMU, processes vs bare metal, idle log, clone pause; `--sections service`: kvd
// plain, recorded, FT and memcached); `npm run chaos` is
// `npm run bench -- chaos [...]`, `npm run bench -- channel [...]` the native logging channel's data path,
// `npm run bench -- startup` the CLI's start beside QEMU's and `node -e 0`'s.
// `npm run bench -- engines [...]` the interpreter, the block compiler and QEMU TCG side by side
// (bench/engines.mjs, plain JavaScript: nothing to compile).
const [first, ...rest] = process.argv.slice(2);
if (first === 'engines') {
  const r = spawnSync(process.execPath, [join(root, 'bench', 'engines.mjs'), ...rest], { cwd: root, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const entries = { record: 'record.js', io: 'io.js', ft: 'ft.js', linux: 'linux.js', placement: 'placement.js', cluster: 'cluster.js', chaos: 'chaos.js', channel: 'native-channel.js', startup: 'startup.js' };
const entry = entries[first] ?? 'main.js';
const args = first in entries ? rest : process.argv.slice(2);
const r = spawnSync(process.execPath, [join(root, 'bench', 'build', 'bench', 'src', entry), ...args], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);

// `npm run test:sanitize`: builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into a
// separate folder and runs the native-heavy tests against it (the normal build is left untouched).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = join(tmpdir(), `lockstep-sanitize-${process.pid}`);
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    console.error(`test:sanitize: '${cmd} ${args.join(' ')}' failed with status ${r.status}`);
    process.exit(r.status ?? 1);
  }
};

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
cpSync(join(root, 'binding.gyp'), join(work, 'binding.gyp'));
cpSync(join(root, 'native'), join(work, 'native'), { recursive: true });
cpSync(join(root, 'test', 'native'), join(work, 'test', 'native'), { recursive: true }); // the test addons' own sources
cpSync(join(root, 'node_modules', 'node-addon-api'), join(work, 'node_modules', 'node-addon-api'), { recursive: true });
console.log('test:sanitize: building the addon with -fsanitize=address,undefined ...');
run(process.execPath, [join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), 'rebuild', '-j', '2'], {
  cwd: work,
  env: { ...process.env, LOCKSTEP_SANITIZE: '1' },
});
const addonPath = join(work, 'build', 'Release', 'lockstep.node');
if (!existsSync(addonPath)) {
  console.error(`test:sanitize: no addon at ${addonPath}`);
  process.exit(1);
}
const libasan = spawnSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
const libubsan = spawnSync('g++', ['-print-file-name=libubsan.so'], { encoding: 'utf8' }).stdout.trim();
// Node itself leaks by design at exit and is not built with ASan: report only errors in our code.
const env = {
  ...process.env,
  LOCKSTEP_ADDON_PATH: addonPath,
  LOCKSTEP_CHANNEL_ADDON_PATH: join(work, 'build', 'Release', 'lockstep_channel_test.node'),
  LOCKSTEP_TEST_ADDON_PATH: join(work, 'build', 'Release', 'test', 'lockstep_test.node'),
  LD_PRELOAD: [libasan, libubsan].join(' '),
  // Machines without an engine of their own run the interpreter (with the devices, most of the native code
  // a guest drives); the block compiler's tests name their engine and run it under the sanitizers too.
  LOCKSTEP_ENGINE: 'interp',
  ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:halt_on_error=1',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
};
const suites = process.argv.slice(2);
// The fuzz smoke drives the devices, snapshot restore and replay with hostile input, the channel tests
// the native data path with hostile streams: under ASan/UBSan any memory error or undefined behaviour
// they provoke is a failure.
run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...(suites.length ? suites : ['test/cpu', 'test/machine', 'test/fuzz', 'test/channel'])], {
  cwd: root,
  env,
});
rmSync(work, { recursive: true, force: true });

// `npm run test:switch`: builds the addon with the portable switch dispatch (LOCKSTEP_DISPATCH=switch,
// warnings as errors) into a scratch folder, runs the CPU tests against it, and checks that every example
// guest stops with the same counters, pc and state hash on it as on the default (computed goto) build.
// The checkout's build/ is left untouched.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = mkdtempSync(join(tmpdir(), 'lockstep-switch-'));
const fail = (why) => {
  console.error(`test:switch: ${why}`);
  rmSync(work, { recursive: true, force: true });
  process.exit(1);
};
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) fail(`'${cmd} ${args.join(' ')}' failed with status ${r.status}`);
  return r;
};

// Only the addon itself (no test/native here, so binding.gyp leaves out the test-only targets).
cpSync(join(root, 'binding.gyp'), join(work, 'binding.gyp'));
cpSync(join(root, 'native'), join(work, 'native'), { recursive: true, filter: (src) => !src.includes(join('native', 'prebuilds')) });
cpSync(join(root, 'node_modules', 'node-addon-api'), join(work, 'node_modules', 'node-addon-api'), { recursive: true });
console.log('test:switch: building the addon with LOCKSTEP_DISPATCH=switch ...');
run(process.execPath, [join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), 'rebuild', '-j', '2'], {
  cwd: work,
  env: { ...process.env, LOCKSTEP_DISPATCH: 'switch', CXXFLAGS: `${process.env.CXXFLAGS ?? ''} -Werror` },
});
const addonPath = join(work, 'build', 'Release', 'lockstep.node');
if (!existsSync(addonPath)) fail(`no addon at ${addonPath}`);
// The define must have reached the compiler, or this would test the default build twice.
if (!readFileSync(join(work, 'build', 'lockstep.target.mk'), 'utf8').includes('-DLOCKSTEP_DISPATCH_SWITCH')) {
  fail('the switch build was compiled without -DLOCKSTEP_DISPATCH_SWITCH');
}

// The interpreter is what the switch changes: every machine here runs it (tests that name an engine still
// run theirs), and the guest hashes below compare the two builds' interpreters.
const env = { ...process.env, LOCKSTEP_ADDON_PATH: addonPath, LOCKSTEP_ENGINE: 'interp' };
const suites = process.argv.slice(2);
run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...(suites.length ? suites : ['test/cpu'])], { cwd: root, env });

const hashes = (extra) => {
  const r = spawnSync(process.execPath, [join(root, 'test', 'dispatch', 'guest-hashes.mjs')], {
    cwd: root,
    env: { ...process.env, LOCKSTEP_ENGINE: 'interp', ...extra },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) fail(`guest-hashes.mjs failed with status ${r.status}:\n${r.stderr}`);
  return r.stdout.trimEnd().split('\n');
};
const want = hashes({ LOCKSTEP_ADDON_PATH: '' }); // empty: the checkout's default build
const got = hashes({ LOCKSTEP_ADDON_PATH: addonPath });
for (let i = 0; i < Math.max(want.length, got.length); i++) {
  if (want[i] !== got[i]) fail(`stop ${i + 1} differs:\n  computed goto: ${want[i] ?? '(none)'}\n  switch:        ${got[i] ?? '(none)'}`);
}
console.log(`test:switch: ${got.length} stops of ${new Set(got.map((l) => l.split(' ')[0])).size} guests agree with the default build`);
rmSync(work, { recursive: true, force: true });

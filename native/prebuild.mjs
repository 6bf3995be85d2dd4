#!/usr/bin/env node
// Builds the prebuilt addons the package ships (native/prebuilds/<platform>-<arch>/lockstep.napi.glibc.node),
// loaded by node-gyp-build so that installing needs no compiler. Each is built from a copy of binding.gyp
// and native/ (no test targets) in a scratch directory, so the checkout's build/ is left alone.
//
//   node native/prebuild.mjs                 # linux-x64 and linux-arm64 (aarch64-linux-gnu-g++)
//   node native/prebuild.mjs --arch arm64    # one of them
//   node native/prebuild.mjs --from-build    # linux-x64 copied from build/Release (already built here)
//   node native/prebuild.mjs --out DIR       # DIR/prebuilds/… instead of native/prebuilds/…
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const FILE = 'lockstep.napi.glibc.node';

/** How each target is compiled on this (x86-64 Linux) host. */
const TARGETS = {
  x64: { env: {} },
  arm64: { env: { CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', LINK: 'aarch64-linux-gnu-g++', AR: 'aarch64-linux-gnu-ar' }, machine: 'AArch64' },
};

const { values } = parseArgs({ options: { arch: { type: 'string', multiple: true }, 'from-build': { type: 'boolean', default: false }, out: { type: 'string' } } });
const out = (arch) => join(values.out ?? join(root, 'native'), 'prebuilds', `linux-${arch}`);
const arches = values.arch ?? Object.keys(TARGETS);
for (const a of arches) if (!(a in TARGETS)) fail(`unknown --arch ${a} (known: ${Object.keys(TARGETS).join(', ')})`);
if (process.platform !== 'linux') fail('prebuilds are made on Linux');

function fail(why) {
  console.error(`prebuild: ${why}`);
  process.exit(1);
}

function run(cmd, args, options) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d) => (log += d));
    child.stderr.on('data', (d) => (log += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(log) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}\n${log.slice(-4000)}`))));
  });
}

/** The ELF machine of a shared object (e_machine at offset 18): 62 x86-64, 183 AArch64. */
function elfMachine(file) {
  const b = readFileSync(file);
  if (b.readUInt32BE(0) !== 0x7f454c46) return 'not ELF';
  return { 62: 'x86-64', 183: 'AArch64' }[b.readUInt16LE(18)] ?? `machine ${b.readUInt16LE(18)}`;
}

async function build(arch) {
  const scratch = mkdtempSync(join(tmpdir(), `lockstep-prebuild-${arch}-`));
  try {
    cpSync(join(root, 'binding.gyp'), join(scratch, 'binding.gyp'));
    cpSync(join(root, 'native'), join(scratch, 'native'), { recursive: true, filter: (src) => !src.includes(`${join('native', 'prebuilds')}`) });
    symlinkSync(join(root, 'node_modules'), join(scratch, 'node_modules'));
    const gyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    const started = Date.now();
    const tick = process.stderr.isTTY ? setInterval(() => process.stderr.write(`\r  linux-${arch}: compiling… ${Math.round((Date.now() - started) / 1000)} s`), 1000) : undefined;
    try {
      await run(process.execPath, [gyp, 'rebuild', `--arch=${arch}`, '--jobs=max'], { cwd: scratch, env: { ...process.env, ...TARGETS[arch].env } });
    } finally {
      if (tick) {
        clearInterval(tick);
        process.stderr.write('\n');
      }
    }
    return install(arch, join(scratch, 'build', 'Release', 'lockstep.node'));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function install(arch, from) {
  const want = arch === 'x64' ? 'x86-64' : TARGETS[arch].machine;
  const got = elfMachine(from);
  if (got !== want) fail(`${from} is ${got}, not ${want}`);
  mkdirSync(out(arch), { recursive: true });
  copyFileSync(from, join(out(arch), FILE));
  console.log(`prebuild: ${join(out(arch), FILE)} (${got})`);
}

for (const arch of arches) {
  if (arch === 'x64' && values['from-build']) install(arch, join(root, 'build', 'Release', 'lockstep.node'));
  else await build(arch).catch((err) => fail(`linux-${arch}: ${err.message}`));
}

#!/usr/bin/env node
// npm's install step: use the prebuilt addon for this platform when one loads (no compiler needed),
// otherwise build from source with node-gyp. `npm install --build-from-source` always builds.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');

/** The prebuild node-gyp-build picks for this platform (native/prebuilds/<platform>-<arch>/), if it loads. */
function prebuilt() {
  let file;
  try {
    file = require('node-gyp-build').resolve(__dirname);
  } catch {
    return undefined; // none for this platform, arch or libc
  }
  try {
    require(file);
    return file;
  } catch (err) {
    console.warn(`lockstep: the prebuilt addon ${file} does not load here (${err.message}); building from source`);
    return undefined;
  }
}

function build() {
  // The checkout's own node-gyp (a devDependency), else the one npm runs install scripts with, else PATH's.
  let gyp = process.env.npm_config_node_gyp;
  try {
    gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
  } catch {
    // not installed here: a consumer's install
  }
  const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) {
    console.error(`lockstep: no prebuilt addon for ${process.platform}-${process.arch}, and node-gyp could not run (${r.error.message}); building needs python3, make and a C++20 compiler`);
    process.exit(1);
  }
  process.exit(r.status ?? 1);
}

if (process.env.npm_config_build_from_source === 'true') {
  build();
} else if (existsSync(join(root, 'build', 'Release', 'lockstep.node'))) {
  // A source build is already here (a checkout built before): it is what the package loads first.
} else {
  const file = prebuilt();
  if (file) console.log(`lockstep: using the prebuilt addon ${file}`);
  else build();
}

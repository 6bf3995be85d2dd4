// Build step (part of build:ts, after tsc): bundles dist/cli/bin.js and everything `lockstep run` loads
// into one CommonJS file, dist/cli/lockstep.cjs, the package's `bin`. Node 20 starts a CommonJS file
// without its ES module loader, and one file instead of ~20: measured on this project's machine, that
// halves what `lockstep run` adds to `node -e 0` (bench/README.md, "Startup"). The other verbs stay ES
// modules (`import('./main.js')` is left external). esbuild is a devDependency; the package ships the output.
// Its source map goes through tsc's maps to src/*.ts (node --enable-source-maps).
import { chmodSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const cli = fileURLToPath(new URL('../../dist/cli/', import.meta.url));

await build({
  entryPoints: [`${cli}bin.js`],
  outfile: `${cli}lockstep.cjs`,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // etcd3, yaml, node-gyp-build…: resolved from the package at run time, as the ES modules do.
  packages: 'external',
  sourcemap: 'linked',
  // dist/cli/lockstep.cjs sits two levels below the package root like every dist/<dir>/<file>.js, so the
  // relative URLs built from import.meta.url (../../package.json, ../../guest/) mean the same.
  define: { 'import.meta.url': '__lockstepModuleUrl' },
  banner: { js: "'use strict';\nconst __lockstepModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  plugins: [
    {
      name: 'es-modules-for-other-verbs',
      setup(b) {
        b.onResolve({ filter: /^\.\/main\.js$/ }, (args) => (args.importer.endsWith(`${cli}bin.js`) ? { path: args.path, external: true } : undefined));
      },
    },
  ],
  logLevel: 'warning',
});
chmodSync(`${cli}lockstep.cjs`, 0o755);

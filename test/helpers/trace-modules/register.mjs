// Preload (`node --import`) for tests: traces ES modules through hooks.mjs, and at exit appends the
// CommonJS modules loaded (require.cache: etcd3 and gRPC are CommonJS) to LOCKSTEP_TRACE_MODULES.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

register('./hooks.mjs', import.meta.url);
const require = createRequire(import.meta.url);
process.on('exit', () => {
  if (process.env.LOCKSTEP_TRACE_MODULES) appendFileSync(process.env.LOCKSTEP_TRACE_MODULES, Object.keys(require.cache).map((k) => `cjs:${k}\n`).join(''));
});

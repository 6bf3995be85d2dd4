// Preload (`node --import`) for tests: traces ES modules through hooks.mjs, and at exit appends the
// CommonJS modules loaded (require.cache: etcd3, gRPC and yaml are CommonJS) and Node's built-in modules
// (process.moduleLoadList: `builtin:crypto`, however they were loaded) to LOCKSTEP_TRACE_MODULES.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

register('./hooks.mjs', import.meta.url);
const require = createRequire(import.meta.url);
process.on('exit', () => {
  if (!process.env.LOCKSTEP_TRACE_MODULES) return;
  const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => `builtin:${m.slice('NativeModule '.length)}\n`);
  appendFileSync(process.env.LOCKSTEP_TRACE_MODULES, Object.keys(require.cache).map((k) => `cjs:${k}\n`).join('') + builtins.join(''));
});

// Module resolution hook (node:module register()): appends every ES module URL resolved to the file
// named by LOCKSTEP_TRACE_MODULES. Test-only: tells which parts of the package a command loads.
import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (process.env.LOCKSTEP_TRACE_MODULES) appendFileSync(process.env.LOCKSTEP_TRACE_MODULES, `${r.url}\n`);
  return r;
}

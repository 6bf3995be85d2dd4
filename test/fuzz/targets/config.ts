// Configuration target: mutated JSON and YAML text through parseConfig, and structurally mutated objects
// (a random field set to a hostile value) through validateConfig. Only ConfigError may come out, and the
// same input always gives the same answer.
import { readdirSync, readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { ConfigError, parseConfig, validateConfig, type ConfigFormat } from '../../../src/config/index.js';
import { check, type FuzzTarget } from '../harness.js';
import { havoc, int, pick, type Rnd } from '../mutate.js';

const corpus = new URL('../corpus/config/', import.meta.url);
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).length;
let seeds: { text: string; format: ConfigFormat }[] = [];

/** Values that have broken configuration loaders: wrong types, boundaries, huge and odd strings. */
function hostile(rnd: Rnd): unknown {
  return pick(rnd, [
    null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 53), 1e308, -0, Number.MAX_SAFE_INTEGER + 2, '', ' ', '0', 'yes', 'no', 'on', '~',
    'null', '1e309', '0x10', '../../../etc/passwd', '/dev/zero', 'a'.repeat(70), 'x'.repeat(100_000), '\u0000', '\ud800', '__proto__',
    'constructor', '10.0.0.1:7400', '[::1]:0', '999.1.1.1:80', 'http://', 'tcp://x', '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', '00'.repeat(16),
    [], [1, 2, 3], {}, { backend: 'file' }, { backend: 'etcd', endpoints: [] }, { '': 1 }, { __proto__: { polluted: true } },
    JSON.parse('{"__proto__": {"polluted": true}}'), nest(rnd, 1 + int(rnd, 2000)),
  ]);
}

/** A deeply nested array or object: recursive code must not run out of stack on it. */
function nest(rnd: Rnd, depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = rnd() < 0.5 ? [v] : { a: v };
  return v;
}

/** Sets the value at a random path (existing or new) of `root`, in place, to `value`. */
function setRandomPath(root: Record<string, unknown>, rnd: Rnd, value: unknown): void {
  let node: Record<string, unknown> = root;
  for (let depth = 0; depth < 6; depth++) {
    const keys = Object.keys(node);
    const key = keys.length === 0 || rnd() < 0.15 ? pick(rnd, ['id', 'guest', 'extra', 'disk', 'net', 'arbiter', 'listen', 'tls', '__proto__', '0']) : pick(rnd, keys);
    // Own properties only: `node['__proto__']` would walk into Object.prototype and pollute it.
    const child = Object.hasOwn(node, key) ? node[key] : undefined;
    if (child !== null && typeof child === 'object' && !Array.isArray(child) && rnd() < 0.7) {
      node = child as Record<string, unknown>;
      continue;
    }
    Object.defineProperty(node, key, { value, enumerable: true, writable: true, configurable: true });
    break;
  }
}

/** parseConfig or validateConfig: the result, or the ConfigError's message; any other error is a finding. */
function attempt(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ConfigError) return `ConfigError: ${err.message}`;
    throw err;
  }
}

export const configTarget: FuzzTarget = {
  name: 'config',
  about: 'parseConfig on mutated JSON/YAML text and validateConfig on objects with hostile field values: ConfigError only, deterministic',
  setup() {
    seeds = readdirSync(corpus)
      .filter((f) => /\.(json|ya?ml)$/.test(f))
      .map((f) => ({ text: readFileSync(new URL(f, corpus), 'utf8'), format: f.endsWith('.json') ? 'json' : 'yaml' }));
  },
  iterate(rnd) {
    const textMode = rnd() < 0.5;
    const seed = pick(rnd, textMode ? seeds : seeds.filter((x) => x.format === 'json'));
    if (textMode) {
      const text = Buffer.from(havoc(Buffer.from(seed.text), rnd, 6)).toString('utf8');
      const format: ConfigFormat = rnd() < 0.9 ? seed.format : seed.format === 'json' ? 'yaml' : 'json';
      const a = attempt(() => parseConfig(text, format, `fuzz.${format}`, '/fuzz'));
      const b = attempt(() => parseConfig(text, format, `fuzz.${format}`, '/fuzz'));
      check(isDeepStrictEqual(a, b), 'parsing the same text twice gives the same answer');
      return;
    }
    const mutated = JSON.parse(seed.text) as Record<string, unknown>;
    const edits = 1 + int(rnd, 3);
    for (let k = 0; k < edits; k++) setRandomPath(mutated, rnd, hostile(rnd));
    const a = attempt(() => validateConfig(mutated, 'fuzz.json', '/fuzz'));
    const b = attempt(() => validateConfig(mutated, 'fuzz.json', '/fuzz'));
    check(isDeepStrictEqual(a, b), 'validating the same object twice gives the same answer');
    check(Object.getOwnPropertyNames(Object.prototype).length === PROTOTYPE_NAMES, 'Object.prototype is not polluted');
  },
};

// Configuration text to a validated configuration: JSON or YAML parsed with positions, so syntax errors
// and bad fields are reported by line and column. No file system access here.
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import type { Document, LineCounter, Node as YamlNode } from 'yaml';
import { ConfigError, type ConfigIssue } from './errors.js';
import { JsonSyntaxError, lineColumn, parseJson, pathKey } from './json.js';
import type { ValidatedConfig } from './types.js';
import { fieldName, validateWithPositions, type FieldPath, type Locate } from './validate.js';

// The yaml package (some 70 modules) is required on the first YAML text, not when lockstep is imported:
// a program that never reads a YAML configuration does not load it. Its CommonJS build keeps this sync.
let yamlModule: typeof Yaml | undefined;
function yaml(): typeof Yaml {
  yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yamlModule;
}

/** The two formats a configuration can be written in. */
export type ConfigFormat = 'json' | 'yaml';

/** The format a file name implies: `.json`, or `.yaml`/`.yml` (any case); undefined otherwise. */
export function formatFromPath(path: string): ConfigFormat | undefined {
  const m = /\.(json|ya?ml)$/i.exec(path);
  if (!m) return undefined;
  return m[1]!.toLowerCase() === 'json' ? 'json' : 'yaml';
}

/** `line L, column C: <what>` followed by the line itself and a caret under the column. */
function syntaxError(sourceName: string, text: string, offset: number, what: string, cause?: unknown): ConfigError {
  const { line, column } = lineColumn(text, offset);
  const lineText = text.split('\n')[line - 1]?.replace(/\r$/, '') ?? '';
  const gutter = String(line);
  let frame = '';
  if (lineText.length <= 200) {
    const pad = lineText.slice(0, column - 1).replace(/[^\t]/g, ' ');
    frame = `\n  ${gutter} | ${lineText}\n  ${' '.repeat(gutter.length)} | ${pad}^`;
  }
  return new ConfigError(sourceName, [{ field: '', message: `line ${line}, column ${column}: ${what}${frame}`, line, column }], { cause });
}

function parseJsonText(text: string, sourceName: string): { value: unknown; locate: Locate } {
  try {
    const { value, positions } = parseJson(text);
    return {
      value,
      locate: (path) => {
        const at = positions.get(pathKey(path));
        return at === undefined ? undefined : lineColumn(text, at);
      },
    };
  } catch (err) {
    if (err instanceof JsonSyntaxError) throw syntaxError(sourceName, text, err.offset, `invalid JSON: ${err.message}`, err);
    throw err;
  }
}

/** Plain scalars YAML 1.1 reads as booleans and YAML 1.2 as strings (true/false are booleans in both). */
const YAML11_BOOLEAN = /^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/;
/** Plain integers with a leading zero: octal in YAML 1.1 (017 = 15), decimal in 1.2 (017 = 17). */
const YAML11_OCTAL = /^[-+]?0[0-9_]+$/;

/**
 * Values whose meaning depends on the YAML version, written unquoted: refused, so that a file means
 * one thing to every reader (and to its author, who may think in YAML 1.1, as PyYAML does).
 */
function ambiguousScalars(doc: Document, lineCounter: LineCounter): ConfigIssue[] {
  const { isMap, isScalar, isSeq } = yaml();
  const issues: ConfigIssue[] = [];
  const walk = (node: unknown, path: (string | number)[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) walk(pair.value, [...path, isScalar(pair.key) ? String(pair.key.value) : String(pair.key)]);
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item, [...path, i]));
    } else if (isScalar(node) && node.type === 'PLAIN' && typeof node.source === 'string') {
      const src = node.source;
      const what = YAML11_BOOLEAN.test(src)
        ? `the unquoted value ${src} means ${/^[yYoO]/.test(src) && src.toLowerCase() !== 'off' ? 'true' : 'false'} in YAML 1.1 but the string "${src}" in YAML 1.2 (which lockstep reads): write true or false for a boolean, or quote it ("${src}") for a string`
        : YAML11_OCTAL.test(src)
          ? `the unquoted number ${src} is octal in YAML 1.1 but decimal in YAML 1.2 (which lockstep reads): write it without the leading zero, or quote it for a string`
          : undefined;
      if (what === undefined) return;
      const field = fieldName(path);
      const at = node.range ? lineCounter.linePos(node.range[0]) : undefined;
      issues.push({
        field,
        message: `${field === '' ? '' : `${field}: `}${what}${at ? ` (line ${at.line}, column ${at.col})` : ''}`,
        ...(at ? { line: at.line, column: at.col } : {}),
      });
    }
  };
  walk(doc.contents, []);
  return issues;
}

function parseYamlText(text: string, sourceName: string): { value: unknown; locate: Locate } {
  const { LineCounter, isMap, isScalar, isSeq, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  // The core schema whatever the file says: a %YAML 1.1 directive must not make yes/on/y true.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, schema: 'core' });
  if (doc.directives?.yaml.explicit && doc.directives.yaml.version !== '1.2') {
    const m = /^%YAML[ \t]+\S+/m.exec(text);
    throw syntaxError(
      sourceName,
      text,
      m?.index ?? 0,
      `%YAML ${doc.directives.yaml.version}: lockstep reads configuration as YAML 1.2 (core schema), where yes/no/on/off are strings and 017 is 17; remove the directive`,
    );
  }
  // Warnings (an unresolved tag, say) would change what a value means: refuse them as well.
  const first = doc.errors[0] ?? doc.warnings[0];
  if (first) {
    let what = first.message;
    if (first.code === 'DUPLICATE_KEY') {
      const KEY = /"(?:[^"\\]|\\.)*"|'[^']*'|[^\s:,{}[\]]+/y;
      KEY.lastIndex = first.pos[0];
      const key = KEY.exec(text)?.[0].replace(/^["']|["']$/g, '');
      what = key === undefined ? 'a field is given twice' : `the field ${JSON.stringify(key)} is given twice`;
    }
    throw syntaxError(sourceName, text, first.pos[0], `invalid YAML: ${what}`, first);
  }
  const ambiguous = ambiguousScalars(doc, lineCounter);
  if (ambiguous.length > 0) throw new ConfigError(sourceName, ambiguous);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(sourceName, [{ field: '', message: `invalid YAML: ${(err as Error).message}` }], { cause: err });
  }
  const locate: Locate = (path: FieldPath) => {
    let node: unknown = doc.contents;
    let offset: number | undefined;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
        if (!pair) return undefined;
        offset = (pair.key as YamlNode | null)?.range?.[0];
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as YamlNode | undefined;
        offset = item?.range?.[0];
        node = item;
      } else {
        return undefined;
      }
    }
    if (offset === undefined) return undefined;
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  return { value, locate };
}

/**
 * Parses and validates configuration text. Syntax errors name the line and column; a field given
 * twice is an error in both formats. Relative paths are resolved against `baseDir` (the directory of
 * the file the text came from). Files and environment variables are not looked at (see `loadConfig`).
 *
 * @throws {ConfigError} naming `sourceName`, the line and column or the field's path, and what is wrong
 */
export function parseConfig(text: string, format: ConfigFormat, sourceName: string, baseDir: string): ValidatedConfig {
  const { value, locate } = format === 'json' ? parseJsonText(text, sourceName) : parseYamlText(text, sourceName);
  return validateWithPositions(value, sourceName, baseDir, locate);
}

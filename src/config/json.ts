// A strict JSON (RFC 8259) parser that remembers where each field is and stops at the exact offset of
// a syntax error or a duplicate key, which JSON.parse does not report on Node 20. Configuration-sized
// input only: it is recursive (with a depth limit) and not fast.

/** A syntax error at `offset` (UTF-16 code units from the start of the text). */
export class JsonSyntaxError extends Error {
  readonly offset: number;
  constructor(offset: number, message: string) {
    super(message);
    this.offset = offset;
  }
}

/** 1-based line and column (in UTF-16 code units) of `offset` in `text`; CR LF counts as one line end. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let k = 0; k < offset && k < text.length; k++) {
    if (text.charCodeAt(k) === 0x0a) {
      line++;
      lineStart = k + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** Key of a field path in {@link ParsedJson.positions}. */
export function pathKey(path: readonly (string | number)[]): string {
  return path.map(String).join('\u0000');
}

export interface ParsedJson {
  /** Objects are created without a prototype, so a `__proto__` key is an ordinary (unknown) field. */
  value: unknown;
  /** Offset of each field's key (of each element, for arrays), by {@link pathKey}. */
  positions: Map<string, number>;
}

const MAX_DEPTH = 256;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Parses `text` as one JSON value; throws {@link JsonSyntaxError} at the first problem. */
export function parseJson(text: string): ParsedJson {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const positions = new Map<string, number>();

  const describe = (at: number): string =>
    at >= text.length ? 'the end of the file' : JSON.stringify(String.fromCodePoint(text.codePointAt(at)!));
  const fail = (at: number, what: string): never => {
    throw new JsonSyntaxError(at, `${what}, found ${describe(at)}`);
  };
  const ws = (): void => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };

  const string = (): string => {
    const start = i;
    i++; // opening quote
    let out = '';
    for (;;) {
      if (i >= text.length) throw new JsonSyntaxError(start, 'unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) throw new JsonSyntaxError(i, 'control character in a string (write it as an escape such as \\n)');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonSyntaxError(i, 'a \\u escape needs four hex digits');
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else if (e !== undefined && e in ESCAPES) {
          out += ESCAPES[e];
          i += 2;
        } else {
          throw new JsonSyntaxError(i, `invalid escape ${JSON.stringify('\\' + (e ?? ''))} in a string`);
        }
        continue;
      }
      out += text[i];
      i++;
    }
  };

  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const number = (): number => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail(i, 'expected a value');
    const end = i + m[0].length;
    // A number must not run into more number-like characters (`01`, `1.`, `1e`).
    if (/[0-9.eE+-]/.test(text[end] ?? '')) return fail(end, 'malformed number');
    i = end;
    return Number(m[0]);
  };

  const value = (path: (string | number)[], depth: number): unknown => {
    ws();
    const c = text[i];
    if (c === '{') return object(path, depth + 1);
    if (c === '[') return array(path, depth + 1);
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        if (/[A-Za-z0-9_$]/.test(text[i] ?? '')) return fail(i - word.length, 'expected a value');
        return v;
      }
    }
    if (c === "'") return fail(i, 'strings need double quotes');
    return fail(i, 'expected a value');
  };

  const object = (path: (string | number)[], depth: number): Record<string, unknown> => {
    if (depth > MAX_DEPTH) fail(i, `nested more than ${MAX_DEPTH} deep`);
    i++; // {
    const out = Object.create(null) as Record<string, unknown>;
    const firstAt = new Map<string, number>();
    ws();
    if (text[i] === '}') {
      i++;
      return out;
    }
    for (;;) {
      ws();
      if (text[i] === '}') throw new JsonSyntaxError(i, 'trailing comma before "}"');
      if (text[i] !== '"') fail(i, 'expected a field name in double quotes');
      const keyAt = i;
      const key = string();
      const earlier = firstAt.get(key);
      if (earlier !== undefined) throw new JsonSyntaxError(keyAt, `duplicate field ${JSON.stringify(key)} (first given on line ${lineColumn(text, earlier).line})`);
      firstAt.set(key, keyAt);
      ws();
      if (text[i] !== ':') fail(i, 'expected ":" after a field name');
      i++;
      const childPath = [...path, key];
      positions.set(pathKey(childPath), keyAt);
      out[key] = value(childPath, depth);
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === '}') {
        i++;
        return out;
      }
      fail(i, 'expected "," or "}"');
    }
  };

  const array = (path: (string | number)[], depth: number): unknown[] => {
    if (depth > MAX_DEPTH) fail(i, `nested more than ${MAX_DEPTH} deep`);
    i++; // [
    const out: unknown[] = [];
    ws();
    if (text[i] === ']') {
      i++;
      return out;
    }
    for (;;) {
      ws();
      if (text[i] === ']') throw new JsonSyntaxError(i, 'trailing comma before "]"');
      const childPath = [...path, out.length];
      positions.set(pathKey(childPath), i);
      out.push(value(childPath, depth));
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === ']') {
        i++;
        return out;
      }
      fail(i, 'expected "," or "]"');
    }
  };

  ws();
  if (i >= text.length) throw new JsonSyntaxError(i, 'the file is empty (expected a JSON object)');
  const v = value([], 0);
  ws();
  if (i < text.length) fail(i, 'expected the end of the file after the top-level value');
  return { value: v, positions };
}

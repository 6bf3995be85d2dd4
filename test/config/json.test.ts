// The position-keeping JSON parser against JSON.parse: same values for valid text, an error (with an
// offset) for everything JSON.parse refuses.
import { describe, expect, it } from 'vitest';
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import { JsonSyntaxError, lineColumn, parseJson, pathKey } from '../../src/config/json.js';
import { editDistance, suggest } from '../../src/config/suggest.js';

const VALID = [
  '{}',
  '[]',
  '0',
  '-0.5e-3',
  '1E+2',
  '"\\u00e9\\ud83d\\ude00 \\" \\\\ \\/ \\b \\f \\n \\r \\t"',
  ' { "a" : [ 1 , 2.25 , -3 , true , false , null , { } , [ ] ] , "b" : { "c" : "d" } } ',
  '{"__proto__": {"x": 1}, "constructor": 2}',
  '[[[[[[[[[[1]]]]]]]]]]',
  '\t\r\n"tabs and CRLF"\r\n',
  '12345678901234567890',
];

const INVALID = ['{', '[1,]', '{"a":1,}', '{"a" 1}', "{'a':1}", '01', '1.', '.5', '+1', '1e', '"\\x"', '"a\nb"', 'tru', 'nulll', 'NaN', '[1 2]', '{"a":1}}', '"\\u12"', '/* c */ 1', '-'];

describe('parseJson', () => {
  it.each(VALID)('parses %j as JSON.parse does', (text) => {
    const { value } = parseJson(text);
    expect(JSON.stringify(value)).toBe(JSON.stringify(JSON.parse(text)));
  });

  it('builds objects without a prototype, so __proto__ is a plain key', () => {
    const { value } = parseJson('{"__proto__": {"polluted": 1}}') as { value: Record<string, unknown> };
    expect(Object.getPrototypeOf(value)).toBeNull();
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it.each(INVALID)('refuses %j, as JSON.parse does, at an offset inside the text', (text) => {
    expect(() => JSON.parse(text)).toThrow(SyntaxError);
    let err: unknown;
    try {
      parseJson(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(JsonSyntaxError);
    expect((err as JsonSyntaxError).offset).toBeGreaterThanOrEqual(0);
    expect((err as JsonSyntaxError).offset).toBeLessThanOrEqual(text.length);
  });

  it('refuses a duplicate key, which JSON.parse accepts silently', () => {
    expect(() => parseJson('{\n"a": 1,\n"a": 2}')).toThrow(/duplicate field "a" \(first given on line 2\)/);
  });

  it('refuses nesting deeper than its limit instead of overflowing the stack', () => {
    expect(() => parseJson('['.repeat(100_000))).toThrow(/nested more than 256 deep/);
  });

  it('remembers where each field and element is', () => {
    const text = '{\n  "vm": {\n    "id": "a",\n    "list": [1,\n      2]\n  }\n}';
    const { positions } = parseJson(text);
    const at = (path: (string | number)[]) => lineColumn(text, positions.get(pathKey(path))!);
    expect(at(['vm'])).toEqual({ line: 2, column: 3 });
    expect(at(['vm', 'id'])).toEqual({ line: 3, column: 5 });
    expect(at(['vm', 'list', 1])).toEqual({ line: 5, column: 7 });
  });
});

describe('suggest', () => {
  it('measures edits, with a swap of neighbours as one', () => {
    expect(editDistance('timout', 'timeoutMs')).toBe(3);
    expect(editDistance('hearbteatMs', 'heartbeatMs')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('ramMiB', 'RAMMIB')).toBe(0);
  });

  it('suggests close names and prefixes, and nothing for strangers', () => {
    const ft = ['enabled', 'listen', 'keyFile', 'keyHex', 'keyEnv', 'heartbeatMs', 'timeoutMs', 'arbiter'];
    expect(suggest('timout', ft)).toBe('timeoutMs');
    expect(suggest('timeout', ft)).toBe('timeoutMs');
    expect(suggest('heartbeat', ft)).toBe('heartbeatMs');
    expect(suggest('enable', ft)).toBe('enabled');
    expect(suggest('keyfile', ft)).toBe('keyFile');
    expect(suggest('arbitre', ft)).toBe('arbiter');
    expect(suggest('quorum', ft)).toBeUndefined();
    expect(suggest('x', ft)).toBeUndefined();
  });
});

// Why the hand-written parser stays (issue 15, item 5: replace it only where the yaml package gives the
// same): for valid JSON, yaml finds every field at the same line and column, but it also takes text
// that is not JSON, and it accepts some of it silently, so a .json file would stop being strict JSON.
describe('the yaml package on JSON input', () => {
  const positionsByYaml = (text: string): Map<string, { line: number; column: number }> => {
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter, uniqueKeys: true, schema: 'core' });
    expect(doc.errors).toEqual([]);
    const out = new Map<string, { line: number; column: number }>();
    const walk = (node: unknown, path: (string | number)[]): void => {
      if (isMap(node)) {
        for (const pair of node.items) {
          const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
          const { line, col } = lineCounter.linePos((pair.key as { range: [number, number, number] }).range[0]);
          out.set(pathKey([...path, key]), { line, column: col });
          walk(pair.value, [...path, key]);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => {
          const { line, col } = lineCounter.linePos((item as { range: [number, number, number] }).range[0]);
          out.set(pathKey([...path, i]), { line, column: col });
          walk(item, [...path, i]);
        });
      }
    };
    walk(doc.contents, []);
    return out;
  };

  it('finds every field of valid JSON where parseJson does', () => {
    const text = [
      '{',
      '  "vm": { "id": "kv1", "guest": "guest/bin/kvserver.elf", "ramMiB": 64,',
      '          "devices": { "rng": true, "net": { "backend": "udp", "hostPort": 11211 } } },',
      '\t"ft": {"listen": "10.0.0.1:7400", "keyFile": "/etc/lockstep/kv1.key",',
      '    "arbiter": { "backend": "etcd", "endpoints": ["http://10.0.0.5:2379", "http://[::1]:2379"] } },',
      '  "metrics": { "listen": "127.0.0.1:9464" }, "é": [1, [2, {"x": null}]]',
      '}',
    ].join('\r\n');
    const { positions } = parseJson(text);
    const byYaml = positionsByYaml(text);
    expect([...byYaml.keys()].sort()).toEqual([...positions.keys()].sort());
    for (const [key, offset] of positions) expect(byYaml.get(key), key).toEqual(lineColumn(text, offset));
  });

  it('accepts text JSON refuses, which parseJson reports by line and column', () => {
    for (const notJson of ['{"a":1,}', "{'a':1}", '{a: 1}', '{"a": 1} # comment', '[1,]', '{"a": .5}']) {
      expect(() => JSON.parse(notJson), notJson).toThrow();
      expect(() => parseJson(notJson), notJson).toThrow(JsonSyntaxError);
      expect(parseDocument(notJson, { uniqueKeys: true, schema: 'core' }).errors, notJson).toEqual([]);
    }
  });
});

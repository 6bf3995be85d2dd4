// Every TypeScript sample in README.md and docs/*.md that imports from 'lockstep' type-checks against
// the package's real exports (issue 14, bug 9: docs/placement.md imported `explain`, which the package
// does not export). Fragments may use names the prose defines (a snapshot, a token): only "cannot find
// name" is forgiven; a missing export, a wrong member or a wrong argument fails.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cluster.js';

/** Diagnostics a fragment may have: names defined by the surrounding prose, not by the sample. */
const FORGIVEN = new Set([
  2304, // Cannot find name 'x'.
  2552, // Cannot find name 'x'. Did you mean 'y'?
  2588, // Cannot assign to 'x' because it is a constant (a name the prose declared)
  18004, // No value exists in scope for the shorthand property 'x' (a name the prose declared)
]);

interface Sample {
  where: string;
  code: string;
}

function samples(): Sample[] {
  const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
  const out: Sample[] = [];
  for (const f of files) {
    const lines = readFileSync(join(ROOT, f), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (lines[i]!.trim() !== '```ts') continue;
      const start = i + 1;
      let end = start;
      while (end < lines.length && lines[end]!.trim() !== '```') end++;
      const code = lines.slice(start, end).join('\n');
      if (/from 'lockstep'/.test(code)) out.push({ where: `${f}:${start + 1}`, code });
      i = end;
    }
  }
  return out;
}

describe('documentation samples', () => {
  it('type-check against the package exports (every sample that imports lockstep)', () => {
    const list = samples();
    expect(list.length).toBeGreaterThanOrEqual(5);
    const virtual = new Map(list.map((s, i) => [join(ROOT, 'test', 'docs', `.sample-${i}.mts`), s]));
    const options: ts.CompilerOptions = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ['node'],
      baseUrl: ROOT,
      paths: { lockstep: ['./src/index.ts'] },
      allowImportingTsExtensions: true,
    };
    const host = ts.createCompilerHost(options);
    const readFile = host.readFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    const getSourceFile = host.getSourceFile.bind(host);
    host.readFile = (f) => virtual.get(f)?.code ?? readFile(f);
    host.fileExists = (f) => virtual.has(f) || fileExists(f);
    host.getSourceFile = (f, v, onError, create) => {
      const s = virtual.get(f);
      return s !== undefined ? ts.createSourceFile(f, s.code, v, true) : getSourceFile(f, v, onError, create);
    };
    const program = ts.createProgram([...virtual.keys()], options, host);
    const problems: string[] = [];
    for (const [file, s] of virtual) {
      const sf = program.getSourceFile(file)!;
      for (const d of [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)]) {
        if (FORGIVEN.has(d.code)) continue;
        const line = d.start !== undefined ? sf.getLineAndCharacterOfPosition(d.start).line : 0;
        const [docFile, docLine] = s.where.split(':');
        problems.push(`${docFile}:${Number(docLine) + line}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

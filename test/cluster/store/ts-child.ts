// Runs TypeScript sources of this repo in a child Node process without a build: a module hook
// transpiles `.ts` with the project's TypeScript (types erased, nothing checked) and maps `.js` imports to `.ts`.
// Transpiled modules are kept in a cache keyed by their source (and the TypeScript version), so that a
// child whose modules are all cached never loads TypeScript: loading it and transpiling the store's
// sources cost each child more than a second of CPU, and the store and arbiter tests start dozens.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository root. */
export const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

/** Where transpiled modules are kept, by content: a stale entry is never found, only left over. */
const CACHE = join(tmpdir(), 'lockstep-ts-child-cache');

const hooks = (tsVersion: string) => `
import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
let ts;
const typescript = () => (ts ??= createRequire(${JSON.stringify(pathToFileURL(join(REPO, 'package.json')).href)})('typescript'));
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && specifier.endsWith('.js') && context.parentURL?.endsWith('.ts')) {
      return next(specifier.slice(0, -3) + '.ts', context);
    }
    throw err;
  }
}
export async function load(url, context, next) {
  if (url.startsWith('file:') && url.endsWith('.ts')) {
    const source = await readFile(new URL(url), 'utf8');
    const key = createHash('sha256').update(${JSON.stringify(tsVersion)}).update('\0').update(url).update('\0').update(source).digest('hex');
    const cached = join(${JSON.stringify(CACHE)}, key + '.js');
    let out;
    try {
      out = await readFile(cached, 'utf8');
    } catch {
      out = typescript().transpileModule(source, {
        fileName: url,
        compilerOptions: { module: typescript().ModuleKind.ESNext, target: typescript().ScriptTarget.ES2022, sourceMap: false },
      }).outputText;
      // Written whole, then renamed: a child reading the cache never sees half a module.
      const tmp = cached + '.' + process.pid + '.tmp';
      await writeFile(tmp, out);
      await rename(tmp, cached);
    }
    return { format: 'module', source: out, shortCircuit: true };
  }
  return next(url, context);
}
`;

let registerUrl: string | undefined;
let hookDir: string | undefined;

/** Node arguments that make the child able to import `.ts` files of this repo. */
export function tsNodeArgs(): string[] {
  if (registerUrl === undefined) {
    hookDir = mkdtempSync(join(tmpdir(), 'lockstep-ts-child-'));
    mkdirSync(CACHE, { recursive: true });
    const tsVersion = (JSON.parse(readFileSync(join(REPO, 'node_modules', 'typescript', 'package.json'), 'utf8')) as { version: string }).version;
    const hooksFile = join(hookDir, 'hooks.mjs');
    writeFileSync(hooksFile, hooks(tsVersion));
    const register = join(hookDir, 'register.mjs');
    writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooksFile).href)});\n`);
    registerUrl = pathToFileURL(register).href;
    process.once('exit', () => rmSync(hookDir!, { recursive: true, force: true }));
  }
  return ['--import', registerUrl];
}

/** Messages a child sends over IPC. */
export type ChildMessage = { event: string } & Record<string, unknown>;

/** A child process running a script under {@link tsNodeArgs}, with its IPC messages queued. */
export class TsChild {
  readonly process: ChildProcess;
  readonly #history: ChildMessage[] = [];
  #cursor = 0;
  readonly #waiters: Array<() => void> = [];
  #stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(script: string, args: string[] = []) {
    this.process = spawn(process.execPath, [...tsNodeArgs(), script, ...args], {
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      cwd: REPO,
    });
    this.process.stderr!.on('data', (c: Buffer) => {
      this.#stderr = (this.#stderr + c.toString('utf8')).slice(-8_000);
    });
    this.process.on('message', (m) => {
      this.#history.push(m as ChildMessage);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.exited = new Promise((resolve) =>
      this.process.once('exit', (code, signal) => {
        for (const w of this.#waiters.splice(0)) w();
        resolve({ code, signal });
      }),
    );
  }

  /** What the child wrote to stderr (last 8 KB). */
  get stderr(): string {
    return this.#stderr;
  }

  /** Send a message to the child. */
  send(message: unknown): void {
    this.process.send(message as never);
  }

  /**
   * The next message satisfying `match`, within `timeoutMs`; messages before it are consumed.
   * Use one `next` at a time per child (a pending one would consume what a later one waits for).
   */
  async next(match: (m: ChildMessage) => boolean, timeoutMs: number): Promise<ChildMessage> {
    return this.#wait(timeoutMs, () => {
      while (this.#cursor < this.#history.length) {
        const m = this.#history[this.#cursor++]!;
        if (match(m)) return m;
      }
      return undefined;
    });
  }

  /** The first message ever received that satisfies `match`, without consuming anything. */
  seen(match: (m: ChildMessage) => boolean): ChildMessage | undefined {
    return this.#history.find(match);
  }

  /** Wait until {@link TsChild.seen} finds a message; any number of these may be pending at once. */
  async waitSeen(match: (m: ChildMessage) => boolean, timeoutMs: number): Promise<ChildMessage> {
    return this.#wait(timeoutMs, () => this.seen(match));
  }

  async #wait(timeoutMs: number, look: () => ChildMessage | undefined): Promise<ChildMessage> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const failed = this.#history.find((m) => m.event === 'error');
      if (failed !== undefined) throw new Error(`child reported: ${String(failed.message)}\n${this.#stderr}`);
      const m = look();
      if (m !== undefined) return m;
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`child exited (${this.process.exitCode ?? this.process.signalCode}) before the expected message\n${this.#stderr}`);
      }
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no expected message from the child within ${timeoutMs} ms\n${this.#stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** SIGKILL the child and wait for it to be gone. */
  async kill(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL');
    await this.exited;
  }
}

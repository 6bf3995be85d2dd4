// SIGUSR1 and SIGUSR2 for every lockstep process, from its first statement on: Node opens its inspector
// (remote code execution on 127.0.0.1:9229) on a SIGUSR1 nobody listens for. Imports nothing of lockstep.
// Its state is the process's, not the module's: the `lockstep` executable (one bundled file, see
// build-bin.mjs) guards before it hands other verbs to the ES modules, whose own copy must see that guard.

/** What a command does with the user signals; without one, they are ignored (and said so). */
export interface UserSignalTarget {
  /** Names the process in the "ignored" line (`the secondary of kv1`, `lockstep run`). */
  readonly role: string;
  /** SIGUSR1's operation; undefined: ignored. */
  readonly usr1?: () => void;
  readonly usr2?: () => void;
  /** How the command reports a signal (an event line with --events); default: a text line on stderr. */
  readonly log?: (signal: UserSignal, action: string, text: string) => void;
}

export type UserSignal = 'SIGUSR1' | 'SIGUSR2';

const SIGNALS: readonly UserSignal[] = ['SIGUSR1', 'SIGUSR2'];

interface GuardState {
  installed: boolean;
  target: UserSignalTarget;
  writeLine: (line: string) => void;
  json: boolean;
}

/** One per process, under a registered symbol: every copy of this module (bundled or not) shares it. */
const STATE = Symbol.for('lockstep.userSignals');
const state: GuardState = ((globalThis as { [STATE]?: GuardState })[STATE] ??= {
  installed: false,
  target: { role: 'lockstep (starting)' },
  writeLine: (line) => process.stderr.write(line),
  json: false,
});

function defaultLog(signal: UserSignal, action: string, text: string): void {
  state.writeLine(state.json ? `${JSON.stringify({ event: 'signal', t: Date.now(), signal, action, message: text })}\n` : `lockstep: ${text}\n`);
}

function onSignal(signal: UserSignal): void {
  const t = state.target;
  const op = signal === 'SIGUSR1' ? t.usr1 : t.usr2;
  const log = t.log ?? defaultLog;
  if (op === undefined) {
    log(signal, 'ignored', `${signal} ignored: ${t.role} has no operation for it`);
    return;
  }
  op();
}

/**
 * Takes SIGUSR1 and SIGUSR2 away from Node (whose default for SIGUSR1 is to open the inspector): call it
 * as the process's first statement. Until a command says otherwise ({@link setUserSignalTarget}) both
 * are ignored with a line on stderr (a JSON `signal` event when `--events` is on the command line).
 */
export function guardUserSignals(argv: readonly string[] = process.argv, write?: (line: string) => void): void {
  if (state.installed) return;
  state.installed = true;
  state.json = argv.includes('--events');
  if (write) state.writeLine = write;
  for (const s of SIGNALS) process.on(s, () => onSignal(s));
}

/**
 * What SIGUSR1 and SIGUSR2 do from now on (the process keeps ignoring what `t` leaves undefined).
 * Returns a function that puts the previous target back.
 */
export function setUserSignalTarget(t: UserSignalTarget): () => void {
  const before = state.target;
  state.target = t;
  return () => {
    if (state.target === t) state.target = before;
  };
}

/** Whether {@link guardUserSignals} ran in this process. */
export function userSignalsGuarded(): boolean {
  return state.installed;
}

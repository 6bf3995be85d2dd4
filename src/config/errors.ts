// The error a configuration file raises: every problem found, each naming the file and the field by its
// path (`vm.json: ft.timeoutMs: …`). Nothing here reads files.
import { LockstepError } from '../errors.js';

/** One problem in a configuration: the field's dotted path and a message that starts with it. */
export interface ConfigIssue {
  /** Dotted path of the field (`ft.arbiter.endpoints[1]`), or `''` for the file as a whole. */
  readonly field: string;
  /** What is wrong, starting with the field's path; the file's name is not included. */
  readonly message: string;
  /** 1-based line and column in the file, when the text was parsed here and the field is in it. */
  readonly line?: number;
  readonly column?: number;
}

/**
 * A configuration file cannot be used: a syntax error (with line and column), a field of the wrong type
 * or out of range, an unknown field (with a suggestion), or a file it names that cannot be read.
 * `message` holds every problem found, one per line, each prefixed with the file's name.
 */
export class ConfigError extends LockstepError {
  /** Path of the first bad field (`ft.timeoutMs`), `''` when the problem is the file as a whole. */
  readonly field: string;
  /** The configuration's name as the user gave it (a file path, or what the caller passed as `sourceName`). */
  readonly source: string;
  /** Every problem found, in document order. */
  readonly issues: readonly ConfigIssue[];

  constructor(source: string, issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    if (issues.length === 0) throw new RangeError('ConfigError needs at least one issue');
    super('ERR_LOCKSTEP_CONFIG_INVALID', issues.map((i) => `${source}: ${i.message}`).join('\n'), options);
    this.field = issues[0]!.field;
    this.source = source;
    this.issues = Object.freeze(issues.map((i) => Object.freeze({ ...i })));
  }
}

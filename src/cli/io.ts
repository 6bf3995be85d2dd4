// What a CLI verb writes to, and the exit statuses lockstep uses (sysexits-style where one fits).

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Exit statuses other than a guest's own exit code. */
export const EXIT = {
  ok: 0,
  /** Replay: the machine diverged from its log. */
  divergence: 1,
  /** Replay: the log has no end record or no final state hash, so the replay cannot prove it reproduced the run. */
  unverifiable: 3,
  usage: 64,
  dataErr: 65,
  noInput: 66,
  software: 70,
  budget: 75,
  halted: 76,
  trap: 77,
  interrupted: 130,
} as const;

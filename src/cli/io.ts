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
  /** An address is taken, or nothing answers at the address given (EX_UNAVAILABLE). */
  unavailable: 69,
  software: 70,
  budget: 75,
  /** `lockstep ft`: the operation was refused in the VM's present state (not protected yet…): try again (EX_TEMPFAIL). */
  refused: 75,
  halted: 76,
  trap: 77,
  /** `lockstep ft` and `secondary`: the peer refused our key, or we its (EX_NOPERM; `run` uses 77 for a trap). */
  denied: 77,
  interrupted: 130,
} as const;

// The engine the interpreter's benchmarks run on.

/**
 * The tables `npm run bench` feeds (whole guests, micro, record, io) are the interpreter's, the reference
 * engine (`npm run bench -- engines` compares it with the block compiler and QEMU): every Machine of the
 * process, the ones a Replayer makes too, runs it unless LOCKSTEP_ENGINE asks for another.
 */
export function interpreterUnlessAsked(): void {
  process.env.LOCKSTEP_ENGINE ||= 'interp';
}

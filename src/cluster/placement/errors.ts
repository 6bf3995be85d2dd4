// The placement engine's error class: a snapshot or a request that cannot be answered as given.
// Thrown only for bad input, never for "no host fits" (that is an answer, not an error).
import { LockstepError } from '../../errors.js';

/**
 * The cluster snapshot or an operation's argument is invalid: an unknown host or VM, a duplicate id,
 * a negative capacity, a rule naming a group no host is in. `field` names the bad field as a path into
 * the snapshot the caller passed (`hosts[2].capacity.memoryBytes`, `rules[0].vms[1]`) or the argument
 * (`vm`, `host`).
 */
export class PlacementInputError extends LockstepError {
  declare readonly code: 'ERR_LOCKSTEP_PLACEMENT_INVALID';
  /** Path of the bad field, e.g. `vms[3].secondaryHost`. */
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_LOCKSTEP_PLACEMENT_INVALID', `${field}: ${message}`);
    this.field = field;
  }
}

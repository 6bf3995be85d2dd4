/* The guest's command line: the text the host was told to pass (lockstep `--append` or the config's
   `vm.append`; QEMU `-append` with semihosting on), read through semihosting SYS_GET_CMDLINE. A host
   without semihosting makes the call trap; the SDK catches that trap and reports no command line. */
#ifndef LOCKSTEP_CMDLINE_H
#define LOCKSTEP_CMDLINE_H

#include <stddef.h>

#define LS_SYS_GET_CMDLINE 0x15u

/* Copies the command line, NUL-terminated, into buf (size bytes). Returns its length, or -1 when there
   is none to be had (no semihosting, or it does not fit): buf is then the empty string. Call it only
   while interrupts are off (mstatus.MIE clear), as they are until a guest enables them: it swaps
   mtvec for the duration of the call. */
int ls_cmdline(char *buf, size_t size);

/* Finds `name=value` among the space-separated words of cmdline; returns a pointer to the value (ending
   at the next space or NUL) and its length in *len, or NULL when the word is absent. */
const char *ls_cmdline_value(const char *cmdline, const char *name, size_t *len);

#endif

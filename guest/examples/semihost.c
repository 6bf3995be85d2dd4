/* Exercises the RISC-V semihosting convention (what picolibc's --oslib=semihost relies on):
   console output via SYS_WRITE0 interleaved with UART output, and the exit via SYS_EXIT. */
#include "lockstep.h"

int main(void) {
  ls_puts("uart: before semihosting\n");
  ls_semihost_write0("Hello from semihosting!\n");
  ls_puts("uart: between semihosting calls\n");
  ls_semihost_write0("semihost: SYS_WRITE0 ok, exiting with ADP_Stopped_ApplicationExit\n");
  ls_semihost_exit(LS_ADP_STOPPED_APPLICATION_EXIT);
}

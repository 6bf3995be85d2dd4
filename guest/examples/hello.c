/* The smallest guest: one UART line and a clean exit, the first thing to run on a new machine. */
#include "lockstep.h"

int main(void) {
  ls_puts("Hello from lockstep!\n");
  return 0;
}

/* Timer interrupts from the CLINT: counts a fixed number of mtimecmp interrupts, sleeping in WFI
   between them. Prints only facts that hold on any clock (counts and invariants, never times). */
#include "lockstep.h"

#define TICKS 20u
#define PERIOD (LS_TIMEBASE_HZ / 1000u) /* 1 ms of mtime */

static volatile uint32_t ticks;
static volatile uint32_t early;  /* interrupts taken while mtime < mtimecmp: must stay 0 */
static volatile uint32_t others; /* any other trap */
static uint64_t deadline;

void ls_trap_handler(ls_trap_frame *f) {
  if (f->mcause != (LS_MCAUSE_INTERRUPT | LS_IRQ_M_TIMER)) {
    others++;
    ls_report_trap(f);
  }
  if (ls_mtime() < deadline) early++;
  ticks++;
  if (ticks < TICKS) {
    /* Re-armed from now, not from the old deadline, so a slow host cannot leave it already due. */
    deadline = ls_mtime() + PERIOD;
    ls_set_mtimecmp(deadline);
  } else {
    /* Done: silence the timer so the pending bit cannot keep firing. */
    ls_timer_disable();
    ls_set_mtimecmp(UINT64_MAX);
  }
}

int main(void) {
  deadline = ls_mtime() + PERIOD;
  ls_set_mtimecmp(deadline);
  ls_timer_enable();

  /* Check-then-sleep runs with MIE clear: WFI still wakes on a pending enabled interrupt, and the
     trap is taken only when MIE is set again, so the last tick cannot slip in between. */
  ls_csr_clear(mstatus, LS_MSTATUS_MIE);
  while (ticks < TICKS) {
    __asm__ volatile("wfi");
    ls_csr_set(mstatus, LS_MSTATUS_MIE);
    ls_csr_clear(mstatus, LS_MSTATUS_MIE);
  }

  ls_puts("timer: ");
  ls_putdec(ticks);
  ls_puts(" interrupts, ");
  ls_putdec(early);
  ls_puts(" early, ");
  ls_putdec(others);
  ls_puts(" unexpected traps\n");
  /* How many WFIs it took is not printed: WFI may return spuriously and a slow host may merge
     wakeups, so only the count of handled interrupts is the same on every machine. */
  ls_puts((ls_csr_read(mie) & LS_MIE_MTIE) == 0 ? "timer: MTIE off\n" : "timer: MTIE still on\n");
  return early == 0 && others == 0 ? 0 : 1;
}

/* Guest SDK for lockstep and QEMU `virt`: console, exit, timer, counters, traps and semihosting.
   Everything here must behave identically on both machines, so nothing reads host-dependent state
   except ls_mtime() and the counters, whose values guests must never print. */
#ifndef LOCKSTEP_H
#define LOCKSTEP_H

#include <stddef.h>
#include <stdint.h>

#include "lockstep_asm.h"

/* ---- Memory map of the virt board ---- */
#define LS_TEST_BASE   0x00100000u /* SiFive test finisher */
#define LS_WATCHDOG_BASE 0x00102000u /* lockstep only (not in QEMU): a 32-bit store is a pet */
#define LS_CLINT_BASE  0x02000000u
#define LS_PLIC_BASE   0x0c000000u
#define LS_UART_BASE   0x10000000u /* NS16550A, IRQ 10 */
#define LS_RAM_BASE    0x80000000u

#define LS_CLINT_MSIP      (LS_CLINT_BASE + 0x0000u)
#define LS_CLINT_MTIMECMP  (LS_CLINT_BASE + 0x4000u)
#define LS_CLINT_MTIME     (LS_CLINT_BASE + 0xbff8u)
#define LS_TIMEBASE_HZ     10000000u

/* ---- CSRs ---- */
#define ls_csr_read(csr) ({ uint32_t v_; __asm__ volatile("csrr %0, " #csr : "=r"(v_)); v_; })
#define ls_csr_write(csr, v) __asm__ volatile("csrw " #csr ", %0" ::"rK"((uint32_t)(v)))
#define ls_csr_set(csr, v) __asm__ volatile("csrs " #csr ", %0" ::"rK"((uint32_t)(v)))
#define ls_csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" ::"rK"((uint32_t)(v)))

#define LS_MSTATUS_MIE   (1u << 3)
#define LS_MSTATUS_MPIE  (1u << 7)
#define LS_MSTATUS_MPP   (3u << 11)
#define LS_MIE_MSIE      (1u << 3)
#define LS_MIE_MTIE      (1u << 7)
#define LS_MIE_MEIE      (1u << 11)

#define LS_MCAUSE_INTERRUPT   0x80000000u
#define LS_IRQ_M_SOFT         3u
#define LS_IRQ_M_TIMER        7u
#define LS_IRQ_M_EXT          11u
#define LS_EXC_ILLEGAL        2u
#define LS_EXC_BREAKPOINT     3u
#define LS_EXC_ECALL_U        8u
#define LS_EXC_ECALL_M        11u

/* ---- Console (UART THR, polled) ---- */
void ls_putc(char c);
void ls_write(const char *s, size_t n);
void ls_puts(const char *s); /* no newline added */
void ls_puthex(uint32_t v);  /* "0x" and 8 lowercase digits */
void ls_puthex64(uint64_t v); /* "0x" and 16 lowercase digits */
void ls_putdec(uint32_t v);
void ls_putdec64(uint64_t v);

/* ---- Exit through the test finisher: 0 passes, anything else is QEMU's exit status ---- */
__attribute__((noreturn)) void ls_exit(int code);

/* ---- Guest watchdog (lockstep only: QEMU's virt has nothing there and the store faults) ----
   Each call is a pet; HA VM monitoring in watchdog mode resets a VM whose guest pet it once and then
   stopped for the failure interval. It is no input to the guest: reads there return 0. */
static inline void ls_watchdog_pet(void) { *(volatile uint32_t *)LS_WATCHDOG_BASE = 0; }

/* ---- CLINT timer ---- */
uint64_t ls_mtime(void);
void ls_set_mtimecmp(uint64_t when);
void ls_timer_enable(void);  /* sets mie.MTIE; the caller controls mstatus.MIE */
void ls_timer_disable(void);

/* ---- Counters: exact under lockstep, implementation-defined under QEMU; never print them ---- */
uint64_t ls_instret(void);
uint64_t ls_cycle(void);

/* ---- Traps ---- */
typedef struct ls_trap_frame {
  uint32_t x[32]; /* x[0] reads 0; x[2] is the interrupted sp */
  uint32_t mepc;  /* written back to mepc on return */
  uint32_t mcause;
  uint32_t mtval;
  uint32_t mstatus;
} ls_trap_frame;

_Static_assert(offsetof(ls_trap_frame, mepc) == LS_FRAME_MEPC, "frame layout");
_Static_assert(offsetof(ls_trap_frame, mcause) == LS_FRAME_MCAUSE, "frame layout");
_Static_assert(offsetof(ls_trap_frame, mtval) == LS_FRAME_MTVAL, "frame layout");
_Static_assert(offsetof(ls_trap_frame, mstatus) == LS_FRAME_MSTATUS, "frame layout");
_Static_assert(sizeof(ls_trap_frame) == LS_FRAME_SIZE, "frame layout");

/* Called by the trap entry for every trap and interrupt. The SDK's weak default prints
   mcause/mepc/mtval and exits with code 3; a guest overrides it by defining its own. */
void ls_trap_handler(ls_trap_frame *frame);
void ls_report_trap(const ls_trap_frame *frame) __attribute__((noreturn));

/* ---- RISC-V semihosting ---- */
#define LS_SYS_WRITE0 0x04u
#define LS_SYS_EXIT   0x18u
#define LS_ADP_STOPPED_APPLICATION_EXIT 0x20026u

uint32_t ls_semihost(uint32_t op, uint32_t arg);
void ls_semihost_write0(const char *s);
__attribute__((noreturn)) void ls_semihost_exit(uint32_t reason);

#endif

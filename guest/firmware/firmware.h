/* lockstep's M-mode SBI firmware: constants, the trap frame and CSR access shared by its C files.
   Single hart, no libc, no allocation; every access to guest-chosen memory goes through a guard. */
#ifndef FIRMWARE_H
#define FIRMWARE_H

#include <stdbool.h>
#include <stdint.h>

#include "firmware_asm.h"

/* QEMU virt / lockstep platform. */
#define RAM_BASE        0x80000000u
#define UART_BASE       0x10000000u
#define FINISHER_BASE   0x00100000u
#define CLINT_MSIP      0x02000000u
#define CLINT_MTIMECMP  0x02004000u
#define CLINT_MTIME     0x0200bff8u

/* Where the kernel goes when nothing says otherwise: QEMU's rv32 default (the first 4 MiB-aligned
   address above the firmware), so a loader without fw_dynamic_info behaves like QEMU. */
#define DEFAULT_NEXT_ADDR 0x80400000u

/* The firmware owns [RAM_BASE, RAM_BASE + FW_RESERVED): one NAPOT PMP region that S and U cannot
   touch, reported to the kernel as a /memreserve/ entry. firmware.ld checks that the image fits. */
#define FW_RESERVED     0x10000u

#define FINISHER_PASS   0x5555u
#define FINISHER_FAIL   0x3333u
#define FINISHER_RESET  0x7777u

/* mstatus / mip bits. */
#define MSTATUS_SIE     (1u << 1)
#define MSTATUS_MIE     (1u << 3)
#define MSTATUS_SPIE    (1u << 5)
#define MSTATUS_MPIE    (1u << 7)
#define MSTATUS_SPP     (1u << 8)
#define MSTATUS_MPP     (3u << 11)
#define MSTATUS_MPRV    (1u << 17)
#define MSTATUS_MXR     (1u << 19)
#define MPP_SHIFT       11
#define PRV_U           0u
#define PRV_S           1u
#define PRV_M           3u

#define IRQ_SSI         1
#define IRQ_MSI         3
#define IRQ_STI         5
#define IRQ_MTI         7
#define IRQ_SEI         9
#define MIP_SSIP        (1u << IRQ_SSI)
#define MIP_MSIP        (1u << IRQ_MSI)
#define MIP_STIP        (1u << IRQ_STI)
#define MIP_MTIP        (1u << IRQ_MTI)
#define MIP_SEIP        (1u << IRQ_SEI)

#define CAUSE_INTERRUPT        0x80000000u
#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS     1
#define CAUSE_ILLEGAL          2
#define CAUSE_BREAKPOINT       3
#define CAUSE_MISALIGNED_LOAD  4
#define CAUSE_LOAD_ACCESS      5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS     7
#define CAUSE_USER_ECALL       8
#define CAUSE_SUPERVISOR_ECALL 9
#define CAUSE_FETCH_PAGE_FAULT 12
#define CAUSE_LOAD_PAGE_FAULT  13
#define CAUSE_STORE_PAGE_FAULT 15

#define STR_(x) #x
#define STR(x) STR_(x)
#define csr_read(csr) ({ uint32_t v_; __asm__ volatile("csrr %0, " STR(csr) : "=r"(v_)); v_; })
#define csr_write(csr, v) __asm__ volatile("csrw " STR(csr) ", %0" ::"rK"(v) : "memory")
#define csr_set(csr, v) __asm__ volatile("csrs " STR(csr) ", %0" ::"rK"(v) : "memory")
#define csr_clear(csr, v) __asm__ volatile("csrc " STR(csr) ", %0" ::"rK"(v) : "memory")

static inline uint32_t mmio_read32(uint32_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint32_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint8_t mmio_read8(uint32_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write8(uint32_t a, uint8_t v) { *(volatile uint8_t *)a = v; }

/* The registers of the interrupted context, as entry.S saves them (x[2] is its sp). Handlers edit
   the frame; entry.S writes mepc and mstatus back before mret. */
struct frame {
  uint32_t x[32];
  uint32_t mepc, mcause, mtval, mstatus;
};
_Static_assert(__builtin_offsetof(struct frame, mepc) == FRAME_MEPC, "frame layout");
_Static_assert(__builtin_offsetof(struct frame, mcause) == FRAME_MCAUSE, "frame layout");
_Static_assert(__builtin_offsetof(struct frame, mtval) == FRAME_MTVAL, "frame layout");
_Static_assert(__builtin_offsetof(struct frame, mstatus) == FRAME_MSTATUS, "frame layout");
_Static_assert(sizeof(struct frame) == FRAME_SIZE, "frame layout");

/* Guarded accesses (entry.S): a trap on the access itself sets fw_guard_faulted and yields 0, so
   an address or CSR the guest (or its loader) chose can never take the firmware down. Callers
   clear fw_guard_faulted first. The _s forms read as the interrupted S/U context would
   (mstatus.MPRV with the live mstatus.MPP), the _x form with MXR for instruction bytes. */
extern volatile uint32_t fw_guard_faulted;
uint32_t fw_guard_lbu(uint32_t addr);
uint32_t fw_guard_lw(uint32_t addr);
void fw_guard_sb(uint32_t addr, uint32_t v);
uint32_t fw_guard_lw_s(uint32_t addr);
uint32_t fw_guard_lhu_x(uint32_t addr);
void fw_guard_set_menvcfgh(uint32_t bits);
uint32_t fw_guard_read_stimecmp(void);
void fw_guard_set_pmp(uint32_t addr0, uint32_t addr1, uint32_t cfg0);
uint32_t fw_guard_read_id(uint32_t which);

/* Console (UART 16550). */
void console_putc(char c);
void console_puts(const char *s);
void console_puthex(uint32_t v);
int console_getc(void);

/* Device tree (fdt.c). */
struct boot_info {
  uint32_t ram_end;      /* first byte past RAM, from /memory (0 when there is no usable DTB) */
  uint32_t initrd_start; /* from /chosen, or 0 */
  uint32_t initrd_end;
};
/* Checks the blob at dtb, reads RAM and initrd bounds, and adds a /memreserve/ entry for the
   firmware unless one already covers it. Returns 0 or a message naming the problem. */
const char *fdt_prepare(uint32_t dtb, struct boot_info *info);

void fw_trap(struct frame *f);
void fw_boot(uint32_t hartid, uint32_t dtb, uint32_t dyn);
__attribute__((noreturn)) void fw_fatal(const char *what, uint32_t a, uint32_t b);
__attribute__((noreturn)) void fw_finish(uint32_t code);

extern uint32_t fw_ram_end;

#endif

/* Reset entry and the one trap entry for every guest: sets up the C environment, and saves a full
   register frame so C handlers (weak default: report and exit 3) can inspect and resume any trap. */
#include "lockstep_asm.h"

	.section .text.start, "ax"
	.globl _start
_start:
	/* Other harts (only under -smp > 1) park: the examples are single-hart programs. */
	csrr	t0, mhartid
	bnez	t0, .Lpark

	.option push
	.option norelax
	la	gp, __global_pointer$
	.option pop
	la	sp, __stack_top

	/* mscratch == 0 tells ls_trap_entry that the trap came from M-mode (see below). */
	csrw	mscratch, zero
	la	t0, ls_trap_entry
	csrw	mtvec, t0

	la	t0, __bss_start
	la	t1, __bss_end
1:	bgeu	t0, t1, 2f
	sw	zero, 0(t0)
	addi	t0, t0, 4
	j	1b
2:
	call	main
	tail	ls_exit

.Lpark:
	wfi
	j	.Lpark

/*
 * Trap entry. Convention: mscratch holds the M-mode stack top while a lower privilege runs, and 0
 * while M-mode runs; so a trap from U-mode switches to the M stack and one from M-mode stays put.
 *
 *   frame (LS_FRAME_SIZE bytes, at sp):  x0..x31 | mepc | mcause | mtval | mstatus
 *                                        0        128    132      136     140
 */
	.text
	.globl	ls_trap_entry
	.p2align 2
ls_trap_entry:
	csrrw	sp, mscratch, sp
	bnez	sp, 1f
	csrrw	sp, mscratch, sp	/* from M-mode: undo the swap, mscratch is 0 again */
1:	addi	sp, sp, -LS_FRAME_SIZE
	sw	x1, 1*4(sp)
	sw	x3, 3*4(sp)
	sw	x4, 4*4(sp)
	sw	x5, 5*4(sp)
	sw	x6, 6*4(sp)
	sw	x7, 7*4(sp)
	sw	x8, 8*4(sp)
	sw	x9, 9*4(sp)
	sw	x10, 10*4(sp)
	sw	x11, 11*4(sp)
	sw	x12, 12*4(sp)
	sw	x13, 13*4(sp)
	sw	x14, 14*4(sp)
	sw	x15, 15*4(sp)
	sw	x16, 16*4(sp)
	sw	x17, 17*4(sp)
	sw	x18, 18*4(sp)
	sw	x19, 19*4(sp)
	sw	x20, 20*4(sp)
	sw	x21, 21*4(sp)
	sw	x22, 22*4(sp)
	sw	x23, 23*4(sp)
	sw	x24, 24*4(sp)
	sw	x25, 25*4(sp)
	sw	x26, 26*4(sp)
	sw	x27, 27*4(sp)
	sw	x28, 28*4(sp)
	sw	x29, 29*4(sp)
	sw	x30, 30*4(sp)
	sw	x31, 31*4(sp)
	/* The interrupted sp: the user sp left in mscratch, or (from M-mode) the one above the frame. */
	csrrw	t0, mscratch, zero
	bnez	t0, 2f
	addi	t0, sp, LS_FRAME_SIZE
2:	sw	t0, 2*4(sp)
	sw	zero, 0(sp)
	csrr	t0, mepc
	sw	t0, LS_FRAME_MEPC(sp)
	csrr	t0, mcause
	sw	t0, LS_FRAME_MCAUSE(sp)
	csrr	t0, mtval
	sw	t0, LS_FRAME_MTVAL(sp)
	csrr	t0, mstatus
	sw	t0, LS_FRAME_MSTATUS(sp)

	mv	a0, sp
	call	ls_trap_handler

	/* The handler may have changed mepc (skip an ecall) or the saved registers (syscall result). */
	lw	t0, LS_FRAME_MEPC(sp)
	csrw	mepc, t0
	/* Returning below M-mode (MPP != 3): re-arm mscratch with the M stack top for the next trap. */
	csrr	t0, mstatus
	li	t1, 0x1800
	and	t0, t0, t1
	beq	t0, t1, 3f
	addi	t0, sp, LS_FRAME_SIZE
	csrw	mscratch, t0
3:	lw	x1, 1*4(sp)
	lw	x3, 3*4(sp)
	lw	x4, 4*4(sp)
	lw	x5, 5*4(sp)
	lw	x6, 6*4(sp)
	lw	x7, 7*4(sp)
	lw	x8, 8*4(sp)
	lw	x9, 9*4(sp)
	lw	x10, 10*4(sp)
	lw	x11, 11*4(sp)
	lw	x12, 12*4(sp)
	lw	x13, 13*4(sp)
	lw	x14, 14*4(sp)
	lw	x15, 15*4(sp)
	lw	x16, 16*4(sp)
	lw	x17, 17*4(sp)
	lw	x18, 18*4(sp)
	lw	x19, 19*4(sp)
	lw	x20, 20*4(sp)
	lw	x21, 21*4(sp)
	lw	x22, 22*4(sp)
	lw	x23, 23*4(sp)
	lw	x24, 24*4(sp)
	lw	x25, 25*4(sp)
	lw	x26, 26*4(sp)
	lw	x27, 27*4(sp)
	lw	x28, 28*4(sp)
	lw	x29, 29*4(sp)
	lw	x30, 30*4(sp)
	lw	x31, 31*4(sp)
	lw	sp, 2*4(sp)
	mret

/*
 * RISC-V semihosting call: a0 = operation, a1 = parameter, result in a0. The three-instruction
 * marker must be uncompressed and must not straddle a page boundary (the debugger/emulator reads
 * the neighbours of the ebreak), hence norvc and the 16-byte alignment.
 */
	.globl	ls_semihost
	.p2align 4
ls_semihost:
	.option push
	.option norvc
	slli	x0, x0, 0x1f
	ebreak
	srai	x0, x0, 7
	.option pop
	ret

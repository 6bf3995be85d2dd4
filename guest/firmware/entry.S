/* Reset entry, the M-mode trap entry and the guarded accesses of lockstep's SBI firmware.
   Nothing here decides policy: boot and trap handling are in sbi.c. */
#include "firmware_asm.h"

	.section .text.entry, "ax"
	.globl	_start
_start:
	/* a0 = hart id, a1 = device tree, a2 = fw_dynamic_info (QEMU's ROM) or 0: kept in s0-s2. */
	mv	s0, a0
	mv	s1, a1
	mv	s2, a2
	csrw	mie, zero
	csrr	t0, mhartid
	bnez	t0, .Lpark
	la	sp, fw_stack_top
	/* mscratch == 0 while M-mode runs: fw_trap_entry tells the two kinds of trap apart by it. */
	csrw	mscratch, zero
	la	t0, fw_trap_entry
	csrw	mtvec, t0
	la	t0, __bss_start
	la	t1, __bss_end
1:	bgeu	t0, t1, 2f
	sw	zero, 0(t0)
	addi	t0, t0, 4
	j	1b
2:	mv	a0, s0
	mv	a1, s1
	mv	a2, s2
	call	fw_boot
	/* fw_boot set mepc and mstatus.MPP for the next stage; it gets a0 = hart id, a1 = dtb and
	   every other register zero, so its starting state is the same whatever fw_boot computed. */
	la	t0, fw_stack_top
	csrw	mscratch, t0
	csrr	a0, mhartid
	mv	a1, s1
	li	x1, 0
	li	x2, 0
	li	x3, 0
	li	x4, 0
	li	x5, 0
	li	x6, 0
	li	x7, 0
	li	x8, 0
	li	x9, 0
	li	x12, 0
	li	x13, 0
	li	x14, 0
	li	x15, 0
	li	x16, 0
	li	x17, 0
	li	x18, 0
	li	x19, 0
	li	x20, 0
	li	x21, 0
	li	x22, 0
	li	x23, 0
	li	x24, 0
	li	x25, 0
	li	x26, 0
	li	x27, 0
	li	x28, 0
	li	x29, 0
	li	x30, 0
	li	x31, 0
	mret

.Lpark:
	/* Only one hart is supported: any other parks with interrupts off. */
	wfi
	j	.Lpark

/*
 * Trap entry. mscratch holds the M stack top while S or U runs and 0 while M runs, so a trap from
 * below switches to the M stack and one from M (a guarded access) stays on the current stack.
 *
 *   frame (FRAME_SIZE bytes at sp):  x0..x31 | mepc | mcause | mtval | mstatus
 *                                    0        128    132      136     140
 */
	.text
	.globl	fw_trap_entry
	.p2align 2
fw_trap_entry:
	csrrw	sp, mscratch, sp
	bnez	sp, .Lfrom_below
	csrrw	sp, mscratch, sp
	addi	sp, sp, -FRAME_SIZE
	sw	t0, 5*4(sp)
	addi	t0, sp, FRAME_SIZE
	sw	t0, 2*4(sp)
	j	.Lsave
.Lfrom_below:
	addi	sp, sp, -FRAME_SIZE
	sw	t0, 5*4(sp)
	csrrw	t0, mscratch, zero
	sw	t0, 2*4(sp)
.Lsave:
	sw	x1, 1*4(sp)
	sw	x3, 3*4(sp)
	sw	x4, 4*4(sp)
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
	sw	zero, 0(sp)
	csrr	t0, mepc
	sw	t0, FRAME_MEPC(sp)
	csrr	t0, mcause
	sw	t0, FRAME_MCAUSE(sp)
	csrr	t0, mtval
	sw	t0, FRAME_MTVAL(sp)
	csrr	t0, mstatus
	sw	t0, FRAME_MSTATUS(sp)
	mv	a0, sp
	call	fw_trap
	lw	t0, FRAME_MEPC(sp)
	csrw	mepc, t0
	lw	t0, FRAME_MSTATUS(sp)
	csrw	mstatus, t0
	/* Back to S or U: the next trap from there starts on an empty M stack again. */
	srli	t0, t0, 11
	andi	t0, t0, 3
	li	t1, 3
	beq	t0, t1, 1f
	addi	t0, sp, FRAME_SIZE
	csrw	mscratch, t0
1:	lw	x1, 1*4(sp)
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
	lw	x2, 2*4(sp)
	mret

/*
 * Guarded accesses: every instruction between fw_guard_begin and fw_guard_end is 4 bytes long
 * (norvc), so fw_trap can skip a faulting one with mepc += 4; it also sets fw_guard_faulted and
 * a0 = 0. The MPRV forms run inside a trap handler, where mstatus.MPP is the interrupted mode.
 */
	.option push
	.option norvc
	.globl	fw_guard_begin, fw_guard_end
	.globl	fw_guard_lbu, fw_guard_lw, fw_guard_sb, fw_guard_lw_s, fw_guard_lhu_x
	.globl	fw_guard_set_menvcfgh, fw_guard_read_stimecmp, fw_guard_set_pmp, fw_guard_read_id
	.p2align 2
fw_guard_begin:
fw_guard_lbu:
	lbu	a0, 0(a0)
	ret
fw_guard_lw:
	lw	a0, 0(a0)
	ret
fw_guard_sb:
	sb	a1, 0(a0)
	ret
fw_guard_lw_s:
	li	t0, 1 << 17		/* MPRV */
	csrs	mstatus, t0
	lw	a0, 0(a0)
	csrc	mstatus, t0
	ret
fw_guard_lhu_x:
	li	t0, (1 << 17) | (1 << 19)	/* MPRV | MXR */
	csrs	mstatus, t0
	lhu	a0, 0(a0)
	csrc	mstatus, t0
	ret
fw_guard_set_menvcfgh:
	csrs	0x31a, a0		/* menvcfgh (priv 1.12); absent on older harts */
	ret
fw_guard_read_stimecmp:
	csrr	a0, 0x14d		/* stimecmp: present only with Sstc */
	ret
fw_guard_set_pmp:
	csrw	pmpaddr0, a0
	csrw	pmpaddr1, a1
	csrw	pmpcfg0, a2
	ret
fw_guard_read_id:
	li	t0, 1
	beq	a0, t0, 1f
	li	t0, 2
	beq	a0, t0, 2f
	csrr	a0, mvendorid
	ret
1:	csrr	a0, marchid
	ret
2:	csrr	a0, mimpid
	ret
fw_guard_end:
	.option pop

	.bss
	.p2align 4
fw_stack:
	.space	FW_STACK_SIZE
	.globl	fw_stack_top
fw_stack_top:

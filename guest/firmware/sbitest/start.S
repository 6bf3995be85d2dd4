/* Entry and S-mode trap entry of the SBI test payload: it runs where a kernel would (S-mode,
   a0 = hart id, a1 = device tree) and checks the firmware call by call. */
	.section .text.entry, "ax"
	.globl	_start
_start:
	la	sp, stack_top
	la	t0, s_trap_entry
	csrw	stvec, t0
	la	t0, __bss_start
	la	t1, __bss_end
1:	bgeu	t0, t1, 2f
	sw	zero, 0(t0)
	addi	t0, t0, 4
	j	1b
2:	call	main
3:	j	3b

/* Where a non-retentive HSM suspend resumes: a0 = hart id, a1 = opaque, on a fresh stack. */
	.globl	s_resume
s_resume:
	la	sp, stack_top
	call	after_resume
4:	j	4b

/* Saves the caller-saved registers, calls s_trap(cause, epc, tval), resumes at the epc it returns. */
	.text
	.p2align 2
s_trap_entry:
	addi	sp, sp, -64
	sw	ra, 0(sp)
	sw	t0, 4(sp)
	sw	t1, 8(sp)
	sw	t2, 12(sp)
	sw	a0, 16(sp)
	sw	a1, 20(sp)
	sw	a2, 24(sp)
	sw	a3, 28(sp)
	sw	a4, 32(sp)
	sw	a5, 36(sp)
	sw	a6, 40(sp)
	sw	a7, 44(sp)
	sw	t3, 48(sp)
	sw	t4, 52(sp)
	sw	t5, 56(sp)
	sw	t6, 60(sp)
	csrr	a0, scause
	csrr	a1, sepc
	csrr	a2, stval
	call	s_trap
	csrw	sepc, a0
	lw	ra, 0(sp)
	lw	t0, 4(sp)
	lw	t1, 8(sp)
	lw	t2, 12(sp)
	lw	a0, 16(sp)
	lw	a1, 20(sp)
	lw	a2, 24(sp)
	lw	a3, 28(sp)
	lw	a4, 32(sp)
	lw	a5, 36(sp)
	lw	a6, 40(sp)
	lw	a7, 44(sp)
	lw	t3, 48(sp)
	lw	t4, 52(sp)
	lw	t5, 56(sp)
	lw	t6, 60(sp)
	addi	sp, sp, 64
	sret

	.bss
	.p2align 4
	.space	8192
stack_top:

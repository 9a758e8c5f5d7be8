/* SPDX-License-Identifier: MIT */
/*
 * ftbench's QEMU test guest: the multiboot header, the entry point, a flat
 * GDT and the interrupt stubs. Everything else is in guest.c.
 *
 * QEMU's -kernel loads a 32-bit multiboot ELF at its link address (1 MiB)
 * and jumps to _start in protected mode, paging off, interrupts off, with
 * EAX = the multiboot magic and EBX = the multiboot information. The GDTR
 * it leaves is not ours to rely on (an interrupt reloads CS from it), so
 * the first thing done is loading a flat GDT of our own.
 */
	.section .note.GNU-stack, "", @progbits

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003	/* modules page-aligned, memory information wanted */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .data
	.align 8
gdt:
	.quad 0
	.quad 0x00CF9A000000FFFF	/* 0x08: code, base 0, 4 GiB, ring 0 */
	.quad 0x00CF92000000FFFF	/* 0x10: data, base 0, 4 GiB, ring 0 */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.section .bss
	.align 16
stack:
	.skip 16384
stack_top:

	.text
	.globl _start
_start:
	cli
	lgdt gdt_desc
	ljmp $0x08, $1f
1:	movw $0x10, %cx
	movw %cx, %ds
	movw %cx, %es
	movw %cx, %fs
	movw %cx, %gs
	movw %cx, %ss
	movl $stack_top, %esp
	pushl %ebx		/* the multiboot information */
	pushl %eax		/* the magic */
	call guest_main
2:	cli
	hlt
	jmp 2b

/* IRQ 0, the PIT at 1 kHz: count the tick, acknowledge it at the PIC. */
	.globl isr_timer
isr_timer:
	pushl %eax
	incl guest_ticks
	movb $0x20, %al
	outb %al, $0x20
	popl %eax
	iret

/* Every other IRQ is masked at the PIC; a spurious one (IRQ 7 or 15)
 * must not be acknowledged. Unused vectors are never raised. */
	.globl isr_ignore
isr_ignore:
	iret

/* CPU exceptions 0..31: report the vector on COM1 and stop. */
	.globl isr_exc_table
isr_exc_common:
	call guest_exception	/* the vector is on the stack; never returns */

	.section .rodata
	.align 4
isr_exc_table:
	.text
	.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
1:	pushl $\vec
	jmp isr_exc_common
	.section .rodata
	.long 1b
	.text
	.endr

/* Trap-frame layout shared by entry.S and firmware.h (which checks it with _Static_assert). */
#ifndef FIRMWARE_ASM_H
#define FIRMWARE_ASM_H

#define FRAME_MEPC    128
#define FRAME_MCAUSE  132
#define FRAME_MTVAL   136
#define FRAME_MSTATUS 140
#define FRAME_SIZE    144

/* M-mode stack: traps never nest more than once (a guarded access inside a handler). */
#define FW_STACK_SIZE 4096

#endif

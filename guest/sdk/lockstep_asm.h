/* Trap-frame layout shared by start.S and lockstep.h: one definition so the C struct and the
   assembly offsets cannot drift apart (lockstep.h checks them with _Static_assert). */
#ifndef LOCKSTEP_ASM_H
#define LOCKSTEP_ASM_H

#define LS_FRAME_MEPC    128
#define LS_FRAME_MCAUSE  132
#define LS_FRAME_MTVAL   136
#define LS_FRAME_MSTATUS 140
#define LS_FRAME_SIZE    144

#endif

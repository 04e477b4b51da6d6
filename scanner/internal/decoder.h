/* popek — a Zydis decoder for code of a given bitness. */
#ifndef POPEK_INTERNAL_DECODER_H
#define POPEK_INTERNAL_DECODER_H

#include <stdbool.h>

#include <Zydis/Zydis.h>

/* Sets dec up for 16-, 32- or 64-bit code; minimal skips what the scanner's
 * sweeps never read (operands and their details). False if Zydis refuses. */
static inline bool pk_decoder_init(ZydisDecoder *dec, unsigned bits, bool minimal)
{
    ZydisMachineMode mode = bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64
                          : bits == 32 ? ZYDIS_MACHINE_MODE_LEGACY_32
                                       : ZYDIS_MACHINE_MODE_LEGACY_16;
    ZydisStackWidth width = bits == 64 ? ZYDIS_STACK_WIDTH_64
                          : bits == 32 ? ZYDIS_STACK_WIDTH_32
                                       : ZYDIS_STACK_WIDTH_16;
    return ZYAN_SUCCESS(ZydisDecoderInit(dec, mode, width)) &&
           (!minimal ||
            ZYAN_SUCCESS(ZydisDecoderEnableMode(dec, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE)));
}

/* Does execution never fall through to the next instruction? Traps that
 * return (INT n, INT3, HLT woken by an interrupt) do fall through; UD2 marks
 * code that must not return (BUG()). */
static inline bool pk_insn_ends_path(const ZydisDecodedInstruction *insn)
{
    switch (insn->meta.category) {
    case ZYDIS_CATEGORY_RET:
    case ZYDIS_CATEGORY_UNCOND_BR:
    case ZYDIS_CATEGORY_SYSRET:
        return true;
    default:
        break;
    }
    switch (insn->mnemonic) {
    case ZYDIS_MNEMONIC_IRET:
    case ZYDIS_MNEMONIC_IRETD:
    case ZYDIS_MNEMONIC_IRETQ:
    case ZYDIS_MNEMONIC_SYSEXIT:
    case ZYDIS_MNEMONIC_UD0:
    case ZYDIS_MNEMONIC_UD1:
    case ZYDIS_MNEMONIC_UD2:
        return true;
    default:
        return false;
    }
}

#endif

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

#endif

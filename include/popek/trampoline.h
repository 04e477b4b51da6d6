/* popek — the bytes of jump patches: the jump written over the code and
 * the trampoline it leads to, produced with the Zydis encoder
 * (patcher/trampoline.c draws the layout). */
#ifndef POPEK_TRAMPOLINE_H
#define POPEK_TRAMPOLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <Zydis/Zydis.h>

#include "popek/patch.h"
#include "popek/status.h"

/* Whether insn, decoded at addr in bits-bit code, can run relocated in a
 * trampoline: relative branches and RIP-relative operands are re-encoded
 * to reach the same addresses. False, with *why, for forms that cannot:
 * LOOP and JrCXZ (only rel8 forms), XBEGIN (by policy), any CALL (it would leave a
 * return address inside a trampoline, where no unwinder finds it),
 * SYSENTER, traps known by their address (INT3, INT1, UD0/1/2), 16-bit
 * branches and 32-bit RIP-relative addresses. pk_trampoline_emit may
 * still refuse an instruction that passes: one the Zydis encoder does not
 * reproduce (it needs the operands, which this does not take), or one
 * whose target is out of reach. */
bool pk_relocatable(const ZydisDecodedInstruction *insn, uint64_t addr, unsigned bits,
                    const char **why);

/* Whether insn, a relative CALL, may end the bytes a jump replaces: in
 * 64-bit code the trampoline pushes the call's own return address (in the
 * original code) and jumps to its target. Not where a shadow stack is in
 * force: the callee's RET would find no matching entry. */
bool pk_call_can_end_jump(const ZydisDecodedInstruction *insn, unsigned bits);

/* Emits the trampoline of jump j, at j->trampoline: the instructions of
 * j->bytes in order, each patched site (sites[0..nsites), the table's
 * patches inside j, sorted) as INT3, or with PK_TABLE_PASSTHROUGH in
 * flags (the table's) as itself, or, with page (the vcpu page's address,
 * else 0) when it has a fast path, as its fast-path block ahead of its
 * INT3 (trampoline.c shows it; PK_TABLE_USER: a user program's), and the
 * displaced instructions between them relocated; then a jmp to
 * j->site + j->len. Sets each site's trampoline field and *len. With a
 * NULL buf it only measures (and still sets the fields). bits is 32 or 64.
 * Errors: PK_ERR_UNSUPPORTED for 16-bit code, or naming the instruction
 * that cannot be relocated (see pk_relocatable; also a branch into j's own
 * bytes) or reach its target from the trampoline; PK_ERR_USAGE when j's
 * bytes are not instructions filling 5..PK_JUMP_MAX_LEN bytes, or sites
 * do not match them (the first must be a site, each one of them). */
pk_status pk_trampoline_emit(const pk_jump *j, pk_patch *sites, size_t nsites, unsigned bits,
                             unsigned flags, uint64_t page, uint8_t *buf, size_t *len,
                             pk_error *err);

/* Emits the j->len bytes written over the code: jmp rel32 to
 * j->trampoline, then INT3. Errors: PK_ERR_UNSUPPORTED when the jump does
 * not fit or cannot reach. */
pk_status pk_jump_emit(const pk_jump *j, unsigned bits, uint8_t *buf, pk_error *err);

/* Checks a trampoline against its jump, decoding both with Zydis: each
 * instruction of j->bytes has its counterpart in tramp (tramp_len bytes at
 * j->trampoline) in order: INT3 for a patched site, or with passthrough
 * the same instruction, or with page the block pk_trampoline_emit made
 * (byte for byte) and its INT3; for displaced ones the same instruction
 * reaching the same addresses (mnemonic, operands, absolute branch targets
 * and RIP-relative addresses equal); then a jump back to j->site + j->len.
 * Each site's trampoline field must be the address of its counterpart (of
 * its INT3, for a block), and nothing may follow the jump back.
 * counterparts, when not NULL, gets j->len entries: at each offset of j's
 * bytes where an instruction starts, the address of its counterpart (where
 * code resuming at that instruction goes on instead), else 0. Errors:
 * PK_ERR_FORMAT naming the jump, the instruction's index and addresses,
 * and the first difference; PK_ERR_UNSUPPORTED for 16-bit code. */
pk_status pk_trampoline_check(const pk_jump *j, const pk_patch *sites, size_t nsites,
                              unsigned bits, unsigned flags, uint64_t page,
                              const uint8_t *tramp, size_t tramp_len, uint64_t *counterparts,
                              pk_error *err);

#endif

/* popek — the catalog: one row per family of sensitive instructions.
 *
 * The rows live in scanner/catalog.def (an X-macro table) and are the single
 * source for the scanner's filter, `popek explain`, docs/catalog.md and the
 * tests. */
#ifndef POPEK_CATALOG_H
#define POPEK_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include <Zydis/Zydis.h>

/* The set a row belongs to (`--set`). */
typedef enum pk_set {
    PK_SET_PG = 1 << 0,         /* sensitive but unprivileged */
    PK_SET_PRIVILEGED = 1 << 1, /* faults at CPL 3: trap-and-emulate works */
    PK_SET_EXTENDED = 1 << 2,   /* reveals the host; a careful monitor hides it */
    PK_SET_ALL = PK_SET_PG | PK_SET_PRIVILEGED | PK_SET_EXTENDED,
} pk_set;

/* Processor modes (code bitness) a row exists in. */
enum {
    PK_MODE_16 = 1 << 0,
    PK_MODE_32 = 1 << 1,
    PK_MODE_64 = 1 << 2,
    PK_MODES_ALL = PK_MODE_16 | PK_MODE_32 | PK_MODE_64,
    PK_MODES_LEGACY = PK_MODE_16 | PK_MODE_32,
};

/* What the instruction does when a deprivileged guest kernel runs it at CPL 3
 * inside an ordinary Linux process. */
typedef enum pk_cpl3 {
    PK_CPL3_SILENT,  /* runs without a fault, with a result that differs */
    PK_CPL3_FAULTS,  /* always faults (#GP or #UD) */
    PK_CPL3_UMIP,    /* faults only when CR4.UMIP=1 (Linux then emulates it) */
    PK_CPL3_IOPL,    /* faults when CPL > IOPL (and the I/O bitmap denies) */
    PK_CPL3_TSD,     /* faults only when CR4.TSD=1 */
    PK_CPL3_PCE,     /* faults only when CR4.PCE=0 */
    PK_CPL3_CHECKED, /* privilege checks against the host's CPL and tables */
    PK_CPL3_HOST,    /* enters the host kernel (system call or host IDT) */
    PK_CPL3_COUNT
} pk_cpl3;

/* Which Popek–Goldberg property the instruction breaks. */
typedef enum pk_pg {
    PK_PG_CONTROL,          /* control-sensitive, does not trap */
    PK_PG_LOCATION,         /* behaviour-sensitive: where things really are */
    PK_PG_MODE,             /* behaviour-sensitive: the real privilege mode */
    PK_PG_LOCATION_MODE,    /* behaviour-sensitive in both ways */
    PK_PG_CONTROL_MODE,     /* control- and mode-sensitive */
    PK_PG_PRIVILEGED,       /* sensitive and privileged: traps, virtualizable */
    PK_PG_HOST,             /* reveals host resources (time, features, CPU) */
    PK_PG_COUNT
} pk_pg;

/* How a decoded instruction whose mnemonic a row names is matched to it. */
typedef enum pk_match {
    PK_MATCH_MNEMONIC,  /* the mnemonic alone */
    PK_MATCH_FAR,       /* far branches only (CALL/JMP/RET) */
    PK_MATCH_SREG_PUSHPOP, /* PUSH/POP of a segment register */
    PK_MATCH_SREG_STORE,   /* MOV r/m, Sreg (8C) */
    PK_MATCH_SREG_LOAD,    /* MOV Sreg, r/m (8E) */
    PK_MATCH_CR,        /* MOV to/from a control register (0F 20, 0F 22) */
    PK_MATCH_DR,        /* MOV to/from a debug register (0F 21, 0F 23) */
    PK_MATCH_INT80,     /* INT 0x80, the 32-bit system-call gate */
    PK_MATCH_NOT_INT80, /* INT n for any other n */
    PK_MATCH_COUNT
} pk_match;

/* Row flags. */
enum {
    /* Reported by the scanner, but patched only when named with --only:
     * the program's own breakpoints and padding (INT3, INT1). */
    PK_CLASS_OPT_IN = 1 << 0,
};

#define PK_CLASS_MAX_MNEMONICS 4

typedef enum pk_class_id {
#define PK_ROW(id, ...) PK_CLASS_##id,
#include "../../scanner/catalog.def"
#undef PK_ROW
    PK_CLASS_COUNT,
    PK_CLASS_NONE = PK_CLASS_COUNT
} pk_class_id;

/* One row of the catalog. */
typedef struct pk_class {
    pk_class_id id;
    const char *key;         /* lower-case name for --only and explain */
    const char *name;        /* display name, e.g. "POP Sreg" */
    pk_set set;
    unsigned modes;          /* PK_MODE_* bits */
    unsigned flags;          /* PK_CLASS_* bits */
    pk_match match;
    ZydisMnemonic mnemonics[PK_CLASS_MAX_MNEMONICS]; /* INVALID-terminated */
    const char *encodings;   /* opcode bytes, e.g. "0F 01 /0 (memory only)" */
    pk_cpl3 cpl3;
    const char *cpl3_text;   /* what happens at CPL 3, in detail */
    pk_pg pg;
    const char *pg_text;     /* why it breaks (or keeps) trap-and-emulate */
    const char *vcpu_state;  /* virtual CPU state the monitor emulates */
    const char *explanation; /* two or three sentences for a student */
} pk_class;

/* The row for id, or NULL when id is out of range. */
const pk_class *pk_class_get(pk_class_id id);

/* The row whose key (or display name, case-insensitively) is name, or NULL.
 * Mnemonics such as "pushfq" or "iretd" find their row too. */
const pk_class *pk_class_find(const char *name);

/* Names for the enums above, e.g. "pg", "umip", "behaviour (location)". */
const char *pk_set_name(pk_set set);
const char *pk_cpl3_name(pk_cpl3 cpl3);
const char *pk_pg_name(pk_pg pg);

/* Formats modes as "16/32/64", "16/32" or "64" into buf. */
const char *pk_modes_str(unsigned modes, char *buf, unsigned size);

/* Parses a --set value ("pg", "privileged", "extended", "all" or a comma
 * list of them) into PK_SET_* bits. Returns false on an unknown name. */
bool pk_set_parse(const char *text, unsigned *sets);

/* Maps a decoded instruction (decoded in any decoder mode, operands not
 * needed) to its catalog row, or PK_CLASS_NONE. */
pk_class_id pk_classify(const ZydisDecodedInstruction *insn);

/* True when the mnemonic can match some row: the scanner's cheap first test. */
bool pk_classify_candidate(ZydisMnemonic mnemonic);

#endif

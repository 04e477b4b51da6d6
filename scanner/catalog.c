/* popek — catalog rows, lookups, and the classifier that maps a decoded
 * instruction to its row. */
#include "popek/catalog.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PK_UNPAREN(...) __VA_ARGS__

static const pk_class rows[PK_CLASS_COUNT] = {
#define PK_ROW(id_, key_, name_, set_, modes_, flags_, match_, mnemonics_,     \
               encodings_, cpl3_, cpl3_text_, pg_, pg_text_, vcpu_, explain_)  \
    [PK_CLASS_##id_] = {                                                       \
        .id = PK_CLASS_##id_, .key = key_, .name = name_, .set = set_,         \
        .modes = modes_, .flags = flags_, .match = match_,                     \
        .mnemonics = { PK_UNPAREN mnemonics_ }, .encodings = encodings_,       \
        .cpl3 = cpl3_, .cpl3_text = cpl3_text_, .pg = pg_,                     \
        .pg_text = pg_text_, .vcpu_state = vcpu_, .explanation = explain_,     \
    },
#include "catalog.def"
#undef PK_ROW
};

static const char *const cpl3_names[PK_CPL3_COUNT] = {
    [PK_CPL3_SILENT] = "runs, result differs",
    [PK_CPL3_FAULTS] = "faults",
    [PK_CPL3_UMIP] = "faults with UMIP",
    [PK_CPL3_IOPL] = "faults if CPL > IOPL",
    [PK_CPL3_TSD] = "faults with CR4.TSD",
    [PK_CPL3_PCE] = "faults without CR4.PCE",
    [PK_CPL3_CHECKED] = "checked against host CPL",
    [PK_CPL3_HOST] = "enters the host",
};

static const char *const pg_names[PK_PG_COUNT] = {
    [PK_PG_CONTROL] = "control-sensitive",
    [PK_PG_LOCATION] = "behaviour-sensitive (location)",
    [PK_PG_MODE] = "behaviour-sensitive (mode)",
    [PK_PG_LOCATION_MODE] = "behaviour-sensitive (location, mode)",
    [PK_PG_CONTROL_MODE] = "control- and mode-sensitive",
    [PK_PG_PRIVILEGED] = "privileged (traps)",
    [PK_PG_HOST] = "host-revealing",
};

const pk_class *pk_class_get(pk_class_id id)
{
    if ((unsigned)id >= PK_CLASS_COUNT)
        return NULL;
    return &rows[id];
}

const pk_class *pk_class_find(const char *name)
{
    if (!name)
        return NULL;
    for (unsigned i = 0; i < PK_CLASS_COUNT; i++)
        if (!strcasecmp(rows[i].key, name) || !strcasecmp(rows[i].name, name))
            return &rows[i];
    /* A mnemonic the row names, e.g. "pushfq" or "insb". */
    for (unsigned i = 0; i < PK_CLASS_COUNT; i++)
        for (unsigned m = 0; m < PK_CLASS_MAX_MNEMONICS && rows[i].mnemonics[m]; m++)
            if (rows[i].match == PK_MATCH_MNEMONIC &&
                !strcasecmp(ZydisMnemonicGetString(rows[i].mnemonics[m]), name))
                return &rows[i];
    return NULL;
}

const char *pk_set_name(pk_set set)
{
    switch (set) {
    case PK_SET_PG: return "pg";
    case PK_SET_PRIVILEGED: return "privileged";
    case PK_SET_EXTENDED: return "extended";
    case PK_SET_ALL: return "all";
    }
    return "?";
}

const char *pk_cpl3_name(pk_cpl3 cpl3)
{
    return (unsigned)cpl3 < PK_CPL3_COUNT ? cpl3_names[cpl3] : "?";
}

const char *pk_pg_name(pk_pg pg)
{
    return (unsigned)pg < PK_PG_COUNT ? pg_names[pg] : "?";
}

const char *pk_modes_str(unsigned modes, char *buf, unsigned size)
{
    static const struct { unsigned bit; const char *name; } m[] = {
        { PK_MODE_16, "16" }, { PK_MODE_32, "32" }, { PK_MODE_64, "64" },
    };
    buf[0] = 0;
    unsigned len = 0;
    for (unsigned i = 0; i < 3; i++)
        if (modes & m[i].bit)
            len += snprintf(buf + len, len < size ? size - len : 0, "%s%s",
                            len ? "/" : "", m[i].name);
    return buf;
}

bool pk_set_parse(const char *text, unsigned *sets)
{
    char copy[128];
    if (!text || strlen(text) >= sizeof copy)
        return false;
    strcpy(copy, text);
    *sets = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "pg")) *sets |= PK_SET_PG;
        else if (!strcmp(tok, "privileged")) *sets |= PK_SET_PRIVILEGED;
        else if (!strcmp(tok, "extended")) *sets |= PK_SET_EXTENDED;
        else if (!strcmp(tok, "all")) *sets |= PK_SET_ALL;
        else return false;
    }
    return *sets != 0;
}

/* ---- classification ------------------------------------------------------ */

/* For each mnemonic, the first row naming it plus one; rows naming the same
 * mnemonic (MOV: Sreg store, Sreg load, CR, DR) chain through next_row. */
static uint8_t first_row[ZYDIS_MNEMONIC_MAX_VALUE + 1];
static uint8_t next_row[PK_CLASS_COUNT];

_Static_assert(PK_CLASS_COUNT < 255, "row index must fit in a byte");

/* Built before main: the classifier sits in the sweep's inner loop. */
__attribute__((constructor)) static void build_index(void)
{
    /* Walk backwards so that each chain lists rows in catalog order. */
    for (int i = PK_CLASS_COUNT - 1; i >= 0; i--)
        for (unsigned m = 0; m < PK_CLASS_MAX_MNEMONICS && rows[i].mnemonics[m]; m++) {
            ZydisMnemonic mn = rows[i].mnemonics[m];
            next_row[i] = first_row[mn];
            first_row[mn] = (uint8_t)(i + 1);
        }
}

static bool row_matches(const pk_class *row, const ZydisDecodedInstruction *insn)
{
    uint8_t op = insn->opcode;
    bool map0 = insn->opcode_map == ZYDIS_OPCODE_MAP_DEFAULT;
    bool map0f = insn->opcode_map == ZYDIS_OPCODE_MAP_0F;

    switch (row->match) {
    case PK_MATCH_MNEMONIC:
        return true;
    case PK_MATCH_FAR:
        return insn->meta.branch_type == ZYDIS_BRANCH_TYPE_FAR;
    case PK_MATCH_SREG_PUSHPOP:
        /* 06/07 ES, 0E CS, 16/17 SS, 1E/1F DS; 0F A0/A1 FS, 0F A8/A9 GS */
        if (map0)
            return op == 0x06 || op == 0x07 || op == 0x0E || op == 0x16 ||
                   op == 0x17 || op == 0x1E || op == 0x1F;
        return map0f && (op == 0xA0 || op == 0xA1 || op == 0xA8 || op == 0xA9);
    case PK_MATCH_SREG_STORE:
        return map0 && op == 0x8C;
    case PK_MATCH_SREG_LOAD:
        return map0 && op == 0x8E;
    case PK_MATCH_CR:
        return map0f && (op == 0x20 || op == 0x22);
    case PK_MATCH_INT80:
        return insn->raw.imm[0].value.u == 0x80;
    case PK_MATCH_NOT_INT80:
        return insn->raw.imm[0].value.u != 0x80;
    case PK_MATCH_DR:
        return map0f && (op == 0x21 || op == 0x23);
    case PK_MATCH_COUNT:
        break;
    }
    return false;
}

bool pk_classify_candidate(ZydisMnemonic mnemonic)
{
    return (unsigned)mnemonic <= ZYDIS_MNEMONIC_MAX_VALUE && first_row[mnemonic];
}

pk_class_id pk_classify(const ZydisDecodedInstruction *insn)
{
    if ((unsigned)insn->mnemonic > ZYDIS_MNEMONIC_MAX_VALUE)
        return PK_CLASS_NONE;
    for (unsigned r = first_row[insn->mnemonic]; r; r = next_row[r - 1])
        if (row_matches(&rows[r - 1], insn))
            return (pk_class_id)(r - 1);
    return PK_CLASS_NONE;
}

/* popek — images: the code regions and symbols of a file to scan.
 *
 * An image is built from an ELF file (ELF32/ELF64: executables, PIE and
 * shared objects, relocatable objects, kernel images), a Linux bzImage (its
 * decompressed vmlinux), a raw blob, or the running kernel's vDSO. */
#ifndef POPEK_IMAGE_H
#define POPEK_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "popek/patch.h"
#include "popek/status.h"

/* A contiguous range of code. */
typedef struct pk_region {
    char *name;            /* section name, or "LOAD[n]" for a segment */
    uint64_t vaddr;        /* address of the first byte */
    uint64_t offset;       /* file offset of the first byte */
    uint64_t size;
    const uint8_t *bytes;  /* size bytes, owned by the image */
    uint8_t bits;          /* 16, 32 or 64 */
    uint32_t shndx;        /* ELF section index, 0 for a segment or raw code */
} pk_region;

typedef struct pk_symbol {
    uint64_t addr;
    uint64_t size;         /* 0 when unknown */
    char *name;
    bool func;             /* a function: a root for recursive descent */
    int32_t region;        /* the code region it lies in, or -1 */
} pk_symbol;

/* One entry of a Linux kernel's .altinstructions: at boot the kernel copies
 * replacement code (repl, repl_len bytes) over the original (instr). */
typedef struct pk_alt {
    uint64_t instr;
    uint64_t repl;
    uint8_t instr_len;
    uint8_t repl_len;
} pk_alt;

typedef enum pk_image_kind {
    PK_IMAGE_ELF,
    PK_IMAGE_BZIMAGE,
    PK_IMAGE_RAW,
    PK_IMAGE_VDSO,
} pk_image_kind;

typedef struct pk_image {
    char *path;
    pk_image_kind kind;
    char description[128];  /* e.g. "ELF64 shared object (x86-64)" */
    const char *compression; /* bzImage payload format, else NULL */

    pk_region *regions;     /* executable code, sorted by address */
    size_t nregions;
    pk_symbol *symbols;     /* sorted by address */
    size_t nsymbols;
    uint64_t entry;
    bool has_entry;

    /* The x86 feature bits of the file's GNU property note
     * (GNU_PROPERTY_X86_FEATURE_1_IBT 1, _SHSTK 2): how the program runs. */
    uint32_t x86_features;

    pk_alt *alts;           /* sorted by repl address */
    size_t nalts;
    unsigned alt_entry_size; /* detected .altinstructions entry size, or 0 */

    /* A file `popek patch` wrote: its patch table. The code regions hold the
     * original instructions again (restored from the table), so scanning a
     * patched file reports what was patched, not the INT3 bytes. */
    pk_patch_table patched;
    bool is_patched;

    /* storage */
    uint8_t *data;          /* the file, or the decompressed payload */
    size_t data_len;
    void *elf;              /* libelf handle (Elf *) when open */
} pk_image;

/* Loads an ELF file or a bzImage from path. Errors: PK_ERR_IO (cannot
 * open or read, a directory), PK_ERR_FORMAT (empty, truncated, corrupt),
 * PK_ERR_UNSUPPORTED (not ELF, not x86, no code). err says which. */
pk_status pk_image_load_file(pk_image *img, const char *path, pk_error *err);

/* Loads an ELF image held in memory (the bytes are copied). name is used in
 * messages and as the image path. */
pk_status pk_image_load_elf_memory(pk_image *img, const uint8_t *buf,
                                   size_t len, const char *name, pk_error *err);

/* Loads the whole file as one code region of the given bitness (16, 32, 64)
 * at base. */
pk_status pk_image_load_raw(pk_image *img, const char *path, unsigned bits,
                            uint64_t base, pk_error *err);

/* The same for raw code held in memory (copied); name is used in messages. */
pk_status pk_image_load_raw_memory(pk_image *img, const uint8_t *buf, size_t len,
                                   const char *name, unsigned bits, uint64_t base,
                                   pk_error *err);

/* Loads the running kernel's vDSO from this process's memory. */
pk_status pk_image_load_vdso(pk_image *img, pk_error *err);

/* Adds the symbols of an nm-style map (System.map: "ADDR TYPE NAME" lines)
 * to the image, all but absolute ones (a, A); text symbols (t, T, w, W)
 * become functions. */
pk_status pk_image_add_symbol_map(pk_image *img, const char *path, pk_error *err);

/* Frees everything the image owns; the image can be loaded again. */
void pk_image_free(pk_image *img);

/* The region containing addr, or NULL. */
const pk_region *pk_image_region_at(const pk_image *img, uint64_t addr);

/* The symbol that names addr in region (NULL: the region holding addr):
 * the nearest at or below addr in the same region that covers it, within
 * its size, or, for a symbol without a size (System.map), up to the end of
 * the region. Functions win over other symbols at the same address. NULL
 * when none does. (The region matters in relocatable objects, where every
 * section starts at 0.) */
const pk_symbol *pk_image_symbol_at(const pk_image *img, const pk_region *region,
                                    uint64_t addr);

/* The alternatives entry whose replacement bytes contain addr, or NULL. */
const pk_alt *pk_image_alt_at(const pk_image *img, uint64_t addr);

/* The GNU build id of the ELF file at path (its NT_GNU_BUILD_ID note), in
 * id (size bytes at most): its length, or 0 when it has none (or is no
 * ELF file). Cheap: it reads the program headers and notes only. */
size_t pk_elf_build_id(const char *path, uint8_t *id, size_t size);

#endif

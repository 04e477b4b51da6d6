/* popek — growing an ELF file by one loadable segment.
 *
 * The patcher needs room the file does not have: for trampolines, and for
 * the patch table. Every byte of the input stays where it is; the growth is
 * appended. The program header table moves to the new segment (so that a
 * PT_LOAD and a PT_NOTE can be added without shifting anything, and PT_PHDR
 * still describes a table that is mapped), and, when the file has section
 * headers, their table moves too, with a `.popek` section for the note. */
#ifndef POPEK_ELFGROW_H
#define POPEK_ELFGROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "popek/status.h"

/* The note that carries the patch table: name "popek", this type. */
#define PK_NOTE_NAME "popek"
#define PK_NOTE_PATCH_TABLE 0x504b5401u

typedef struct pk_elf_growth {
    uint8_t *data;          /* the grown file (malloc'ed) */
    size_t len;
    uint64_t segment_vaddr; /* where the new segment is mapped */
    uint64_t code_vaddr;    /* the code, as pk_elf_code_vaddr said */
    uint64_t code_offset;   /* their file offset */
    uint64_t note_vaddr;    /* the note's descriptor (the patch table) */
    uint64_t vcpu_page;     /* the vcpu page's address, or 0 */
} pk_elf_growth;

/* Appends to the ELF image in (x86, ELF32 or ELF64, with program headers) a
 * PT_LOAD mapped above every existing segment, holding the moved program
 * header table, code_size bytes of code (made for the address
 * pk_elf_code_vaddr gives; the segment is executable when there are any),
 * and a PT_NOTE with note_desc; with vcpu_page, it leaves a page of address
 * space just below that segment unmapped, where a monitor puts the page it
 * shares with fast-path trampolines (run without one, the file's blocks
 * fault there at once). Errors: PK_ERR_FORMAT for a malformed
 * input, PK_ERR_UNSUPPORTED for inputs it cannot grow (no program headers,
 * extended numbering, no address space left), PK_ERR_NOMEM. */
pk_status pk_elf_grow(const uint8_t *in, size_t in_len, const uint8_t *note_desc,
                      size_t note_len, const uint8_t *code, size_t code_size, bool vcpu_page,
                      pk_elf_growth *out, pk_error *err);

/* Where pk_elf_grow (with vcpu_page as given) will put code in the file
 * grown from in, and, when page_vaddr is not NULL, the vcpu page (0
 * without one). Errors as pk_elf_grow's. */
pk_status pk_elf_code_vaddr(const uint8_t *in, size_t in_len, bool vcpu_page, uint64_t *vaddr,
                            uint64_t *page_vaddr, pk_error *err);

/* The size bytes at address vaddr of an ELF image as loaded, when they lie
 * in the file part of one PT_LOAD (an executable one, with code); NULL
 * otherwise. */
const uint8_t *pk_elf_loaded_bytes(const uint8_t *data, size_t len, uint64_t vaddr, size_t size,
                                   bool code);

/* Finds the first note of this name and type in the segments of
 * segment_type (PT_NOTE, PT_GNU_PROPERTY) of an ELF image. Sets *desc and
 * *desc_len to its descriptor inside data; false when there is none. */
bool pk_elf_note(const uint8_t *data, size_t len, uint32_t segment_type, const char *name,
                 uint32_t type, const uint8_t **desc, size_t *desc_len);

/* Finds the popek note in an ELF image through its program headers (no
 * section headers needed). Sets *desc and *len to its descriptor inside
 * data; returns false when there is none. */
bool pk_elf_find_note(const uint8_t *data, size_t len, const uint8_t **desc, size_t *desc_len);

#endif

/* popek — a guest kernel file: its segments, its entry, the Multiboot info.
 *
 * The boot contract (DESIGN.md): a 32-bit guest is a Multiboot v1 ELF
 * entered in protected mode with EAX = 0x2BADB002 and EBX = the Multiboot
 * info; a 64-bit guest is entered in long mode at its ELF entry with RDI =
 * the same info. Segments load at their physical addresses, which must equal
 * their virtual ones (the guest runs without paging). */
#ifndef POPEK_INTERNAL_GUEST_H
#define POPEK_INTERNAL_GUEST_H

#include <stdint.h>

#include "popek/image.h"
#include "popek/status.h"

#define PK_MULTIBOOT_MAGIC 0x2BADB002u   /* in EAX at entry */
#define PK_MULTIBOOT_HEADER 0x1BADB002u  /* in the kernel file */

typedef struct pk_guest_segment {
    uint64_t addr;
    uint64_t filesz, memsz;
    uint64_t offset;
} pk_guest_segment;

typedef struct pk_guest {
    unsigned bits;          /* 32 or 64 */
    uint64_t entry;
    pk_guest_segment *segments;
    size_t nsegments;
    uint64_t lowest, highest; /* [lowest, highest) holds every segment */
} pk_guest;

/* Reads the loadable segments of img (an ELF file) and checks the boot
 * contract: ELF32 i386 with a Multiboot header, or ELF64 x86-64. */
pk_status pk_guest_read(pk_guest *g, const pk_image *img, pk_error *err);
void pk_guest_free(pk_guest *g);

/* Copies the segments into RAM (ram[a] is guest address a; [low, size)
 * is backed) and zeroes what lies past their file bytes. */
pk_status pk_guest_place(const pk_guest *g, const pk_image *img, uint8_t *ram, uint64_t low,
                         uint64_t size, pk_error *err);

/* Writes a Multiboot v1 info (memory sizes as QEMU reports them for the
 * same RAM size, a memory map, the command line, the loader's name) in a
 * free page below 640 KiB and returns its address in *mbi. */
pk_status pk_multiboot_write(const pk_guest *g, uint8_t *ram, uint64_t low, uint64_t size,
                             const char *cmdline, uint64_t *mbi, pk_error *err);

#endif

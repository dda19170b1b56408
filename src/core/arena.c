/* Bump allocator over a chain of blocks. Blocks survive da_arena_reset, so a
 * training loop reaches its peak footprint in the first step and never calls
 * malloc again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/core.h"

#define ARENA_ALIGN 64

struct da_arena_block {
    da_arena_block *next;
    size_t cap, used;
    unsigned char *mem;
};

static da_arena_block *block_new(size_t cap)
{
    da_arena_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->mem = aligned_alloc(ARENA_ALIGN, cap);
    if (!b->mem) { free(b); return NULL; }
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

void da_arena_init(da_arena *a, size_t block_bytes)
{
    memset(a, 0, sizeof *a);
    a->block_bytes = block_bytes < (1u << 16) ? (1u << 16) : block_bytes;
}

void *da_arena_alloc(da_arena *a, size_t bytes)
{
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0) need = ARENA_ALIGN;
    /* first block with room, starting at the current one (earlier blocks are full) */
    da_arena_block *b = a->current ? a->current : a->head;
    while (b && b->cap - b->used < need) b = b->next;
    if (!b) {
        size_t cap = need > a->block_bytes ? need : a->block_bytes;
        b = block_new(cap);
        if (!b) {
            /* out of memory inside a forward pass has no sensible recovery */
            da_log(DA_LOG_ERROR, "dalign: arena out of memory (%zu bytes)", cap);
            abort();
        }
        if (!a->head) a->head = b;
        else {
            da_arena_block *last = a->head;
            while (last->next) last = last->next;
            last->next = b;
        }
    }
    a->current = b;
    void *p = b->mem + b->used;
    b->used += need;
    a->used_bytes += need;
    if (a->used_bytes > a->peak_bytes) a->peak_bytes = a->used_bytes;
    return p;
}

void *da_arena_calloc(da_arena *a, size_t bytes)
{
    void *p = da_arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void da_arena_reset(da_arena *a)
{
    for (da_arena_block *b = a->head; b; b = b->next) b->used = 0;
    a->current = a->head;
    a->used_bytes = 0;
}

da_arena_mark da_arena_get_mark(const da_arena *a)
{
    da_arena_mark m = {a->current, a->current ? a->current->used : 0, a->used_bytes};
    return m;
}

/* Blocks after the mark's are emptied: allocations go to the first block
 * with room from the current one on, so everything after the mark lies in
 * the mark's block past its fill or in a later block. */
void da_arena_release(da_arena *a, da_arena_mark m)
{
    da_arena_block *b = m.block ? m.block : a->head;
    if (!b) return;   /* nothing was ever allocated */
    b->used = m.block ? m.used : 0;
    for (da_arena_block *n = b->next; n; n = n->next) n->used = 0;
    a->current = b;
    a->used_bytes = m.used_bytes;
}

void da_arena_free(da_arena *a)
{
    da_arena_block *b = a->head;
    while (b) {
        da_arena_block *next = b->next;
        free(b->mem);
        free(b);
        b = next;
    }
    memset(a, 0, sizeof *a);
}

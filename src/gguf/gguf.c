/*
 * gguf.c: the GGUF reader (validating, zero-copy over a read-only mapping) and the streaming
 * writer. Format and guarantees: see gguf.h.
 *
 * Validation follows llama.cpp's gguf.cpp (so that a file llama.cpp rejects, we reject too):
 * magic, version 2 or 3, counts bounded by the bytes left, non-empty keys, no duplicate keys or
 * tensor names, known value types, no nested arrays, `general.alignment` a u32 power of two,
 * tensor names shorter than 64 bytes, 1..4 dims, element counts fitting in int64, known tensor
 * types whose rows are whole blocks, tensors stored back to back at aligned offsets in the
 * order of their infos, and every tensor's bytes inside the file.
 * We are stricter in three places: a bool (scalar or array element) must be 0 or 1 (llama.cpp
 * reads any non-zero byte as true), a tensor needs at least one dimension, and keys and tensor
 * names may not contain NUL bytes (they are handed out as C strings).
 */
#define _GNU_SOURCE
#include "gguf/gguf.h"

#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"

typedef struct kv_entry {
    const char *key;        /* NUL-terminated copy */
    lv_gguf_type type;
    lv_gguf_type arr_type;  /* for arrays */
    uint64_t n;             /* array count (1 for scalars) */
    uint64_t val_off;       /* file offset of the value (after the type; for arrays, of the elements) */
    uint64_t raw_off;       /* file offset of the type field: the value's raw span starts here */
    uint64_t raw_size;
    uint64_t *str_offs;     /* string arrays: file offset of each string's length field */
} kv_entry;

struct lv_gguf {
    const uint8_t *base;
    uint64_t size;
    int fd;          /* -1 when not file-backed */
    void *map;       /* mmap base, or NULL */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_off;
    int64_t n_kv;
    kv_entry *kv;
    int64_t n_tensors;
    lv_gguf_tensor *tensors;
    struct name_chunk *names; /* key and tensor name strings */
};

/* -------------------------------------------------------------------------------------------
 * reading helpers: a bounds-checked cursor
 * ----------------------------------------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *p;
    uint64_t pos, size;
} cursor;

static uint64_t cur_left(const cursor *c) { return c->size - c->pos; }

static bool cur_read(cursor *c, void *dst, uint64_t n) {
    if (n > cur_left(c)) return false;
    memcpy(dst, c->p + c->pos, (size_t)n);
    c->pos += n;
    return true;
}

static bool cur_skip(cursor *c, uint64_t n) {
    if (n > cur_left(c)) return false;
    c->pos += n;
    return true;
}

static const size_t g_gguf_type_size[LV_GGUF_TYPE_COUNT] = {
    [LV_GGUF_UINT8] = 1, [LV_GGUF_INT8] = 1, [LV_GGUF_UINT16] = 2, [LV_GGUF_INT16] = 2,
    [LV_GGUF_UINT32] = 4, [LV_GGUF_INT32] = 4, [LV_GGUF_FLOAT32] = 4, [LV_GGUF_BOOL] = 1,
    [LV_GGUF_STRING] = 0, [LV_GGUF_ARRAY] = 0, [LV_GGUF_UINT64] = 8, [LV_GGUF_INT64] = 8,
    [LV_GGUF_FLOAT64] = 8,
};

const char *lv_gguf_type_name(lv_gguf_type t) {
    static const char *names[LV_GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
    };
    return (unsigned)t < LV_GGUF_TYPE_COUNT ? names[t] : "invalid";
}

/* Read a string header: returns false with an error on truncation. */
static lv_status cur_str(cursor *c, uint64_t *len, uint64_t *off, const char *what) {
    uint64_t at = c->pos;
    if (!cur_read(c, len, 8))
        return lv_error(LV_ERR_FORMAT, "truncated file: %s length at byte %llu", what, (unsigned long long)at);
    if (*len > cur_left(c))
        return lv_error(LV_ERR_FORMAT, "%s at byte %llu has length %llu but only %llu bytes remain",
                        what, (unsigned long long)at, (unsigned long long)*len, (unsigned long long)cur_left(c));
    *off = c->pos;
    c->pos += *len;
    return LV_OK;
}

/* NUL-terminated copies of keys and tensor names live in a list of chunks, allocated as the
 * strings are read: their total is bounded by the header, not by the file (a model file may be
 * far larger than memory). A string longer than a chunk gets a chunk of its own. */
typedef struct name_chunk {
    struct name_chunk *next;
    uint64_t used, cap;
    char buf[];
} name_chunk;

#define NAME_CHUNK_SIZE 16384

static const char *names_add(name_chunk **head, const uint8_t *src, uint64_t len) {
    name_chunk *c = *head;
    if (!c || c->cap - c->used < len + 1) {
        uint64_t cap = LV_MAX(len + 1, (uint64_t)NAME_CHUNK_SIZE);
        name_chunk *n = lv_malloc(sizeof(name_chunk) + (size_t)cap);
        if (!n) return NULL;
        n->used = 0;
        n->cap = cap;
        if (c && cap > NAME_CHUNK_SIZE) { /* a big string: keep the current chunk in front */
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            *head = n;
        }
        c = n;
    }
    char *d = c->buf + c->used;
    memcpy(d, src, (size_t)len);
    d[len] = '\0';
    c->used += len + 1;
    return d;
}

static void names_free(name_chunk *c) {
    while (c) {
        name_chunk *next = c->next;
        lv_free(c);
        c = next;
    }
}

/* hash set of strings for duplicate detection */
static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Returns index of a duplicate or -1; inserts otherwise. table has cap (power of 2) slots of
 * int64 initialised to -1, names[i] the strings. */
static int64_t dup_insert(int64_t *table, uint64_t cap, const char *const *names_of, int64_t idx, const char *s) {
    uint64_t m = cap - 1;
    for (uint64_t h = str_hash(s) & m;; h = (h + 1) & m) {
        if (table[h] < 0) {
            table[h] = idx;
            return -1;
        }
        if (strcmp(names_of[table[h]], s) == 0) return table[h];
    }
}

/* -------------------------------------------------------------------------------------------
 * parse
 * ----------------------------------------------------------------------------------------- */

static lv_status parse(lv_gguf *g) {
    cursor c = {g->base, 0, g->size};
    lv_status st = LV_OK;
    char magic[4];
    if (!cur_read(&c, magic, 4)) return lv_error(LV_ERR_FORMAT, "file too small to be GGUF (%llu bytes)", (unsigned long long)g->size);
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return lv_error(LV_ERR_FORMAT, "not a GGUF file: magic is %02x %02x %02x %02x, expected 'GGUF'",
                        (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
    if (!cur_read(&c, &g->version, 4)) return lv_error(LV_ERR_FORMAT, "truncated GGUF header (version)");
    if (g->version == 1) return lv_error(LV_ERR_UNSUPPORTED, "GGUF version 1 is not supported (convert the file with a current llama.cpp)");
    if ((g->version & 0xffff) == 0)
        return lv_error(LV_ERR_UNSUPPORTED, "GGUF version %u: a big-endian file? only little-endian files are supported", g->version);
    if (g->version != 2 && g->version != 3) return lv_error(LV_ERR_UNSUPPORTED, "GGUF version %u is not supported (2 and 3 are)", g->version);
    uint64_t n_tensors, n_kv;
    if (!cur_read(&c, &n_tensors, 8) || !cur_read(&c, &n_kv, 8)) return lv_error(LV_ERR_FORMAT, "truncated GGUF header (counts)");
    /* each kv takes at least 8 (key len) + 1 (key) + 4 (type) + 1 (value) bytes; each tensor info
     * at least 8 + 1 + 4 + 8 + 4 + 8 */
    if (n_kv > cur_left(&c) / 14)
        return lv_error(LV_ERR_FORMAT, "header claims %llu key/value pairs, more than the %llu bytes left can hold",
                        (unsigned long long)n_kv, (unsigned long long)cur_left(&c));
    if (n_tensors > cur_left(&c) / 33)
        return lv_error(LV_ERR_FORMAT, "header claims %llu tensors, more than the %llu bytes left can hold",
                        (unsigned long long)n_tensors, (unsigned long long)cur_left(&c));
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;

    g->kv = lv_calloc((size_t)n_kv ? (size_t)n_kv : 1, sizeof(kv_entry));
    g->tensors = lv_calloc((size_t)n_tensors ? (size_t)n_tensors : 1, sizeof(lv_gguf_tensor));
    uint64_t hcap = 16;
    while (hcap < 2 * (n_kv > n_tensors ? n_kv : n_tensors) + 2) hcap <<= 1;
    int64_t *htab = lv_mallocn((size_t)hcap, sizeof(int64_t));
    const char **name_list = lv_calloc((size_t)(n_kv > n_tensors ? n_kv : n_tensors) + 1, sizeof(char *));
    if (!g->kv || !g->tensors || !htab || !name_list) {
        st = LV_ERR_NOMEM;
        goto end;
    }

    /* ---- key/value pairs ---- */
    for (uint64_t i = 0; i < hcap; i++) htab[i] = -1;
    for (int64_t i = 0; i < g->n_kv; i++) {
        kv_entry *e = &g->kv[i];
        uint64_t klen = 0, koff = 0;
        if ((st = cur_str(&c, &klen, &koff, "key")) != LV_OK) goto end;
        if (klen == 0) {
            st = lv_error(LV_ERR_FORMAT, "key %lld is empty", (long long)i);
            goto end;
        }
        e->key = names_add(&g->names, c.p + koff, klen);
        if (!e->key) {
            st = LV_ERR_NOMEM;
            goto end;
        }
        if (strlen(e->key) != klen) {
            st = lv_error(LV_ERR_FORMAT, "key %lld contains a NUL byte", (long long)i);
            goto end;
        }
        name_list[i] = e->key;
        int64_t d = dup_insert(htab, hcap, name_list, i, e->key);
        if (d >= 0) {
            st = lv_error(LV_ERR_FORMAT, "duplicate key '%s' (pairs %lld and %lld)", e->key, (long long)d, (long long)i);
            goto end;
        }
        e->raw_off = c.pos;
        uint32_t type;
        if (!cur_read(&c, &type, 4)) {
            st = lv_error(LV_ERR_FORMAT, "truncated file: type of key '%s'", e->key);
            goto end;
        }
        if (type >= LV_GGUF_TYPE_COUNT) {
            st = lv_error(LV_ERR_FORMAT, "key '%s' has invalid value type %u", e->key, type);
            goto end;
        }
        e->type = (lv_gguf_type)type;
        e->n = 1;
        if (type == LV_GGUF_ARRAY) {
            uint32_t at;
            uint64_t n;
            if (!cur_read(&c, &at, 4) || !cur_read(&c, &n, 8)) {
                st = lv_error(LV_ERR_FORMAT, "truncated file: array header of key '%s'", e->key);
                goto end;
            }
            if (at >= LV_GGUF_TYPE_COUNT || at == LV_GGUF_ARRAY) {
                st = lv_error(LV_ERR_FORMAT, "key '%s' is an array of invalid element type %u", e->key, at);
                goto end;
            }
            e->arr_type = (lv_gguf_type)at;
            e->n = n;
            e->val_off = c.pos;
            if (at == LV_GGUF_STRING) {
                if (n > cur_left(&c) / 8) {
                    st = lv_error(LV_ERR_FORMAT, "key '%s' claims %llu strings, more than the %llu bytes left can hold",
                                  e->key, (unsigned long long)n, (unsigned long long)cur_left(&c));
                    goto end;
                }
                e->str_offs = lv_mallocn((size_t)(n ? n : 1), sizeof(uint64_t));
                if (!e->str_offs) {
                    st = LV_ERR_NOMEM;
                    goto end;
                }
                for (uint64_t j = 0; j < n; j++) {
                    uint64_t len = 0, off = 0;
                    e->str_offs[j] = c.pos;
                    if ((st = cur_str(&c, &len, &off, "string array element")) != LV_OK) {
                        lv_error_prefix("key '%s' element %llu", e->key, (unsigned long long)j);
                        goto end;
                    }
                }
            } else {
                uint64_t es = g_gguf_type_size[at];
                if (n > cur_left(&c) / es) {
                    st = lv_error(LV_ERR_FORMAT, "key '%s' claims %llu elements of %s, more than the %llu bytes left",
                                  e->key, (unsigned long long)n, lv_gguf_type_name(e->arr_type), (unsigned long long)cur_left(&c));
                    goto end;
                }
                if (at == LV_GGUF_BOOL) {
                    for (uint64_t j = 0; j < n; j++) {
                        if (c.p[c.pos + j] > 1) {
                            st = lv_error(LV_ERR_FORMAT, "key '%s' element %llu is a bool with value %u", e->key,
                                          (unsigned long long)j, c.p[c.pos + j]);
                            goto end;
                        }
                    }
                }
                cur_skip(&c, n * es);
            }
        } else if (type == LV_GGUF_STRING) {
            uint64_t len = 0, off = 0;
            e->val_off = c.pos;
            if ((st = cur_str(&c, &len, &off, "string value")) != LV_OK) {
                lv_error_prefix("key '%s'", e->key);
                goto end;
            }
        } else {
            e->val_off = c.pos;
            if (!cur_skip(&c, g_gguf_type_size[type])) {
                st = lv_error(LV_ERR_FORMAT, "truncated file: value of key '%s'", e->key);
                goto end;
            }
            if (type == LV_GGUF_BOOL && c.p[e->val_off] > 1) {
                st = lv_error(LV_ERR_FORMAT, "key '%s' is a bool with value %u", e->key, c.p[e->val_off]);
                goto end;
            }
        }
        e->raw_size = c.pos - e->raw_off;
    }

    /* alignment */
    g->alignment = LV_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = lv_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        if (g->kv[ai].type != LV_GGUF_UINT32) {
            st = lv_error(LV_ERR_FORMAT, "key 'general.alignment' must be u32 but is %s", lv_gguf_type_name(g->kv[ai].type));
            goto end;
        }
        memcpy(&g->alignment, c.p + g->kv[ai].val_off, 4);
        if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) != 0) {
            st = lv_error(LV_ERR_FORMAT, "general.alignment %u is not a power of two", g->alignment);
            goto end;
        }
    }

    /* ---- tensor infos ---- */
    for (uint64_t i = 0; i < hcap; i++) htab[i] = -1;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lv_gguf_tensor *t = &g->tensors[i];
        uint64_t nlen = 0, noff = 0;
        if ((st = cur_str(&c, &nlen, &noff, "tensor name")) != LV_OK) {
            lv_error_prefix("tensor %lld", (long long)i);
            goto end;
        }
        if (nlen >= LV_GGUF_MAX_NAME) {
            st = lv_error(LV_ERR_FORMAT, "tensor %lld: name is %llu bytes, the limit is %d", (long long)i,
                          (unsigned long long)nlen, LV_GGUF_MAX_NAME - 1);
            goto end;
        }
        t->name = names_add(&g->names, c.p + noff, nlen);
        if (!t->name) {
            st = LV_ERR_NOMEM;
            goto end;
        }
        if (strlen(t->name) != nlen || nlen == 0) {
            st = lv_error(LV_ERR_FORMAT, "tensor %lld: name is empty or contains a NUL byte", (long long)i);
            goto end;
        }
        name_list[i] = t->name;
        int64_t d = dup_insert(htab, hcap, name_list, i, t->name);
        if (d >= 0) {
            st = lv_error(LV_ERR_FORMAT, "duplicate tensor name '%s' (tensors %lld and %lld)", t->name, (long long)d, (long long)i);
            goto end;
        }
        uint32_t n_dims;
        if (!cur_read(&c, &n_dims, 4)) {
            st = lv_error(LV_ERR_FORMAT, "truncated file: dims of tensor '%s'", t->name);
            goto end;
        }
        if (n_dims < 1 || n_dims > LV_GGUF_MAX_DIMS) {
            st = lv_error(LV_ERR_FORMAT, "tensor '%s' has %u dimensions (1 to %d allowed)", t->name, n_dims, LV_GGUF_MAX_DIMS);
            goto end;
        }
        t->n_dims = (int)n_dims;
        int64_t nel = 1;
        for (int d2 = 0; d2 < LV_GGUF_MAX_DIMS; d2++) t->ne[d2] = 1;
        for (uint32_t d2 = 0; d2 < n_dims; d2++) {
            uint64_t ne;
            if (!cur_read(&c, &ne, 8)) {
                st = lv_error(LV_ERR_FORMAT, "truncated file: shape of tensor '%s'", t->name);
                goto end;
            }
            if (ne > (uint64_t)INT64_MAX) {
                st = lv_error(LV_ERR_FORMAT, "tensor '%s' dimension %u has %llu elements", t->name, d2, (unsigned long long)ne);
                goto end;
            }
            t->ne[d2] = (int64_t)ne;
            if (lv_mul_ovf_i64(nel, (int64_t)ne, &nel)) {
                st = lv_error(LV_ERR_FORMAT, "tensor '%s': element count overflows 64 bits", t->name);
                goto end;
            }
        }
        uint32_t type;
        if (!cur_read(&c, &type, 4) || !cur_read(&c, &t->offset, 8)) {
            st = lv_error(LV_ERR_FORMAT, "truncated file: type/offset of tensor '%s'", t->name);
            goto end;
        }
        const lv_type_traits *tt = lv_type_get(type);
        if (!tt) {
            st = lv_error(LV_ERR_FORMAT, "tensor '%s' has invalid type %u", t->name, type);
            goto end;
        }
        t->type = type;
        if (t->ne[0] % tt->blck_size != 0) {
            st = lv_error(LV_ERR_FORMAT, "tensor '%s' of type %s has %lld elements per row, not a multiple of the block size %lld",
                          t->name, tt->name, (long long)t->ne[0], (long long)tt->blck_size);
            goto end;
        }
        /* bytes = nel / blck * type_size, overflow-checked */
        int64_t nbytes;
        if (lv_mul_ovf_i64(nel / tt->blck_size, tt->type_size, &nbytes)) {
            st = lv_error(LV_ERR_FORMAT, "tensor '%s': size in bytes overflows 64 bits", t->name);
            goto end;
        }
        t->nbytes = (uint64_t)nbytes;
    }

    /* data section: starts at the next multiple of the alignment */
    {
        uint64_t off = c.pos;
        uint64_t pad = (g->alignment - off % g->alignment) % g->alignment;
        g->data_off = off + pad;
        if (g->n_tensors > 0 && g->data_off > g->size) {
            st = lv_error(LV_ERR_FORMAT, "the data section would start at byte %llu (after padding to %u), past the end of the %llu-byte file (truncated file?)",
                          (unsigned long long)g->data_off, g->alignment, (unsigned long long)g->size);
            goto end;
        }
        uint64_t data_size = g->data_off <= g->size ? g->size - g->data_off : 0;
        uint64_t expect = 0;
        for (int64_t i = 0; i < g->n_tensors; i++) {
            lv_gguf_tensor *t = &g->tensors[i];
            if (t->offset != expect) {
                st = lv_error(LV_ERR_FORMAT, "tensor '%s' has data offset %llu, expected %llu (tensors must be stored back to back, aligned to %u)",
                              t->name, (unsigned long long)t->offset, (unsigned long long)expect, g->alignment);
                goto end;
            }
            if (t->nbytes > data_size || t->offset > data_size - t->nbytes) {
                st = lv_error(LV_ERR_FORMAT, "tensor '%s' data [%llu, %llu) lies outside the file's data section of %llu bytes (truncated file?)",
                              t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                              (unsigned long long)data_size);
                goto end;
            }
            t->data = g->base + g->data_off + t->offset;
            uint64_t padded = t->nbytes + (g->alignment - t->nbytes % g->alignment) % g->alignment;
            if (padded < t->nbytes || expect + padded < expect) {
                st = lv_error(LV_ERR_FORMAT, "tensor '%s': data section size overflows", t->name);
                goto end;
            }
            expect += padded;
        }
    }

end:
    lv_free(htab);
    lv_free(name_list);
    return st;
}

/* -------------------------------------------------------------------------------------------
 * open / close
 * ----------------------------------------------------------------------------------------- */

lv_status lv_gguf_open_memory(const void *data, uint64_t size, lv_gguf **out) {
    *out = NULL;
    lv_gguf *g = lv_calloc(1, sizeof(*g));
    if (!g) return LV_ERR_NOMEM;
    g->fd = -1;
    g->base = data;
    g->size = size;
    lv_status st = parse(g);
    if (st != LV_OK) {
        lv_gguf_close(g);
        return st;
    }
    *out = g;
    return LV_OK;
}

lv_status lv_gguf_open(const char *path, lv_gguf **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lv_error(LV_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lv_error(LV_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lv_error(LV_ERR_IO, "'%s' is not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lv_error(LV_ERR_IO, "cannot map '%s' (%llu bytes): %s", path, (unsigned long long)size, strerror(e));
        }
    }
    lv_gguf *g = lv_calloc(1, sizeof(*g));
    if (!g) {
        if (map) munmap(map, (size_t)size);
        close(fd);
        return LV_ERR_NOMEM;
    }
    g->fd = fd;
    g->map = map;
    g->base = map;
    g->size = size;
    lv_status st = parse(g);
    if (st != LV_OK) {
        lv_error_prefix("%s", path);
        lv_gguf_close(g);
        return st;
    }
    *out = g;
    return LV_OK;
}

void lv_gguf_release_pages(const lv_gguf *g, const void *p, uint64_t n) {
    if (!g->map || n == 0) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p, e = a + (uintptr_t)n;
    const uintptr_t lo = (a + page - 1) / page * page, hi = e / page * page;
    if (hi <= lo) return;
    (void)madvise((void *)lo, (size_t)(hi - lo), MADV_DONTNEED);
    /* what is read again is rows looked up one by one (token embeddings tied to the output):
     * without this, each lookup would fault in a readahead window around it */
    (void)madvise((void *)lo, (size_t)(hi - lo), MADV_RANDOM);
}

void lv_gguf_close(lv_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) lv_free(g->kv[i].str_offs);
    lv_free(g->kv);
    lv_free(g->tensors);
    names_free(g->names);
    if (g->map) munmap(g->map, (size_t)g->size);
    if (g->fd >= 0) close(g->fd);
    lv_free(g);
}

uint32_t lv_gguf_version(const lv_gguf *g) { return g->version; }
uint32_t lv_gguf_alignment(const lv_gguf *g) { return g->alignment; }
uint64_t lv_gguf_file_size(const lv_gguf *g) { return g->size; }
uint64_t lv_gguf_data_offset(const lv_gguf *g) { return g->data_off; }

/* -------------------------------------------------------------------------------------------
 * accessors
 * ----------------------------------------------------------------------------------------- */

/* An index from the caller: out of range is a bug in the caller, not bad input. */
static const kv_entry *kv_at(const lv_gguf *g, int64_t i) {
    LV_ASSERT(i >= 0 && i < g->n_kv);
    return &g->kv[i];
}

int64_t lv_gguf_n_kv(const lv_gguf *g) { return g->n_kv; }

int64_t lv_gguf_find_key(const lv_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return i;
    return -1;
}

const char *lv_gguf_key(const lv_gguf *g, int64_t i) { return kv_at(g, i)->key; }
lv_gguf_type lv_gguf_kv_type(const lv_gguf *g, int64_t i) { return kv_at(g, i)->type; }
lv_gguf_type lv_gguf_arr_type(const lv_gguf *g, int64_t i) { return kv_at(g, i)->arr_type; }
uint64_t lv_gguf_arr_n(const lv_gguf *g, int64_t i) {
    const kv_entry *e = kv_at(g, i);
    return e->type == LV_GGUF_ARRAY ? e->n : 0;
}

const void *lv_gguf_arr_data(const lv_gguf *g, int64_t i) {
    const kv_entry *e = kv_at(g, i);
    if (e->type != LV_GGUF_ARRAY || e->arr_type == LV_GGUF_STRING) return NULL;
    return g->base + e->val_off;
}

static lv_gguf_str str_at(const lv_gguf *g, uint64_t off) {
    lv_gguf_str s;
    memcpy(&s.len, g->base + off, 8);
    s.ptr = (const char *)g->base + off + 8;
    return s;
}

lv_gguf_str lv_gguf_arr_str(const lv_gguf *g, int64_t i, uint64_t j) {
    const kv_entry *e = kv_at(g, i);
    if (e->type != LV_GGUF_ARRAY || e->arr_type != LV_GGUF_STRING || j >= e->n) return (lv_gguf_str){"", 0};
    return str_at(g, e->str_offs[j]);
}

lv_gguf_str lv_gguf_get_str(const lv_gguf *g, int64_t i) {
    const kv_entry *e = kv_at(g, i);
    if (e->type != LV_GGUF_STRING) return (lv_gguf_str){"", 0};
    return str_at(g, e->val_off);
}

/* read one numeric element of type t at p as double / int64 */
static bool num_at(lv_gguf_type t, const uint8_t *p, double *f, int64_t *iv, bool *is_int) {
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        float f32; uint64_t u64; int64_t i64; double f64;
    } v;
    size_t sz = (unsigned)t < LV_GGUF_TYPE_COUNT ? g_gguf_type_size[t] : 0;
    if (sz == 0 || t == LV_GGUF_BOOL) return false;
    memcpy(&v, p, sz);
    *is_int = true;
    switch (t) {
    case LV_GGUF_UINT8: *iv = v.u8; break;
    case LV_GGUF_INT8: *iv = v.i8; break;
    case LV_GGUF_UINT16: *iv = v.u16; break;
    case LV_GGUF_INT16: *iv = v.i16; break;
    case LV_GGUF_UINT32: *iv = v.u32; break;
    case LV_GGUF_INT32: *iv = v.i32; break;
    case LV_GGUF_INT64: *iv = v.i64; break;
    case LV_GGUF_UINT64:
        if (v.u64 > (uint64_t)INT64_MAX) { /* a number, but not an int64 */
            *f = (double)v.u64;
            *is_int = false;
            return true;
        }
        *iv = (int64_t)v.u64;
        break;
    case LV_GGUF_FLOAT32: *f = v.f32; *is_int = false; return true;
    case LV_GGUF_FLOAT64: *f = v.f64; *is_int = false; return true;
    default: return false;
    }
    *f = (double)*iv;
    return true;
}

bool lv_gguf_get_i64(const lv_gguf *g, int64_t i, int64_t *out) {
    double f;
    bool is_int;
    const kv_entry *e = kv_at(g, i);
    if (!num_at(e->type, g->base + e->val_off, &f, out, &is_int)) return false;
    return is_int;
}

bool lv_gguf_get_u64(const lv_gguf *g, int64_t i, uint64_t *out) {
    const kv_entry *e = kv_at(g, i);
    if (e->type == LV_GGUF_UINT64) {
        memcpy(out, g->base + e->val_off, 8);
        return true;
    }
    int64_t v;
    if (!lv_gguf_get_i64(g, i, &v) || v < 0) return false;
    *out = (uint64_t)v;
    return true;
}

bool lv_gguf_get_f64(const lv_gguf *g, int64_t i, double *out) {
    int64_t iv;
    bool is_int;
    const kv_entry *e = kv_at(g, i);
    return num_at(e->type, g->base + e->val_off, out, &iv, &is_int);
}

bool lv_gguf_get_bool(const lv_gguf *g, int64_t i, bool *out) {
    const kv_entry *e = kv_at(g, i);
    if (e->type != LV_GGUF_BOOL) return false;
    *out = g->base[e->val_off] != 0;
    return true;
}

bool lv_gguf_arr_get_f64(const lv_gguf *g, int64_t i, uint64_t j, double *out) {
    const kv_entry *e = kv_at(g, i);
    if (e->type != LV_GGUF_ARRAY || j >= e->n || e->arr_type == LV_GGUF_STRING) return false;
    int64_t iv;
    bool is_int;
    return num_at(e->arr_type, g->base + e->val_off + j * g_gguf_type_size[e->arr_type], out, &iv, &is_int);
}

bool lv_gguf_arr_get_i64(const lv_gguf *g, int64_t i, uint64_t j, int64_t *out) {
    const kv_entry *e = kv_at(g, i);
    if (e->type != LV_GGUF_ARRAY || j >= e->n || e->arr_type == LV_GGUF_STRING) return false;
    double f;
    bool is_int;
    if (!num_at(e->arr_type, g->base + e->val_off + j * g_gguf_type_size[e->arr_type], &f, out, &is_int)) return false;
    return is_int;
}

void lv_gguf_kv_raw(const lv_gguf *g, int64_t i, const void **data, uint64_t *size) {
    const kv_entry *e = kv_at(g, i);
    *data = g->base + e->raw_off;
    *size = e->raw_size;
}

int64_t lv_gguf_n_tensors(const lv_gguf *g) { return g->n_tensors; }

int64_t lv_gguf_find_tensor(const lv_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return i;
    return -1;
}

const lv_gguf_tensor *lv_gguf_tensor_at(const lv_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

/* -------------------------------------------------------------------------------------------
 * writer
 * ----------------------------------------------------------------------------------------- */

typedef struct wkv {
    char *key;
    uint8_t *raw; /* type field + value, exactly as in the file */
    uint64_t raw_size;
} wkv;

typedef struct wtensor {
    char name[LV_GGUF_MAX_NAME];
    lv_type type;
    int n_dims;
    int64_t ne[LV_GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
} wtensor;

struct lv_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
    uint32_t alignment;
    int64_t next_data;    /* index of the tensor whose data is being written */
    uint64_t cur_written; /* bytes of that tensor written so far */
};

lv_gguf_writer *lv_gguf_writer_create(void) {
    lv_gguf_writer *w = lv_calloc(1, sizeof(*w));
    if (w) w->alignment = LV_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void lv_gguf_writer_free(lv_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        lv_free(w->kv[i].key);
        lv_free(w->kv[i].raw);
    }
    lv_free(w->kv);
    lv_free(w->t);
    lv_free(w);
}

/* The layout follows `general.alignment` only when it is a valid one (a u32 power of two); any
 * other value is still written as given (tests use that to produce files a reader must reject)
 * and the data is laid out with the default alignment. */
static void w_update_alignment(lv_gguf_writer *w, const char *key, const uint8_t *raw, uint64_t raw_size) {
    if (strcmp(key, "general.alignment") != 0) return;
    uint32_t type = 0, v = 0;
    memcpy(&type, raw, 4);
    if (raw_size == 8 && type == LV_GGUF_UINT32) memcpy(&v, raw + 4, 4);
    w->alignment = v != 0 && (v & (v - 1)) == 0 ? v : LV_GGUF_DEFAULT_ALIGNMENT;
}

/* take ownership of raw */
static bool w_put(lv_gguf_writer *w, const char *key, uint8_t *raw, uint64_t raw_size) {
    if (!raw) return false;
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            lv_free(w->kv[i].raw);
            w->kv[i].raw = raw;
            w->kv[i].raw_size = raw_size;
            w_update_alignment(w, key, raw, raw_size);
            return true;
        }
    }
    if (w->n_kv == w->cap_kv) {
        int64_t nc = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *n = lv_realloc(w->kv, (size_t)nc * sizeof(wkv));
        if (!n) {
            lv_free(raw);
            return false;
        }
        w->kv = n;
        w->cap_kv = nc;
    }
    char *k = lv_strdup(key);
    if (!k) {
        lv_free(raw);
        return false;
    }
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].raw = raw;
    w->kv[w->n_kv].raw_size = raw_size;
    w->n_kv++;
    w_update_alignment(w, key, raw, raw_size);
    return true;
}

static bool w_scalar(lv_gguf_writer *w, const char *key, lv_gguf_type t, const void *v) {
    LV_ASSERT((unsigned)t < LV_GGUF_TYPE_COUNT && g_gguf_type_size[t] != 0);
    size_t sz = g_gguf_type_size[t];
    uint8_t *raw = lv_malloc(4 + sz);
    if (!raw) return false;
    uint32_t tt = t;
    memcpy(raw, &tt, 4);
    memcpy(raw + 4, v, sz);
    return w_put(w, key, raw, 4 + sz);
}

bool lv_gguf_writer_set_u32(lv_gguf_writer *w, const char *key, uint32_t v) { return w_scalar(w, key, LV_GGUF_UINT32, &v); }
bool lv_gguf_writer_set_i32(lv_gguf_writer *w, const char *key, int32_t v) { return w_scalar(w, key, LV_GGUF_INT32, &v); }
bool lv_gguf_writer_set_u64(lv_gguf_writer *w, const char *key, uint64_t v) { return w_scalar(w, key, LV_GGUF_UINT64, &v); }
bool lv_gguf_writer_set_f32(lv_gguf_writer *w, const char *key, float v) { return w_scalar(w, key, LV_GGUF_FLOAT32, &v); }
bool lv_gguf_writer_set_scalar(lv_gguf_writer *w, const char *key, lv_gguf_type type, const void *v) {
    return w_scalar(w, key, type, v);
}
bool lv_gguf_writer_set_bool(lv_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return w_scalar(w, key, LV_GGUF_BOOL, &b);
}

bool lv_gguf_writer_set_str(lv_gguf_writer *w, const char *key, const char *v) {
    uint64_t len = strlen(v);
    uint8_t *raw = lv_malloc((size_t)(12 + len));
    if (!raw) return false;
    uint32_t t = LV_GGUF_STRING;
    memcpy(raw, &t, 4);
    memcpy(raw + 4, &len, 8);
    memcpy(raw + 12, v, (size_t)len);
    return w_put(w, key, raw, 12 + len);
}

bool lv_gguf_writer_set_arr(lv_gguf_writer *w, const char *key, lv_gguf_type et, const void *elems, uint64_t n) {
    LV_ASSERT((unsigned)et < LV_GGUF_TYPE_COUNT && et != LV_GGUF_STRING && et != LV_GGUF_ARRAY);
    uint64_t bytes = n * g_gguf_type_size[et];
    uint8_t *raw = lv_malloc((size_t)(16 + bytes));
    if (!raw) return false;
    uint32_t t = LV_GGUF_ARRAY, e = et;
    memcpy(raw, &t, 4);
    memcpy(raw + 4, &e, 4);
    memcpy(raw + 8, &n, 8);
    if (bytes) memcpy(raw + 16, elems, (size_t)bytes);
    return w_put(w, key, raw, 16 + bytes);
}

bool lv_gguf_writer_set_arr_str(lv_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    uint64_t bytes = 16;
    for (uint64_t i = 0; i < n; i++) bytes += 8 + strlen(strs[i]);
    uint8_t *raw = lv_malloc((size_t)bytes);
    if (!raw) return false;
    uint32_t t = LV_GGUF_ARRAY, e = LV_GGUF_STRING;
    memcpy(raw, &t, 4);
    memcpy(raw + 4, &e, 4);
    memcpy(raw + 8, &n, 8);
    uint64_t off = 16;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = strlen(strs[i]);
        memcpy(raw + off, &len, 8);
        memcpy(raw + off + 8, strs[i], (size_t)len);
        off += 8 + len;
    }
    return w_put(w, key, raw, bytes);
}

bool lv_gguf_writer_copy_kv(lv_gguf_writer *w, const lv_gguf *src, int64_t i) {
    const void *data;
    uint64_t size;
    lv_gguf_kv_raw(src, i, &data, &size);
    uint8_t *raw = lv_malloc((size_t)size);
    if (!raw) return false;
    memcpy(raw, data, (size_t)size);
    return w_put(w, lv_gguf_key(src, i), raw, size);
}

bool lv_gguf_writer_add_tensor(lv_gguf_writer *w, const char *name, lv_type type, int n_dims, const int64_t *ne) {
    const lv_type_traits *tt = lv_type_get(type);
    bool ok = tt && n_dims >= 1 && n_dims <= LV_GGUF_MAX_DIMS && name[0] && strlen(name) < LV_GGUF_MAX_NAME &&
              ne[0] % tt->blck_size == 0;
    int64_t nel = 1, nb = 0;
    for (int d = 0; ok && d < n_dims; d++) ok = ne[d] >= 0 && !lv_mul_ovf_i64(nel, ne[d], &nel);
    ok = ok && !lv_mul_ovf_i64(nel / tt->blck_size, tt->type_size, &nb);
    if (!ok) {
        lv_error(LV_ERR_INVALID_ARG, "gguf writer: bad tensor '%s' (type %s, %d dims)", name, lv_type_name(type), n_dims);
        return false;
    }
    if (w->n_t == w->cap_t) {
        int64_t nc = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *n = lv_realloc(w->t, (size_t)nc * sizeof(wtensor));
        if (!n) return false;
        w->t = n;
        w->cap_t = nc;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < LV_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = (uint64_t)nb;
    w->n_t++;
    return true;
}

uint64_t lv_gguf_writer_tensor_nbytes(const lv_gguf_writer *w, int64_t index) { return w->t[index].nbytes; }

static bool fw(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

static bool fpad(FILE *f, uint64_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n > sizeof(zeros) ? sizeof(zeros) : (size_t)n;
        if (!fw(f, zeros, k)) return false;
        n -= k;
    }
    return true;
}

lv_status lv_gguf_writer_write_header(lv_gguf_writer *w, FILE *f) {
    uint32_t version = 3;
    uint64_t nt = (uint64_t)w->n_t, nkv = (uint64_t)w->n_kv;
    uint64_t pos = 0;
    bool ok = fw(f, GGUF_MAGIC, 4) && fw(f, &version, 4) && fw(f, &nt, 8) && fw(f, &nkv, 8);
    pos = 24;
    for (int64_t i = 0; ok && i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kv[i].key);
        ok = fw(f, &kl, 8) && fw(f, w->kv[i].key, (size_t)kl) && fw(f, w->kv[i].raw, (size_t)w->kv[i].raw_size);
        pos += 8 + kl + w->kv[i].raw_size;
    }
    uint64_t off = 0;
    for (int64_t i = 0; ok && i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        uint64_t nl = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, ty = t->type;
        t->offset = off;
        ok = fw(f, &nl, 8) && fw(f, t->name, (size_t)nl) && fw(f, &nd, 4);
        for (int d = 0; ok && d < t->n_dims; d++) {
            uint64_t ne = (uint64_t)t->ne[d];
            ok = fw(f, &ne, 8);
        }
        ok = ok && fw(f, &ty, 4) && fw(f, &t->offset, 8);
        pos += 8 + nl + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += t->nbytes + (w->alignment - t->nbytes % w->alignment) % w->alignment;
    }
    ok = ok && fpad(f, (w->alignment - pos % w->alignment) % w->alignment);
    w->next_data = 0;
    w->cur_written = 0;
    /* tensors of zero bytes have nothing to wait for */
    while (w->next_data < w->n_t && w->t[w->next_data].nbytes == 0) w->next_data++;
    if (!ok) return lv_error(LV_ERR_IO, "gguf writer: write failed: %s", strerror(errno));
    return LV_OK;
}

lv_status lv_gguf_writer_write_data(lv_gguf_writer *w, FILE *f, const void *data, uint64_t nbytes) {
    while (nbytes > 0) {
        if (w->next_data >= w->n_t)
            return lv_error(LV_ERR_INTERNAL, "gguf writer: more tensor data than the tensors declared");
        const wtensor *t = &w->t[w->next_data];
        uint64_t k = t->nbytes - w->cur_written;
        if (k > nbytes) k = nbytes;
        if (!fw(f, data, (size_t)k)) return lv_error(LV_ERR_IO, "gguf writer: write failed: %s", strerror(errno));
        data = (const uint8_t *)data + k;
        nbytes -= k;
        w->cur_written += k;
        if (w->cur_written == t->nbytes) {
            uint64_t pad = (w->alignment - t->nbytes % w->alignment) % w->alignment;
            if (!fpad(f, pad)) return lv_error(LV_ERR_IO, "gguf writer: write failed: %s", strerror(errno));
            w->next_data++;
            w->cur_written = 0;
            while (w->next_data < w->n_t && w->t[w->next_data].nbytes == 0) w->next_data++;
        }
    }
    return LV_OK;
}

bool lv_gguf_writer_complete(const lv_gguf_writer *w) { return w->next_data == w->n_t && w->cur_written == 0; }

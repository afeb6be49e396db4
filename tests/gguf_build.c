/*
 * gguf_build.c: helpers for the GGUF and model-loading tests. See gguf_build.h.
 */
#define _GNU_SOURCE
#include "gguf_build.h"

#include "gguf/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* -------------------------------------------------------------------------------------------
 * byte buffer
 * ----------------------------------------------------------------------------------------- */

void gb_free(gb_buf *b) {
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void gb_bytes(gb_buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) abort();
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

void gb_u8(gb_buf *b, uint8_t v) { gb_bytes(b, &v, 1); }
void gb_u32(gb_buf *b, uint32_t v) { gb_bytes(b, &v, 4); }
void gb_u64(gb_buf *b, uint64_t v) { gb_bytes(b, &v, 8); }

void gb_str(gb_buf *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_bytes(b, s, strlen(s));
}

void gb_pad(gb_buf *b, size_t align) {
    while (b->n % align) gb_u8(b, 0);
}

void gb_header(gb_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

void gb_tensor_info(gb_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset) {
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims && d < 5; d++) gb_u64(b, ne[d]); /* hostile counts: ne holds at most 5 */
    gb_u32(b, type);
    gb_u64(b, offset);
}

/* -------------------------------------------------------------------------------------------
 * guard page
 * ----------------------------------------------------------------------------------------- */

void gb_guard_init(gb_guard *g, const void *data, size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (n + page - 1) / page;
    if (data_pages == 0) data_pages = 1;
    g->map_size = (data_pages + 1) * page;
    g->map = mmap(NULL, g->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) abort();
    uint8_t *guard = (uint8_t *)g->map + data_pages * page;
    if (mprotect(guard, page, PROT_NONE) != 0) abort();
    uint8_t *dst = guard - n;
    if (n) memcpy(dst, data, n);
    /* the copy itself is read-only too: the reader must never write into the image */
    if (mprotect(g->map, data_pages * page, PROT_READ) != 0) abort();
    g->data = dst;
    g->n = n;
}

void gb_guard_free(gb_guard *g) {
    if (g->map) munmap(g->map, g->map_size);
    memset(g, 0, sizeof(*g));
}

lv_status gb_open_guarded(gb_guard *g, const void *data, size_t n, lv_gguf **out) {
    gb_guard_init(g, data, n);
    return lv_gguf_open_memory(g->data, g->n, out);
}

/* -------------------------------------------------------------------------------------------
 * writer to memory, files
 * ----------------------------------------------------------------------------------------- */

bool gb_write_mem(lv_gguf_writer *w, const void *const *data, gb_buf *out) {
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    if (!f) abort();
    bool ok = lv_gguf_writer_write_header(w, f) == LV_OK;
    for (int64_t i = 0; ok; i++) {
        if (lv_gguf_writer_complete(w)) break;
        uint64_t nb = lv_gguf_writer_tensor_nbytes(w, i);
        if (nb) ok = lv_gguf_writer_write_data(w, f, data[i], nb) == LV_OK;
    }
    if (fclose(f) != 0) ok = false;
    if (ok) gb_bytes(out, mem, len);
    free(mem);
    return ok;
}

bool gb_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = n == 0 || fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

const char *gb_tmp_path(const char *name) {
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", lv_test_tmpdir(), name);
    return b;
}

/* -------------------------------------------------------------------------------------------
 * a small valid file
 * ----------------------------------------------------------------------------------------- */

void gb_small_file(gb_buf *out, uint64_t seed) {
    lv_test_rng r = {seed};
    lv_gguf_writer *w = lv_gguf_writer_create();
    if (!w) abort();
    const char *strs[] = {"", "a", "bc", "def"};
    uint16_t u16s[3] = {1, 2, 65535};
    float f32s[2] = {0.5f, -2.0f};
    uint8_t bools[3] = {1, 0, 1};
    bool ok = lv_gguf_writer_set_str(w, "general.architecture", "llama") && lv_gguf_writer_set_u32(w, "general.alignment", 64) &&
              lv_gguf_writer_set_u32(w, "u32", 7) && lv_gguf_writer_set_i32(w, "i32", -7) && lv_gguf_writer_set_u64(w, "u64", UINT64_MAX) &&
              lv_gguf_writer_set_f32(w, "f32", 1.5f) && lv_gguf_writer_set_bool(w, "bool", true) &&
              lv_gguf_writer_set_arr(w, "arr.u16", LV_GGUF_UINT16, u16s, 3) && lv_gguf_writer_set_arr(w, "arr.f32", LV_GGUF_FLOAT32, f32s, 2) &&
              lv_gguf_writer_set_arr(w, "arr.bool", LV_GGUF_BOOL, bools, 3) && lv_gguf_writer_set_arr(w, "arr.empty", LV_GGUF_INT64, NULL, 0) &&
              lv_gguf_writer_set_arr_str(w, "arr.str", strs, 4);
    int64_t ne_a[2] = {3, 2}, ne_b[1] = {32}, ne_c[3] = {2, 1, 2};
    ok = ok && lv_gguf_writer_add_tensor(w, "a", LV_TYPE_F32, 2, ne_a) && lv_gguf_writer_add_tensor(w, "b", LV_TYPE_Q8_0, 1, ne_b) &&
         lv_gguf_writer_add_tensor(w, "c", LV_TYPE_F16, 3, ne_c);
    uint8_t data[3][64];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 64; j++) data[i][j] = (uint8_t)lv_test_rng_u64(&r);
    const void *d[3] = {data[0], data[1], data[2]};
    ok = ok && gb_write_mem(w, d, out);
    lv_gguf_writer_free(w);
    if (!ok) abort();
}

/* -------------------------------------------------------------------------------------------
 * tiny models
 * ----------------------------------------------------------------------------------------- */

gb_tensor *gb_model_find(gb_model *m, const char *name) {
    for (int i = 0; i < m->n_t; i++)
        if (strcmp(m->t[i].name, name) == 0) return &m->t[i];
    return NULL;
}

void gb_model_remove(gb_model *m, const char *name) {
    for (int i = 0; i < m->n_t; i++) {
        if (strcmp(m->t[i].name, name) == 0) {
            memmove(&m->t[i], &m->t[i + 1], (size_t)(m->n_t - i - 1) * sizeof(m->t[0]));
            m->n_t--;
            return;
        }
    }
    abort(); /* a test removing a tensor that is not there is a broken test */
}

gb_tensor *gb_model_add(gb_model *m, const char *name, uint32_t type, int n_dims, int64_t ne0, int64_t ne1) {
    if (m->n_t >= GB_MAX_TENSORS) abort();
    gb_tensor *t = &m->t[m->n_t++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->ne[2] = t->ne[3] = 1;
    return t;
}

void gb_model_init(gb_model *m, const char *arch, bool untied, uint64_t seed) {
    memset(m, 0, sizeof(*m));
    snprintf(m->arch, sizeof(m->arch), "%s", arch);
    m->n_vocab = 16;
    m->n_ctx = 128;
    m->n_embd = 8;
    m->n_layer = 2;
    m->n_ff = 16;
    m->n_head = 2;
    m->n_head_kv = 1;
    m->rms_eps = 1e-5f;
    m->seed = seed;
    gb_model_layout(m, untied);
}

void gb_model_layout(gb_model *m, bool untied) {
    const char *arch = m->arch;
    m->n_t = 0;
    const int64_t E = m->n_embd, hd = m->n_embd / m->n_head;
    const int64_t q = m->n_head * hd, kv = m->n_head_kv * hd;
    const bool bias = strcmp(arch, "qwen2") == 0;
    gb_model_add(m, "token_embd.weight", LV_TYPE_F32, 2, E, m->n_vocab);
    gb_model_add(m, "output_norm.weight", LV_TYPE_F32, 1, E, 0);
    if (untied) gb_model_add(m, "output.weight", LV_TYPE_F32, 2, E, m->n_vocab);
    for (int64_t il = 0; il < m->n_layer; il++) {
        char n[96];
#define ADD(suffix, nd, a, b)                                         \
    do {                                                              \
        snprintf(n, sizeof(n), "blk.%lld.%s", (long long)il, suffix); \
        gb_model_add(m, n, LV_TYPE_F32, nd, a, b);                    \
    } while (0)
        ADD("attn_norm.weight", 1, E, 0);
        ADD("attn_q.weight", 2, E, q);
        ADD("attn_k.weight", 2, E, kv);
        ADD("attn_v.weight", 2, E, kv);
        ADD("attn_output.weight", 2, q, E);
        if (!strcmp(arch, "qwen3") || !strcmp(arch, "gemma3")) {
            ADD("attn_q_norm.weight", 1, hd, 0);
            ADD("attn_k_norm.weight", 1, hd, 0);
        }
        if (!strcmp(arch, "gemma3")) {
            ADD("post_attention_norm.weight", 1, E, 0);
            ADD("post_ffw_norm.weight", 1, E, 0);
        }
        if (bias) {
            ADD("attn_q.bias", 1, q, 0);
            ADD("attn_k.bias", 1, kv, 0);
            ADD("attn_v.bias", 1, kv, 0);
        }
        ADD("ffn_norm.weight", 1, E, 0);
        ADD("ffn_gate.weight", 2, E, m->n_ff);
        ADD("ffn_up.weight", 2, E, m->n_ff);
        ADD("ffn_down.weight", 2, m->n_ff, E);
#undef ADD
    }
}

static bool omitted(const gb_model *m, const char *key) {
    for (int i = 0; i < GB_MAX_OMIT; i++)
        if (m->omit[i] && strcmp(m->omit[i], key) == 0) return true;
    return false;
}

static void set_u32(lv_gguf_writer *w, const gb_model *m, const char *suffix, int64_t v) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", m->arch, suffix);
    if (!omitted(m, key) && !lv_gguf_writer_set_u32(w, key, (uint32_t)v)) abort();
}

/* Contents of tensor i: deterministic in (seed, i); f32 tensors get values in [-1, 1), other
 * types random bytes. */
void gb_model_tensor_data(const gb_model *m, int i, void *dst, uint64_t nbytes) {
    lv_test_rng r = {m->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1))};
    if (m->t[i].type == LV_TYPE_F32) {
        float *f = dst;
        for (uint64_t j = 0; j < nbytes / 4; j++) f[j] = lv_test_rng_f32(&r);
    } else {
        uint8_t *b = dst;
        for (uint64_t j = 0; j < nbytes; j++) b[j] = (uint8_t)lv_test_rng_u64(&r);
    }
}

bool gb_model_build(const gb_model *m, gb_buf *out) {
    lv_gguf_writer *w = lv_gguf_writer_create();
    if (!w) abort();
    if (!omitted(m, "general.architecture") && !lv_gguf_writer_set_str(w, "general.architecture", m->arch)) abort();
    if (!lv_gguf_writer_set_str(w, "general.name", "tiny test model")) abort();
    set_u32(w, m, "context_length", m->n_ctx);
    set_u32(w, m, "embedding_length", m->n_embd);
    set_u32(w, m, "block_count", m->n_layer);
    set_u32(w, m, "feed_forward_length", m->n_ff);
    set_u32(w, m, "attention.head_count", m->n_head);
    set_u32(w, m, "attention.head_count_kv", m->n_head_kv);
    char key[128];
    snprintf(key, sizeof(key), "%s.attention.layer_norm_rms_epsilon", m->arch);
    if (!omitted(m, key) && !lv_gguf_writer_set_f32(w, key, m->rms_eps)) abort();
    if (m->edit) m->edit(w, m->arch, m->edit_user);
    bool ok = true;
    for (int i = 0; ok && i < m->n_t; i++) ok = lv_gguf_writer_add_tensor(w, m->t[i].name, m->t[i].type, m->t[i].n_dims, m->t[i].ne);
    void *data[GB_MAX_TENSORS] = {0};
    for (int i = 0; ok && i < m->n_t; i++) {
        uint64_t nb = lv_gguf_writer_tensor_nbytes(w, i);
        data[i] = malloc(nb ? nb : 1);
        if (!data[i]) abort();
        gb_model_tensor_data(m, i, data[i], nb);
    }
    ok = ok && gb_write_mem(w, (const void *const *)data, out);
    for (int i = 0; i < m->n_t; i++) free(data[i]);
    lv_gguf_writer_free(w);
    return ok;
}

const char *gb_model_file(const gb_model *m, const char *name) {
    gb_buf b = {0};
    const char *path = gb_tmp_path(name);
    if (!gb_model_build(m, &b) || !gb_write_file(path, b.p, b.n)) abort();
    gb_free(&b);
    return path;
}

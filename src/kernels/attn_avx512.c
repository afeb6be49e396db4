/*
 * attn_avx512.c: the tiled attention kernel with AVX-512 intrinsics (head dims multiples of 16),
 * and the portable one (attn_impl.h) compiled for AVX-512 for other head dims.
 *
 * Same algorithm as attn_impl.h (one pass, online softmax over blocks of 64 keys), laid out as a
 * matrix product so that nothing is reduced across lanes per key:
 *  - the keys are stored transposed (lv_attn_span: per dimension, the keys in order), so a block
 *    of 64 keys is Dk rows of 64 elements: a decode step (one tile) loads them straight from the
 *    cache, and its values too, converting f16 as it goes; a prefill (many tiles) widens each
 *    block once to f32 (kT: Dk rows of 64 keys; V: 64 rows of Dv) for all its tiles;
 *  - query rows go in tiles of 4: scores = 4 rows x 64 keys in 16 accumulators, one fma per
 *    (row, 16 keys, dimension) with the query element broadcast: each score is one fma chain over
 *    d = 0..Dk-1 in its lane, so a row's result does not depend on the tile it lands in;
 *  - softmax: scale and causal mask 16 keys at a time, a vector exp (exp512.h);
 *  - values: the 4 output rows x up to 64 dims in 16 accumulators, each value vector loaded once
 *    for the 4 rows.
 * A decode step (one token, G rows) and a prefill tile (many tokens) run the same operations on
 * the same f32 values for every row, so prefill equals token-by-token decode bit for bit
 * (tests/runtime/test_plan.c; tests/kernels/test_kernels.c checks rows in many-tile jobs against the row alone).
 * A decode step reads its blocks from DRAM: it prefetches ahead between its own loads
 * (next_block). A tile with fewer than 4 rows repeats its first row into scratch outputs that are
 * discarded.
 * Its reference is lv_attn_ref; tests/kernels/test_kernels.c compares the two at every level.
 */
#include "kernels/kernels.h"
void lv_attn_tiled_avx512_generic(const lv_attn_job *job, float *scratch);
#define ATTN_FN lv_attn_tiled_avx512_generic
#include "kernels/attn_impl.h"

#include <immintrin.h>
#include <stdbool.h>

#include "kernels/exp512.h"

#define KB 64 /* keys per block: 4 vectors */
#define RT 4  /* query rows per tile */

static inline __m512 load16(lv_kv_type t, const void *src, int64_t off) {
    return t == LV_KV_F32 ? _mm512_loadu_ps((const float *)src + off)
                          : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + off)));
}

/* 16 consecutive elements as f32; lanes outside the mask read nothing and are 0 */
static inline __m512 load16_masked(lv_kv_type t, const void *src, size_t off, __mmask16 mask) {
    return t == LV_KV_F32 ? _mm512_maskz_loadu_ps(mask, (const float *)src + off)
                          : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)src + off));
}

#include "kernels/attn_pf.h"

/* dimension d of the block's 64 keys from j0, as stored (lv_attn_span); keys past the block's end 0 */
static inline __attribute__((always_inline)) void load_key_row(lv_kv_type t, const lv_attn_span *sp, int j0, int d, const __mmask16 valid[4],
                                                               __m512 k[4]) {
    const size_t off = (size_t)d * (size_t)sp->ldk + (size_t)j0;
    for (int c = 0; c < 4; c++) k[c] = load16_masked(t, sp->k, off + 16 * (size_t)c, valid[c]);
}

/* kT (Dk x KB): key j of the block, dimension d, at kT[d * KB + j]; keys past nk are zero */
static void widen_keys_t(lv_kv_type t, const lv_attn_span *sp, int j0, const __mmask16 valid[4], int Dk, float *kT, const next_block *nb) {
    for (int d = 0; d < Dk; d++) {
        if (nb->nk) prefetch_bytes(nb->k + (size_t)d * nb->k_row, nb->k_n);
        __m512 k[4];
        load_key_row(t, sp, j0, d, valid, k);
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(kT + (size_t)d * KB + 16 * c, k[c]);
    }
}

static void widen_values(lv_kv_type t, const void *src, int64_t first_row, int nk, int Dv, float *vb, const next_block *nb) {
    for (int j = 0; j < nk; j++) {
        if (j < nb->nk) prefetch_bytes(nb->v + (size_t)j * nb->v_n, nb->v_n);
        for (int c = 0; c < Dv; c += 16) _mm512_storeu_ps(vb + (size_t)j * Dv + c, load16(t, src, (first_row + j) * Dv + c));
    }
}

/* o[r] = o[r] * corr[r] + sum_j p[r][j] v[j] for the W vectors of dims from c0 (W constant after
 * inlining), keys in order; value j is row j of vb (elements of type vt) */
static inline __attribute__((always_inline)) void tile_pv(int W, float *const o[RT], const float corr[RT], const float *p, lv_kv_type vt,
                                                          const void *vb, int nk, int Dv, int c0, const next_block *pf) {
    __m512 acc[RT][4];
    for (int r = 0; r < RT; r++) {
        const __m512 vc = _mm512_set1_ps(corr[r]);
        for (int c = 0; c < W; c++) acc[r][c] = _mm512_mul_ps(_mm512_loadu_ps(o[r] + c0 + 16 * c), vc);
    }
    for (int j = 0; j < nk; j++) {
        if (pf && j < pf->nk) prefetch_bytes(pf->v + (size_t)j * pf->v_n, pf->v_n);
        __m512 v[4];
        for (int c = 0; c < W; c++) v[c] = load16(vt, vb, (int64_t)j * Dv + c0 + 16 * c);
        for (int r = 0; r < RT; r++) {
            const __m512 pb = _mm512_set1_ps(p[r * KB + j]);
            for (int c = 0; c < W; c++) acc[r][c] = _mm512_fmadd_ps(pb, v[c], acc[r][c]);
        }
    }
    for (int r = 0; r < RT; r++)
        for (int c = 0; c < W; c++) _mm512_storeu_ps(o[r] + c0 + 16 * c, acc[r][c]);
}

#define QROW(r) (job->q + (size_t)((r) / job->n_head) * job->q_tok_stride + (size_t)((r) % job->n_head) * job->q_head_stride)
#define OROW(r) (job->out + (size_t)((r) / job->n_head) * job->out_tok_stride + (size_t)((r) % job->n_head) * job->out_head_stride)
#define QPOS(r) (job->pos[(r) / job->n_head])

/* The blocks of every span against all query rows. direct (a constant after inlining): one tile
 * (a decode step) reads each key block once, so its score loop loads the keys from the span as
 * they are stored and prefetches a later block's key rows and values between its own loads (see
 * next_block); many tiles (a prefill) widen each block once into kT and V for all of them and
 * prefetch while widening. Either way each score is the same fma chain over d of the same f32
 * values, so the two agree bit for bit. */
static inline __attribute__((always_inline)) void run_blocks(const bool direct, const lv_kv_type kvt, const lv_attn_job *job, const float *q, float *kT, float *vb,
                                                             float *pt, float *junk, float *m, float *l, int nq, int32_t max_qpos) {
    const int Dk = job->Dk, Dv = job->Dv;
    const __m512 vscale = _mm512_set1_ps(job->scale), vninf = _mm512_set1_ps(-INFINITY);
    if (direct) /* the first blocks, which no earlier block prefetches (a decode job is a few pages) */
        for (int i = 0; i < PF_AHEAD; i++) {
            const next_block first = find_next_block(job, 0, 0, i);
            prefetch_block(&first, Dk);
        }
    for (int s = 0; s < job->n_spans; s++) {
        const lv_attn_span *sp = &job->spans[s];
        const uint32_t heads = job->span_heads ? job->span_heads[s] : UINT32_MAX;
        for (int32_t j0 = 0; j0 < sp->n; j0 += KB) {
            const int nk = sp->n - j0 < KB ? sp->n - j0 : KB;
            if (lv_span_pos(sp, j0) > max_qpos) break; /* the whole block is in every query's future */
            const next_block nb = find_next_block(job, s, j0, PF_AHEAD);
            /* the block's key positions and which keys exist */
            __m512i kpos[4];
            __mmask16 valid[4];
            int32_t kp[KB];
            lv_span_pos_block(sp, j0, nk, kp);
            for (int c = 0; c < 4; c++) {
                const int left = nk - 16 * c;
                valid[c] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
                kpos[c] = _mm512_maskz_loadu_epi32(valid[c], kp + 16 * c);
            }
            if (!direct) {
                widen_keys_t(kvt, sp, j0, valid, Dk, kT, &nb);
                widen_values(kvt, sp->v, j0, nk, Dv, vb, &nb);
            }
            /* the values the value loop reads: the span's own (direct) or the widened block */
            const lv_kv_type vt = direct ? kvt : LV_KV_F32;
            const void *vsrc = direct ? (const void *)((const char *)sp->v + (size_t)j0 * (size_t)Dv * lv_kv_elt_size(kvt)) : (const void *)vb;
            for (int r0 = 0; r0 < nq; r0 += RT) {
                /* the tile's rows; past nq, row r0 again into discarded outputs */
                const float *qr[RT];
                float *o[RT], *mr[RT], *lr[RT], dm[RT], dl[RT], corr[RT];
                bool live[RT];
                int32_t qp[RT];
                for (int i = 0; i < RT; i++) {
                    const int r = r0 + i < nq ? r0 + i : r0;
                    qr[i] = q + (size_t)r * Dk;
                    qp[i] = QPOS(r);
                    live[i] = r0 + i < nq && ((heads >> (r % job->n_head)) & 1u);
                    if (r0 + i < nq) {
                        o[i] = OROW(r);
                        mr[i] = m + r;
                        lr[i] = l + r;
                    } else {
                        dm[i] = -INFINITY;
                        dl[i] = 0.0f;
                        o[i] = junk;
                        mr[i] = dm + i;
                        lr[i] = dl + i;
                    }
                }
                /* scores: 4 rows x 64 keys */
                __m512 sc[RT][4];
                for (int i = 0; i < RT; i++)
                    for (int c = 0; c < 4; c++) sc[i][c] = _mm512_setzero_ps();
                for (int d = 0; d < Dk; d++) {
                    __m512 k[4];
                    if (direct) {
                        if (nb.nk) prefetch_bytes(nb.k + (size_t)d * nb.k_row, nb.k_n);
                        load_key_row(kvt, sp, j0, d, valid, k);
                    } else {
                        for (int c = 0; c < 4; c++) k[c] = _mm512_loadu_ps(kT + (size_t)d * KB + 16 * c);
                    }
                    for (int i = 0; i < RT; i++) {
                        const __m512 qb = _mm512_set1_ps(qr[i][d]);
                        for (int c = 0; c < 4; c++) sc[i][c] = _mm512_fmadd_ps(qb, k[c], sc[i][c]);
                    }
                }
                /* scale, mask, online softmax per row */
                for (int i = 0; i < RT; i++) {
                    float *p = pt + (size_t)i * KB;
                    __m512 vmax = vninf;
                    for (int c = 0; c < 4; c++) {
                        __mmask16 vis = 0; /* a row past nq, or whose head did not choose the span, sees nothing */
                        if (live[i] && job->mask.kind == LV_MASK_CAUSAL) {
                            vis = _mm512_mask_cmple_epi32_mask(valid[c], kpos[c], _mm512_set1_epi32(qp[i]));
                        } else if (live[i] && job->mask.kind == LV_MASK_SINK_WINDOW) { /* lv_attn_visible's rule, 16 keys at once */
                            const __m512i vq = _mm512_set1_epi32(qp[i]);
                            const __mmask16 past = _mm512_mask_cmple_epi32_mask(valid[c], kpos[c], vq);
                            const __mmask16 sink = _mm512_cmplt_epi32_mask(kpos[c], _mm512_set1_epi32(job->mask.sink_end));
                            const __mmask16 near = _mm512_cmplt_epi32_mask(_mm512_sub_epi32(vq, kpos[c]), _mm512_set1_epi32(job->mask.window));
                            vis = past & (sink | near);
                        } else if (live[i]) {
                            for (int t = 0; t < 16 && 16 * c + t < nk; t++)
                                if (lv_attn_visible(&job->mask, kp[16 * c + t], qp[i])) vis |= (__mmask16)(1u << t);
                        }
                        sc[i][c] = _mm512_mask_mul_ps(vninf, vis, sc[i][c], vscale);
                        vmax = _mm512_max_ps(vmax, sc[i][c]);
                    }
                    const float bm = _mm512_reduce_max_ps(vmax);
                    if (bm == -INFINITY) { /* nothing visible for this row in this block: it stays as it is */
                        corr[i] = 1.0f;
                        for (int c = 0; c < 4; c++) _mm512_storeu_ps(p + 16 * c, _mm512_setzero_ps());
                        continue;
                    }
                    const float nm = bm > *mr[i] ? bm : *mr[i];
                    corr[i] = *mr[i] == -INFINITY ? 0.0f : expf(*mr[i] - nm);
                    const __m512 vnm = _mm512_set1_ps(nm);
                    __m512 vsum = _mm512_setzero_ps();
                    for (int c = 0; c < 4; c++) {
                        const __mmask16 on = _mm512_cmp_ps_mask(sc[i][c], vninf, _CMP_NEQ_OQ);
                        const __m512 e = _mm512_maskz_mov_ps(on, lv_exp512(_mm512_sub_ps(sc[i][c], vnm)));
                        _mm512_storeu_ps(p + 16 * c, e);
                        vsum = _mm512_add_ps(vsum, e);
                    }
                    *lr[i] = *lr[i] * corr[i] + _mm512_reduce_add_ps(vsum);
                    *mr[i] = nm;
                }
                /* values: 64 dims (4 vectors) of the 4 output rows at a time */
                int c0 = 0;
                const next_block *pf = direct ? &nb : NULL; /* the first pass over the values prefetches */
                for (; c0 + 64 <= Dv; c0 += 64, pf = NULL) tile_pv(4, o, corr, pt, vt, vsrc, nk, Dv, c0, pf);
                switch ((Dv - c0) / 16) {
                case 3: tile_pv(3, o, corr, pt, vt, vsrc, nk, Dv, c0, pf); break;
                case 2: tile_pv(2, o, corr, pt, vt, vsrc, nk, Dv, c0, pf); break;
                case 1: tile_pv(1, o, corr, pt, vt, vsrc, nk, Dv, c0, pf); break;
                default: break;
                }
            }
        }
    }
}

void lv_attn_tiled_avx512(const lv_attn_job *job, float *scratch) {
    const int Dk = job->Dk, Dv = job->Dv;
    if (Dk % 16 != 0 || Dv % 16 != 0) {
        lv_attn_tiled_avx512_generic(job, scratch);
        return;
    }
    const int nq = job->n_tok * job->n_head;
    /* scratch (lv_attn_scratch_floats): q (nq, Dk) | kT (Dk, KB) | V (KB, Dv) | p (RT, KB) |
     * a discarded output row (Dv) | m, l (nq) */
    float *q = scratch;
    float *kT = q + (size_t)nq * Dk;
    float *vb = kT + (size_t)KB * Dk;
    float *pt = vb + (size_t)KB * Dv;
    float *junk = pt + (size_t)RT * KB;
    float *m = junk + Dv;
    float *l = m + nq;
    memset(junk, 0, (size_t)Dv * sizeof(float));
    for (int r = 0; r < nq; r++) {
        const float *src = QROW(r);
        float *dq = q + (size_t)r * Dk;
        if (job->kv_type == LV_KV_F16)
            for (int d = 0; d < Dk; d += 16)
                _mm512_storeu_ps(dq + d, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(src + d), _MM_FROUND_TO_NEAREST_INT)));
        else
            memcpy(dq, src, (size_t)Dk * sizeof(float));
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(OROW(r), 0, (size_t)Dv * sizeof(float));
    }
    int32_t max_qpos = job->pos[0];
    for (int t = 1; t < job->n_tok; t++) max_qpos = job->pos[t] > max_qpos ? job->pos[t] : max_qpos;
    /* the kv type a constant too where the keys and values are read in the loops */
    if (nq <= RT && job->kv_type == LV_KV_F16)
        run_blocks(true, LV_KV_F16, job, q, kT, vb, pt, junk, m, l, nq, max_qpos);
    else if (nq <= RT)
        run_blocks(true, LV_KV_F32, job, q, kT, vb, pt, junk, m, l, nq, max_qpos);
    else
        run_blocks(false, job->kv_type, job, q, kT, vb, pt, junk, m, l, nq, max_qpos);
    if (job->m_out && job->l_out) {
        for (int r = 0; r < nq; r++) {
            job->m_out[r] = m[r];
            job->l_out[r] = l[r];
        }
        return;
    }
    for (int r = 0; r < nq; r++) {
        if (l[r] == 0.0f) continue;
        const __m512 inv = _mm512_set1_ps(1.0f / l[r]);
        float *o = OROW(r);
        for (int d = 0; d < Dv; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), inv));
    }
#undef QROW
#undef OROW
#undef QPOS
}

/* LServe's page score (kernels.h); T and LOAD: the statistics' element type and how 16 of them
 * are widened to f32, so the f16 and f32 kernels are the same instructions around the load */
#define QUEST_PAGE_AVX512(NAME, T, LOAD, REF)                                                                                  \
    void NAME(const float *q, int64_t q_stride, int n_q, const T *stats, int n_lp, int Dk, float *best) {                    \
        if (Dk % 16 != 0) {                                                                                                    \
            REF(q, q_stride, n_q, stats, n_lp, Dk, best);                                                                      \
            return;                                                                                                            \
        }                                                                                                                      \
        for (int h = 0; h < n_q; h++) best[h] = -INFINITY;                                                                     \
        for (int lp = 0; lp < n_lp; lp++) {                                                                                    \
            const T *mn = stats + (size_t)lp * 2 * (size_t)Dk, *mx = mn + Dk;                                                  \
            for (int h = 0; h < n_q; h++) {                                                                                    \
                const float *qh = q + h * q_stride;                                                                            \
                __m512 acc = _mm512_setzero_ps();                                                                              \
                for (int d = 0; d < Dk; d += 16) {                                                                             \
                    const __m512 qv = _mm512_loadu_ps(qh + d);                                                                 \
                    acc = _mm512_add_ps(acc, _mm512_max_ps(_mm512_mul_ps(qv, LOAD(mx + d)), _mm512_mul_ps(qv, LOAD(mn + d)))); \
                }                                                                                                              \
                const float sum = _mm512_reduce_add_ps(acc);                                                                   \
                best[h] = sum > best[h] ? sum : best[h];                                                                       \
            }                                                                                                                  \
        }                                                                                                                      \
    }

#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
QUEST_PAGE_AVX512(lv_quest_page_avx512, float, LOAD_F32, lv_quest_page_ref)
QUEST_PAGE_AVX512(lv_quest_page_f16_avx512, uint16_t, LOAD_F16, lv_quest_page_f16_ref)
#undef LOAD_F32
#undef LOAD_F16
#undef QUEST_PAGE_AVX512

/* quantized KV pages (attn_q_impl.h) at this level: the integer dot products of the scores at 8
 * keys (256-bit vpmaddubsw, as at AVX2), the values and the exp at 16 lanes */
#define ATTNQ_FN lv_attn_q_avx512
#include "kernels/attn_q_impl.h"

/*
 * attn_avx2.c: the tiled attention kernel (attn_impl.h) compiled for the avx2 level.
 */
#define ATTN_FN lv_attn_tiled_avx2
#include "attn_impl.h"

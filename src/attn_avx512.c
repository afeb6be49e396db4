/*
 * attn_avx512.c: the tiled attention kernel (attn_impl.h) compiled for the avx512 level.
 */
#define ATTN_FN lv_attn_tiled_avx512
#include "attn_impl.h"

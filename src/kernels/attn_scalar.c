/*
 * attn_scalar.c: the tiled attention kernel (attn_impl.h) compiled for the scalar level.
 */
#define ATTN_FN lv_attn_tiled_scalar
#include "kernels/attn_impl.h"

#define ATTNQ_FN lv_attn_q_scalar
#include "kernels/attn_q_impl.h"

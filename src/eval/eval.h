/*
 * eval.h: the evaluation module: long-context retrieval prompts (needle in a haystack, passkey,
 * multikey, multivalue) of an exact token length with the needle at a chosen depth, and the rule
 * that scores an answer. Its API is public (the "evaluation" section of include/longview.h);
 * this header is what eval.c builds on.
 *
 * The module src/eval/ (docs/architecture.md):
 *   Owns:  the retrieval prompt builders (passkey, needle in a haystack, multikey, multivalue) and
 *          the answer rule.
 *   Never: runs a model (the CLI does: docs/eval.md).
 */
#ifndef LV_EVAL_H
#define LV_EVAL_H

#include "longview.h"

#include "core/core.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#endif

/* vocab_json.c: tokenizer.json import (stub, replaced below) */
#include "vocab.h"
#include "lv_internal.h"
lv_status lv_vocab_json_to_gguf(const char *p, lv_gguf_writer *w, int64_t *n) {
    (void)p; (void)w; (void)n;
    return lv_error(LV_ERR_UNSUPPORTED, "tokenizer.json import not implemented yet");
}

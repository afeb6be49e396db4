/* chat.c: stub (filled in below) */
#include "lv_internal.h"
#include "vocab.h"
#include <limits.h>
int64_t lv_chat_apply_template(const lv_model *model, const char *tmpl, const lv_chat_message *msgs, size_t n_msgs,
                               bool add_assistant, char *buf, int64_t buf_size) {
    (void)model; (void)tmpl; (void)msgs; (void)n_msgs; (void)add_assistant; (void)buf; (void)buf_size;
    return INT32_MIN;
}
const char *lv_chat_template_detect(const char *tmpl) { (void)tmpl; return NULL; }
const char *const *lv_chat_template_names(void) { static const char *const n[] = {NULL}; return n; }

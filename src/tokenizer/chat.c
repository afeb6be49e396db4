/*
 * chat.c: chat templates. Like llama.cpp's llama_chat_apply_template, the Jinja text stored in
 * tokenizer.chat_template is not executed: it is recognised by telltale substrings (in llama.cpp's
 * order, so that a template goes to the same family it would there) and the family's format is
 * written by a small formatter. Families llama.cpp knows but we do not format are recognised too
 * and reported as unsupported, so that they are never mistaken for a later family.
 *
 * Not a Jinja engine: tools, images, "thinking" switches and custom system prompts baked into a
 * template are not reproduced. An unknown template is an error whose message names
 * `--chat-template NAME` as the way out.
 */
#include "core/core.h"
#include "tokenizer/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

typedef enum chat_family {
    CHAT_UNKNOWN = 0,
    CHAT_UNSUPPORTED, /* recognised (llama.cpp knows it) but not formatted here */
    CHAT_CHATML,
    CHAT_LLAMA3,
    CHAT_MISTRAL_V1,
    CHAT_MISTRAL_V3,
    CHAT_MISTRAL_V3_TEKKEN,
    CHAT_MISTRAL_V7,
    CHAT_MISTRAL_V7_TEKKEN,
    CHAT_LLAMA2,
    CHAT_LLAMA2_SYS,
    CHAT_LLAMA2_SYS_BOS,
    CHAT_LLAMA2_SYS_STRIP,
    CHAT_PHI3,
    CHAT_ZEPHYR,
    CHAT_GEMMA,
} chat_family;

static const struct {
    const char *name;
    chat_family f;
} k_names[] = {
    {"chatml", CHAT_CHATML},
    {"llama3", CHAT_LLAMA3},
    {"mistral-v1", CHAT_MISTRAL_V1},
    {"mistral-v3", CHAT_MISTRAL_V3},
    {"mistral-v3-tekken", CHAT_MISTRAL_V3_TEKKEN},
    {"mistral-v7", CHAT_MISTRAL_V7},
    {"mistral-v7-tekken", CHAT_MISTRAL_V7_TEKKEN},
    {"llama2", CHAT_LLAMA2},
    {"llama2-sys", CHAT_LLAMA2_SYS},
    {"llama2-sys-bos", CHAT_LLAMA2_SYS_BOS},
    {"llama2-sys-strip", CHAT_LLAMA2_SYS_STRIP},
    {"phi3", CHAT_PHI3},
    {"zephyr", CHAT_ZEPHYR},
    {"gemma", CHAT_GEMMA},
};

const char *const *lv_chat_template_names(void) {
    static const char *const names[] = {"chatml",     "llama3",           "mistral-v1",     "mistral-v3",
                                        "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "llama2",
                                        "llama2-sys", "llama2-sys-bos",   "llama2-sys-strip", "phi3",
                                        "zephyr",     "gemma",            NULL};
    return names;
}

static bool has(const char *t, const char *s) { return strstr(t, s) != NULL; }

static chat_family detect(const char *t) {
    for (size_t k = 0; k < LV_ARRAY_LEN(k_names); k++)
        if (strcmp(t, k_names[k].name) == 0) return k_names[k].f;
    if (has(t, "<|im_start|>"))
        return has(t, "<|im_sep|>") || has(t, "<end_of_utterance>") ? CHAT_UNSUPPORTED : CHAT_CHATML;
    if (strncmp(t, "mistral", 7) == 0 || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) return CHAT_MISTRAL_V7;
        if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            if (has(t, " [INST]")) return CHAT_MISTRAL_V1;
            if (has(t, "\"[INST]\"")) return CHAT_MISTRAL_V3_TEKKEN;
            return CHAT_MISTRAL_V3;
        }
        if (has(t, "content.strip()")) return CHAT_LLAMA2_SYS_STRIP;
        if (has(t, "bos_token + '[INST]")) return CHAT_LLAMA2_SYS_BOS;
        if (has(t, "<<SYS>>")) return CHAT_LLAMA2_SYS;
        return CHAT_LLAMA2;
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return CHAT_PHI3;
    if (has(t, "[gMASK]<sop>")) return CHAT_UNSUPPORTED;                         /* chatglm4 */
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) return CHAT_UNSUPPORTED; /* falcon3, glmedge */
    if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>")) return CHAT_UNSUPPORTED;
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return CHAT_ZEPHYR;
    if (has(t, "bos_token + message['role']")) return CHAT_UNSUPPORTED; /* monarch */
    if (has(t, "<start_of_turn>")) return CHAT_GEMMA;
    if (has(t, "'\\n\\nAssistant: ' + eos_token") || has(t, "GPT4 Correct ") ||
        (has(t, "USER: ") && has(t, "ASSISTANT: ")) || (has(t, "### Instruction:") && has(t, "<|EOT|>")) ||
        (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>")))
        return CHAT_UNSUPPORTED; /* orion, openchat, vicuna, deepseek, command-r */
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return CHAT_LLAMA3;
    return CHAT_UNKNOWN;
}

const char *lv_chat_template_detect(const char *tmpl) {
    if (!tmpl) return NULL;
    chat_family f = detect(tmpl);
    for (size_t k = 0; k < LV_ARRAY_LEN(k_names); k++)
        if (k_names[k].f == f) return k_names[k].name;
    return NULL;
}

/* ---- an append buffer that counts what does not fit ---- */

typedef struct sbuf {
    char *buf;
    int64_t cap, n;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++, b->n++)
        if (b->n < b->cap) b->buf[b->n] = s[i];
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static bool c_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* the content with leading and trailing (C-locale) spaces removed */
static void put_trim(sbuf *b, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && c_space(s[a])) a++;
    while (n > a && c_space(s[n - 1])) n--;
    put(b, s + a, n - a);
}

static bool role_is(const lv_chat_message *m, const char *r) { return m->role && strcmp(m->role, r) == 0; }

static void render(chat_family f, const lv_chat_message *msgs, size_t n, bool add_ass, sbuf *b) {
    switch (f) {
    case CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            puts_(b, "<|im_start|>");
            puts_(b, msgs[i].role);
            puts_(b, "\n");
            puts_(b, msgs[i].content);
            puts_(b, "<|im_end|>\n");
        }
        if (add_ass) puts_(b, "<|im_start|>assistant\n");
        break;
    case CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            puts_(b, "<|start_header_id|>");
            puts_(b, msgs[i].role);
            puts_(b, "<|end_header_id|>\n\n");
            put_trim(b, msgs[i].content);
            puts_(b, "<|eot_id|>");
        }
        if (add_ass) puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_MISTRAL_V7:
    case CHAT_MISTRAL_V7_TEKKEN: {
        const char *sp = f == CHAT_MISTRAL_V7 ? " " : "";
        for (size_t i = 0; i < n; i++) {
            if (role_is(&msgs[i], "system")) {
                puts_(b, "[SYSTEM_PROMPT]");
                puts_(b, sp);
                puts_(b, msgs[i].content);
                puts_(b, "[/SYSTEM_PROMPT]");
            } else if (role_is(&msgs[i], "user")) {
                puts_(b, "[INST]");
                puts_(b, sp);
                puts_(b, msgs[i].content);
                puts_(b, "[/INST]");
            } else {
                puts_(b, sp);
                puts_(b, msgs[i].content);
                puts_(b, "</s>");
            }
        }
        break;
    }
    case CHAT_MISTRAL_V1:
    case CHAT_MISTRAL_V3:
    case CHAT_MISTRAL_V3_TEKKEN: {
        const char *lead = f == CHAT_MISTRAL_V1 ? " " : "";
        const char *trail = f == CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
        bool inside = false;
        for (size_t i = 0; i < n; i++) {
            if (!inside) {
                puts_(b, lead);
                puts_(b, "[INST]");
                puts_(b, trail);
                inside = true;
            }
            if (role_is(&msgs[i], "system")) {
                puts_(b, msgs[i].content);
                puts_(b, "\n\n");
            } else if (role_is(&msgs[i], "user")) {
                puts_(b, msgs[i].content);
                puts_(b, lead);
                puts_(b, "[/INST]");
            } else {
                puts_(b, trail);
                if (f == CHAT_MISTRAL_V3) put_trim(b, msgs[i].content);
                else puts_(b, msgs[i].content);
                puts_(b, "</s>");
                inside = false;
            }
        }
        break;
    }
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
    case CHAT_LLAMA2_SYS_BOS:
    case CHAT_LLAMA2_SYS_STRIP: {
        bool sys = f != CHAT_LLAMA2, bos = f == CHAT_LLAMA2_SYS_BOS, strip = f == CHAT_LLAMA2_SYS_STRIP;
        bool inside = true;
        puts_(b, "[INST] ");
        for (size_t i = 0; i < n; i++) {
            if (!inside) {
                inside = true;
                puts_(b, bos ? "<s>[INST] " : "[INST] ");
            }
            if (role_is(&msgs[i], "system")) {
                if (sys) puts_(b, "<<SYS>>\n");
                if (strip) put_trim(b, msgs[i].content);
                else puts_(b, msgs[i].content);
                puts_(b, sys ? "\n<</SYS>>\n\n" : "\n");
            } else if (role_is(&msgs[i], "user")) {
                if (strip) put_trim(b, msgs[i].content);
                else puts_(b, msgs[i].content);
                puts_(b, " [/INST]");
            } else {
                if (strip) put_trim(b, msgs[i].content);
                else puts_(b, msgs[i].content);
                puts_(b, "</s>");
                inside = false;
            }
        }
        break;
    }
    case CHAT_PHI3:
    case CHAT_ZEPHYR:
        for (size_t i = 0; i < n; i++) {
            puts_(b, "<|");
            puts_(b, msgs[i].role);
            puts_(b, "|>\n");
            puts_(b, msgs[i].content);
            puts_(b, f == CHAT_PHI3 ? "<|end|>\n" : "<|endoftext|>\n");
        }
        if (add_ass) puts_(b, "<|assistant|>\n");
        break;
    case CHAT_GEMMA: {
        /* no system role: its text goes before the next user message */
        const char *sys[64];
        size_t n_sys = 0;
        for (size_t i = 0; i < n; i++) {
            if (role_is(&msgs[i], "system")) {
                if (n_sys < LV_ARRAY_LEN(sys)) sys[n_sys++] = msgs[i].content;
                continue;
            }
            bool model = role_is(&msgs[i], "assistant");
            puts_(b, "<start_of_turn>");
            puts_(b, model ? "model" : msgs[i].role);
            puts_(b, "\n");
            if (n_sys && !model) {
                for (size_t k = 0; k < n_sys; k++) put_trim(b, sys[k]);
                puts_(b, "\n\n");
                n_sys = 0;
            }
            put_trim(b, msgs[i].content);
            puts_(b, "<end_of_turn>\n");
        }
        if (add_ass) puts_(b, "<start_of_turn>model\n");
        break;
    }
    default: LV_ASSERT(0);
    }
}

int64_t lv_vocab_chat_apply(const lv_vocab *v, const char *tmpl, const lv_chat_message *msgs, size_t n_msgs, bool add_assistant,
                            char *buf, int64_t buf_size) {
    if ((n_msgs && !msgs) || buf_size < 0 || (buf_size > 0 && !buf)) {
        lv_error(LV_ERR_INVALID_ARG, "lv_chat_apply_template: invalid arguments");
        return INT32_MIN;
    }
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content) {
            lv_error(LV_ERR_INVALID_ARG, "lv_chat_apply_template: message %zu has no role or content", i);
            return INT32_MIN;
        }
    const char *t = tmpl;
    if (!t) {
        t = v ? lv_vocab_chat_template(v) : NULL;
        if (!t) {
            LV_LOG_I("chat: the model has no tokenizer.chat_template; using chatml");
            t = "chatml";
        }
    }
    chat_family f = detect(t);
    if (f == CHAT_UNKNOWN || f == CHAT_UNSUPPORTED) {
        lv_error(LV_ERR_UNSUPPORTED,
                 "%s chat template (%.60s%s): pick a built-in one with --chat-template NAME (chatml, llama3, "
                 "mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken, llama2, llama2-sys, "
                 "llama2-sys-bos, llama2-sys-strip, phi3, zephyr, gemma)",
                 f == CHAT_UNKNOWN ? "unknown" : "unsupported", t, strlen(t) > 60 ? "..." : "");
        return INT32_MIN;
    }
    sbuf b = {buf, buf_size, 0};
    render(f, msgs, n_msgs, add_assistant, &b);
    if (b.n >= buf_size) return -(b.n + 1); /* room for the NUL too */
    buf[b.n] = 0;
    return b.n;
}

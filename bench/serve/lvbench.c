/*
 * lvbench: a load generator for OpenAI-compatible LLM servers that times streamed tokens
 * (../shared/SERVING.md 3.3; docs/server.md "Measuring: lvbench"). One thread, poll(2) over plain
 * non-blocking sockets, HTTP/1.1 (one connection per request, `Connection: close`), chunked
 * transfer decoding, SSE `data:` lines parsed with jansson. Loopback only.
 *
 *   open loop:   --rate R [--burstiness B]   arrivals with gamma gaps of shape B (1 = Poisson),
 *                --rate inf                  every request at once
 *   closed loop: --concurrency C             C requests in flight, the next sent when one ends
 *   bounds:      -n N requests, --duration S (no request sent after S), --timeout S per request
 *   workload:    --workload FILE (JSON lines; each object is the request body, lvbench adds
 *                "stream" and "stream_options") or generated token-id prompts (--lengths, --prefix,
 *                --token-range, --max-tokens, --ignore-eos)
 *   output:      one JSON line per request and a summary line (--out FILE, default stdout),
 *                and the summary in words on stderr; goodput under --slo-ttft / --slo-tpot / --slo-e2e.
 *
 * Per request: TTFT (send to the first chunk with text), inter-token latencies (gaps between chunks
 * with text), TPOT = (E2E - TTFT) / (completion tokens - 1), E2E, the HTTP status, usage
 * (prompt, cached and completion tokens when the server sends them), finish_reason. A 429 or 503 is
 * a refusal, counted apart from failures.
 */
#define _GNU_SOURCE
#include <jansson.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)
#define MAX_ERRBODY (16 * 1024)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lvbench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- random numbers (xoshiro256**, seeded by splitmix64) ---- */

static uint64_t rng_s[4];
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t rng_u64(void) {
    uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
    rng_s[2] ^= rng_s[0];
    rng_s[3] ^= rng_s[1];
    rng_s[1] ^= rng_s[2];
    rng_s[0] ^= rng_s[3];
    rng_s[2] ^= t;
    rng_s[3] = rotl(rng_s[3], 45);
    return r;
}
static void rng_seed(uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        rng_s[i] = z ^ (z >> 31);
    }
}
static double rng_unif(void) { return (double)(rng_u64() >> 11) * 0x1.0p-53; } /* [0, 1) */
static int64_t rng_range(int64_t lo, int64_t hi) {                            /* [lo, hi] */
    return lo + (int64_t)(rng_u64() % (uint64_t)(hi - lo + 1));
}
static double rng_normal(void) {
    double u = rng_unif(), v = rng_unif();
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}
/* gamma(shape k, scale 1) by Marsaglia and Tsang; k < 1 by the boost u^(1/k) */
static double rng_gamma(double k) {
    if (k < 1.0) return rng_gamma(k + 1.0) * pow(1.0 - rng_unif(), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = 1.0 - rng_unif();
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

/* ---- the workload ---- */

typedef struct item {
    json_t *body;      /* the request body without stream fields */
    int32_t n_prompt;  /* prompt tokens when known (token ids), else -1 */
} item;

typedef struct lenspec {
    char kind;              /* 'f' fixed, 'u' uniform, 'm' mixed */
    int64_t a, b, c, d;     /* fixed a; uniform [a, b]; mixed short [a, b], long [c, d] */
    double p;               /* mixed: fraction of long prompts */
} lenspec;

static lenspec parse_lengths(const char *s) {
    lenspec L = {0};
    if (sscanf(s, "fixed:%" SCNd64, &L.a) == 1 && L.a > 0) {
        L.kind = 'f';
        L.b = L.a;
    } else if (sscanf(s, "uniform:%" SCNd64 ":%" SCNd64, &L.a, &L.b) == 2 && L.a > 0 && L.b >= L.a) {
        L.kind = 'u';
    } else if (sscanf(s, "mixed:%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%lf", &L.a, &L.b, &L.c, &L.d, &L.p) == 5 && L.a > 0 &&
               L.b >= L.a && L.c > 0 && L.d >= L.c && L.p >= 0 && L.p <= 1) {
        L.kind = 'm';
    } else {
        die("--lengths %s: expected fixed:N, uniform:A:B or mixed:A:B:C:D:P (short in [A,B], a fraction P long in [C,D])", s);
    }
    return L;
}

static item *read_workload(const char *path, int *n_out) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) die("cannot open workload %s: %s", path, strerror(errno));
    item *v = NULL;
    int n = 0, cap = 0, line_no = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        if (!len || line[0] == '#') continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, 0, &je);
        if (!o || !json_is_object(o)) die("%s:%d: not a JSON object (%s)", path, line_no, o ? "another type" : je.text);
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            if (!(v = realloc(v, (size_t)cap * sizeof(*v)))) die("out of memory");
        }
        json_t *p = json_object_get(o, "prompt");
        v[n].body = o;
        v[n].n_prompt = json_is_array(p) ? (int32_t)json_array_size(p) : -1;
        n++;
    }
    free(line);
    if (f != stdin) fclose(f);
    if (!n) die("workload %s has no request", path);
    *n_out = n;
    return v;
}

typedef struct gen_opts {
    lenspec lengths;
    int prefix_groups, prefix_len;
    int tok_lo, tok_hi;
    int max_lo, max_hi;
} gen_opts;

static json_t *random_ids(json_t *arr, int n, const gen_opts *g) {
    for (int j = 0; j < n; j++) json_array_append_new(arr, json_integer(rng_range(g->tok_lo, g->tok_hi - 1)));
    return arr;
}

static item *gen_workload(int n, const gen_opts *g) {
    item *v = calloc((size_t)n, sizeof(*v));
    json_t **prefixes = calloc((size_t)(g->prefix_groups > 0 ? g->prefix_groups : 1), sizeof(json_t *));
    if (!v || !prefixes) die("out of memory");
    for (int k = 0; k < g->prefix_groups; k++) prefixes[k] = random_ids(json_array(), g->prefix_len, g);
    /* mixed: exactly round(p n) long prompts, at places drawn by a shuffle */
    bool *is_long = calloc((size_t)n, sizeof(bool));
    if (!is_long) die("out of memory");
    if (g->lengths.kind == 'm') {
        int n_long = (int)llround(g->lengths.p * n);
        for (int i = 0; i < n_long; i++) is_long[i] = true;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_range(0, i);
            bool t = is_long[i];
            is_long[i] = is_long[j];
            is_long[j] = t;
        }
    }
    for (int i = 0; i < n; i++) {
        const lenspec *L = &g->lengths;
        int64_t len = L->kind == 'f' ? L->a : is_long[i] ? rng_range(L->c, L->d) : rng_range(L->a, L->b);
        json_t *p = json_array();
        if (g->prefix_groups > 0) json_array_extend(p, prefixes[rng_range(0, g->prefix_groups - 1)]);
        random_ids(p, (int)len, g);
        json_t *o = json_object();
        v[i].n_prompt = (int32_t)json_array_size(p);
        json_object_set_new(o, "prompt", p);
        json_object_set_new(o, "max_tokens", json_integer(rng_range(g->max_lo, g->max_hi)));
        v[i].body = o;
    }
    for (int k = 0; k < g->prefix_groups; k++) json_decref(prefixes[k]);
    free(prefixes);
    free(is_long);
    return v;
}

/* ---- one request on one connection ---- */

enum { C_IDLE, C_CONNECTING, C_SENDING, C_HEAD, C_BODY, C_DONE };
enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_END };

typedef struct req {
    int idx;                      /* request number */
    int item;                     /* workload item */
    int state, fd;
    double t_sched, t_send, t_first, t_last, t_end; /* absolute (monotonic) */
    char *out; size_t n_out, off_out;               /* the request bytes */
    char *head; size_t n_head;                      /* response head */
    int status;
    bool chunked; int64_t content_length;           /* -1: to EOF */
    int ch_state; int64_t ch_left;                  /* chunked decoder */
    char ch_line[64]; int n_ch_line;
    char *line; size_t n_line, cap_line;            /* SSE line buffer (or a non-SSE body) */
    int64_t n_body;
    bool sse, saw_done, native_stop;
    double *tok_t; int n_tok, cap_tok;              /* times of chunks with text */
    int64_t prompt_tokens, cached_tokens, completion_tokens; /* from usage, -1 if absent */
    char finish[24];
    char err[256];
} req;

static const char *g_host_hdr;
static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static const char *g_path = "/v1/completions";
static const char *g_key;
static bool g_stream = true;

static void req_fail(req *r, const char *fmt, ...) {
    if (!r->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof(r->err), fmt, ap);
        va_end(ap);
    }
    r->state = C_DONE;
}

static bool append(char **buf, size_t *n, size_t *cap, const char *p, size_t k) {
    if (*n + k + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *n + k + 1) c *= 2;
        char *q = realloc(*buf, c);
        if (!q) return false;
        *buf = q;
        *cap = c;
    }
    memcpy(*buf + *n, p, k);
    *n += k;
    (*buf)[*n] = 0;
    return true;
}

/* the text an event carries: choices[0].text (completions), choices[0].delta.content (chat), or
 * llama.cpp's native "content" */
static const char *text_of(json_t *ev) {
    json_t *ch = json_object_get(ev, "choices");
    json_t *c0 = json_is_array(ch) ? json_array_get(ch, 0) : NULL;
    if (c0) {
        json_t *t = json_object_get(c0, "text");
        if (json_is_string(t)) return json_string_value(t);
        json_t *d = json_object_get(c0, "delta");
        json_t *ct = d ? json_object_get(d, "content") : NULL;
        return json_is_string(ct) ? json_string_value(ct) : NULL;
    }
    json_t *ct = json_object_get(ev, "content");
    return json_is_string(ct) ? json_string_value(ct) : NULL;
}

static void read_usage(req *r, json_t *ev) {
    json_t *u = json_object_get(ev, "usage");
    if (json_is_object(u)) {
        json_t *x;
        if (json_is_integer(x = json_object_get(u, "prompt_tokens"))) r->prompt_tokens = json_integer_value(x);
        if (json_is_integer(x = json_object_get(u, "completion_tokens"))) r->completion_tokens = json_integer_value(x);
        json_t *d = json_object_get(u, "prompt_tokens_details");
        if (json_is_object(d) && json_is_integer(x = json_object_get(d, "cached_tokens"))) r->cached_tokens = json_integer_value(x);
    }
    json_t *ch = json_object_get(ev, "choices");
    json_t *c0 = json_is_array(ch) ? json_array_get(ch, 0) : NULL;
    json_t *fr = c0 ? json_object_get(c0, "finish_reason") : NULL;
    if (json_is_string(fr)) snprintf(r->finish, sizeof(r->finish), "%s", json_string_value(fr));
    /* llama.cpp's native stream: "stop": true on the last event, "tokens_predicted", "stop_type" */
    if (json_is_true(json_object_get(ev, "stop"))) {
        r->native_stop = true;
        json_t *x;
        if (json_is_integer(x = json_object_get(ev, "tokens_predicted"))) r->completion_tokens = json_integer_value(x);
        if (json_is_integer(x = json_object_get(ev, "tokens_evaluated"))) r->prompt_tokens = json_integer_value(x);
        if (json_is_string(x = json_object_get(ev, "stop_type"))) snprintf(r->finish, sizeof(r->finish), "%s", json_string_value(x));
    }
}

static void on_event(req *r, const char *data, size_t n, double t) {
    if (n >= 6 && !memcmp(data, "[DONE]", 6)) {
        r->saw_done = true;
        return;
    }
    json_error_t je;
    json_t *ev = json_loadb(data, n, JSON_ALLOW_NUL, &je);
    if (!ev) {
        req_fail(r, "an SSE event is not JSON: %s", je.text);
        return;
    }
    json_t *e = json_object_get(ev, "error");
    if (e && !json_is_null(e)) {
        json_t *m = json_is_object(e) ? json_object_get(e, "message") : NULL;
        req_fail(r, "error event: %s", json_is_string(m) ? json_string_value(m) : "(no message)");
        json_decref(ev);
        return;
    }
    const char *txt = text_of(ev);
    if (txt && *txt) {
        if (r->n_tok == r->cap_tok) {
            r->cap_tok = r->cap_tok ? 2 * r->cap_tok : 64;
            double *p = realloc(r->tok_t, (size_t)r->cap_tok * sizeof(double));
            if (!p) die("out of memory");
            r->tok_t = p;
        }
        r->tok_t[r->n_tok++] = t;
        if (r->t_first == 0) r->t_first = t;
        r->t_last = t;
    }
    read_usage(r, ev);
    json_decref(ev);
}

/* decoded body bytes: SSE lines, or the whole body of a non-SSE answer */
static void on_body(req *r, const char *p, size_t k, double t) {
    r->n_body += (int64_t)k;
    if (!r->sse) {
        if (r->n_line + k > (r->status == 200 ? (size_t)64 << 20 : MAX_ERRBODY)) return; /* keep the start */
        if (!append(&r->line, &r->n_line, &r->cap_line, p, k)) die("out of memory");
        return;
    }
    while (k) {
        const char *nl = memchr(p, '\n', k);
        size_t take = nl ? (size_t)(nl - p) : k;
        if (!append(&r->line, &r->n_line, &r->cap_line, p, take)) die("out of memory");
        if (!nl) return;
        /* a whole line */
        size_t n = r->n_line;
        if (n && r->line[n - 1] == '\r') r->line[--n] = 0;
        if (n >= 5 && !memcmp(r->line, "data:", 5)) {
            const char *d = r->line + 5;
            if (*d == ' ') d++;
            on_event(r, d, n - (size_t)(d - r->line), t);
        }
        r->n_line = 0;
        p += take + 1;
        k -= take + 1;
        if (r->state == C_DONE) return;
    }
}

static void on_chunked(req *r, const char *p, size_t k, double t) {
    while (k && r->state != C_DONE) {
        switch (r->ch_state) {
        case CH_SIZE:
        case CH_DATA_END:
        case CH_TRAILER: {
            char c = *p++;
            k--;
            if (c != '\n') {
                if (r->n_ch_line < (int)sizeof(r->ch_line) - 1) r->ch_line[r->n_ch_line++] = c;
                continue;
            }
            r->ch_line[r->n_ch_line] = 0;
            if (r->n_ch_line && r->ch_line[r->n_ch_line - 1] == '\r') r->ch_line[--r->n_ch_line] = 0;
            if (r->ch_state == CH_SIZE) {
                char *end;
                long long sz = strtoll(r->ch_line, &end, 16);
                if (end == r->ch_line || sz < 0) {
                    req_fail(r, "bad chunk size line '%s'", r->ch_line);
                    return;
                }
                r->ch_left = sz;
                r->ch_state = sz ? CH_DATA : CH_TRAILER;
            } else if (r->ch_state == CH_DATA_END) {
                r->ch_state = CH_SIZE;
            } else if (r->n_ch_line == 0) {
                r->ch_state = CH_END;
            }
            r->n_ch_line = 0;
            break;
        }
        case CH_DATA: {
            size_t take = (size_t)r->ch_left < k ? (size_t)r->ch_left : k;
            on_body(r, p, take, t);
            p += take;
            k -= take;
            if (!(r->ch_left -= (int64_t)take)) r->ch_state = CH_DATA_END;
            break;
        }
        default:
            return; /* bytes after the end: ignored */
        }
    }
}

/* a header line's value contains `what` (case-insensitive), within the line */
static bool header_has(const char *line, const char *what) {
    const char *e = strstr(line, "\r\n"), *w = strcasestr(line, what);
    return w && (!e || w < e);
}

static void parse_head(req *r) {
    char *h = r->head;
    if (sscanf(h, "HTTP/1.%*d %d", &r->status) != 1) {
        req_fail(r, "not an HTTP response");
        return;
    }
    r->content_length = -1;
    for (char *l = strstr(h, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        char *s = l + 2;
        if (!strncasecmp(s, "transfer-encoding:", 18) && header_has(s, "chunked")) r->chunked = true;
        else if (!strncasecmp(s, "content-length:", 15)) r->content_length = strtoll(s + 15, NULL, 10);
        else if (!strncasecmp(s, "content-type:", 13) && header_has(s, "text/event-stream")) r->sse = true;
    }
}

static void on_bytes(req *r, char *p, size_t k, double t) {
    if (r->state == C_HEAD) {
        size_t before = r->n_head;
        if (r->n_head + k > MAX_HEAD) {
            req_fail(r, "response head larger than %d bytes", MAX_HEAD);
            return;
        }
        size_t cap = r->n_head + 1;
        if (!append(&r->head, &r->n_head, &cap, p, k)) die("out of memory");
        char *e = strstr(r->head, "\r\n\r\n");
        if (!e) return;
        size_t head_len = (size_t)(e - r->head) + 4;
        r->head[head_len - 2] = 0;
        parse_head(r);
        if (r->state == C_DONE) return;
        r->state = C_BODY;
        size_t used = head_len - before;
        p += used;
        k -= used;
    }
    if (r->state == C_BODY && k) {
        if (r->chunked) on_chunked(r, p, k, t);
        else on_body(r, p, k, t);
    }
    if (r->state == C_BODY && ((r->chunked && r->ch_state == CH_END) || (!r->chunked && r->content_length >= 0 && r->n_body >= r->content_length)))
        r->state = C_DONE;
}

static void build_request(req *r, json_t *body_in) {
    json_t *body = json_deep_copy(body_in);
    if (!json_object_get(body, "model")) json_object_set_new(body, "model", json_string("lvbench"));
    json_object_set_new(body, "stream", json_boolean(g_stream));
    if (g_stream) json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    char *b = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!b) die("out of memory");
    char auth[512] = "";
    if (g_key) snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", g_key);
    size_t nb = strlen(b);
    size_t cap = nb + 1024 + strlen(g_path) + strlen(g_host_hdr);
    r->out = malloc(cap);
    if (!r->out) die("out of memory");
    int h = snprintf(r->out, cap,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lvbench\r\nContent-Type: application/json\r\n"
                     "Accept: text/event-stream\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
                     g_path, g_host_hdr, auth, nb);
    memcpy(r->out + h, b, nb);
    r->n_out = (size_t)h + nb;
    free(b);
}

static void req_start(req *r, json_t *body, double t) {
    r->t_send = t;
    r->prompt_tokens = r->cached_tokens = r->completion_tokens = -1;
    build_request(r, body);
    r->fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->fd < 0) {
        req_fail(r, "socket: %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(r->fd, (struct sockaddr *)&g_addr, g_addrlen) == 0) r->state = C_SENDING;
    else if (errno == EINPROGRESS) r->state = C_CONNECTING;
    else req_fail(r, "connect: %s", strerror(errno));
}

static void req_io(req *r, double t) {
    if (r->state == C_CONNECTING) {
        int e = 0;
        socklen_t l = sizeof(e);
        getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) {
            req_fail(r, "connect: %s", strerror(e));
            return;
        }
        r->state = C_SENDING;
    }
    if (r->state == C_SENDING) {
        while (r->off_out < r->n_out) {
            ssize_t w = send(r->fd, r->out + r->off_out, r->n_out - r->off_out, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                if (errno == EINTR) continue;
                req_fail(r, "send: %s", strerror(errno));
                return;
            }
            r->off_out += (size_t)w;
        }
        r->state = C_HEAD;
        return;
    }
    if (r->state == C_HEAD || r->state == C_BODY) {
        char buf[65536];
        for (;;) {
            ssize_t k = recv(r->fd, buf, sizeof(buf), 0);
            if (k > 0) {
                on_bytes(r, buf, (size_t)k, t);
                if (r->state == C_DONE) return;
                continue;
            }
            if (k == 0) { /* EOF */
                if (r->state == C_HEAD) req_fail(r, "connection closed before a response");
                else if (r->chunked && r->ch_state != CH_END) req_fail(r, "connection closed in the middle of the body");
                else if (!r->chunked && r->content_length >= 0 && r->n_body < r->content_length) req_fail(r, "connection closed in the middle of the body");
                r->state = C_DONE;
                return;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            req_fail(r, "recv: %s", strerror(errno));
            return;
        }
    }
}

/* ---- results ---- */

typedef struct result {
    int idx, item;
    double t_sched, t_send;       /* relative to the start */
    double ttft, e2e, tpot, t_first_abs;
    int status;
    bool ok, refused;
    int64_t prompt_tokens, cached_tokens, completion_tokens;
    int n_chunks;
    double *itl; int n_itl;
    char finish[24];
    char err[256];
} result;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
/* linear interpolation between closest ranks (numpy's default) on a sorted array */
static double pct(const double *v, int n, double q) {
    if (n <= 0) return NAN;
    double pos = q / 100.0 * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (v[i + 1] - v[i]) * (pos - i);
}
static json_t *jnum(double x) { return isfinite(x) ? json_real(round(x * 1e6) / 1e6) : json_null(); }
static json_t *dist(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return json_pack("{s:i,s:o,s:o,s:o,s:o,s:o}", "n", n, "mean", jnum(n ? s / n : NAN), "p50", jnum(pct(v, n, 50)), "p90",
                     jnum(pct(v, n, 90)), "p99", jnum(pct(v, n, 99)), "max", jnum(n ? v[n - 1] : NAN));
}

static void finish_req(req *r, result *o, double t0) {
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    if (!r->t_end) r->t_end = now_s();
    memset(o, 0, sizeof(*o));
    o->idx = r->idx;
    o->item = r->item;
    o->t_sched = r->t_sched - t0;
    o->t_send = r->t_send - t0;
    o->status = r->status;
    o->n_chunks = r->n_tok;
    o->e2e = r->t_end - r->t_send;
    o->refused = r->status == 429 || r->status == 503;
    if (r->status && r->status != 200 && !r->err[0]) {
        /* the message of a JSON error body */
        json_t *j = r->line ? json_loadb(r->line, r->n_line, 0, NULL) : NULL;
        json_t *e = j ? json_object_get(j, "error") : NULL;
        json_t *m = json_is_object(e) ? json_object_get(e, "message") : NULL;
        snprintf(r->err, sizeof(r->err), "HTTP %d: %s", r->status, json_is_string(m) ? json_string_value(m) : "(no JSON error)");
        json_decref(j);
    }
    if (r->status == 200 && !r->err[0]) {
        if (g_stream && !r->sse) snprintf(r->err, sizeof(r->err), "a 200 without text/event-stream");
        else if (g_stream && !r->saw_done && !r->native_stop) snprintf(r->err, sizeof(r->err), "the stream ended without [DONE]");
        else if (!g_stream) {
            json_t *j = json_loadb(r->line ? r->line : "", r->n_line, JSON_ALLOW_NUL, NULL);
            if (!j) snprintf(r->err, sizeof(r->err), "the body is not JSON");
            else {
                read_usage(r, j);
                r->t_first = r->t_end;
                json_decref(j);
            }
        }
    }
    o->prompt_tokens = r->prompt_tokens;
    o->cached_tokens = r->cached_tokens;
    o->completion_tokens = r->completion_tokens;
    snprintf(o->finish, sizeof(o->finish), "%s", r->finish);
    o->ok = r->status == 200 && !r->err[0];
    snprintf(o->err, sizeof(o->err), "%s", r->err);
    o->ttft = r->t_first ? r->t_first - r->t_send : NAN;
    o->t_first_abs = r->t_first ? r->t_first - t0 : NAN;
    int64_t n_out = o->completion_tokens >= 0 ? o->completion_tokens : r->n_tok;
    if (o->ok && r->t_first) o->tpot = n_out > 1 ? (r->t_end - r->t_first) / (double)(n_out - 1) : 0;
    else o->tpot = NAN;
    if (r->n_tok > 1) {
        o->itl = malloc((size_t)(r->n_tok - 1) * sizeof(double));
        if (!o->itl) die("out of memory");
        for (int i = 1; i < r->n_tok; i++) o->itl[i - 1] = r->tok_t[i] - r->tok_t[i - 1];
        o->n_itl = r->n_tok - 1;
    }
    free(r->out);
    free(r->head);
    free(r->line);
    free(r->tok_t);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->state = C_IDLE;
}

static void put_line(FILE *f, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (!s) die("out of memory");
    fputs(s, f);
    fputc('\n', f);
    free(s);
}

/* ---- the command ---- */

static void usage(FILE *f) {
    fputs("usage: lvbench [--url http://127.0.0.1:8080] [--endpoint /v1/completions] [--api-key KEY]\n"
          "               (--rate R [--burstiness B] [--max-concurrency C] | --rate inf | --concurrency C)\n"
          "               [-n N] [--duration S] [--timeout S] [--warmup N]\n"
          "               (--workload FILE | [--lengths SPEC] [--prefix K:L] [--token-range LO:HI] [--max-tokens N|A:B])\n"
          "               [--ignore-eos] [--temperature T] [--seed S] [--no-stream] [--dump-workload FILE]\n"
          "               [--slo-ttft S] [--slo-tpot S] [--slo-e2e S] [--label TEXT] [--out FILE] [--no-requests] [-q]\n"
          "\n"
          "A load generator for OpenAI-compatible LLM servers (longview serve, llama-server, vLLM) that times\n"
          "streamed tokens. Loopback addresses only. One connection per request.\n"
          "\n"
          "Arrivals (one of):\n"
          "  --rate R            open loop: R requests per second, gaps drawn from a gamma distribution of\n"
          "                      shape --burstiness B (default 1: Poisson arrivals; < 1 burstier), then\n"
          "                      rescaled so that the N requests span N / R seconds (as vLLM's bench)\n"
          "  --rate inf          every request at once (the Prepacking case)\n"
          "  --concurrency C     closed loop: C requests in flight, the next sent as soon as one ends\n"
          "  --max-concurrency C open loop: at most C in flight (later arrivals wait; TTFT counts from sending)\n"
          "Bounds:\n"
          "  -n N                requests (default: the workload's size, or 64 generated)\n"
          "  --duration S        send nothing after S seconds (the ones in flight finish)\n"
          "  --timeout S         per request (default 600): past it the request fails\n"
          "  --warmup N          N requests first, one at a time, left out of the results\n"
          "Workload:\n"
          "  --workload FILE     JSON lines, one request body each ('-': stdin); lvbench adds \"stream\" and\n"
          "                      \"stream_options\"; used in turn, round robin when -n is larger\n"
          "  --lengths SPEC      generated token-id prompts: fixed:N, uniform:A:B, or mixed:A:B:C:D:P\n"
          "                      (short ones in [A,B], a fraction P long ones in [C,D]); default uniform:16:128\n"
          "  --prefix K:L        each prompt starts with one of K shared prefixes of L tokens (system prompts)\n"
          "  --token-range LO:HI ids drawn from [LO,HI) (default 32:250, valid in any vocabulary)\n"
          "  --max-tokens N|A:B  tokens to generate (default 16); --ignore-eos asks for exactly that many\n"
          "  --temperature T     (default 0); --seed S seeds the workload and the arrivals (default 1)\n"
          "  --dump-workload F   write the workload as JSON lines (for --workload) and go on\n"
          "Output:\n"
          "  --out FILE          one JSON line per request and one summary line (default stdout)\n"
          "  --no-requests       the summary line only; --label TEXT tags every line\n"
          "  --slo-ttft S --slo-tpot S --slo-e2e S   goodput: requests per second meeting every given SLO\n"
          "  -q                  no summary in words on stderr\n"
          "Exit status: 0 when every request was answered (200, or refused with 429 / 503), 1 when some\n"
          "failed (connection errors, other statuses, broken streams), 2 on bad usage.\n",
          f);
}

static double parse_d(const char *opt, const char *v, double lo) {
    char *e;
    double x = strtod(v, &e);
    if (e == v || *e || !(x >= lo)) die("%s %s: expected a number >= %g", opt, v, lo);
    return x;
}

int main(int argc, char **argv) {
    const char *url = "http://127.0.0.1:8080", *workload = NULL, *out_path = NULL, *label = NULL, *dump = NULL;
    double rate = -1, burst = 1, duration = 0, timeout = 600, slo_ttft = 0, slo_tpot = 0, slo_e2e = 0, temperature = 0;
    int conc = 0, max_conc = 0, n_req = 0, warmup = 0;
    bool ignore_eos = false, no_requests = false, quiet = false;
    uint64_t seed = 1;
    gen_opts G = {.lengths = parse_lengths("uniform:16:128"), .tok_lo = 32, .tok_hi = 250, .max_lo = 16, .max_hi = 16};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG() (v ? (i++, v) : (die("%s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--url")) url = ARG();
        else if (!strcmp(a, "--endpoint")) g_path = ARG();
        else if (!strcmp(a, "--api-key")) g_key = ARG();
        else if (!strcmp(a, "--rate")) {
            const char *r = ARG();
            rate = !strcmp(r, "inf") ? INFINITY : parse_d(a, r, 1e-9);
        } else if (!strcmp(a, "--burstiness")) burst = parse_d(a, ARG(), 1e-3);
        else if (!strcmp(a, "--concurrency")) conc = (int)parse_d(a, ARG(), 1);
        else if (!strcmp(a, "--max-concurrency")) max_conc = (int)parse_d(a, ARG(), 1);
        else if (!strcmp(a, "-n")) n_req = (int)parse_d(a, ARG(), 1);
        else if (!strcmp(a, "--duration")) duration = parse_d(a, ARG(), 0);
        else if (!strcmp(a, "--timeout")) timeout = parse_d(a, ARG(), 0.001);
        else if (!strcmp(a, "--warmup")) warmup = (int)parse_d(a, ARG(), 0);
        else if (!strcmp(a, "--workload")) workload = ARG();
        else if (!strcmp(a, "--lengths")) G.lengths = parse_lengths(ARG());
        else if (!strcmp(a, "--prefix")) {
            const char *s = ARG();
            if (sscanf(s, "%d:%d", &G.prefix_groups, &G.prefix_len) != 2 || G.prefix_groups < 1 || G.prefix_len < 1)
                die("--prefix %s: expected K:L (K prefixes of L tokens)", s);
        } else if (!strcmp(a, "--token-range")) {
            const char *s = ARG();
            if (sscanf(s, "%d:%d", &G.tok_lo, &G.tok_hi) != 2 || G.tok_lo < 0 || G.tok_hi <= G.tok_lo) die("--token-range %s: expected LO:HI with 0 <= LO < HI", s);
        } else if (!strcmp(a, "--max-tokens")) {
            const char *s = ARG();
            int k = sscanf(s, "%d:%d", &G.max_lo, &G.max_hi);
            if (k == 1) G.max_hi = G.max_lo;
            if (k < 1 || G.max_lo < 1 || G.max_hi < G.max_lo) die("--max-tokens %s: expected N or A:B (>= 1)", s);
        } else if (!strcmp(a, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(a, "--temperature")) temperature = parse_d(a, ARG(), 0);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)parse_d(a, ARG(), 0);
        else if (!strcmp(a, "--no-stream")) g_stream = false;
        else if (!strcmp(a, "--dump-workload")) dump = ARG();
        else if (!strcmp(a, "--slo-ttft")) slo_ttft = parse_d(a, ARG(), 0);
        else if (!strcmp(a, "--slo-tpot")) slo_tpot = parse_d(a, ARG(), 0);
        else if (!strcmp(a, "--slo-e2e")) slo_e2e = parse_d(a, ARG(), 0);
        else if (!strcmp(a, "--label")) label = ARG();
        else if (!strcmp(a, "--out")) out_path = ARG();
        else if (!strcmp(a, "--no-requests")) no_requests = true;
        else if (!strcmp(a, "-q")) quiet = true;
        else {
            usage(stderr);
            die("unknown option %s", a);
        }
#undef ARG
    }
    if ((rate > 0) == (conc > 0)) die("give one of --rate R (open loop) and --concurrency C (closed loop)");
    if (max_conc && conc) die("--max-concurrency is for the open loop (--rate)");
    signal(SIGPIPE, SIG_IGN);

    /* the server: http://HOST:PORT, a loopback address only */
    char host[256];
    int port = 80;
    const char *u = url;
    if (!strncmp(u, "http://", 7)) u += 7;
    else if (strstr(u, "://")) die("--url %s: only http:// is spoken", url);
    const char *hs = u, *he;
    if (*hs == '[') {
        he = strchr(hs, ']');
        if (!he) die("--url %s: unclosed [", url);
        hs++;
    } else {
        he = hs + strcspn(hs, ":/");
    }
    if ((size_t)(he - hs) >= sizeof(host) || he == hs) die("--url %s: bad host", url);
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = 0;
    const char *pp = *he == ']' ? he + 1 : he;
    if (*pp == ':') port = atoi(pp + 1);
    if (port <= 0 || port > 65535) die("--url %s: bad port", url);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    int gerr = getaddrinfo(host, ports, &hints, &ai);
    if (gerr || !ai) die("--url %s: %s", url, gai_strerror(gerr));
    memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
    g_addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    bool loop = g_addr.ss_family == AF_INET ? (ntohl(((struct sockaddr_in *)&g_addr)->sin_addr.s_addr) >> 24) == 127
                                            : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&g_addr)->sin6_addr);
    if (!loop) die("--url %s: lvbench targets loopback addresses only (127.0.0.0/8, ::1)", url);
    char hh[300];
    snprintf(hh, sizeof(hh), "%s%s%s:%d", strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
    g_host_hdr = hh;

    /* the workload */
    rng_seed(seed);
    int n_items;
    item *items;
    if (workload) items = read_workload(workload, &n_items);
    else {
        n_items = n_req ? n_req : 64;
        items = gen_workload(n_items, &G);
    }
    if (!n_req) n_req = n_items;
    for (int i = 0; i < n_items; i++) {
        json_t *b = items[i].body;
        if (!json_object_get(b, "temperature")) json_object_set_new(b, "temperature", json_real(temperature));
        if (ignore_eos && !json_object_get(b, "ignore_eos")) json_object_set_new(b, "ignore_eos", json_true());
        if (!json_object_get(b, "max_tokens") && !json_object_get(b, "max_completion_tokens") && !json_object_get(b, "n_predict"))
            json_object_set_new(b, "max_tokens", json_integer(G.max_lo));
    }
    if (dump) {
        FILE *f = fopen(dump, "w");
        if (!f) die("cannot write %s: %s", dump, strerror(errno));
        for (int i = 0; i < n_items; i++) put_line(f, items[i].body);
        if (fclose(f)) die("cannot write %s", dump);
    }
    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "w"))) die("cannot write %s: %s", out_path, strerror(errno));

    /* arrivals (seconds from the start): open loop drawn now, closed loop as requests end */
    double *arrive = calloc((size_t)n_req, sizeof(double));
    if (!arrive) die("out of memory");
    if (rate > 0 && isfinite(rate)) {
        double t = 0;
        for (int i = 0; i < n_req; i++) {
            if (i) t += rng_gamma(burst) / (burst * rate);
            arrive[i] = t;
        }
        /* rescaled so that the n requests span n / rate seconds, as vLLM's bench does: a short run
         * keeps the shape of its draws but offers the rate asked for */
        if (n_req > 1 && t > 0)
            for (int i = 0; i < n_req; i++) arrive[i] *= (double)n_req / rate / t;
    }
    int slots = conc ? conc : max_conc ? max_conc : n_req;
    req *R = calloc((size_t)slots, sizeof(req));
    struct pollfd *pfd = calloc((size_t)slots, sizeof(struct pollfd));
    int *pmap = calloc((size_t)slots, sizeof(int));
    result *res = calloc((size_t)n_req, sizeof(result));
    if (!R || !pfd || !pmap || !res) die("out of memory");
    for (int i = 0; i < slots; i++) R[i].fd = -1;

    /* warm-up: one at a time, not recorded */
    for (int w = 0; w < warmup; w++) {
        req *r = &R[0];
        r->item = w % n_items;
        req_start(r, items[r->item].body, now_s());
        double dl = now_s() + timeout;
        while (r->state != C_DONE && now_s() < dl) {
            struct pollfd p = {.fd = r->fd, .events = r->state == C_CONNECTING || r->state == C_SENDING ? POLLOUT : POLLIN};
            if (poll(&p, 1, 100) > 0) req_io(r, now_s());
        }
        result tmp;
        finish_req(r, &tmp, 0);
        free(tmp.itl);
        if (!tmp.ok) die("warm-up request failed: %s", tmp.err[0] ? tmp.err : "timeout");
    }

    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    int next = 0, done = 0, inflight = 0;
    bool stop_sending = false;
    while (done < next || (!stop_sending && next < n_req)) {
        double t = now_s();
        if (duration > 0 && t - t0 >= duration) stop_sending = true;
        /* send what is due */
        while (!stop_sending && next < n_req && inflight < slots && (conc || arrive[next] <= t - t0)) {
            int s = 0;
            while (R[s].state != C_IDLE) s++;
            req *r = &R[s];
            r->idx = next;
            r->item = next % n_items;
            r->t_sched = conc ? t : t0 + arrive[next];
            req_start(r, items[r->item].body, t);
            next++;
            inflight++;
        }
        /* collect what ended, poll the rest */
        int np = 0;
        double wait = 0.1;
        for (int s = 0; s < slots; s++) {
            req *r = &R[s];
            if (r->state == C_IDLE) continue;
            if (r->state == C_DONE || t - r->t_send > timeout) {
                if (r->state != C_DONE) {
                    req_fail(r, "no answer within --timeout %g s", timeout);
                    r->t_end = t;
                }
                finish_req(r, &res[done++], t0);
                inflight--;
                continue;
            }
            pfd[np] = (struct pollfd){.fd = r->fd, .events = r->state == C_CONNECTING || r->state == C_SENDING ? POLLOUT : POLLIN};
            pmap[np++] = s;
            double dl = r->t_send + timeout - t;
            if (dl < wait) wait = dl;
        }
        if (!stop_sending && next < n_req && !conc && inflight < slots) {
            double d = t0 + arrive[next] - t;
            if (d < wait) wait = d;
        }
        if (!np && !(next < n_req && !stop_sending)) continue;
        if (wait < 0) wait = 0;
        int k = poll(pfd, (nfds_t)np, (int)ceil(wait * 1000));
        if (k < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        double tn = now_s();
        for (int j = 0; k > 0 && j < np; j++) {
            if (!pfd[j].revents) continue;
            req *r = &R[pmap[j]];
            req_io(r, tn);
            if (r->state == C_DONE) r->t_end = tn;
        }
    }
    double t_end = now_s();
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + 1e-6 * (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + 1e-6 * (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);

    /* per request lines, then the summary */
    int n = done, n_ok = 0, n_refused = 0, n_failed = 0, n_good = 0;
    int64_t tok_out = 0, tok_in = 0, tok_cached = 0;
    double *ttft = malloc(sizeof(double) * (size_t)(n + 1)), *tpot = malloc(sizeof(double) * (size_t)(n + 1)),
           *e2e = malloc(sizeof(double) * (size_t)(n + 1));
    size_t n_itl_all = 0;
    for (int i = 0; i < n; i++) n_itl_all += (size_t)res[i].n_itl;
    double *itl = malloc(sizeof(double) * (n_itl_all + 1));
    if (!ttft || !tpot || !e2e || !itl) die("out of memory");
    int n_ttft = 0, n_tpot = 0, n_e2e = 0;
    size_t k_itl = 0;
    double last_first = 0, first_send = INFINITY, last_end = 0;
    for (int i = 0; i < n; i++) {
        result *o = &res[i];
        if (o->t_send < first_send) first_send = o->t_send;
        double end = o->t_send + o->e2e;
        if (end > last_end) last_end = end;
        if (o->ok) {
            n_ok++;
            if (isfinite(o->ttft)) ttft[n_ttft++] = o->ttft;
            if (isfinite(o->tpot)) tpot[n_tpot++] = o->tpot;
            e2e[n_e2e++] = o->e2e;
            for (int j = 0; j < o->n_itl; j++) itl[k_itl++] = o->itl[j];
            tok_out += o->completion_tokens >= 0 ? o->completion_tokens : o->n_chunks;
            if (o->prompt_tokens > 0) tok_in += o->prompt_tokens;
            if (o->cached_tokens > 0) tok_cached += o->cached_tokens;
            if (isfinite(o->t_first_abs) && o->t_first_abs > last_first) last_first = o->t_first_abs;
            bool good = isfinite(o->ttft) && (!slo_ttft || o->ttft <= slo_ttft) && (!slo_tpot || (isfinite(o->tpot) && o->tpot <= slo_tpot)) &&
                        (!slo_e2e || o->e2e <= slo_e2e);
            n_good += good;
        } else if (o->refused) n_refused++;
        else n_failed++;
        if (!no_requests) {
            json_t *l = json_object();
            json_object_set_new(l, "type", json_string("request"));
            if (label) json_object_set_new(l, "label", json_string(label));
            json_object_set_new(l, "i", json_integer(o->idx));
            json_object_set_new(l, "item", json_integer(o->item));
            json_object_set_new(l, "t_sched", jnum(o->t_sched));
            json_object_set_new(l, "t_send", jnum(o->t_send));
            json_object_set_new(l, "status", json_integer(o->status));
            json_object_set_new(l, "ok", json_boolean(o->ok));
            json_object_set_new(l, "refused", json_boolean(o->refused));
            json_object_set_new(l, "error", o->err[0] && !o->ok ? json_string(o->err) : json_null());
            json_object_set_new(l, "n_prompt", items[o->item].n_prompt >= 0 ? json_integer(items[o->item].n_prompt) : json_null());
            json_object_set_new(l, "prompt_tokens", o->prompt_tokens >= 0 ? json_integer(o->prompt_tokens) : json_null());
            json_object_set_new(l, "cached_tokens", o->cached_tokens >= 0 ? json_integer(o->cached_tokens) : json_null());
            json_object_set_new(l, "completion_tokens", o->completion_tokens >= 0 ? json_integer(o->completion_tokens) : json_null());
            json_object_set_new(l, "n_chunks", json_integer(o->n_chunks));
            json_object_set_new(l, "finish_reason", o->finish[0] ? json_string(o->finish) : json_null());
            json_object_set_new(l, "ttft", jnum(o->ttft));
            json_object_set_new(l, "tpot", jnum(o->tpot));
            json_object_set_new(l, "e2e", jnum(o->e2e));
            json_t *a = json_array();
            for (int j = 0; j < o->n_itl; j++) json_array_append_new(a, jnum(o->itl[j]));
            json_object_set_new(l, "itl", a);
            put_line(out, l);
            json_decref(l);
        }
    }
    double span = n ? last_end - (isfinite(first_send) ? first_send : 0) : 0;
    if (span <= 0) span = t_end - t0;
    json_t *S = json_object();
    json_object_set_new(S, "type", json_string("summary"));
    if (label) json_object_set_new(S, "label", json_string(label));
    json_object_set_new(S, "url", json_string(url));
    json_object_set_new(S, "endpoint", json_string(g_path));
    json_object_set_new(S, "mode", json_string(conc ? "closed" : isfinite(rate) ? "open" : "burst"));
    json_object_set_new(S, "rate", conc || !isfinite(rate) ? json_null() : json_real(rate));
    json_object_set_new(S, "burstiness", conc || !isfinite(rate) ? json_null() : json_real(burst));
    json_object_set_new(S, "concurrency", conc ? json_integer(conc) : max_conc ? json_integer(max_conc) : json_null());
    json_object_set_new(S, "requests", json_integer(n));
    json_object_set_new(S, "not_sent", json_integer(n_req - next));
    json_object_set_new(S, "ok", json_integer(n_ok));
    json_object_set_new(S, "refused", json_integer(n_refused));
    json_object_set_new(S, "failed", json_integer(n_failed));
    json_object_set_new(S, "duration_s", jnum(span));
    json_object_set_new(S, "prompt_tokens", json_integer(tok_in));
    json_object_set_new(S, "cached_tokens", json_integer(tok_cached));
    json_object_set_new(S, "completion_tokens", json_integer(tok_out));
    json_object_set_new(S, "request_throughput", jnum(n_ok / span));
    json_object_set_new(S, "output_throughput", jnum((double)tok_out / span));
    json_object_set_new(S, "all_first_token_s", n_ok ? jnum(last_first - first_send) : json_null());
    json_object_set_new(S, "slo", json_pack("{s:o,s:o,s:o}", "ttft", slo_ttft ? json_real(slo_ttft) : json_null(), "tpot",
                                            slo_tpot ? json_real(slo_tpot) : json_null(), "e2e", slo_e2e ? json_real(slo_e2e) : json_null()));
    json_object_set_new(S, "good", json_integer(n_good));
    json_object_set_new(S, "goodput", jnum(n_good / span));
    json_object_set_new(S, "ttft", dist(ttft, n_ttft)); /* sorts ttft */
    double med_ttft = n_ttft ? pct(ttft, n_ttft, 50) : NAN, p99_ttft = n_ttft ? pct(ttft, n_ttft, 99) : NAN;
    json_object_set_new(S, "tpot", dist(tpot, n_tpot));
    double med_tpot = n_tpot ? pct(tpot, n_tpot, 50) : NAN;
    json_object_set_new(S, "itl", dist(itl, (int)k_itl));
    json_object_set_new(S, "e2e", dist(e2e, n_e2e));
    json_object_set_new(S, "client_cpu_s", jnum(cpu));
    put_line(out, S);
    if (!quiet)
        fprintf(stderr,
                "lvbench: %d requests: %d ok, %d refused, %d failed in %.2f s; %.2f req/s, %.1f output tok/s; TTFT p50 %.3f p99 %.3f s; "
                "TPOT p50 %.4f s; all first tokens by %.2f s; goodput %.2f req/s (%d good); client CPU %.2f s\n",
                n, n_ok, n_refused, n_failed, span, n_ok / span, (double)tok_out / span, med_ttft, p99_ttft, med_tpot,
                n_ok ? last_first - first_send : NAN, n_good / span, n_good, cpu);
    if (n_failed)
        for (int i = 0; i < n; i++)
            if (!res[i].ok && !res[i].refused) {
                fprintf(stderr, "lvbench: error: %d of %d requests failed; the first: request %d: %s\n", n_failed, n, res[i].idx,
                        res[i].err[0] ? res[i].err : "(no detail)");
                break;
            }
    json_decref(S);
    if (out != stdout) fclose(out);
    for (int i = 0; i < n; i++) free(res[i].itl);
    for (int i = 0; i < n_items; i++) json_decref(items[i].body);
    free(items);
    free(res);
    free(R);
    free(pfd);
    free(pmap);
    free(arrive);
    free(ttft);
    free(tpot);
    free(e2e);
    free(itl);
    return n_failed ? 1 : 0;
}

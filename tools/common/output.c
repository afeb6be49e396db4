/*
 * output.c: output files that appear whole or not at all (see cli.h, cli_out).
 *
 * A command that writes a model or a long output writes it to "PATH.tmp-PID" in PATH's directory
 * and renames it over PATH once it is complete (rename within a directory is atomic), so a run
 * that fails or is stopped never leaves a partial file at PATH, and whatever was there before
 * stays until the new one is whole. SIGINT / SIGTERM / SIGHUP remove the temporaries still open,
 * then the signal does what it would have done.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* the temporaries open now, for the signal handler: fixed storage, written before the handler can
 * see them (a slot is published by setting used last, and cleared first) */
#define MAX_OPEN 8
static struct {
    char path[4096];
    volatile sig_atomic_t used;
} g_open[MAX_OPEN];
static bool g_handlers;

static void on_signal(int sig) {
    for (int i = 0; i < MAX_OPEN; i++)
        if (g_open[i].used) unlink(g_open[i].path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int track(const char *tmp) {
    if (!g_handlers) {
        g_handlers = true;
        const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
            struct sigaction sa, old;
            memset(&sa, 0, sizeof(sa));
            sa.sa_handler = on_signal;
            sigemptyset(&sa.sa_mask);
            /* leave a signal the caller ignores (nohup) ignored */
            if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
            sigaction(sigs[i], &sa, NULL);
        }
    }
    if (strlen(tmp) >= sizeof(g_open[0].path)) return -1;
    for (int i = 0; i < MAX_OPEN; i++)
        if (!g_open[i].used) {
            strcpy(g_open[i].path, tmp);
            g_open[i].used = 1;
            return i;
        }
    return -1; /* not tracked: still removed on every path but a signal */
}

static void untrack(const char *tmp) {
    for (int i = 0; i < MAX_OPEN; i++)
        if (g_open[i].used && strcmp(g_open[i].path, tmp) == 0) {
            g_open[i].used = 0;
            return;
        }
}

FILE *cli_out_open(cli_out *o, const char *path, bool binary) {
    memset(o, 0, sizeof(*o));
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        o->path = "-";
        return o->f;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        cli_error("cannot write '%s': it is a directory", path);
        return NULL;
    }
    const size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) {
        cli_error("out of memory");
        return NULL;
    }
    int fd = -1;
    for (int k = 0; k < 100 && fd < 0; k++) {
        if (k == 0) snprintf(tmp, n, "%s.tmp-%ld", path, (long)getpid());
        else snprintf(tmp, n, "%s.tmp-%ld-%d", path, (long)getpid(), k);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666); /* the umask applies, as for a plain fopen */
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        cli_error("cannot create '%s' (written there, then renamed to '%s'): %s", tmp, path, strerror(errno));
        free(tmp);
        return NULL;
    }
    FILE *f = fdopen(fd, binary ? "wb" : "w");
    if (!f) {
        cli_error("cannot write '%s': %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return NULL;
    }
    track(tmp);
    o->f = f;
    o->path = path;
    o->tmp = tmp;
    return f;
}

int cli_out_commit(cli_out *o) {
    if (!o->f) return -1;
    if (!o->tmp) { /* stdout */
        const int bad = fflush(o->f) != 0 || ferror(o->f);
        o->f = NULL;
        if (bad) cli_error("writing to standard output failed: %s", strerror(errno));
        return bad ? -1 : 0;
    }
    int bad = fflush(o->f) != 0 || ferror(o->f);
    int err = errno;
    if (!bad && fsync(fileno(o->f)) != 0 && errno != EINVAL) bad = 1, err = errno;
    if (fclose(o->f) != 0 && !bad) bad = 1, err = errno;
    o->f = NULL;
    if (!bad && rename(o->tmp, o->path) != 0) bad = 1, err = errno;
    if (bad) {
        cli_error("writing '%s' failed: %s (nothing was written there)", o->path, strerror(err));
        unlink(o->tmp);
    }
    untrack(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    return bad ? -1 : 0;
}

void cli_out_abort(cli_out *o) {
    if (!o->f) return;
    if (o->tmp) {
        fclose(o->f);
        unlink(o->tmp);
        untrack(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
    o->f = NULL;
}

/*
 * Inlining of the application's headers into program sources (include.h
 * states the rules).
 *
 * The scanner is a small C lexer: line splices (backslash, optional
 * blanks, newline) may appear anywhere, comments become blanks, string and
 * character literals end at their quote or at the end of the line. It
 * reports each directive (its `#`, the end of its logical line, its name
 * and first argument) and each line that holds other tokens; the inliner
 * copies the text and replaces the directives it resolves.
 */
#include "include.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- option parsing ---- */

static int rgpu_inc_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void rgpu_inc_why(char *why, size_t why_cap, const char *fmt, ...)
{
    va_list ap;

    if (!why || !why_cap)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_cap, fmt, ap);
    va_end(ap);
}

/* One blank-separated word of the options: [start, end) as written, value
 * with its quotes removed (malloc'd). Returns 1 with a word, 0 at the end,
 * -1 for an unterminated quote, -2 out of memory. */
static int rgpu_inc_word(const char *s, size_t *at, size_t *start_p, size_t *end_p, char **value_p)
{
    size_t i = *at, n = 0;
    char *value;

    while (s[i] && rgpu_inc_is_blank(s[i]))
        i++;
    if (!s[i])
        return 0;
    *start_p = i;
    value = malloc(strlen(s + i) + 1);
    if (!value)
        return -2;
    while (s[i] && !rgpu_inc_is_blank(s[i])) {
        char q = s[i];
        if (q != '"' && q != '\'') {
            value[n++] = s[i++];
            continue;
        }
        for (i++; s[i] && s[i] != q; i++) {
            if (q == '"' && s[i] == '\\' && (s[i + 1] == '"' || s[i + 1] == '\\'))
                i++;
            value[n++] = s[i];
        }
        if (!s[i]) {
            free(value);
            return -1;
        }
        i++;
    }
    value[n] = '\0';
    *end_p = i;
    *at = i;
    *value_p = value;
    return 1;
}

void rgpu__cl_include_opts_free(rgpu_cl_include_opts_t *opts)
{
    for (size_t i = 0; i < opts->n_dirs; i++)
        free(opts->dirs[i]);
    free(opts->dirs);
    free(opts->options);
    opts->dirs = NULL;
    opts->options = NULL;
    opts->n_dirs = 0;
}

/* Options whose argument is the next word: that word is never an option. */
static int rgpu_inc_takes_arg(const char *word)
{
    static const char *const with_arg[] = {"-D", "-U", "-include", "-imacros", "-isystem", "-iquote",
                                           "-idirafter", "-x", "-o", "-Xclang", "-mllvm"};

    for (size_t i = 0; i < sizeof(with_arg) / sizeof(with_arg[0]); i++) {
        if (strcmp(word, with_arg[i]) == 0)
            return 1;
    }
    return 0;
}

rgpu_status_t rgpu__cl_include_opts_parse(const char *options, rgpu_cl_include_opts_t *opts_p, char *why,
                                          size_t why_cap)
{
    rgpu_cl_include_opts_t opts = {0};
    rgpu_status_t status = RGPU_OK;
    size_t at = 0, start, end, out = 0, keep_from = 0;
    int skip_next = 0, r = 0;
    char *value = NULL;

    if (!options)
        options = "";
    opts.options = malloc(strlen(options) + 1);
    opts.dirs = calloc(strlen(options) / 2 + 1, sizeof(char *));
    if (!opts.options || !opts.dirs) {
        status = RGPU_ERR_NOMEM;
        goto out_free;
    }
    while (status == RGPU_OK && (r = rgpu_inc_word(options, &at, &start, &end, &value)) > 0) {
        size_t from = start;
        char *dir = NULL;

        if (skip_next) {
            skip_next = 0;
        } else if (strcmp(value, "-I") == 0 || strcmp(value, "--include-directory") == 0) {
            /* The directory is the next word. */
            r = rgpu_inc_word(options, &at, &start, &end, &dir);
            if (r == 0)
                rgpu_inc_why(why, why_cap, "build option \"%s\" has no directory", value);
        } else if (strncmp(value, "-I", 2) == 0) {
            if (!(dir = strdup(value + 2)))
                r = -2;
        } else if (strncmp(value, "--include-directory=", 20) == 0) {
            if (!(dir = strdup(value + 20)))
                r = -2;
        } else {
            skip_next = rgpu_inc_takes_arg(value);
        }
        free(value);
        value = NULL;
        if (r == 1 && dir && !*dir) {
            rgpu_inc_why(why, why_cap, "build option \"-I\" has an empty directory");
            r = 0;
        }
        if (r != 1) {
            free(dir);
            status = r == -2 ? RGPU_ERR_NOMEM : RGPU_ERR_INVALID_ARG;
            if (r == -1)
                rgpu_inc_why(why, why_cap, "build options have an unterminated quote");
            break;
        }
        if (!dir)
            continue;
        opts.dirs[opts.n_dirs++] = dir;
        /* Cut the words out with the blanks after them. */
        memcpy(opts.options + out, options + keep_from, from - keep_from);
        out += from - keep_from;
        while (options[end] && rgpu_inc_is_blank(options[end]))
            end++;
        keep_from = at = end;
    }
    if (status == RGPU_OK && r < 0) {
        status = r == -2 ? RGPU_ERR_NOMEM : RGPU_ERR_INVALID_ARG;
        if (r == -1)
            rgpu_inc_why(why, why_cap, "build options have an unterminated quote");
    }
    if (status != RGPU_OK)
        goto out_free;
    memcpy(opts.options + out, options + keep_from, strlen(options + keep_from));
    out += strlen(options + keep_from);
    while (out > 0 && rgpu_inc_is_blank(opts.options[out - 1]))
        out--;
    opts.options[out] = '\0';
    *opts_p = opts;
    return RGPU_OK;

out_free:
    rgpu__cl_include_opts_free(&opts);
    return status;
}

/* ---- the scanner ---- */

typedef struct {
    const char *b;
    size_t len;
} rgpu_inc_src_t;

/* The index of the first character at or after i that does not start a
 * line splice (a backslash, optional blanks, a newline: clang and gcc
 * accept the blanks). */
static size_t rgpu_inc_splice(const rgpu_inc_src_t *s, size_t i)
{
    while (i < s->len && s->b[i] == '\\') {
        size_t j = i + 1;
        while (j < s->len && (s->b[j] == ' ' || s->b[j] == '\t'))
            j++;
        if (j < s->len && s->b[j] == '\n')
            i = j + 1;
        else if (j < s->len && s->b[j] == '\r' && j + 1 < s->len && s->b[j + 1] == '\n')
            i = j + 2;
        else
            break;
    }
    return i;
}

/* The character at *i past any splices (*i moves to it), or -1 at the end. */
static int rgpu_inc_at(const rgpu_inc_src_t *s, size_t *i)
{
    *i = rgpu_inc_splice(s, *i);
    return *i < s->len ? (unsigned char)s->b[*i] : -1;
}

/* The character after the one at i (past splices), or -1. */
static int rgpu_inc_next(const rgpu_inc_src_t *s, size_t i)
{
    size_t j = i + 1;
    return rgpu_inc_at(s, &j);
}

/* Past the block comment whose text starts at i (after the slash-star). */
static size_t rgpu_inc_skip_block(const rgpu_inc_src_t *s, size_t i)
{
    int c;

    while ((c = rgpu_inc_at(s, &i)) != -1) {
        if (c == '*' && rgpu_inc_next(s, i) == '/') {
            i++;
            rgpu_inc_at(s, &i);
            return i + 1;
        }
        i++;
    }
    return s->len;
}

/* To the newline (not consumed) that ends a line comment or an
 * unterminated literal; past the closing quote of a literal. quote is 0
 * for a comment. */
static size_t rgpu_inc_skip_to(const rgpu_inc_src_t *s, size_t i, int quote)
{
    int c;

    while ((c = rgpu_inc_at(s, &i)) != -1 && c != '\n') {
        if (quote && c == quote)
            return i + 1;
        if (quote && c == '\\') {
            int e;
            i++;
            if ((e = rgpu_inc_at(s, &i)) == '\n' || e == -1)
                break;
        }
        i++;
    }
    return i;
}

static int rgpu_inc_hblank(int c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r' || c == '\0';
}

/* Past blanks and comments on this logical line (a block comment may span
 * lines: it is one blank). */
static size_t rgpu_inc_skip_blanks(const rgpu_inc_src_t *s, size_t i)
{
    for (;;) {
        int c = rgpu_inc_at(s, &i);
        if (rgpu_inc_hblank(c)) {
            i++;
            continue;
        }
        if (c == '/' && rgpu_inc_next(s, i) == '*') {
            i++;
            rgpu_inc_at(s, &i);
            i = rgpu_inc_skip_block(s, i + 1);
            continue;
        }
        if (c == '/' && rgpu_inc_next(s, i) == '/') {
            i++;
            rgpu_inc_at(s, &i);
            return rgpu_inc_skip_to(s, i + 1, 0);
        }
        return i;
    }
}

/* The newline that ends the logical line at i (not in a comment), or len. */
static size_t rgpu_inc_line_end(const rgpu_inc_src_t *s, size_t i)
{
    int c;

    for (;;) {
        i = rgpu_inc_skip_blanks(s, i);
        c = rgpu_inc_at(s, &i);
        if (c == -1 || c == '\n')
            return i;
        i = c == '"' || c == '\'' ? rgpu_inc_skip_to(s, i + 1, c) : i + 1;
    }
}

static int rgpu_inc_ident_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
}

/* Reads an identifier at *i into buf (cap bytes); "" when there is none or
 * it does not fit. */
static void rgpu_inc_ident(const rgpu_inc_src_t *s, size_t *i, char *buf, size_t cap)
{
    size_t n = 0;
    int c;

    while (rgpu_inc_ident_char(c = rgpu_inc_at(s, i))) {
        if (n + 1 < cap)
            buf[n] = (char)c;
        n++;
        (*i)++;
    }
    buf[n < cap ? n : 0] = '\0';
}

#define RGPU_INC_IDENT_MAX 256

typedef struct {
    size_t start;                       /* the '#' (or "%:") */
    size_t end;                         /* the newline that ends it, or len */
    char name[16];                      /* "include", "pragma", ... or "" */
    char arg[RGPU_INC_IDENT_MAX];       /* the first identifier after the name, or "" */
    int arg_alone;                      /* nothing but blanks after arg */
    int delim;                          /* include: '"' or '<' (the operand is a header name), or 0 */
    char *header;                       /* include: the name between the delimiters (malloc'd) */
} rgpu_inc_directive_t;

/* Parses the directive whose '#' (or "%:") is at i. Returns 0, or -1 when
 * out of memory. */
static int rgpu_inc_directive(const rgpu_inc_src_t *s, size_t i, rgpu_inc_directive_t *d)
{
    int c;

    memset(d, 0, sizeof(*d));
    d->start = i;
    if (s->b[i] == '%') {
        i++;
        rgpu_inc_at(s, &i);
    }
    i = rgpu_inc_skip_blanks(s, i + 1);
    rgpu_inc_ident(s, &i, d->name, sizeof(d->name));
    i = rgpu_inc_skip_blanks(s, i);
    c = rgpu_inc_at(s, &i);
    if (strcmp(d->name, "include") == 0 && (c == '"' || c == '<')) {
        int close = c == '"' ? '"' : '>';
        size_t n = 0, cap = 64;
        char *h = malloc(cap);

        if (!h)
            return -1;
        for (i++; (c = rgpu_inc_at(s, &i)) != -1 && c != '\n' && c != close; i++) {
            if (n + 1 == cap) {
                char *more = realloc(h, cap *= 2);
                if (!more) {
                    free(h);
                    return -1;
                }
                h = more;
            }
            h[n++] = (char)c;
        }
        h[n] = '\0';
        if (c == close) {
            d->delim = close == '"' ? '"' : '<';
            d->header = h;
            i++;
        } else {
            free(h);
        }
    } else if (rgpu_inc_ident_char(c)) {
        rgpu_inc_ident(s, &i, d->arg, sizeof(d->arg));
        i = rgpu_inc_skip_blanks(s, i);
        c = rgpu_inc_at(s, &i);
        d->arg_alone = c == -1 || c == '\n';
    }
    d->end = rgpu_inc_line_end(s, i);
    return 0;
}

/* What the scanner reports: a directive, or a logical line's first token
 * outside directives. Returns 0 to go on, or a status to stop with. */
typedef rgpu_status_t (*rgpu_inc_event_fn)(void *arg, const rgpu_inc_directive_t *d, size_t token_at);

/* Calls fn for each directive (d set) and the first other token of each
 * line (d NULL), in order. */
static rgpu_status_t rgpu_inc_scan(const rgpu_inc_src_t *s, rgpu_inc_event_fn fn, void *arg)
{
    rgpu_inc_directive_t d;
    rgpu_status_t status;
    int bol = 1, token_seen = 0, c;
    size_t i = 0;

    while ((c = rgpu_inc_at(s, &i)) != -1) {
        if (c == '\n') {
            bol = 1;
            token_seen = 0;
            i++;
        } else if (rgpu_inc_hblank(c)) {
            i++;
        } else if (c == '/' && rgpu_inc_next(s, i) == '*') {
            i++;
            rgpu_inc_at(s, &i);
            i = rgpu_inc_skip_block(s, i + 1);
        } else if (c == '/' && rgpu_inc_next(s, i) == '/') {
            i++;
            rgpu_inc_at(s, &i);
            i = rgpu_inc_skip_to(s, i + 1, 0);
        } else if (bol && (c == '#' || (c == '%' && rgpu_inc_next(s, i) == ':'))) {
            if (rgpu_inc_directive(s, i, &d) != 0)
                return RGPU_ERR_NOMEM;
            status = fn(arg, &d, 0);
            free(d.header);
            if (status != RGPU_OK)
                return status;
            i = d.end;
        } else {
            bol = 0;
            if (!token_seen) {
                token_seen = 1;
                if ((status = fn(arg, NULL, i)) != RGPU_OK)
                    return status;
            }
            i = c == '"' || c == '\'' ? rgpu_inc_skip_to(s, i + 1, c) : i + 1;
        }
    }
    return RGPU_OK;
}

/* ---- what a file is: #pragma once, include guard ---- */

typedef struct {
    int once;                           /* has #pragma once */
    int guard_state;                    /* 0 start, 1 #ifndef X seen, 2 inside, 3 closed, -1 not guarded */
    unsigned depth;                     /* #if nesting while inside */
    char guard[RGPU_INC_IDENT_MAX];
} rgpu_inc_kind_t;

static rgpu_status_t rgpu_inc_kind_event(void *arg, const rgpu_inc_directive_t *d, size_t token_at)
{
    rgpu_inc_kind_t *k = arg;

    (void)token_at;
    if (d && strcmp(d->name, "pragma") == 0 && strcmp(d->arg, "once") == 0 && d->arg_alone)
        k->once = 1;
    switch (k->guard_state) {
    case 0:
        k->guard_state = d && strcmp(d->name, "ifndef") == 0 && *d->arg && d->arg_alone ? 1 : -1;
        if (k->guard_state == 1)
            memcpy(k->guard, d->arg, sizeof(k->guard));
        break;
    case 1:
        k->guard_state = d && strcmp(d->name, "define") == 0 && strcmp(d->arg, k->guard) == 0 ? 2 : -1;
        k->depth = 1;
        break;
    case 2:
        if (!d)
            break;
        if (strcmp(d->name, "if") == 0 || strcmp(d->name, "ifdef") == 0 || strcmp(d->name, "ifndef") == 0)
            k->depth++;
        else if (strcmp(d->name, "endif") == 0 && --k->depth == 0)
            k->guard_state = 3;
        else if (k->depth == 1 && strncmp(d->name, "el", 2) == 0)
            k->guard_state = -1;
        break;
    case 3:
        k->guard_state = -1;
        break;
    default:
        break;
    }
    return RGPU_OK;
}

/* ---- the inliner ---- */

typedef struct {
    dev_t dev;
    ino_t ino;
    int emitted;                        /* inlined before (inside its generated guard) */
    int definite;                       /* inlined once outside any #if: later ones are empty */
} rgpu_inc_once_t;

typedef struct {
    const rgpu_cl_include_cfg_t *cfg;
    const char *cwd;
    unsigned max_depth;
    size_t max_size;
    char *out;
    size_t len, cap;
    rgpu_inc_once_t *once;              /* files with #pragma once; the index names their guard */
    size_t n_once, cap_once;
    int inlined;
    char *why;
    size_t why_cap;
} rgpu_inc_t;

/* One file being inlined (the program source is the outermost). */
typedef struct rgpu_inc_frame {
    const struct rgpu_inc_frame *parent;
    rgpu_inc_src_t src;
    const char *name;                   /* for #line and messages */
    const char *dir;                    /* where its "name" includes look first; NULL for the source */
    dev_t dev;
    ino_t ino;
    int guarded;                        /* include guard or #pragma once: a nested inclusion is empty */
    unsigned depth;                     /* 0 for the source */
    unsigned cond_base;                 /* #if nesting around this file (0: it is read for sure) */
    unsigned cond;                      /* #if nesting inside it, at the current directive */
    size_t copied;                      /* text up to here is in the output */
    size_t line;                        /* the line number at line_at */
    size_t line_at;
    rgpu_inc_t *inc;
} rgpu_inc_frame_t;

static rgpu_status_t rgpu_inc_put(rgpu_inc_t *inc, const char *text, size_t n, int nul_to_space)
{
    if (n > inc->max_size - inc->len)
        return RGPU_ERR_TOO_LARGE;
    if (inc->len + n + 1 > inc->cap) {
        size_t cap = inc->cap ? inc->cap : 4096;
        char *more;
        while (cap < inc->len + n + 1)
            cap *= 2;
        if (!(more = realloc(inc->out, cap)))
            return RGPU_ERR_NOMEM;
        inc->out = more;
        inc->cap = cap;
    }
    memcpy(inc->out + inc->len, text, n);
    if (nul_to_space) {
        for (char *p = memchr(inc->out + inc->len, '\0', n); p; p = memchr(p, '\0', inc->out + inc->len + n - p))
            *p = ' ';
    }
    inc->len += n;
    inc->out[inc->len] = '\0';
    return RGPU_OK;
}

static rgpu_status_t rgpu_inc_putf(rgpu_inc_t *inc, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return rgpu_inc_put(inc, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, 0);
}

/* #line N "name", the name escaped as a string literal, and a newline
 * when asked. */
static rgpu_status_t rgpu_inc_put_line(rgpu_inc_t *inc, size_t line, const char *name, int newline)
{
    rgpu_status_t status = rgpu_inc_putf(inc, "#line %zu \"", line);

    for (const unsigned char *p = (const unsigned char *)name; status == RGPU_OK && *p; p++) {
        if (*p == '"' || *p == '\\')
            status = rgpu_inc_putf(inc, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            status = rgpu_inc_putf(inc, "\\%03o", *p);
        else
            status = rgpu_inc_put(inc, (const char *)p, 1, 0);
    }
    return status == RGPU_OK ? rgpu_inc_put(inc, "\"\n", newline ? 2 : 1, 0) : status;
}

/* The line number of position at in the frame's text. */
static size_t rgpu_inc_line(rgpu_inc_frame_t *f, size_t at)
{
    for (const char *p = f->src.b + f->line_at, *e = f->src.b + at; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        f->line++;
    f->line_at = at;
    return f->line;
}

/* Copies the frame's text up to at, then as many newlines as [at, end)
 * holds in place of it (the lines stay where they were). */
static rgpu_status_t rgpu_inc_blank_out(rgpu_inc_frame_t *f, size_t at, size_t end)
{
    rgpu_status_t status = rgpu_inc_put(f->inc, f->src.b + f->copied, at - f->copied, 1);

    for (size_t i = at; status == RGPU_OK && i < end; i++) {
        if (f->src.b[i] == '\n')
            status = rgpu_inc_put(f->inc, "\n", 1, 0);
    }
    f->copied = end;
    return status;
}

static char *rgpu_inc_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    char *path;

    if (name[0] == '/' || !*dir)
        return strdup(name);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    path = malloc(n + strlen(name) + 2);
    if (path)
        sprintf(path, "%.*s%s%s", (int)n, dir, dir[n - 1] == '/' ? "" : "/", name);
    return path;
}

/* Where header (delim '"' or '<') is found from frame f: *path_p is NULL
 * when nowhere (or when an embedded header of that name takes it). */
static rgpu_status_t rgpu_inc_find(const rgpu_inc_frame_t *f, const char *header, int delim, char **path_p)
{
    const rgpu_cl_include_cfg_t *cfg = f->inc->cfg;
    struct stat st;
    char *path;

    *path_p = NULL;
    if (!*header)
        return RGPU_OK;
    for (size_t i = (size_t)-2; i == (size_t)-2 || i == (size_t)-1 || i < cfg->n_dirs; i++) {
        const char *dir;
        if (i == (size_t)-2) {
            /* The including file's directory, for "name" from a header. */
            if (delim != '"' || !f->dir)
                continue;
            dir = f->dir;
        } else {
            if (i == (size_t)-1) {
                /* Embedded headers come before the search directories. */
                for (size_t e = 0; e < cfg->n_embedded; e++) {
                    if (cfg->embedded[e] && strcmp(cfg->embedded[e], header) == 0)
                        return RGPU_OK;
                }
            }
            dir = i == (size_t)-1 ? f->inc->cwd : cfg->dirs[i];
        }
        if (!(path = header[0] == '/' ? strdup(header) : rgpu_inc_join(dir, header)))
            return RGPU_ERR_NOMEM;
        if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
            *path_p = path;
            return RGPU_OK;
        }
        free(path);
        if (header[0] == '/')
            return RGPU_OK;
    }
    return RGPU_OK;
}

/* Reads the regular file at path (at most max bytes). */
static rgpu_status_t rgpu_inc_read(const char *path, size_t max, char **text_p, size_t *len_p, struct stat *st,
                                   int *errno_p)
{
    size_t len = 0;
    char *text;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    *errno_p = 0;
    if (fd < 0 || fstat(fd, st) != 0) {
        *errno_p = errno;
        if (fd >= 0)
            close(fd);
        return RGPU_ERR_IO;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return RGPU_ERR_IO;
    }
    if ((uint64_t)st->st_size > max) {
        close(fd);
        return RGPU_ERR_TOO_LARGE;
    }
    if (!(text = malloc((size_t)st->st_size + 1))) {
        close(fd);
        return RGPU_ERR_NOMEM;
    }
    for (;;) {
        ssize_t n = read(fd, text + len, (size_t)st->st_size + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *errno_p = errno;
            free(text);
            close(fd);
            return RGPU_ERR_IO;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == (size_t)st->st_size + 1) {
            /* It grew while we read it. */
            free(text);
            close(fd);
            return RGPU_ERR_TOO_LARGE;
        }
    }
    close(fd);
    *text_p = text;
    *len_p = len;
    return RGPU_OK;
}

static rgpu_status_t rgpu_inc_file(rgpu_inc_frame_t *f);

/* Whether text's last line ends in a backslash (a splice into what comes
 * after it). */
static int rgpu_inc_ends_in_splice(const char *text, size_t n)
{
    if (n && text[n - 1] == '\n')
        n--;
    if (n && text[n - 1] == '\r')
        n--;
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    return n && text[n - 1] == '\\';
}

/* Index of the file in the #pragma once table, added when absent; -1 when
 * out of memory. */
static long rgpu_inc_once_index(rgpu_inc_t *inc, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < inc->n_once; i++) {
        if (inc->once[i].dev == dev && inc->once[i].ino == ino)
            return (long)i;
    }
    if (inc->n_once == inc->cap_once) {
        size_t cap = inc->cap_once ? inc->cap_once * 2 : 8;
        rgpu_inc_once_t *more = realloc(inc->once, cap * sizeof(*more));
        if (!more)
            return -1;
        inc->once = more;
        inc->cap_once = cap;
    }
    inc->once[inc->n_once] = (rgpu_inc_once_t){dev, ino, 0, 0};
    return (long)inc->n_once++;
}

/* The #include directive d of frame f names the file at path: inline it. */
static rgpu_status_t rgpu_inc_include(rgpu_inc_frame_t *f, const rgpu_inc_directive_t *d, const char *path)
{
    rgpu_inc_t *inc = f->inc;
    rgpu_inc_kind_t kind = {0};
    rgpu_inc_frame_t child = {0};
    size_t line = rgpu_inc_line(f, d->end), len = 0;
    unsigned cond = f->cond_base + f->cond;
    struct stat st;
    long once = -1;
    char *text = NULL, *dir = NULL;
    int err = 0;
    rgpu_status_t status;

    status = rgpu_inc_read(path, inc->max_size, &text, &len, &st, &err);
    if (status == RGPU_ERR_IO) {
        rgpu_inc_why(inc->why, inc->why_cap, "cannot read header \"%s\" (#include at %s:%zu): %s", path, f->name,
                     line, err ? strerror(err) : "not a regular file");
        return status;
    }
    if (status == RGPU_ERR_TOO_LARGE)
        goto out_too_large;
    if (status != RGPU_OK)
        return status;
    /* A guarded file (or #pragma once) that is being inlined around us:
     * this inclusion would be empty. */
    for (const rgpu_inc_frame_t *a = f; a; a = a->parent) {
        if (a->depth && a->dev == st.st_dev && a->ino == st.st_ino && a->guarded) {
            free(text);
            return rgpu_inc_blank_out(f, d->start, d->end);
        }
    }
    if (f->depth + 1 > inc->max_depth) {
        rgpu_inc_why(inc->why, inc->why_cap,
                     "#include nested more than %u levels deep at %s:%zu (a cycle without include guards?)",
                     inc->max_depth, f->name, line);
        free(text);
        return RGPU_ERR_TOO_LARGE;
    }
    child.src = (rgpu_inc_src_t){text, len};
    if ((status = rgpu_inc_scan(&child.src, rgpu_inc_kind_event, &kind)) != RGPU_OK)
        goto out_free;
    if (kind.once) {
        if ((once = rgpu_inc_once_index(inc, st.st_dev, st.st_ino)) < 0) {
            status = RGPU_ERR_NOMEM;
            goto out_free;
        }
        if (inc->once[once].definite) {
            free(text);
            return rgpu_inc_blank_out(f, d->start, d->end);
        }
    }
    if (!(dir = strdup(path))) {
        status = RGPU_ERR_NOMEM;
        goto out_free;
    }
    if (strrchr(dir, '/'))
        *(strrchr(dir, '/') == dir ? dir + 1 : strrchr(dir, '/')) = '\0';
    else
        strcpy(dir, ".");
    child.parent = f;
    child.name = path;
    child.dir = dir;
    child.dev = st.st_dev;
    child.ino = st.st_ino;
    child.guarded = kind.once || kind.guard_state == 3;
    child.depth = f->depth + 1;
    child.line = 1;
    child.inc = inc;
    /* Inside a generated guard that may already be defined, the file is
     * not read for sure. */
    child.cond_base = cond + (once >= 0 && inc->once[once].emitted);
    status = rgpu_inc_put(inc, f->src.b + f->copied, d->start - f->copied, 1);
    f->copied = d->end;
    if (status == RGPU_OK && once >= 0)
        status = rgpu_inc_putf(inc, "#ifndef __RGPU_PRAGMA_ONCE_%ld\n#define __RGPU_PRAGMA_ONCE_%ld\n", once, once);
    if (status == RGPU_OK)
        status = rgpu_inc_put_line(inc, 1, path, 1);
    if (status == RGPU_OK)
        status = rgpu_inc_file(&child);
    if (status == RGPU_OK && len && text[len - 1] != '\n')
        status = rgpu_inc_put(inc, "\n", 1, 0);
    /* A last line that ends in a backslash would splice the next one. */
    if (status == RGPU_OK && rgpu_inc_ends_in_splice(text, len))
        status = rgpu_inc_put(inc, "\n", 1, 0);
    if (status == RGPU_OK && once >= 0)
        status = rgpu_inc_put(inc, "\n#endif\n", 8, 0);
    /* The directive's own newline follows, from the frame's text: the line
     * after it has the next number. */
    if (status == RGPU_OK)
        status = rgpu_inc_put_line(inc, line + 1, f->name, d->end == f->src.len);
    if (once >= 0) {
        inc->once[once].emitted = 1;
        inc->once[once].definite |= cond == 0;
    }
    inc->inlined = 1;
    if (status == RGPU_ERR_TOO_LARGE && inc->why && !*inc->why)
        goto out_too_large;
out_free:
    free(dir);
    free(text);
    return status;

out_too_large:
    rgpu_inc_why(inc->why, inc->why_cap,
                 "the program source with its headers inlined passes %zu bytes (#include \"%s\" at %s:%zu)",
                 inc->max_size, path, f->name, line);
    free(dir);
    free(text);
    return RGPU_ERR_TOO_LARGE;
}

static rgpu_status_t rgpu_inc_event(void *arg, const rgpu_inc_directive_t *d, size_t token_at)
{
    rgpu_inc_frame_t *f = arg;
    rgpu_status_t status;
    char *path;

    (void)token_at;
    if (!d)
        return RGPU_OK;
    if (strcmp(d->name, "if") == 0 || strcmp(d->name, "ifdef") == 0 || strcmp(d->name, "ifndef") == 0) {
        f->cond++;
    } else if (strcmp(d->name, "endif") == 0) {
        f->cond -= f->cond > 0;
    } else if (strcmp(d->name, "pragma") == 0 && strcmp(d->arg, "once") == 0 && d->arg_alone && f->depth) {
        /* The generated guard does its work (clang would warn about a
         * #pragma once in the main file). */
        return rgpu_inc_blank_out(f, d->start, d->end);
    } else if (strcmp(d->name, "include") == 0 && d->delim) {
        if ((status = rgpu_inc_find(f, d->header, d->delim, &path)) != RGPU_OK || !path)
            return status;
        status = rgpu_inc_include(f, d, path);
        free(path);
        return status;
    }
    return RGPU_OK;
}

/* Copies the frame's text with its directives resolved. */
static rgpu_status_t rgpu_inc_file(rgpu_inc_frame_t *f)
{
    rgpu_status_t status = rgpu_inc_scan(&f->src, rgpu_inc_event, f);

    if (status == RGPU_OK)
        status = rgpu_inc_put(f->inc, f->src.b + f->copied, f->src.len - f->copied, 1);
    return status;
}

rgpu_status_t rgpu__cl_include_inline(const char *source, size_t len, const rgpu_cl_include_cfg_t *cfg,
                                      char **out_p, char *why, size_t why_cap)
{
    rgpu_inc_t inc = {0};
    rgpu_inc_frame_t top = {0};
    rgpu_status_t status;

    *out_p = NULL;
    if (why && why_cap)
        *why = '\0';
    inc.cfg = cfg;
    inc.cwd = cfg->cwd ? cfg->cwd : ".";
    inc.max_depth = cfg->max_depth ? cfg->max_depth : RGPU_CL_INCLUDE_MAX_DEPTH;
    inc.max_size = cfg->max_size ? cfg->max_size : RGPU_CL_INCLUDE_MAX_SIZE;
    inc.why = why && why_cap ? why : NULL;
    inc.why_cap = inc.why ? why_cap : 0;
    top.src = (rgpu_inc_src_t){source, len};
    top.name = RGPU_CL_INCLUDE_MAIN_NAME;
    top.line = 1;
    top.inc = &inc;
    status = rgpu_inc_put_line(&inc, 1, top.name, 1);
    if (status == RGPU_OK)
        status = rgpu_inc_file(&top);
    if (status == RGPU_ERR_TOO_LARGE && inc.why && !*inc.why)
        rgpu_inc_why(inc.why, inc.why_cap, "the program source with its headers inlined passes %zu bytes",
                     inc.max_size);
    if (status == RGPU_ERR_NOMEM)
        rgpu_inc_why(inc.why, inc.why_cap, "out of memory inlining headers");
    if (status == RGPU_OK && inc.inlined) {
        *out_p = inc.out;
        inc.out = NULL;
    }
    free(inc.out);
    free(inc.once);
    return status;
}

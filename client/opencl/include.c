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
#include <limits.h>
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
    size_t rest;                        /* where the text after the name starts (past blanks) */
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
    d->rest = i;
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
    struct rgpu_inc_macro *macros;      /* #define/-D table */
    size_t n_macros, cap_macros;
    struct rgpu_inc_cond *conds;        /* #if nesting, outermost first */
    size_t n_conds, cap_conds;
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
    size_t conds_at;                    /* inc->n_conds when the file began */
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
static int rgpu_inc_cond_push(rgpu_inc_t *inc, int state);

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
    if (status == RGPU_OK) {
        /* A second inclusion inside its generated guard may be skipped:
         * what it defines is not known for sure. */
        int maybe = once >= 0 && inc->once[once].emitted;
        if (maybe && rgpu_inc_cond_push(inc, -1) != 0)
            status = RGPU_ERR_NOMEM;
        if (status == RGPU_OK)
            status = rgpu_inc_file(&child);
        if (maybe && status == RGPU_OK)
            inc->n_conds--;
    }
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

/* ---- macros: the table, expansion, #if ---- */

/* Limits of one expansion (an #include operand or an #if condition): past
 * them the include is left alone, the condition unknown. */
#define RGPU_INC_EXPAND_MAX_TOKENS 65536    /* tokens in the list being expanded */
#define RGPU_INC_EXPAND_MAX_WORK (1u << 20) /* tokens produced by replacements, all together */
#define RGPU_INC_EXPAND_MAX_DEPTH 64        /* arguments pre-expanded inside arguments */

enum { RGPU_TK_IDENT, RGPU_TK_NUM, RGPU_TK_STR, RGPU_TK_PUNCT, RGPU_TK_PASTE, RGPU_TK_PLACE, RGPU_TK_END,
       RGPU_TK_UNKNOWN };

typedef struct {
    char *text;
    unsigned char kind;
    unsigned char ws;                   /* whitespace before it */
    unsigned char noexp;                /* an identifier that can no longer expand (met while disabled) */
    size_t macro;                       /* RGPU_TK_END: the macro whose replacement ends here */
} rgpu_inc_tok_t;

typedef struct {
    rgpu_inc_tok_t *t;
    size_t n, cap;
} rgpu_inc_toks_t;

/* state: defined, undefined by #undef/-U (kept to know it for sure), or
 * uncertain (defined or undefined in a branch whose condition was not
 * known). */
enum { RGPU_MACRO_DEFINED, RGPU_MACRO_UNDEFINED, RGPU_MACRO_UNCERTAIN };

typedef struct rgpu_inc_macro {
    char *name;
    int state;
    int fn;                             /* function-like */
    int variadic;                       /* the last parameter takes the rest */
    char **params;
    size_t n_params;
    rgpu_inc_toks_t body;
    int disabled;                       /* being expanded */
} rgpu_inc_macro_t;

/* One #if group: state of the branch now (1 taken, 0 not, -1 unknown),
 * whether a branch was taken (same values), and the state of the text
 * inside it, the enclosing groups included. */
typedef struct rgpu_inc_cond {
    int state, taken, eff;
} rgpu_inc_cond_t;

typedef struct {
    rgpu_inc_t *inc;
    size_t work;
    int unknown;                        /* met a macro the client cannot know */
    int failed;                         /* a limit, a malformed invocation, or out of memory */
    int nomem;
} rgpu_inc_exp_t;

static void rgpu_inc_toks_free(rgpu_inc_toks_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->t[i].text);
    free(l->t);
    memset(l, 0, sizeof(*l));
}

static int rgpu_inc_toks_reserve(rgpu_inc_toks_t *l, size_t more)
{
    if (l->n + more > l->cap) {
        size_t cap = l->cap ? l->cap : 16;
        rgpu_inc_tok_t *t;
        while (cap < l->n + more)
            cap *= 2;
        if (!(t = realloc(l->t, cap * sizeof(*t))))
            return -1;
        l->t = t;
        l->cap = cap;
    }
    return 0;
}

/* Appends a token (text copied, len bytes). */
static int rgpu_inc_toks_push(rgpu_inc_toks_t *l, int kind, const char *text, size_t len, int ws)
{
    char *copy;

    if (rgpu_inc_toks_reserve(l, 1) != 0 || !(copy = malloc(len + 1)))
        return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    l->t[l->n++] = (rgpu_inc_tok_t){copy, (unsigned char)kind, (unsigned char)!!ws, 0, 0};
    return 0;
}

static int rgpu_inc_toks_push_tok(rgpu_inc_toks_t *l, const rgpu_inc_tok_t *t)
{
    if (rgpu_inc_toks_push(l, t->kind, t->text, strlen(t->text), t->ws) != 0)
        return -1;
    l->t[l->n - 1].noexp = t->noexp;
    l->t[l->n - 1].macro = t->macro;
    return 0;
}

static void rgpu_inc_toks_remove(rgpu_inc_toks_t *l, size_t at, size_t n)
{
    for (size_t i = at; i < at + n; i++)
        free(l->t[i].text);
    memmove(l->t + at, l->t + at + n, (l->n - at - n) * sizeof(*l->t));
    l->n -= n;
}

/* Replaces tokens [at, at + n) of l with those of r (r is emptied). */
static int rgpu_inc_toks_replace(rgpu_inc_toks_t *l, size_t at, size_t n, rgpu_inc_toks_t *r)
{
    if (r->n > n && rgpu_inc_toks_reserve(l, r->n - n) != 0)
        return -1;
    for (size_t i = at; i < at + n; i++)
        free(l->t[i].text);
    memmove(l->t + at + r->n, l->t + at + n, (l->n - at - n) * sizeof(*l->t));
    memcpy(l->t + at, r->t, r->n * sizeof(*r->t));
    l->n = l->n - n + r->n;
    r->n = 0;
    return 0;
}

static int rgpu_inc_is(const rgpu_inc_tok_t *t, const char *text)
{
    return (t->kind == RGPU_TK_PUNCT || t->kind == RGPU_TK_IDENT) && strcmp(t->text, text) == 0;
}

/* Lexes [i, end) of s (splices and comments as the scanner reads them)
 * into l. Returns 0 or -1 when out of memory. */
static int rgpu_inc_lex(const rgpu_inc_src_t *s, size_t i, size_t end, rgpu_inc_toks_t *l)
{
    static const char *const puncts[] = {"...", "<<=", ">>=", "##", "<<", ">>", "<=", ">=", "==", "!=", "&&",
                                         "||", "->", "++", "--", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^="};
    size_t cap = 64, n;
    char *buf = malloc(cap);
    int ws = 0, c;

    if (!buf)
        return -1;
    for (;;) {
        size_t j = rgpu_inc_skip_blanks(s, i);
        ws = ws || j != i;
        i = j;
        c = rgpu_inc_at(s, &i);
        if (i >= end || c == -1 || c == '\n')
            break;
        n = 0;
#define RGPU_INC_ADD(ch)                                                                                             \
    do {                                                                                                             \
        if (n + 2 > cap) {                                                                                           \
            char *more = realloc(buf, cap *= 2);                                                                     \
            if (!more) {                                                                                             \
                free(buf);                                                                                           \
                return -1;                                                                                           \
            }                                                                                                        \
            buf = more;                                                                                              \
        }                                                                                                            \
        buf[n++] = (char)(ch);                                                                                       \
    } while (0)
        int kind;
        if (rgpu_inc_ident_char(c) && !(c >= '0' && c <= '9')) {
            kind = RGPU_TK_IDENT;
            while (i < end && rgpu_inc_ident_char(c = rgpu_inc_at(s, &i))) {
                RGPU_INC_ADD(c);
                i++;
            }
        } else if ((c >= '0' && c <= '9') || (c == '.' && rgpu_inc_next(s, i) >= '0' && rgpu_inc_next(s, i) <= '9')) {
            /* A preprocessing number: digits, letters, '.', e+ e- p+ p-. */
            kind = RGPU_TK_NUM;
            for (;;) {
                c = rgpu_inc_at(s, &i);
                if (i >= end || !(rgpu_inc_ident_char(c) || c == '.' ||
                                  ((c == '+' || c == '-') && n &&
                                   strchr("eEpP", buf[n - 1]))))
                    break;
                RGPU_INC_ADD(c);
                i++;
            }
        } else if (c == '"' || c == '\'') {
            int q = c;
            kind = RGPU_TK_STR;
            RGPU_INC_ADD(c);
            for (i++; i < end && (c = rgpu_inc_at(s, &i)) != -1 && c != '\n';) {
                RGPU_INC_ADD(c);
                i++;
                if (c == q)
                    break;
                if (c == '\\' && (c = rgpu_inc_at(s, &i)) != -1 && c != '\n') {
                    RGPU_INC_ADD(c);
                    i++;
                }
            }
        } else {
            char look[4] = {0};
            size_t at[4], k, len = 1;
            kind = RGPU_TK_PUNCT;
            at[0] = i;
            for (k = 0; k < 3; k++) {
                c = rgpu_inc_at(s, &at[k]);
                if (at[k] >= end || c == -1 || c == '\n')
                    break;
                look[k] = (char)c;
                at[k + 1] = at[k] + 1;
            }
            for (size_t p = 0; p < sizeof(puncts) / sizeof(puncts[0]); p++) {
                if (strncmp(look, puncts[p], strlen(puncts[p])) == 0) {
                    len = strlen(puncts[p]);
                    break;
                }
            }
            for (k = 0; k < len; k++)
                RGPU_INC_ADD(look[k]);
            i = at[len - 1] + 1;
        }
#undef RGPU_INC_ADD
        if (rgpu_inc_toks_push(l, kind, buf, n, ws) != 0) {
            free(buf);
            return -1;
        }
        ws = 0;
    }
    free(buf);
    return 0;
}

static rgpu_inc_macro_t *rgpu_inc_macro_find(rgpu_inc_t *inc, const char *name)
{
    for (size_t i = 0; i < inc->n_macros; i++) {
        if (strcmp(inc->macros[i].name, name) == 0)
            return &inc->macros[i];
    }
    return NULL;
}

static void rgpu_inc_macro_clear(rgpu_inc_macro_t *m)
{
    for (size_t i = 0; i < m->n_params; i++)
        free(m->params[i]);
    free(m->params);
    rgpu_inc_toks_free(&m->body);
    m->params = NULL;
    m->n_params = 0;
    m->fn = m->variadic = 0;
}

static void rgpu_inc_macros_free(rgpu_inc_t *inc)
{
    for (size_t i = 0; i < inc->n_macros; i++) {
        rgpu_inc_macro_clear(&inc->macros[i]);
        free(inc->macros[i].name);
    }
    free(inc->macros);
    free(inc->conds);
}

/* Names the OpenCL compiler may define by itself (reserved names, the
 * extension and version macros): the client cannot know them. */
static int rgpu_inc_predefined(const char *name)
{
    return strncmp(name, "__", 2) == 0 || strncmp(name, "cl_", 3) == 0 || strncmp(name, "CL_VERSION_", 11) == 0 ||
           strcmp(name, "FULL_PROFILE") == 0 || strcmp(name, "EMBEDDED_PROFILE") == 0;
}

/* The entry of name, added (undefined) when absent; NULL out of memory. */
static rgpu_inc_macro_t *rgpu_inc_macro_entry(rgpu_inc_t *inc, const char *name)
{
    rgpu_inc_macro_t *m = rgpu_inc_macro_find(inc, name);

    if (m)
        return m;
    if (inc->n_macros == inc->cap_macros) {
        size_t cap = inc->cap_macros ? inc->cap_macros * 2 : 32;
        rgpu_inc_macro_t *more = realloc(inc->macros, cap * sizeof(*more));
        if (!more)
            return NULL;
        inc->macros = more;
        inc->cap_macros = cap;
    }
    m = &inc->macros[inc->n_macros];
    memset(m, 0, sizeof(*m));
    if (!(m->name = strdup(name)))
        return NULL;
    m->state = RGPU_MACRO_UNDEFINED;
    inc->n_macros++;
    return m;
}

/* A definition "NAME BODY" or "NAME(PARAMS) BODY" lexed into l (taken).
 * certain: 0 when the definition is in a branch not known to be taken.
 * Returns 0, or -1 when out of memory; a malformed one is ignored. */
static int rgpu_inc_define(rgpu_inc_t *inc, rgpu_inc_toks_t *l, int certain)
{
    rgpu_inc_macro_t *m;
    size_t i = 1, n_params = 0;
    char **params = NULL;
    int variadic = 0, fn = 0;

    if (l->n == 0 || l->t[0].kind != RGPU_TK_IDENT || strcmp(l->t[0].text, "defined") == 0)
        goto out_ignore;
    if (l->n > 1 && !l->t[1].ws && rgpu_inc_is(&l->t[1], "(")) {
        fn = 1;
        if (!(params = calloc(l->n, sizeof(char *))))
            return -1;
        for (i = 2; i < l->n && !rgpu_inc_is(&l->t[i], ")");) {
            if (n_params && !rgpu_inc_is(&l->t[i++], ","))
                goto out_ignore;
            if (i < l->n && rgpu_inc_is(&l->t[i], "...")) {
                variadic = 1;
                if (!(params[n_params++] = strdup("__VA_ARGS__")))
                    goto out_nomem;
                i++;
            } else if (i < l->n && l->t[i].kind == RGPU_TK_IDENT) {
                if (!(params[n_params++] = strdup(l->t[i].text)))
                    goto out_nomem;
                i++;
                if (i < l->n && rgpu_inc_is(&l->t[i], "...")) {
                    variadic = 1;
                    i++;
                }
            } else {
                goto out_ignore;
            }
            if (variadic && i < l->n && !rgpu_inc_is(&l->t[i], ")"))
                goto out_ignore;
        }
        if (i >= l->n)
            goto out_ignore;
        i++;
    }
    if (!(m = rgpu_inc_macro_entry(inc, l->t[0].text)))
        goto out_nomem;
    rgpu_inc_macro_clear(m);
    m->state = certain ? RGPU_MACRO_DEFINED : RGPU_MACRO_UNCERTAIN;
    m->fn = fn;
    m->variadic = variadic;
    m->params = params;
    m->n_params = n_params;
    rgpu_inc_toks_remove(l, 0, i);
    for (size_t k = 0; k < l->n; k++) {
        if (l->t[k].kind == RGPU_TK_PUNCT && strcmp(l->t[k].text, "##") == 0)
            l->t[k].kind = RGPU_TK_PASTE;
    }
    if (l->n)
        l->t[0].ws = 0;
    m->body = *l;
    memset(l, 0, sizeof(*l));
    return 0;

out_nomem:
    for (size_t k = 0; k < n_params; k++)
        free(params[k]);
    free(params);
    return -1;
out_ignore:
    for (size_t k = 0; k < n_params; k++)
        free(params[k]);
    free(params);
    return 0;
}

static int rgpu_inc_undef(rgpu_inc_t *inc, const char *name, int certain)
{
    rgpu_inc_macro_t *m = rgpu_inc_macro_entry(inc, name);

    if (!m)
        return -1;
    rgpu_inc_macro_clear(m);
    m->state = certain ? RGPU_MACRO_UNDEFINED : RGPU_MACRO_UNCERTAIN;
    return 0;
}

/* The -D and -U options, in order ("-D NAME" is NAME 1, "-D NAME=VALUE"
 * is #define NAME VALUE, "-D NAME(x)=VALUE" a function-like macro). */
static int rgpu_inc_option_macros(rgpu_inc_t *inc, const char *options)
{
    size_t at = 0, start, end;
    char *value = NULL, *arg = NULL;
    int r;

    while (options && (r = rgpu_inc_word(options, &at, &start, &end, &value)) > 0) {
        int define = -1;

        if (strcmp(value, "-D") == 0 || strcmp(value, "-U") == 0) {
            define = value[1] == 'D';
            if (rgpu_inc_word(options, &at, &start, &end, &arg) <= 0)
                arg = NULL;
        } else if (strncmp(value, "-D", 2) == 0 || strncmp(value, "-U", 2) == 0) {
            define = value[1] == 'D';
            if (!(arg = strdup(value + 2))) {
                free(value);
                return -1;
            }
        } else if (rgpu_inc_takes_arg(value) || strcmp(value, "-I") == 0 ||
                   strcmp(value, "--include-directory") == 0) {
            free(value);
            value = NULL;
            if (rgpu_inc_word(options, &at, &start, &end, &value) <= 0)
                value = NULL;
        }
        free(value);
        value = NULL;
        if (define >= 0 && arg && *arg) {
            rgpu_inc_toks_t l = {0};
            char *eq = strchr(arg, '='), *nl = strchr(arg, '\n');
            size_t len = nl ? (size_t)(nl - arg) : strlen(arg);
            int failed;
            if (eq && eq < arg + len)
                *eq = ' ';
            if (define) {
                char *text = malloc(len + 3);
                rgpu_inc_src_t src;
                if (!text) {
                    free(arg);
                    return -1;
                }
                memcpy(text, arg, len);
                strcpy(text + len, eq && eq < arg + len ? "" : " 1");
                src = (rgpu_inc_src_t){text, strlen(text)};
                failed = rgpu_inc_lex(&src, 0, src.len, &l) != 0 || rgpu_inc_define(inc, &l, 1) != 0;
                free(text);
            } else {
                arg[len] = '\0';
                failed = rgpu_inc_undef(inc, arg, 1) != 0;
            }
            rgpu_inc_toks_free(&l);
            if (failed) {
                free(arg);
                return -1;
            }
        }
        free(arg);
        arg = NULL;
    }
    return 0;
}

static int rgpu_inc_exp_fail(rgpu_inc_exp_t *x, int nomem)
{
    x->failed = 1;
    x->nomem |= nomem;
    return -1;
}

static int rgpu_inc_expand(rgpu_inc_exp_t *x, rgpu_inc_toks_t *l, unsigned depth);

/* The string literal that #arg makes of tokens [from, to) of l. */
static int rgpu_inc_stringify(const rgpu_inc_toks_t *l, size_t from, size_t to, int ws, rgpu_inc_toks_t *r)
{
    size_t n = 2;
    char *s, *p;

    for (size_t i = from; i < to; i++)
        n += 2 * strlen(l->t[i].text) + 1;
    if (!(s = p = malloc(n + 1)))
        return -1;
    *p++ = '"';
    for (size_t i = from; i < to; i++) {
        if (l->t[i].kind == RGPU_TK_PLACE)
            continue;
        if (i > from && l->t[i].ws)
            *p++ = ' ';
        for (const char *c = l->t[i].text; *c; c++) {
            if (l->t[i].kind == RGPU_TK_STR && (*c == '"' || *c == '\\'))
                *p++ = '\\';
            *p++ = *c;
        }
    }
    *p++ = '"';
    if (rgpu_inc_toks_push(r, RGPU_TK_STR, s, (size_t)(p - s), ws) != 0) {
        free(s);
        return -1;
    }
    free(s);
    return 0;
}

static int rgpu_inc_param(const rgpu_inc_macro_t *m, const rgpu_inc_tok_t *t)
{
    if (!m->fn || t->kind != RGPU_TK_IDENT)
        return -1;
    for (size_t p = 0; p < m->n_params; p++) {
        if (strcmp(m->params[p], t->text) == 0)
            return (int)p;
    }
    return -1;
}

/* The kind of the token that pasting makes of text. */
static int rgpu_inc_kind_of(const char *text)
{
    if (!*text)
        return RGPU_TK_PLACE;
    if (*text >= '0' && *text <= '9')
        return RGPU_TK_NUM;
    if (*text == '"' || *text == '\'')
        return RGPU_TK_STR;
    for (const char *c = text; *c; c++) {
        if (!rgpu_inc_ident_char((unsigned char)*c))
            return strchr(text, '"') || strchr(text, '\'') ? RGPU_TK_STR : RGPU_TK_PUNCT;
    }
    return RGPU_TK_IDENT;
}

/* The replacement of macro m for arguments args[0..n_args) (tokens
 * [arg_at[k], arg_at[k] + arg_n[k]) of raw; exp[k] pre-expanded). */
static int rgpu_inc_subst(rgpu_inc_exp_t *x, const rgpu_inc_macro_t *m, const rgpu_inc_toks_t *raw,
                          const size_t *arg_at, const size_t *arg_n, rgpu_inc_toks_t *exp, rgpu_inc_toks_t *r)
{
    const rgpu_inc_toks_t *b = &m->body;

    for (size_t k = 0; k < b->n; k++) {
        const rgpu_inc_tok_t *t = &b->t[k];
        int p;
        if (m->fn && rgpu_inc_is(t, "#") && t->kind == RGPU_TK_PUNCT) {
            if (k + 1 >= b->n || (p = rgpu_inc_param(m, &b->t[k + 1])) < 0)
                return rgpu_inc_exp_fail(x, 0);
            if (rgpu_inc_stringify(raw, arg_at[p], arg_at[p] + arg_n[p], t->ws, r) != 0)
                return rgpu_inc_exp_fail(x, 1);
            k++;
        } else if ((p = rgpu_inc_param(m, t)) >= 0) {
            int pasted = (k > 0 && b->t[k - 1].kind == RGPU_TK_PASTE) ||
                         (k + 1 < b->n && b->t[k + 1].kind == RGPU_TK_PASTE);
            size_t first = r->n;
            if (pasted) {
                for (size_t a = arg_at[p]; a < arg_at[p] + arg_n[p]; a++) {
                    if (rgpu_inc_toks_push_tok(r, &raw->t[a]) != 0)
                        return rgpu_inc_exp_fail(x, 1);
                }
                if (!arg_n[p] && rgpu_inc_toks_push(r, RGPU_TK_PLACE, "", 0, 0) != 0)
                    return rgpu_inc_exp_fail(x, 1);
            } else {
                for (size_t a = 0; a < exp[p].n; a++) {
                    if (rgpu_inc_toks_push_tok(r, &exp[p].t[a]) != 0)
                        return rgpu_inc_exp_fail(x, 1);
                }
            }
            if (r->n > first)
                r->t[first].ws = t->ws;
        } else if (rgpu_inc_toks_push_tok(r, t) != 0) {
            return rgpu_inc_exp_fail(x, 1);
        }
    }
    /* ## */
    for (size_t k = 0; k < r->n; k++) {
        rgpu_inc_tok_t *a, *c;
        char *text;
        if (r->t[k].kind != RGPU_TK_PASTE)
            continue;
        if (k == 0 || k + 1 >= r->n)
            return rgpu_inc_exp_fail(x, 0);
        a = &r->t[k - 1];
        c = &r->t[k + 1];
        if (!(text = malloc(strlen(a->text) + strlen(c->text) + 1)))
            return rgpu_inc_exp_fail(x, 1);
        strcpy(text, a->text);
        strcat(text, c->text);
        free(a->text);
        a->text = text;
        a->kind = (unsigned char)rgpu_inc_kind_of(text);
        a->noexp = 0;
        rgpu_inc_toks_remove(r, k, 2);
        k--;
    }
    for (size_t k = 0; k < r->n;) {
        if (r->t[k].kind == RGPU_TK_PLACE)
            rgpu_inc_toks_remove(r, k, 1);
        else
            k++;
    }
    return 0;
}

/* The invocation of function-like macro m whose name is l->t[i]: its
 * arguments end at *end_p (past the ')'). Returns 1 when there is one,
 * 0 when the name is not followed by '(', -1 on failure. */
static int rgpu_inc_invoke(rgpu_inc_exp_t *x, rgpu_inc_toks_t *l, size_t i, const rgpu_inc_macro_t *m,
                           unsigned depth, rgpu_inc_toks_t *r)
{
    size_t j = i + 1, level = 0, n_args = 0, *arg_at, *arg_n;
    rgpu_inc_toks_t *exp;
    int status = 0;

    while (j < l->n && l->t[j].kind == RGPU_TK_END) {
        x->inc->macros[l->t[j].macro].disabled = 0;
        rgpu_inc_toks_remove(l, j, 1);
    }
    if (j >= l->n || !rgpu_inc_is(&l->t[j], "("))
        return 0;
    arg_at = calloc(m->n_params + 1, sizeof(size_t));
    arg_n = calloc(m->n_params + 1, sizeof(size_t));
    exp = calloc(m->n_params + 1, sizeof(*exp));
    if (!arg_at || !arg_n || !exp) {
        free(arg_at);
        free(arg_n);
        free(exp);
        return rgpu_inc_exp_fail(x, 1);
    }
    arg_at[0] = j + 1;
    for (j++;; j++) {
        rgpu_inc_tok_t *t;
        if (j >= l->n) {
            status = rgpu_inc_exp_fail(x, 0);   /* unterminated invocation */
            goto out;
        }
        t = &l->t[j];
        if (t->kind == RGPU_TK_END) {
            x->inc->macros[t->macro].disabled = 0;
            rgpu_inc_toks_remove(l, j, 1);
            j--;
            continue;
        }
        if (rgpu_inc_is(t, "(")) {
            level++;
        } else if (rgpu_inc_is(t, ")") && level) {
            level--;
        } else if (rgpu_inc_is(t, ")") || (rgpu_inc_is(t, ",") && !level &&
                                           !(m->variadic && n_args + 1 == m->n_params))) {
            arg_n[n_args] = j - arg_at[n_args];
            n_args++;
            if (rgpu_inc_is(t, ")"))
                break;
            if (n_args > m->n_params) {
                status = rgpu_inc_exp_fail(x, 0);
                goto out;
            }
            arg_at[n_args] = j + 1;
        }
    }
    /* f() is one empty argument; a variadic macro may get none for "...". */
    if (n_args == 1 && arg_n[0] == 0 && m->n_params == 0)
        n_args = 0;
    if (m->variadic && n_args + 1 == m->n_params) {
        arg_at[n_args] = j;
        arg_n[n_args++] = 0;
    }
    if (n_args != m->n_params) {
        status = rgpu_inc_exp_fail(x, 0);
        goto out;
    }
    for (size_t a = 0; a < n_args; a++) {
        for (size_t k = arg_at[a]; k < arg_at[a] + arg_n[a]; k++) {
            if (rgpu_inc_toks_push_tok(&exp[a], &l->t[k]) != 0) {
                status = rgpu_inc_exp_fail(x, 1);
                goto out;
            }
        }
        if (exp[a].n)
            exp[a].t[0].ws = 0;
        if ((status = rgpu_inc_expand(x, &exp[a], depth + 1)) != 0)
            goto out;
    }
    if ((status = rgpu_inc_subst(x, m, l, arg_at, arg_n, exp, r)) == 0)
        status = (int)(j + 1 - i) + 1; /* 1 + the tokens the invocation spans */
out:
    for (size_t a = 0; a <= m->n_params; a++)
        rgpu_inc_toks_free(&exp[a]);
    free(exp);
    free(arg_at);
    free(arg_n);
    return status;
}

/* Expands the macros of l in place (rescanning each replacement with what
 * follows it; a macro is disabled inside its own replacement, and a name
 * met there never expands again). Returns 0, or -1 with x->failed set. */
static int rgpu_inc_expand(rgpu_inc_exp_t *x, rgpu_inc_toks_t *l, unsigned depth)
{
    if (depth > RGPU_INC_EXPAND_MAX_DEPTH)
        return rgpu_inc_exp_fail(x, 0);
    for (size_t i = 0; i < l->n;) {
        rgpu_inc_tok_t *t = &l->t[i];
        rgpu_inc_toks_t r = {0};
        rgpu_inc_macro_t *m;
        size_t span = 1, mi;
        int ws, over;

        if (t->kind == RGPU_TK_END) {
            x->inc->macros[t->macro].disabled = 0;
            rgpu_inc_toks_remove(l, i, 1);
            continue;
        }
        if (t->kind != RGPU_TK_IDENT || t->noexp) {
            i++;
            continue;
        }
        m = rgpu_inc_macro_find(x->inc, t->text);
        if (!m || m->state != RGPU_MACRO_DEFINED) {
            if (m ? m->state == RGPU_MACRO_UNCERTAIN : rgpu_inc_predefined(t->text))
                x->unknown = 1;
            i++;
            continue;
        }
        if (m->disabled) {
            t->noexp = 1;
            i++;
            continue;
        }
        mi = (size_t)(m - x->inc->macros);
        ws = t->ws;
        if (m->fn) {
            int got = rgpu_inc_invoke(x, l, i, m, depth, &r);
            if (got < 0) {
                rgpu_inc_toks_free(&r);
                return -1;
            }
            if (got == 0) {
                i++;
                continue;
            }
            span = (size_t)got - 1;
        } else if (rgpu_inc_subst(x, m, l, NULL, NULL, NULL, &r) != 0) {
            rgpu_inc_toks_free(&r);
            return -1;
        }
        x->work += r.n + 1;
        if (r.n)
            r.t[0].ws = (unsigned char)ws;
        over = x->work > RGPU_INC_EXPAND_MAX_WORK || l->n + r.n > RGPU_INC_EXPAND_MAX_TOKENS;
        if (over || rgpu_inc_toks_push(&r, RGPU_TK_END, "", 0, 0) != 0) {
            rgpu_inc_toks_free(&r);
            return rgpu_inc_exp_fail(x, !over);
        }
        r.t[r.n - 1].macro = mi;
        if (rgpu_inc_toks_replace(l, i, span, &r) != 0) {
            rgpu_inc_toks_free(&r);
            return rgpu_inc_exp_fail(x, 1);
        }
        rgpu_inc_toks_free(&r);
        x->inc->macros[mi].disabled = 1;
    }
    return 0;
}

/* Expands l at the top level: all macros enabled again afterwards. */
static int rgpu_inc_expand_all(rgpu_inc_exp_t *x, rgpu_inc_toks_t *l)
{
    int r = rgpu_inc_expand(x, l, 0);

    for (size_t i = 0; i < x->inc->n_macros; i++)
        x->inc->macros[i].disabled = 0;
    return r;
}

/* ---- #if conditions: 64-bit signed values, unknown when they depend on
 * what the client cannot know ---- */

typedef struct {
    long long v;
    int unk;
} rgpu_inc_val_t;

typedef struct {
    const rgpu_inc_toks_t *l;
    size_t i;
    int bad;
    rgpu_inc_t *inc;
} rgpu_inc_eval_t;

static rgpu_inc_val_t rgpu_inc_eval_cond(rgpu_inc_eval_t *e);

static int rgpu_inc_eval_is(rgpu_inc_eval_t *e, const char *op)
{
    if (e->i < e->l->n && e->l->t[e->i].kind == RGPU_TK_PUNCT && strcmp(e->l->t[e->i].text, op) == 0) {
        e->i++;
        return 1;
    }
    return 0;
}

static rgpu_inc_val_t rgpu_inc_eval_primary(rgpu_inc_eval_t *e)
{
    rgpu_inc_val_t v = {0, 0};
    const rgpu_inc_tok_t *t;

    if (e->i >= e->l->n) {
        e->bad = 1;
        return v;
    }
    if (rgpu_inc_eval_is(e, "(")) {
        v = rgpu_inc_eval_cond(e);
        if (!rgpu_inc_eval_is(e, ")"))
            e->bad = 1;
        return v;
    }
    if (rgpu_inc_eval_is(e, "!")) {
        v = rgpu_inc_eval_primary(e);
        v.v = !v.v;
        return v;
    }
    if (rgpu_inc_eval_is(e, "~")) {
        v = rgpu_inc_eval_primary(e);
        v.v = ~v.v;
        return v;
    }
    if (rgpu_inc_eval_is(e, "-")) {
        v = rgpu_inc_eval_primary(e);
        v.v = (long long)(0ULL - (unsigned long long)v.v);
        return v;
    }
    if (rgpu_inc_eval_is(e, "+"))
        return rgpu_inc_eval_primary(e);
    t = &e->l->t[e->i++];
    if (t->kind == RGPU_TK_UNKNOWN) {
        v.unk = 1;
    } else if (t->kind == RGPU_TK_NUM) {
        char *end;
        v.v = (long long)strtoull(t->text, &end, 0);
        while (*end == 'u' || *end == 'U' || *end == 'l' || *end == 'L')
            end++;
        if (*end)
            v.unk = 1;
    } else if (t->kind == RGPU_TK_STR && t->text[0] == '\'' && t->text[1] && t->text[1] != '\\' &&
               t->text[2] == '\'') {
        v.v = (unsigned char)t->text[1];
    } else if (t->kind == RGPU_TK_IDENT) {
        /* Not a macro (any more): 0, unless the compiler may know it. */
        rgpu_inc_macro_t *m = rgpu_inc_macro_find(e->inc, t->text);
        v.unk = m ? m->state == RGPU_MACRO_UNCERTAIN : rgpu_inc_predefined(t->text) ||
                                                          strcmp(t->text, "defined") == 0;
    } else {
        e->bad = 1;
    }
    return v;
}

/* Binary operators by precedence (C's), lowest first. */
static rgpu_inc_val_t rgpu_inc_eval_bin(rgpu_inc_eval_t *e, int level)
{
    static const char *const ops[][5] = {{"||"}, {"&&"}, {"|"}, {"^"}, {"&"}, {"==", "!="},
                                         {"<", ">", "<=", ">="}, {"<<", ">>"}, {"+", "-"}, {"*", "/", "%"}};
    rgpu_inc_val_t a, b;

    if (level == (int)(sizeof(ops) / sizeof(ops[0])))
        return rgpu_inc_eval_primary(e);
    a = rgpu_inc_eval_bin(e, level + 1);
    for (;;) {
        const char *op = NULL;
        unsigned long long ua, ub;
        for (int k = 0; k < 5 && ops[level][k]; k++) {
            if (rgpu_inc_eval_is(e, ops[level][k])) {
                op = ops[level][k];
                break;
            }
        }
        if (!op || e->bad)
            return a;
        b = rgpu_inc_eval_bin(e, level + 1);
        ua = (unsigned long long)a.v;
        ub = (unsigned long long)b.v;
        if (strcmp(op, "||") == 0) {
            /* A known true side decides. */
            int t = (!a.unk && a.v) || (!b.unk && b.v);
            a = (rgpu_inc_val_t){t || (a.v || b.v), !t && (a.unk || b.unk)};
            continue;
        }
        if (strcmp(op, "&&") == 0) {
            int f = (!a.unk && !a.v) || (!b.unk && !b.v);
            a = (rgpu_inc_val_t){!f && a.v && b.v, !f && (a.unk || b.unk)};
            continue;
        }
        a.unk |= b.unk;
        if ((op[0] == '/' || op[0] == '%') && b.v == 0) {
            a.unk = 1;
            continue;
        }
        if ((op[0] == '<' || op[0] == '>') && op[1] == op[0] && (b.v < 0 || b.v > 63)) {
            a.unk = 1;
            continue;
        }
        switch (op[0] + (op[1] << 8)) {
        case '|': a.v = (long long)(ua | ub); break;
        case '^': a.v = (long long)(ua ^ ub); break;
        case '&': a.v = (long long)(ua & ub); break;
        case '=' + ('=' << 8): a.v = a.v == b.v; break;
        case '!' + ('=' << 8): a.v = a.v != b.v; break;
        case '<': a.v = a.v < b.v; break;
        case '>': a.v = a.v > b.v; break;
        case '<' + ('=' << 8): a.v = a.v <= b.v; break;
        case '>' + ('=' << 8): a.v = a.v >= b.v; break;
        case '<' + ('<' << 8): a.v = (long long)(ua << b.v); break;
        case '>' + ('>' << 8): a.v = a.v >> b.v; break;
        case '+': a.v = (long long)(ua + ub); break;
        case '-': a.v = (long long)(ua - ub); break;
        case '*': a.v = (long long)(ua * ub); break;
        case '/': a.v = (a.v == LLONG_MIN && b.v == -1) ? a.v : a.v / b.v; break;
        default: a.v = (a.v == LLONG_MIN && b.v == -1) ? 0 : a.v % b.v; break;
        }
    }
}

static rgpu_inc_val_t rgpu_inc_eval_cond(rgpu_inc_eval_t *e)
{
    rgpu_inc_val_t c = rgpu_inc_eval_bin(e, 0), a, b;

    if (!rgpu_inc_eval_is(e, "?"))
        return c;
    a = rgpu_inc_eval_cond(e);
    if (!rgpu_inc_eval_is(e, ":"))
        e->bad = 1;
    b = rgpu_inc_eval_cond(e);
    if (c.unk)
        return (rgpu_inc_val_t){0, 1};
    return c.v ? a : b;
}

/* The value of the #if (or #elif) condition in [i, end) of s: 1, 0, or -1
 * when unknown; -2 when out of memory. */
static int rgpu_inc_if(rgpu_inc_t *inc, const rgpu_inc_src_t *s, size_t i, size_t end)
{
    rgpu_inc_toks_t l = {0};
    rgpu_inc_exp_t x = {inc, 0, 0, 0, 0};
    rgpu_inc_eval_t e = {&l, 0, 0, inc};
    rgpu_inc_val_t v;

    if (rgpu_inc_lex(s, i, end, &l) != 0) {
        rgpu_inc_toks_free(&l);
        return -2;
    }
    /* defined NAME, defined(NAME), before expansion. */
    for (size_t k = 0; k < l.n; k++) {
        size_t n = 0, name = 0;
        rgpu_inc_macro_t *m;
        int kind;
        if (l.t[k].kind != RGPU_TK_IDENT || strcmp(l.t[k].text, "defined") != 0)
            continue;
        if (k + 1 < l.n && l.t[k + 1].kind == RGPU_TK_IDENT)
            name = k + 1, n = 2;
        else if (k + 3 < l.n && rgpu_inc_is(&l.t[k + 1], "(") && l.t[k + 2].kind == RGPU_TK_IDENT &&
                 rgpu_inc_is(&l.t[k + 3], ")"))
            name = k + 2, n = 4;
        if (!n) {
            rgpu_inc_toks_free(&l);
            return -1;
        }
        m = rgpu_inc_macro_find(inc, l.t[name].text);
        kind = m ? (m->state == RGPU_MACRO_UNCERTAIN ? RGPU_TK_UNKNOWN : RGPU_TK_NUM)
                 : (rgpu_inc_predefined(l.t[name].text) ? RGPU_TK_UNKNOWN : RGPU_TK_NUM);
        free(l.t[k].text);
        if (!(l.t[k].text = strdup(m && m->state == RGPU_MACRO_DEFINED ? "1" : "0"))) {
            rgpu_inc_toks_remove(&l, k + 1, n - 1);
            rgpu_inc_toks_free(&l);
            return -2;
        }
        l.t[k].kind = (unsigned char)kind;
        rgpu_inc_toks_remove(&l, k + 1, n - 1);
    }
    if (rgpu_inc_expand_all(&x, &l) != 0) {
        rgpu_inc_toks_free(&l);
        return x.nomem ? -2 : -1;
    }
    v = rgpu_inc_eval_cond(&e);
    if (e.i != l.n)
        e.bad = 1;
    rgpu_inc_toks_free(&l);
    return e.bad || v.unk ? -1 : v.v != 0;
}

/* The state of the text at the current directive: 1 read, 0 skipped, -1
 * not known. */
static int rgpu_inc_cond_eff(const rgpu_inc_t *inc)
{
    return inc->n_conds ? inc->conds[inc->n_conds - 1].eff : 1;
}

static int rgpu_inc_cond_push(rgpu_inc_t *inc, int state)
{
    int outer = rgpu_inc_cond_eff(inc);

    if (inc->n_conds == inc->cap_conds) {
        size_t cap = inc->cap_conds ? inc->cap_conds * 2 : 16;
        rgpu_inc_cond_t *more = realloc(inc->conds, cap * sizeof(*more));
        if (!more)
            return -1;
        inc->conds = more;
        inc->cap_conds = cap;
    }
    if (outer == 0)
        state = 0;
    inc->conds[inc->n_conds++] = (rgpu_inc_cond_t){state, outer == 0 ? 1 : state,
                                                   outer == 0 || state == 0 ? 0 : (outer < 0 || state < 0 ? -1 : 1)};
    return 0;
}

/* #elif (value v) or #else (v 1) of the innermost group. */
static void rgpu_inc_cond_else(rgpu_inc_t *inc, int v)
{
    rgpu_inc_cond_t *c = &inc->conds[inc->n_conds - 1];
    int outer = inc->n_conds > 1 ? inc->conds[inc->n_conds - 2].eff : 1;

    if (c->taken == 1 || outer == 0)
        c->state = 0;
    else if (c->taken == 0)
        c->state = v;
    else
        c->state = v == 0 ? 0 : -1;
    if (c->taken != 1)
        c->taken = c->state == 1 ? 1 : (c->taken < 0 || c->state < 0 ? -1 : 0);
    c->eff = c->state == 0 ? 0 : (outer < 0 || c->state < 0 ? -1 : 1);
}

/* The header name an #include's macro operand [i, end) of s expands to:
 * *header_p malloc'd and *delim_p '"' or '<', or *header_p NULL when it is
 * none (or unknown, or past the limits). Returns 0 or -1 out of memory. */
static int rgpu_inc_macro_operand(rgpu_inc_t *inc, const rgpu_inc_src_t *s, size_t i, size_t end, char **header_p,
                                  int *delim_p)
{
    rgpu_inc_toks_t l = {0};
    rgpu_inc_exp_t x = {inc, 0, 0, 0, 0};
    char *h = NULL;

    *header_p = NULL;
    if (rgpu_inc_lex(s, i, end, &l) != 0) {
        rgpu_inc_toks_free(&l);
        return -1;
    }
    if (rgpu_inc_expand_all(&x, &l) != 0 || x.unknown || !l.n) {
        rgpu_inc_toks_free(&l);
        return x.nomem ? -1 : 0;
    }
    if (l.n == 1 && l.t[0].kind == RGPU_TK_STR && l.t[0].text[0] == '"' && strlen(l.t[0].text) >= 2 &&
        l.t[0].text[strlen(l.t[0].text) - 1] == '"') {
        if (!(h = strndup(l.t[0].text + 1, strlen(l.t[0].text) - 2)))
            x.nomem = 1;
        *delim_p = '"';
    } else if (l.n >= 2 && rgpu_inc_is(&l.t[0], "<") && rgpu_inc_is(&l.t[l.n - 1], ">")) {
        size_t n = 0;
        for (size_t k = 1; k + 1 < l.n; k++) {
            if (rgpu_inc_is(&l.t[k], ">")) {
                rgpu_inc_toks_free(&l);
                return 0;
            }
            n += strlen(l.t[k].text) + 1;
        }
        if ((h = malloc(n + 1))) {
            *h = '\0';
            for (size_t k = 1; k + 1 < l.n; k++) {
                if (k > 1 && l.t[k].ws)
                    strcat(h, " ");
                strcat(h, l.t[k].text);
            }
        } else {
            x.nomem = 1;
        }
        *delim_p = '<';
    }
    rgpu_inc_toks_free(&l);
    *header_p = h;
    return x.nomem ? -1 : 0;
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
        int v = -1;
        f->cond++;
        if (rgpu_inc_cond_eff(f->inc) == 0) {
            v = 0;
        } else if (d->name[2] == '\0') {
            if ((v = rgpu_inc_if(f->inc, &f->src, d->rest, d->end)) == -2)
                return RGPU_ERR_NOMEM;
        } else if (*d->arg) {
            rgpu_inc_macro_t *m = rgpu_inc_macro_find(f->inc, d->arg);
            v = m ? (m->state == RGPU_MACRO_UNCERTAIN ? -1 : m->state == RGPU_MACRO_DEFINED)
                  : (rgpu_inc_predefined(d->arg) ? -1 : 0);
            if (v >= 0 && d->name[2] == 'n')
                v = !v;
        }
        return rgpu_inc_cond_push(f->inc, v) == 0 ? RGPU_OK : RGPU_ERR_NOMEM;
    } else if (strcmp(d->name, "elif") == 0 || strcmp(d->name, "else") == 0) {
        int v = 1;
        if (f->inc->n_conds <= f->conds_at)
            return RGPU_OK;
        if (d->name[2] == 'i') {
            rgpu_inc_cond_t *c = &f->inc->conds[f->inc->n_conds - 1];
            int outer = f->inc->n_conds > 1 ? f->inc->conds[f->inc->n_conds - 2].eff : 1;
            v = c->taken == 1 || outer == 0 ? 0 : rgpu_inc_if(f->inc, &f->src, d->rest, d->end);
            if (v == -2)
                return RGPU_ERR_NOMEM;
        }
        rgpu_inc_cond_else(f->inc, v);
    } else if (strcmp(d->name, "endif") == 0) {
        f->cond -= f->cond > 0;
        if (f->inc->n_conds > f->conds_at)
            f->inc->n_conds--;
    } else if ((strcmp(d->name, "define") == 0 || strcmp(d->name, "undef") == 0) && rgpu_inc_cond_eff(f->inc)) {
        int certain = rgpu_inc_cond_eff(f->inc) == 1, failed;
        if (d->name[0] == 'u') {
            failed = *d->arg && rgpu_inc_undef(f->inc, d->arg, certain) != 0;
        } else {
            rgpu_inc_toks_t l = {0};
            failed = rgpu_inc_lex(&f->src, d->rest, d->end, &l) != 0 || rgpu_inc_define(f->inc, &l, certain) != 0;
            rgpu_inc_toks_free(&l);
        }
        return failed ? RGPU_ERR_NOMEM : RGPU_OK;
    } else if (strcmp(d->name, "include") == 0 && !d->delim && rgpu_inc_cond_eff(f->inc)) {
        /* A macro operand: what it expands to, if that is a header name. */
        char *header;
        int delim = 0;
        if (rgpu_inc_macro_operand(f->inc, &f->src, d->rest, d->end, &header, &delim) != 0)
            return RGPU_ERR_NOMEM;
        if (!header)
            return RGPU_OK;
        status = rgpu_inc_find(f, header, delim, &path);
        free(header);
        if (status != RGPU_OK || !path)
            return status;
        status = rgpu_inc_include(f, d, path);
        free(path);
        return status;
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
    rgpu_status_t status;

    f->conds_at = f->inc->n_conds;
    status = rgpu_inc_scan(&f->src, rgpu_inc_event, f);
    /* A group the file left open ends with it (the compiler would say so). */
    f->inc->n_conds = f->conds_at;

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
    status = rgpu_inc_option_macros(&inc, cfg->options) == 0 ? RGPU_OK : RGPU_ERR_NOMEM;
    if (status == RGPU_OK)
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
    rgpu_inc_macros_free(&inc);
    return status;
}

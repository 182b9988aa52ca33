/*
 * The option engine: defaults, the INI file (read with inih), the
 * environment and the command line, applied in that order to one table.
 * See rgpu/options.h for the rules every program shares.
 */
#include "rgpu/options.h"

#include <errno.h>
#include <ini.h>
#include <string.h>

#include "rgpu/util.h"

#ifndef RGPU_VERSION
#define RGPU_VERSION "?"
#endif

/* ---- values ---- */

static int rgpu_opt_is_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Plain decimal digits to at most max; -1 past it or on anything else. */
static int rgpu_opt_decimal(const char *s, uint64_t max, uint64_t *value_p)
{
    uint64_t v = 0;

    if (!rgpu_opt_is_digits(s))
        return -1;
    for (; *s; s++) {
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -2;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > max)
        return -2;
    *value_p = v;
    return 0;
}

static void rgpu_opt_size_str(uint64_t size, char *out, size_t cap)
{
    static const char units[] = "KMGTP";
    int unit = -1;

    while (size && size % 1024 == 0 && unit < 4) {
        size /= 1024;
        unit++;
    }
    if (unit < 0)
        snprintf(out, cap, "%llu", (unsigned long long)size);
    else
        snprintf(out, cap, "%llu%c", (unsigned long long)size, units[unit]);
}

static void rgpu_opt_ms_str(uint64_t ms, char *out, size_t cap)
{
    if (ms % 1000 == 0)
        snprintf(out, cap, "%llu", (unsigned long long)(ms / 1000));
    else
        snprintf(out, cap, "%llu.%03llu", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000));
}

/* [scheme://]HOST:PORT, checked with the address splitter every program
 * uses later; the scheme itself is the transport's to judge. */
static int rgpu_opt_addr_ok(const char *value)
{
    const char *sep = strstr(value, "://");
    char host[256];
    uint16_t port;

    if (sep) {
        for (const char *c = value; c < sep; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
                return 0;
        if (sep == value)
            return 0;
        value = sep + 3;
    }
    return rgpu_addr_split(value, host, sizeof(host), &port) == RGPU_OK;
}

static int rgpu_opt_store_string(const rgpu_opt_t *opt, void *field, const char *value,
                                 char *why, size_t why_cap)
{
    if (strlen(value) >= opt->cap) {
        snprintf(why, why_cap, "longer than %zu characters", opt->cap - 1);
        return -1;
    }
    strcpy(field, value);
    return 0;
}

/* Parses value for opt into field. append: an ADDR_LIST value is added to
 * the list in field rather than replacing it. */
static int rgpu_opt_parse(const rgpu_opt_t *opt, void *field, const char *value, int append,
                          char *why, size_t why_cap)
{
    switch (opt->type) {
    case RGPU_OPT_STRING:
        return rgpu_opt_store_string(opt, field, value, why, why_cap);
    case RGPU_OPT_ADDR:
        if (*value == '\0' && opt->def && *opt->def == '\0') {
            *(char *)field = '\0';
            return 0;
        }
        if (!rgpu_opt_addr_ok(value)) {
            snprintf(why, why_cap, "expected HOST:PORT (e.g. 127.0.0.1:7070, [::1]:0 or "
                                   "tcp://node1:7070)");
            return -1;
        }
        return rgpu_opt_store_string(opt, field, value, why, why_cap);
    case RGPU_OPT_ADDR_LIST: {
        char list[8192], *item, *save = NULL;
        size_t used = 0, len = strlen(value);
        char *dst = field;

        if (len >= sizeof(list)) {
            snprintf(why, why_cap, "longer than %zu characters", sizeof(list) - 1);
            return -1;
        }
        memcpy(list, value, len + 1);
        if (append && *dst)
            used = strlen(dst);
        else
            dst[0] = '\0';
        for (item = strtok_r(list, ", \t", &save); item; item = strtok_r(NULL, ", \t", &save)) {
            size_t ilen = strlen(item);

            if (!rgpu_opt_addr_ok(item)) {
                snprintf(why, why_cap, "\"%.100s\" is not HOST:PORT (e.g. 127.0.0.1:7070 or "
                                       "tcp://[::1]:0)", item);
                return -1;
            }
            if (used + ilen + 2 > opt->cap) {
                snprintf(why, why_cap, "the list is longer than %zu characters", opt->cap - 1);
                return -1;
            }
            used += (size_t)snprintf(dst + used, opt->cap - used, "%s%s", used ? "," : "", item);
        }
        if (!used && !(opt->def && *opt->def == '\0')) {
            snprintf(why, why_cap, "expected at least one HOST:PORT");
            return -1;
        }
        return 0;
    }
    case RGPU_OPT_SIZE: {
        uint64_t size;
        char lo[32], hi[32];

        if (rgpu_size_parse(value, &size) != 0) {
            snprintf(why, why_cap, "expected a size such as 4096, 64K, 4M or 16G");
            return -1;
        }
        if (size < opt->min || size > opt->max) {
            rgpu_opt_size_str(opt->min, lo, sizeof(lo));
            rgpu_opt_size_str(opt->max, hi, sizeof(hi));
            snprintf(why, why_cap, "must be between %s and %s", lo, hi);
            return -1;
        }
        *(uint64_t *)field = size;
        return 0;
    }
    case RGPU_OPT_UINT: {
        uint64_t v = 0;
        int rc = rgpu_opt_decimal(value, opt->max, &v);

        if (rc == -1) {
            snprintf(why, why_cap, "expected a whole number between %llu and %llu",
                     (unsigned long long)opt->min, (unsigned long long)opt->max);
            return -1;
        }
        if (rc == -2 || v < opt->min) {
            snprintf(why, why_cap, "must be between %llu and %llu", (unsigned long long)opt->min,
                     (unsigned long long)opt->max);
            return -1;
        }
        if (opt->cap == sizeof(uint64_t))
            *(uint64_t *)field = v;
        else
            *(int *)field = (int)v;
        return 0;
    }
    case RGPU_OPT_SECONDS_MS: {
        const char *dot = strchr(value, '.');
        char whole[24], lo[32], hi[32];
        uint64_t s = 0, ms = 0;
        size_t wlen = dot ? (size_t)(dot - value) : strlen(value);
        int ok = wlen > 0 && wlen < sizeof(whole);

        if (ok) {
            memcpy(whole, value, wlen);
            whole[wlen] = '\0';
            ok = rgpu_opt_decimal(whole, UINT64_MAX / 1000 - 1000, &s) == 0;
        }
        /* Up to three decimals: milliseconds are the unit underneath. */
        if (ok && dot) {
            size_t dlen = strlen(dot + 1);
            uint64_t frac = 0;

            ok = dlen >= 1 && dlen <= 3 && rgpu_opt_decimal(dot + 1, 999, &frac) == 0;
            for (size_t k = dlen; ok && k < 3; k++)
                frac *= 10;
            ms = frac;
        }
        rgpu_opt_ms_str(opt->min, lo, sizeof(lo));
        rgpu_opt_ms_str(opt->max, hi, sizeof(hi));
        if (!ok) {
            snprintf(why, why_cap, "expected seconds such as 10 or 0.5 (%s to %s)", lo, hi);
            return -1;
        }
        ms += s * 1000;
        if (ms < opt->min || ms > opt->max) {
            snprintf(why, why_cap, "must be between %s and %s seconds", lo, hi);
            return -1;
        }
        *(int *)field = (int)ms;
        return 0;
    }
    case RGPU_OPT_FLAG:
        if (!strcmp(value, "yes") || !strcmp(value, "1") || !strcmp(value, "true") ||
            !strcmp(value, "on")) {
            *(int *)field = 1;
        } else if (!strcmp(value, "no") || !strcmp(value, "0") || !strcmp(value, "false") ||
                   !strcmp(value, "off")) {
            *(int *)field = 0;
        } else {
            snprintf(why, why_cap, "expected yes or no");
            return -1;
        }
        return 0;
    case RGPU_OPT_CHOICE: {
        size_t used = 0;

        for (int k = 0; opt->choices[k]; k++) {
            if (strcmp(value, opt->choices[k]) == 0) {
                *(int *)field = opt->values ? opt->values[k] : k;
                return 0;
            }
        }
        used = (size_t)snprintf(why, why_cap, "expected ");
        for (int k = 0; opt->choices[k] && used < why_cap; k++)
            used += (size_t)snprintf(why + used, why_cap - used, "%s%s",
                                     k == 0 ? "" : opt->choices[k + 1] ? ", " : " or ",
                                     opt->choices[k]);
        return -1;
    }
    }
    snprintf(why, why_cap, "unknown option type");
    return -1;
}

void rgpu_opt_format(const rgpu_opt_t *opt, const void *cfg, char *out, size_t cap)
{
    const char *field = (const char *)cfg + opt->offset;

    switch (opt->type) {
    case RGPU_OPT_STRING:
    case RGPU_OPT_ADDR:
    case RGPU_OPT_ADDR_LIST:
        snprintf(out, cap, "%s", field);
        return;
    case RGPU_OPT_SIZE:
        rgpu_opt_size_str(*(const uint64_t *)field, out, cap);
        return;
    case RGPU_OPT_UINT:
        if (opt->cap == sizeof(uint64_t))
            snprintf(out, cap, "%llu", (unsigned long long)*(const uint64_t *)field);
        else
            snprintf(out, cap, "%d", *(const int *)field);
        return;
    case RGPU_OPT_SECONDS_MS:
        rgpu_opt_ms_str((uint64_t)*(const int *)field, out, cap);
        return;
    case RGPU_OPT_FLAG:
        snprintf(out, cap, "%s", *(const int *)field ? "yes" : "no");
        return;
    case RGPU_OPT_CHOICE:
        for (int k = 0; opt->choices[k]; k++) {
            if ((opt->values ? opt->values[k] : k) == *(const int *)field) {
                snprintf(out, cap, "%s", opt->choices[k]);
                return;
            }
        }
        break;
    }
    snprintf(out, cap, "?");
}

static const char *rgpu_opt_section(const rgpu_opt_table_t *table, const rgpu_opt_t *opt)
{
    return opt->section ? opt->section : table->section;
}

/* ---- one value from one source ---- */

typedef struct {
    const rgpu_opt_table_t *table;
    void *cfg;
    rgpu_opt_state_t *state;
    FILE *err;
} rgpu_opt_ctx_t;

static int rgpu_opt_apply(rgpu_opt_ctx_t *ctx, size_t i, const char *value, rgpu_opt_from_t from,
                          int line, int append)
{
    const rgpu_opt_t *opt = &ctx->table->opts[i];
    char why[200];

    if (rgpu_opt_parse(opt, (char *)ctx->cfg + opt->offset, value, append, why,
                       sizeof(why)) != 0) {
        switch (from) {
        case RGPU_OPT_FROM_DEFAULT:
            fprintf(ctx->err, "%s: bad default \"%s\" for %s: %s (a bug in the option table)\n",
                    ctx->table->program, value, opt->name, why);
            break;
        case RGPU_OPT_FROM_FILE:
            fprintf(ctx->err, "%s: %s:%d: bad value \"%s\" for '%s' in [%s]: %s\n",
                    ctx->table->program, ctx->state->file, line, value, opt->name,
                    rgpu_opt_section(ctx->table, opt), why);
            break;
        case RGPU_OPT_FROM_ENV:
            fprintf(ctx->err, "%s: %s=%s: %s\n", ctx->table->program, opt->env, value, why);
            break;
        case RGPU_OPT_FROM_CMDLINE:
            fprintf(ctx->err, "%s: --%s %s: %s\n", ctx->table->program, opt->name, value, why);
            break;
        }
        return -1;
    }
    ctx->state->origin[i].from = from;
    ctx->state->origin[i].line = line;
    return 0;
}

/* ---- the file ---- */

typedef struct {
    rgpu_opt_ctx_t *ctx;
    FILE *fp;
    int line;                   /* of the line last handed to inih */
    int indented;               /* that line starts with a blank: a continuation */
    int failed;                 /* an error was printed: stop reading */
    int first_line[RGPU_OPT_MAX_ROWS];   /* where each key was set; 0 = not yet */
    int last_row;               /* the row of the previous key line, for continuations */
} rgpu_opt_file_t;

/* inih's reader: one line at a time, counted, so that the handler knows
 * which line it is on (Debian's inih is built without line numbers in
 * handlers). Returning NULL ends the parse: after an error, and at a line
 * longer than inih's buffer, which it would otherwise split in two. */
static char *rgpu_opt_file_reader(char *buf, int num, void *stream)
{
    rgpu_opt_file_t *f = stream;
    size_t len;

    if (f->failed || !fgets(buf, num, f->fp))
        return NULL;
    f->line++;
    len = strlen(buf);
    if (len + 1 == (size_t)num && buf[len - 1] != '\n' && !feof(f->fp)) {
        fprintf(f->ctx->err, "%s: %s:%d: line longer than %d characters\n",
                f->ctx->table->program, f->ctx->state->file, f->line, num - 2);
        f->failed = 1;
        return NULL;
    }
    f->indented = buf[0] == ' ' || buf[0] == '\t';
    /* inih reports a syntax error by its line only once the whole file is
     * read, after any later key's error: catch the two it knows here, in
     * order, with the text of the line. */
    {
        const char *t = buf + strspn(buf, " \t");
        size_t tlen = strcspn(t, "\r\n");

        if (*t == '[' && !memchr(t, ']', tlen)) {
            fprintf(f->ctx->err, "%s: %s:%d: bad section header \"%.*s\" (expected [name])\n",
                    f->ctx->table->program, f->ctx->state->file, f->line, (int)tlen, t);
            f->failed = 1;
            return NULL;
        }
        if (!f->indented && tlen && *t != '[' && *t != '#' && *t != ';' &&
            !memchr(t, '=', tlen) && !memchr(t, ':', tlen)) {
            fprintf(f->ctx->err, "%s: %s:%d: '%.*s' has no value (expected key = value)\n",
                    f->ctx->table->program, f->ctx->state->file, f->line, (int)tlen, t);
            f->failed = 1;
            return NULL;
        }
    }
    /* inih ends a value at " ;" only; " #" ends it too, as in the files
     * --print-config writes ("listen = ...   # default") and in most
     * Unix configuration files. A value cannot hold " #" then. */
    for (char *c = buf + 1; *c; c++) {
        if (*c == '#' && (c[-1] == ' ' || c[-1] == '\t')) {
            c[0] = '\n';
            c[1] = '\0';
            break;
        }
    }
    return buf;
}

static int rgpu_opt_file_handler(void *user, const char *section, const char *name,
                                 const char *value)
{
    rgpu_opt_file_t *f = user;
    rgpu_opt_ctx_t *ctx = f->ctx;
    const rgpu_opt_table_t *table = ctx->table;
    const char *file = ctx->state->file;
    int known_section = 0;
    size_t i;

    if (f->failed)
        return 0;
    /* inih hands an indented line on as another value of the previous key:
     * lists may go on over several lines, nothing else may. */
    if (f->indented && f->last_row >= 0 && strcmp(table->opts[f->last_row].name, name) == 0) {
        if (table->opts[f->last_row].type != RGPU_OPT_ADDR_LIST) {
            fprintf(ctx->err, "%s: %s:%d: '%s' in [%s] goes on over an indented line; only "
                              "lists may (or unindent the line)\n",
                    table->program, file, f->line, name, section);
            goto out_fail;
        }
        if (rgpu_opt_apply(ctx, (size_t)f->last_row, value, RGPU_OPT_FROM_FILE,
                           f->first_line[f->last_row], 1) != 0)
            goto out_fail;
        return 1;
    }
    if (!*section) {
        fprintf(ctx->err, "%s: %s:%d: key '%s' comes before any [section] (put it under [%s])\n",
                table->program, file, f->line, name, table->section);
        goto out_fail;
    }
    for (i = 0; i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];

        if (strcmp(rgpu_opt_section(table, opt), section) != 0)
            continue;
        known_section = 1;
        if (strcmp(opt->name, name) == 0 && !(opt->flags & RGPU_OPT_NO_FILE))
            break;
    }
    if (!known_section) {
        fprintf(ctx->err, "%s: %s:%d: unknown section [%s] (this file has [%s])\n",
                table->program, file, f->line, section, table->section);
        goto out_fail;
    }
    if (i == table->nopts) {
        fprintf(ctx->err, "%s: %s:%d: unknown key '%s' in [%s]\n", table->program, file, f->line,
                name, section);
        goto out_fail;
    }
    if (f->first_line[i]) {
        fprintf(ctx->err, "%s: %s:%d: duplicate key '%s' in [%s] (first set on line %d)\n",
                table->program, file, f->line, name, section, f->first_line[i]);
        goto out_fail;
    }
    /* Empty is a value where it means "none" (a string, an address that is
     * off by default); for anything else the value was forgotten. */
    if (*value == '\0' && table->opts[i].type != RGPU_OPT_STRING &&
        !((table->opts[i].type == RGPU_OPT_ADDR || table->opts[i].type == RGPU_OPT_ADDR_LIST) &&
          *table->opts[i].def == '\0')) {
        fprintf(ctx->err, "%s: %s:%d: key '%s' in [%s] has no value\n", table->program, file,
                f->line, name, section);
        goto out_fail;
    }
    f->first_line[i] = f->line;
    f->last_row = (int)i;
    if (rgpu_opt_apply(ctx, i, value, RGPU_OPT_FROM_FILE, f->line, 0) != 0)
        goto out_fail;
    return 1;

out_fail:
    f->failed = 1;
    return 0;
}

/* The text of line n of fp, trimmed, for inih's syntax errors (inih says
 * only which line). */
static void rgpu_opt_file_line(FILE *fp, int n, char *out, size_t cap)
{
    char buf[256];
    int line = 0;

    out[0] = '\0';
    rewind(fp);
    while (fgets(buf, sizeof(buf), fp)) {
        if (++line == n) {
            size_t len = strcspn(buf, "\r\n");
            const char *s = buf;

            buf[len] = '\0';
            while (*s == ' ' || *s == '\t')
                s++;
            snprintf(out, cap, "%.100s", s);
            return;
        }
    }
}

/* Reads path into ctx. required: a file the user named (must exist). */
static int rgpu_opt_read_file(rgpu_opt_ctx_t *ctx, const char *path, int required)
{
    rgpu_opt_file_t f;
    int rc;

    memset(&f, 0, sizeof(f));
    f.ctx = ctx;
    f.last_row = -1;
    if (strlen(path) >= sizeof(ctx->state->file)) {
        fprintf(ctx->err, "%s: configuration file name longer than %zu characters\n",
                ctx->table->program, sizeof(ctx->state->file) - 1);
        return -1;
    }
    f.fp = fopen(path, "r");
    if (!f.fp) {
        if (!required && errno == ENOENT)
            return 0;
        fprintf(ctx->err, "%s: cannot read the configuration file %s: %s\n", ctx->table->program,
                path, strerror(errno));
        return -1;
    }
    strcpy(ctx->state->file, path);
    rc = ini_parse_stream(rgpu_opt_file_reader, &f, rgpu_opt_file_handler, &f);
    if (!f.failed && ferror(f.fp)) {
        fprintf(ctx->err, "%s: cannot read the configuration file %s: %s\n", ctx->table->program,
                path, strerror(errno));
        f.failed = 1;
    }
    if (!f.failed && rc > 0) {
        /* A syntax error inih found on its own: the handler was not called. */
        char text[128];

        rgpu_opt_file_line(f.fp, rc, text, sizeof(text));
        if (text[0] == '[')
            fprintf(ctx->err, "%s: %s:%d: bad section header \"%s\" (expected [name])\n",
                    ctx->table->program, path, rc, text);
        else
            fprintf(ctx->err, "%s: %s:%d: '%s' has no value (expected key = value)\n",
                    ctx->table->program, path, rc, text);
        f.failed = 1;
    }
    fclose(f.fp);
    return f.failed ? -1 : 0;
}

/* ---- the command line ---- */

static const rgpu_opt_t *rgpu_opt_find(const rgpu_opt_table_t *table, const char *name,
                                       size_t len, size_t *index_p)
{
    for (size_t i = 0; i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];

        if (len == 1 && opt->short_name == name[0] && !(opt->flags & RGPU_OPT_NO_CMDLINE)) {
            *index_p = i;
            return opt;
        }
    }
    for (size_t i = 0; i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];

        if (!(opt->flags & RGPU_OPT_NO_CMDLINE) && strlen(opt->name) == len &&
            strncmp(opt->name, name, len) == 0) {
            *index_p = i;
            return opt;
        }
    }
    return NULL;
}

/* The argument that ends the options of a positional table, or argc. */
static int rgpu_opt_args_end(const rgpu_opt_table_t *table, int argc, char *const argv[])
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        size_t idx, len;
        const rgpu_opt_t *opt;

        if (table->positional != RGPU_OPT_ARGS_COMMAND)
            continue;
        if (strcmp(arg, "--") == 0 || arg[0] != '-' || arg[1] == '\0')
            return i;
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (arg[1] != '-') {
            opt = !arg[2] ? rgpu_opt_find(table, arg + 1, 1, &idx) : NULL;
            len = 0;
        } else {
            len = strcspn(arg + 2, "=");
            opt = rgpu_opt_find(table, arg + 2, len, &idx);
        }
        if (opt && (arg[1] != '-' || !arg[2 + len]) && opt->type != RGPU_OPT_FLAG)
            i++;        /* its value follows */
    }
    return argc;
}

/* Which file to read: --config, then the variable, then the default. */
static const char *rgpu_opt_config_path(const rgpu_opt_table_t *table, int argc,
                                        char *const argv[], int end,
                                        rgpu_opt_getenv_fn getenv_fn, int *required_p,
                                        FILE *err)
{
    const char *path = NULL;

    for (int i = 1; i < end; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(err, "%s: option --config needs a value (FILE)\n", table->program);
                *required_p = -1;
                return NULL;
            }
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
    }
    if (path) {
        *required_p = 1;
        return path;
    }
    if (table->config_env && getenv_fn && (path = getenv_fn(table->config_env)) && *path) {
        *required_p = 1;
        return path;
    }
    *required_p = 0;
    return table->config_file;
}

size_t rgpu_opt_row(const rgpu_opt_table_t *table, const char *name)
{
    for (size_t i = 0; i < table->nopts; i++)
        if (strcmp(table->opts[i].name, name) == 0)
            return i;
    return 0;
}

int rgpu_opt_set(const rgpu_opt_table_t *table, void *cfg, rgpu_opt_state_t *state,
                 const char *name, const char *value, char *why, size_t why_cap)
{
    size_t i;
    const rgpu_opt_t *opt = rgpu_opt_find(table, name, strlen(name), &i);

    if (!opt) {
        snprintf(why, why_cap, "unknown option --%s", name);
        return -1;
    }
    if (rgpu_opt_parse(opt, (char *)cfg + opt->offset, value, 0, why, why_cap) != 0)
        return -1;
    state->origin[i].from = RGPU_OPT_FROM_CMDLINE;
    state->origin[i].line = 0;
    return 0;
}

rgpu_opt_action_t rgpu_opt_load(const rgpu_opt_table_t *table, void *cfg,
                                rgpu_opt_state_t *state, int argc, char *const argv[],
                                rgpu_opt_getenv_fn getenv_fn, FILE *out, FILE *err)
{
    rgpu_opt_ctx_t ctx = {table, cfg, state, err};
    unsigned long long listed = 0;   /* ADDR_LIST rows given on the command line so far */
    const char *path;
    int required, end;

    memset(state, 0, sizeof(*state));
    if (table->nopts > RGPU_OPT_MAX_ROWS) {
        fprintf(err, "%s: option table has more than %d rows\n", table->program,
                RGPU_OPT_MAX_ROWS);
        return RGPU_OPT_EXIT_USAGE;
    }
    for (size_t i = 0; i < table->nopts; i++)
        if (rgpu_opt_apply(&ctx, i, table->opts[i].def, RGPU_OPT_FROM_DEFAULT, 0, 0) != 0)
            return RGPU_OPT_EXIT_USAGE;
    end = rgpu_opt_args_end(table, argc, argv);
    state->argi = end;

    /* --help, --version and --man answer whatever the file says. */
    for (int i = 1; i < end; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            rgpu_opt_usage(table, out);
            return RGPU_OPT_EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            fprintf(out, "%s %s\n", table->program, RGPU_VERSION);
            return RGPU_OPT_EXIT_OK;
        }
        if (strcmp(argv[i], "--man") == 0) {
            rgpu_opt_man(table, out);
            return RGPU_OPT_EXIT_OK;
        }
        if (strcmp(argv[i], "--man-conf") == 0) {
            rgpu_opt_man_conf(table, out);
            return RGPU_OPT_EXIT_OK;
        }
    }

    path = rgpu_opt_config_path(table, argc, argv, end, getenv_fn, &required, err);
    if (required < 0)
        return RGPU_OPT_EXIT_USAGE;
    if (path && *path && rgpu_opt_read_file(&ctx, path, required) != 0)
        return RGPU_OPT_EXIT_USAGE;

    /* An empty variable counts as unset, as shells make it easy to leave
     * one empty ("RGPU_SCHEDULER= rgpu ..."); the command line turns a
     * value off with --name= instead. */
    for (size_t i = 0; getenv_fn && i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];
        const char *value;

        if (!opt->env || (opt->flags & RGPU_OPT_NO_ENV))
            continue;
        value = getenv_fn(opt->env);
        if (value && *value && rgpu_opt_apply(&ctx, i, value, RGPU_OPT_FROM_ENV, 0, 0) != 0)
            return RGPU_OPT_EXIT_USAGE;
    }

    for (int i = 1; i < end; i++) {
        const char *arg = argv[i], *value;
        size_t len, idx;
        const rgpu_opt_t *opt;

        if (strcmp(arg, "--print-config") == 0) {
            state->print_config = 1;
            continue;
        }
        if (strcmp(arg, "--config") == 0) {
            i++;        /* read above */
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0)
            continue;
        if (arg[0] != '-' || arg[1] == '\0') {
            if (table->positional == RGPU_OPT_ARGS_ANY && state->nargs < RGPU_OPT_MAX_ARGS) {
                state->args[state->nargs++] = arg;
                continue;
            }
            fprintf(err, "%s: unexpected argument \"%s\" (try --help)\n", table->program, arg);
            return RGPU_OPT_EXIT_USAGE;
        }
        if (arg[1] != '-') {
            /* -n VALUE, -q: a single letter, never grouped. */
            opt = !arg[2] ? rgpu_opt_find(table, arg + 1, 1, &idx) : NULL;
            len = 0;
        } else {
            len = strcspn(arg + 2, "=");
            opt = rgpu_opt_find(table, arg + 2, len, &idx);
        }
        if (!opt) {
            fprintf(err, "%s: unknown option \"%s\" (try --help)\n", table->program, arg);
            return RGPU_OPT_EXIT_USAGE;
        }
        if (arg[1] == '-' && arg[2 + len] == '=') {
            value = arg + 3 + len;
        } else if (opt->type == RGPU_OPT_FLAG) {
            value = "yes";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(err, "%s: option --%s needs a value (%s)\n", table->program, opt->name,
                    opt->metavar ? opt->metavar : "VALUE");
            return RGPU_OPT_EXIT_USAGE;
        }
        /* A repeated list option adds to what the command line gave before
         * it, and replaces what the file or the environment gave. */
        if (rgpu_opt_apply(&ctx, idx, value, RGPU_OPT_FROM_CMDLINE, 0,
                           opt->type == RGPU_OPT_ADDR_LIST && (listed >> idx & 1)) != 0)
            return RGPU_OPT_EXIT_USAGE;
        listed |= 1ull << idx;
    }
    return RGPU_OPT_RUN;
}

/* ---- printing ---- */

void rgpu_opt_origin_str(const rgpu_opt_table_t *table, const rgpu_opt_state_t *state,
                         size_t row, char *out, size_t cap)
{
    const rgpu_opt_origin_t *o = &state->origin[row];

    switch (o->from) {
    case RGPU_OPT_FROM_DEFAULT:
        snprintf(out, cap, "default");
        return;
    case RGPU_OPT_FROM_FILE:
        snprintf(out, cap, "%s:%d", state->file, o->line);
        return;
    case RGPU_OPT_FROM_ENV:
        snprintf(out, cap, "env %s", table->opts[row].env);
        return;
    case RGPU_OPT_FROM_CMDLINE:
        snprintf(out, cap, "command line");
        return;
    }
    snprintf(out, cap, "?");
}

void rgpu_opt_print(const rgpu_opt_table_t *table, const void *cfg,
                    const rgpu_opt_state_t *state, FILE *out)
{
    const char *section = NULL;

    fprintf(out, "# %s: effective configuration (file: %s)\n", table->program,
            state->file[0] ? state->file : "none read");
    for (size_t i = 0; i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];
        char value[8300], line[8400], from[600];

        /* Secrets and per-run switches are not file keys; show them
         * commented, so the output still reads back as a file. */
        if (!section || strcmp(section, rgpu_opt_section(table, opt)) != 0) {
            section = rgpu_opt_section(table, opt);
            fprintf(out, "[%s]\n", section);
        }
        rgpu_opt_format(opt, cfg, value, sizeof(value));
        if ((opt->flags & RGPU_OPT_SECRET) && value[0])
            snprintf(value, sizeof(value), "(set, not shown)");
        rgpu_opt_origin_str(table, state, i, from, sizeof(from));
        snprintf(line, sizeof(line), "%s%s = %s", opt->flags & RGPU_OPT_NO_FILE ? "#" : "",
                 opt->name, value);
        fprintf(out, "%-40s # %s\n", line, from);
    }
}

/* Writes text wrapped at 79 columns, every line after the first indented
 * by indent, the first starting at column col. */
static void rgpu_opt_wrap(FILE *out, const char *text, int col, int indent)
{
    const char *p = text;

    while (*p) {
        size_t word = strcspn(p, " \n");

        if (col > indent && col + 1 + (int)word > 79) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", (int)word, p);
        col += (int)word;
        p += word;
        if (*p == '\n' && p[1] == '\n') {
            fprintf(out, "\n\n%*s", indent, "");
            col = indent;
            p += 2;
        }
        while (*p == ' ' || *p == '\n')
            p++;
    }
    fputc('\n', out);
}

static void rgpu_opt_default_str(const rgpu_opt_t *opt, char *out, size_t cap)
{
    snprintf(out, cap, "%s", *opt->def ? opt->def : "none");
}

void rgpu_opt_usage(const rgpu_opt_table_t *table, FILE *out)
{
    fprintf(out, "usage: %s %s\n\n", table->program, table->synopsis);
    rgpu_opt_wrap(out, table->description, 0, 0);
    fprintf(out, "\nOptions (command line > environment > configuration file > default):\n");
    for (size_t i = 0; i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];
        char head[96], def[300], meta[400];
        int len;

        if (opt->flags & RGPU_OPT_NO_CMDLINE)
            continue;
        char shortopt[8] = "";

        if (opt->short_name)
            snprintf(shortopt, sizeof(shortopt), "-%c, ", opt->short_name);
        if (opt->type == RGPU_OPT_FLAG)
            len = snprintf(head, sizeof(head), "  %s--%s", shortopt, opt->name);
        else
            len = snprintf(head, sizeof(head), "  %s--%s %s", shortopt, opt->name, opt->metavar);
        fputs(head, out);
        if (len >= 28) {
            fprintf(out, "\n%28s", "");
            len = 28;
        }
        fprintf(out, "%*s", 28 - len, "");
        rgpu_opt_wrap(out, opt->help, 28, 28);
        rgpu_opt_default_str(opt, def, sizeof(def));
        snprintf(meta, sizeof(meta), "[%s%s%s%s%s%s%sdefault: %s]",
                 opt->flags & RGPU_OPT_NO_FILE ? "" : "key ",
                 opt->flags & RGPU_OPT_NO_FILE ? "" : opt->name,
                 opt->flags & RGPU_OPT_NO_FILE ? "" : "; ",
                 opt->env && !(opt->flags & RGPU_OPT_NO_ENV) ? "env " : "",
                 opt->env && !(opt->flags & RGPU_OPT_NO_ENV) ? opt->env : "",
                 opt->env && !(opt->flags & RGPU_OPT_NO_ENV) ? "; " : "",
                 opt->type == RGPU_OPT_ADDR_LIST ? "repeatable; " : "", def);
        fprintf(out, "%28s", "");
        rgpu_opt_wrap(out, meta, 28, 30);
    }
    if (table->extra_help)
        fputs(table->extra_help, out);
    fprintf(out, "  %-25s read FILE instead of %s\n", "--config FILE",
            table->config_file ? table->config_file : "none");
    if (table->config_env)
        fprintf(out, "  %-25s (or the file $%s names)\n", "", table->config_env);
    fprintf(out, "  %-25s print the effective configuration, with where each\n"
                 "  %-25s value came from, and exit\n", "--print-config", "");
    fprintf(out, "  %-25s print this help and exit\n", "--help");
    fprintf(out, "  %-25s print the version and exit\n", "--version");
}

/* ---- roff ---- */

/* Text for a roff line: backslashes and hyphens escaped, and a period or
 * apostrophe that would start a line protected. */
static void rgpu_opt_roff(FILE *out, const char *s)
{
    int bol = 1;

    for (; *s; s++) {
        if (bol && (*s == '.' || *s == '\''))
            fputs("\\&", out);
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
        bol = *s == '\n';
    }
}

/* Paragraphs of text separated by blank lines, as .PP blocks. */
static void rgpu_opt_roff_paragraphs(FILE *out, const char *text)
{
    const char *p = text;

    while (*p) {
        const char *end = strstr(p, "\n\n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[2048];

        snprintf(buf, sizeof(buf), "%.*s", (int)len, p);
        fputs(".PP\n", out);
        rgpu_opt_roff(out, buf);
        fputc('\n', out);
        p += len;
        while (*p == '\n')
            p++;
    }
}

static void rgpu_opt_man_header(FILE *out, const char *title, int section, const char *summary)
{
    char upper[96];
    size_t k;

    for (k = 0; title[k] && k + 1 < sizeof(upper); k++)
        upper[k] = (char)(title[k] >= 'a' && title[k] <= 'z' ? title[k] - 32 : title[k]);
    upper[k] = '\0';
    fprintf(out, ".\\\" Generated from the option table by `%s --man`: do not edit.\n", title);
    fprintf(out, ".TH %s %d \"\" \"rgpu %s\" \"rgpu\"\n.SH NAME\n", upper, section, RGPU_VERSION);
    rgpu_opt_roff(out, title);
    fputs(" \\- ", out);
    rgpu_opt_roff(out, summary);
    fputc('\n', out);
}

static void rgpu_opt_man_row_meta(FILE *out, const rgpu_opt_t *opt, int as_key)
{
    char def[300];

    rgpu_opt_default_str(opt, def, sizeof(def));
    fputs(".br\n", out);
    if (as_key && opt->flags & RGPU_OPT_NO_CMDLINE)
        fputs("Command line: none. ", out);
    else if (as_key) {
        fputs("Command line: \\fB\\-\\-", out);
        rgpu_opt_roff(out, opt->name);
        fputs("\\fR. ", out);
    } else if (!(opt->flags & RGPU_OPT_NO_FILE)) {
        fputs("File key: \\fB", out);
        rgpu_opt_roff(out, opt->name);
        fputs("\\fR. ", out);
    }
    if (opt->env && !(opt->flags & RGPU_OPT_NO_ENV)) {
        fputs("Environment: \\fB", out);
        rgpu_opt_roff(out, opt->env);
        fputs("\\fR. ", out);
    }
    fputs("Default: ", out);
    rgpu_opt_roff(out, def);
    fputs(".\n", out);
}

void rgpu_opt_man(const rgpu_opt_table_t *table, FILE *out)
{
    rgpu_opt_man_header(out, table->program, table->man_section, table->summary);
    fputs(".SH SYNOPSIS\n", out);
    if (!table->key_value) {
        /* A plugin's synopsis is its plugstack.conf line, not a command. */
        fputs(".B ", out);
        rgpu_opt_roff(out, table->program);
        fputc('\n', out);
    }
    /* Lines of the synopsis, each its own (--help indents them). */
    for (const char *line = table->synopsis; *line;) {
        size_t len;
        char buf[512];

        line += strspn(line, " ");
        len = strcspn(line, "\n");
        snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
        rgpu_opt_roff(out, buf);
        line += len;
        if (*line == '\n') {
            fputs("\n.br\n", out);
            line++;
        }
    }
    fputs("\n.SH DESCRIPTION\n", out);
    rgpu_opt_roff_paragraphs(out, table->description);
    if (table->key_value)
        fputs(".SH ARGUMENTS\n.PP\nWords of the form \\fINAME\\fR=\\fIVALUE\\fR after the "
              "plugin's path in its plugstack.conf line. Each wins over the configuration "
              "file.\n", out);
    else
        fputs(".SH OPTIONS\n.PP\nEach option is also read from the configuration file and, "
              "where one is named, an environment variable. The command line wins over the "
              "environment, which wins over the file, which wins over the built\\-in "
              "default.\n", out);
    for (size_t i = 0; i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];

        if (opt->flags & RGPU_OPT_NO_CMDLINE)
            continue;
        fputs(".TP\n.B ", out);
        if (opt->short_name)
            fprintf(out, "\\-%c, ", opt->short_name);
        if (!table->key_value)
            fputs("\\-\\-", out);
        rgpu_opt_roff(out, opt->name);
        if (opt->type != RGPU_OPT_FLAG) {
            fputs(table->key_value ? "=\\fI" : " \\fI", out);
            rgpu_opt_roff(out, opt->metavar);
            fputs("\\fR", out);
        }
        fputc('\n', out);
        rgpu_opt_roff(out, opt->help);
        fputc('\n', out);
        if (table->key_value) {
            char def[300];

            rgpu_opt_default_str(opt, def, sizeof(def));
            fputs(".br\nDefault: ", out);
            rgpu_opt_roff(out, def);
            fputs(".\n", out);
        } else {
            rgpu_opt_man_row_meta(out, opt, 0);
        }
    }
    if (table->key_value)
        goto out_extra;
    fputs(".TP\n.BI \\-\\-config \" FILE\"\nRead \\fIFILE\\fR instead of \\fI", out);
    rgpu_opt_roff(out, table->config_file ? table->config_file : "none");
    fputs("\\fR", out);
    if (table->config_env) {
        fputs(" (or the file named by \\fB", out);
        rgpu_opt_roff(out, table->config_env);
        fputs("\\fR)", out);
    }
    fputs(". A file named this way must exist; the default one may be absent.\n"
          ".TP\n.B \\-\\-print\\-config\nPrint the effective configuration, each value with "
          "where it came from (default, \\fIFILE\\fR:\\fILINE\\fR, env \\fIVAR\\fR or command "
          "line), in the file's format, and exit.\n"
          ".TP\n.B \\-\\-help\nPrint the options and exit.\n"
          ".TP\n.B \\-\\-version\nPrint the version and exit.\n", out);
out_extra:
    if (table->config_file) {
        fputs(".SH FILES\n.TP\n.I ", out);
        rgpu_opt_roff(out, table->config_file);
        fputs("\nThe configuration file; see \\fB", out);
        rgpu_opt_roff(out, table->conf_title);
        fputs("\\fR(5).\n", out);
    }
    if (table->man_extra)
        fputs(table->man_extra, out);
    fputs(".SH SEE ALSO\n\\fBrgpu\\-server\\fR(8), \\fBrgpu\\-scheduler\\fR(8), \\fBrgpu\\fR(1), "
          "\\fBrgpu\\-bench\\fR(1), \\fBspank\\-rgpu\\fR(8), \\fBrgpu\\-server.conf\\fR(5), "
          "\\fBrgpu\\-scheduler.conf\\fR(5), \\fBrgpu\\-client.conf\\fR(5)\n", out);
}

void rgpu_opt_man_conf(const rgpu_opt_table_t *table, FILE *out)
{
    const char *section = NULL;

    rgpu_opt_man_header(out, table->conf_title, 5, "rgpu configuration file");
    fputs(".SH SYNOPSIS\n", out);
    rgpu_opt_roff(out, table->config_file ? table->config_file : "");
    fputs("\n.SH DESCRIPTION\n.PP\n", out);
    if (table->conf_readers) {
        fprintf(out, "Read by %s at start.", table->conf_readers);
    } else {
        fputs("Read by \\fB", out);
        rgpu_opt_roff(out, table->program);
        fprintf(out, "\\fR(%d) at start.", table->man_section);
    }
    fputs(" The file is in INI format: \\fB[section]\\fR headers and \\fIkey\\fR = "
          "\\fIvalue\\fR lines; lines starting with \\fB#\\fR or \\fB;\\fR are comments, "
          "and so is the rest of a line after a blank and one of them. A list may go on over "
          "indented lines. Lines are at most 198 characters long.\n", out);
    fputs(".PP\nThe file is strict: an unknown section or key, a key given twice, a key "
          "without a value, or a value that does not parse is an error naming the file, the "
          "line and the key, and the program does not start. Numbers are decimal digits "
          "within the bounds given; sizes may end in K, M, G or T (powers of 1024).\n"
          ".PP\nPrecedence: command line > environment > this file > built\\-in default. "
          "\\fB\\-\\-print\\-config\\fR shows each effective value and where it came from.\n",
          out);
    fputs(".SH KEYS\n", out);
    for (size_t i = 0; i < table->nopts; i++) {
        const rgpu_opt_t *opt = &table->opts[i];

        if (opt->flags & RGPU_OPT_NO_FILE)
            continue;
        if (!section || strcmp(section, rgpu_opt_section(table, opt)) != 0) {
            section = rgpu_opt_section(table, opt);
            fputs(".SS [", out);
            rgpu_opt_roff(out, section);
            fputs("]\n", out);
        }
        fputs(".TP\n.B ", out);
        rgpu_opt_roff(out, opt->name);
        if (opt->type != RGPU_OPT_FLAG) {
            fputs(" = \\fI", out);
            rgpu_opt_roff(out, opt->metavar);
            fputs("\\fR", out);
        } else {
            fputs(" = \\fIyes\\fR|\\fIno\\fR", out);
        }
        fputc('\n', out);
        rgpu_opt_roff(out, opt->help);
        fputs(opt->type == RGPU_OPT_ADDR_LIST ? "; a comma\\-separated list\n" : "\n", out);
        rgpu_opt_man_row_meta(out, opt, 1);
    }
    fputs(".SH SEE ALSO\n\\fB", out);
    rgpu_opt_roff(out, table->program);
    fprintf(out, "\\fR(%d)\n", table->man_section);
}

/*
 * One option engine for every rgpu program: a declarative table per
 * program, read from four sources into a plain C struct.
 *
 *   built-in default  <  configuration file  <  RGPU_* environment  <  command line
 *
 * The file is INI, read with inih: [section] headers and "key = value"
 * lines, '#' or ';' comments. A key names the option without its "--"
 * (listen, max-sessions); each row says which section it belongs to. Where
 * a value came from is kept per row, so every program can print its
 * effective configuration (--print-config) with "default", "FILE:LINE",
 * "env VAR" or "command line" beside each value.
 *
 * Every source is strict, as the daemons' operators expect from Slurm or
 * MUNGE: an unknown key or section, a duplicate key, a malformed or
 * out-of-range number, a missing value or an unreadable file is an error
 * that names the file, the line and the key; unknown command-line options
 * too. Numbers are plain decimal digits (sizes may end in K, M, G, T).
 *
 * The same table prints --help and the program's man page (--man writes
 * roff; man/CMakeLists.txt runs it at build time), so the three can never
 * disagree.
 *
 * Everything here runs on the thread that calls it, typically main()
 * before any other thread starts; nothing is allocated, so nothing needs
 * freeing.
 */
#ifndef RGPU_OPTIONS_H
#define RGPU_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The most rows a table may have (the origin array is sized by it). */
#define RGPU_OPT_MAX_ROWS 32

typedef enum {
    RGPU_OPT_STRING,    /* char[cap]; "" allowed */
    RGPU_OPT_ADDR,      /* char[cap]: [scheme://]HOST:PORT; "" only where the default is "" */
    RGPU_OPT_ADDR_LIST, /* char[cap]: comma-separated ADDRs; the option may repeat on the
                         * command line (each adds one); a file or variable gives the list */
    RGPU_OPT_SIZE,      /* uint64_t: 4096, 64K, 4M, 16G within [min, max] */
    RGPU_OPT_UINT,      /* int (cap 0 or sizeof(int)) or uint64_t (cap 8): decimal digits
                         * within [min, max] */
    RGPU_OPT_SECONDS_MS,/* int: seconds with up to three decimals ("10", "0.5"), stored as
                         * milliseconds within [min, max] milliseconds */
    RGPU_OPT_FLAG,      /* int 0/1: yes/no/true/false/on/off/1/0; "--name" alone is yes */
    RGPU_OPT_CHOICE,    /* int: index of the value in choices[] (or values[index]) */
} rgpu_opt_type_t;

/* Row flags. */
#define RGPU_OPT_NO_FILE    0x1     /* not a file key (secrets, per-run switches) */
#define RGPU_OPT_NO_CMDLINE 0x2     /* not a command-line option */
#define RGPU_OPT_NO_ENV     0x4     /* no environment variable even if env is set */
#define RGPU_OPT_SECRET     0x8     /* --print-config says whether it is set, not what */

typedef struct {
    const char *name;       /* option without "--", and the key in the file */
    rgpu_opt_type_t type;
    const char *def;        /* default, parsed like any other value ("" = off / none) */
    const char *metavar;    /* what the value looks like in --help: ADDR:PORT, SIZE */
    const char *help;       /* one or more sentences, without a trailing newline */
    const char *env;        /* environment variable, or NULL */
    const char *section;    /* file section; NULL: the table's section */
    size_t offset;          /* of the field in the program's configuration struct */
    size_t cap;             /* STRING, ADDR, ADDR_LIST: sizeof the char array;
                             * UINT: sizeof the integer (0 = int) */
    uint64_t min, max;      /* SIZE, UINT, SECONDS_MS bounds (inclusive) */
    const char *const *choices; /* CHOICE: NULL-terminated */
    unsigned flags;         /* RGPU_OPT_NO_* */
    const int *values;      /* CHOICE: the int stored for each choice; NULL: its index */
    char short_name;        /* 'n' for -n (0: none) */
} rgpu_opt_t;

typedef struct {
    const char *program;        /* "rgpu-server": messages, --version, man page title */
    int man_section;            /* 1 or 8 */
    const char *summary;        /* man NAME line: "serve this node's GPUs to rgpu clients" */
    const char *synopsis;       /* after the program name: "[OPTION]..." */
    const char *description;    /* paragraphs separated by blank lines, for --help and man */
    const char *section;        /* default file section: "server" */
    const char *config_file;    /* default file; a missing default file is no error */
    const char *config_env;     /* variable naming another file (RGPU_CONFIG), or NULL */
    const char *conf_title;     /* the file's man page: "rgpu-server.conf" (section 5) */
    const char *conf_readers;   /* roff: who reads the file (NULL: \fBprogram\fR(N)) */
    const rgpu_opt_t *opts;
    size_t nopts;
    int positional;             /* RGPU_OPT_ARGS_*: what arguments other than options are */
    const char *extra_help;     /* program options the table does not hold (--bench,
                                 * --require-signed), already formatted for --help */
    const char *man_extra;      /* roff appended to the man page (EXIT STATUS, EXAMPLES) */
    int key_value;              /* options are NAME=VALUE words (a plugstack.conf line),
                                 * set with rgpu_opt_set: the man page says so */
} rgpu_opt_table_t;

/* rgpu_opt_table_t.positional */
#define RGPU_OPT_ARGS_NONE    0     /* every argument is an option */
#define RGPU_OPT_ARGS_COMMAND 1     /* the first non-option (or "--") ends the options: a
                                     * command and its arguments follow (state->argi) */
#define RGPU_OPT_ARGS_ANY     2     /* non-options may come anywhere (state->args) */

/* Non-option arguments an RGPU_OPT_ARGS_ANY table takes. */
#define RGPU_OPT_MAX_ARGS 8

typedef enum {
    RGPU_OPT_FROM_DEFAULT = 0,
    RGPU_OPT_FROM_FILE,
    RGPU_OPT_FROM_ENV,
    RGPU_OPT_FROM_CMDLINE,
} rgpu_opt_from_t;

typedef struct {
    rgpu_opt_from_t from;
    int line;                   /* FROM_FILE: the line in rgpu_opt_state_t.file */
} rgpu_opt_origin_t;

/* What rgpu_opt_load learned besides the values; embed one in the
 * configuration struct or keep it beside. */
typedef struct {
    rgpu_opt_origin_t origin[RGPU_OPT_MAX_ROWS];    /* indexed like table->opts */
    char file[512];             /* the file read; "" when none was */
    int print_config;           /* --print-config was given */
    int argi;                   /* ARGS_COMMAND: index of the first argument left */
    const char *args[RGPU_OPT_MAX_ARGS]; /* ARGS_ANY: the non-option arguments, in order */
    int nargs;
} rgpu_opt_state_t;

typedef enum {
    RGPU_OPT_RUN = 0,           /* go on (check state->print_config) */
    RGPU_OPT_EXIT_OK,           /* --help, --version, --man printed: exit 0 */
    RGPU_OPT_EXIT_USAGE,        /* an error was printed to err: exit 2 */
} rgpu_opt_action_t;

/* Looks an environment variable up: getenv in programs, a fake in tests. */
typedef const char *(*rgpu_opt_getenv_fn)(const char *name);

/*
 * Fills cfg (the program's struct, zeroed first) from the table's defaults,
 * then the configuration file, then getenv_fn (NULL: no environment), then
 * argv[1..argc-1] (argc 0: no command line).
 *
 * The file is, in this order: --config FILE (or --config=FILE) anywhere on
 * the command line, the variable table->config_env, table->config_file. A
 * file named by --config or the variable must be readable; the default one
 * may be absent. --config= (empty) reads no file.
 *
 * Built in: --help/-h, --version, --man and --man-conf (roff on out; not
 * in --help), --print-config
 * (sets state->print_config; the program prints with rgpu_opt_print once
 * its own cross-checks passed), --config FILE.
 *
 * Errors print one line to err, "PROGRAM: FILE:LINE: ..." for the file, and
 * return RGPU_OPT_EXIT_USAGE. cfg is fully initialized whatever the outcome.
 */
rgpu_opt_action_t rgpu_opt_load(const rgpu_opt_table_t *table, void *cfg,
                                rgpu_opt_state_t *state, int argc, char *const argv[],
                                rgpu_opt_getenv_fn getenv_fn, FILE *out, FILE *err);

/* Parses one value for the row named name into cfg, as from the command
 * line. Returns 0, or -1 with why (no trailing period) filled. For a
 * program's own checks and the tests. */
int rgpu_opt_set(const rgpu_opt_table_t *table, void *cfg, rgpu_opt_state_t *state,
                 const char *name, const char *value, char *why, size_t why_cap);

/* The index of the row named name (as table->opts[i] and state->origin[i]);
 * the name must be in the table (a programming error otherwise: 0). */
size_t rgpu_opt_row(const rgpu_opt_table_t *table, const char *name);

/* Formats a row's current value as it would be written in the file. */
void rgpu_opt_format(const rgpu_opt_t *opt, const void *cfg, char *out, size_t cap);

/* Prints "key = value    # source" for every row, under [section] headers,
 * as a file the program would read back the same. */
void rgpu_opt_print(const rgpu_opt_table_t *table, const void *cfg,
                    const rgpu_opt_state_t *state, FILE *out);

/* Prints the --help text. */
void rgpu_opt_usage(const rgpu_opt_table_t *table, FILE *out);

/* Prints the program's man page in roff (man(7) macros). */
void rgpu_opt_man(const rgpu_opt_table_t *table, FILE *out);

/* Prints the man page (section 5) of the table's configuration file: its
 * keys under each section, with defaults and the variables that override
 * them (--man-conf). */
void rgpu_opt_man_conf(const rgpu_opt_table_t *table, FILE *out);

/* The origin of a row as --print-config shows it: "default",
 * "/etc/rgpu/server.conf:12", "env RGPU_LISTEN", "command line". */
void rgpu_opt_origin_str(const rgpu_opt_table_t *table, const rgpu_opt_state_t *state,
                         size_t row, char *out, size_t cap);

#endif

/*
 * Headers of the application's machine, inlined into program sources.
 *
 * In OpenCL, "-I DIR" names a directory of the application's machine and
 * the headers are the application's (pyopencl passes
 * "-I .../pyopencl/cl" to every build; its kernels #include
 * <pyopencl-complex.h>). rgpu-server compiles on another machine and
 * refuses -I and any #include that is not an embedded header (the build
 * log would quote server files), so the client reads the headers here and
 * sends a self-contained source.
 *
 * Rules (mirroring PoCL, which compiles with clang and "-I." before the
 * application's options):
 *  - Options: every "-I DIR", "-IDIR", "-I \"DIR\"", "-I'DIR'" (and
 *    "--include-directory[=]DIR") is taken out; all other options stay as
 *    given.
 *  - Directives: `#include "name"` and `#include <name>` at the start of a
 *    logical line (whitespace, comments and line splices allowed before and
 *    after the `#`, `%:` too); directives inside comments and literals are
 *    text. #include_next and #import are left alone.
 *  - Macro operands (`#include M2S(INCLUDE_PATH/x.h)`, hashcat's): the
 *    operand is macro-expanded as C does (object-like and function-like
 *    macros, arguments expanded first except as operands of # and ##,
 *    # stringifying, ## pasting, rescanning, a macro disabled inside its
 *    own replacement), within limits (65536 tokens, 2^20 tokens of
 *    replacements, arguments nested 64 deep); a result that is one
 *    "name" or <name> is resolved like a literal one, anything else (or a
 *    limit passed) is left alone. The macros are those of cfg->options'
 *    -D/-U (in order; -D NAME is NAME 1, -D 'F(x)=...' function-like)
 *    and of the #define/#undef lines of the source and of inlined headers,
 *    in the order the scan meets them.
 *  - Conditions: #if/#ifdef/#ifndef/#elif/#else/#endif are evaluated
 *    (64-bit signed arithmetic, defined, macros expanded, other names 0),
 *    so a #define in a branch not taken does not count and a macro
 *    #include there is left alone. Names the compiler may define itself
 *    (those starting with "__" or "cl_", CL_VERSION_*, FULL_PROFILE,
 *    EMBEDDED_PROFILE) are unknown unless -D/#define/#undef said; other
 *    names the implicit OpenCL header defines (M_PI, INT_MAX, ...) count as
 *    undefined. A condition that depends on an unknown is unknown (a known
 *    side of && and || still decides): a #define/#undef in such a branch
 *    makes the macro uncertain, and an include whose expansion meets an
 *    uncertain (or unknown predefined) macro is left to the server. Literal
 *    includes are inlined whatever the condition (as before).
 *  - Search: for "name", the directory of the including file (none for the
 *    program source itself: PoCL compiles it from a file in its cache),
 *    then the working directory ("."), then the -I directories in order;
 *    for <name>, "." and then the -I directories. An absolute name is
 *    looked up as it is. A name given as an embedded header
 *    (clCompileProgram's header_include_names) is left to the server unless
 *    the including file's own directory has it (the compiler's order).
 *  - A found file replaces the directive, as
 *        #line 1 "DIR/name"
 *        ...the file, its own includes inlined...
 *        #line N+1 "parent"
 *    so the build log keeps files and lines; the program source is called
 *    RGPU_CL_INCLUDE_MAIN_NAME (a `#line 1` at the top says so).
 *  - #pragma once: the pragma is removed and every inlining of that file is
 *    wrapped in a generated guard (#ifndef __RGPU_PRAGMA_ONCE_<n>), so the
 *    preprocessor skips a second one; a second inclusion is not even
 *    written when the first one was outside any #if. Include guards
 *    (#ifndef X / #define X ... #endif around the whole file) work by
 *    themselves since the text is kept; a file that includes itself again
 *    through a chain while it is guarded or #pragma once is not inlined
 *    again (that inclusion would be empty). A cycle without either stops at
 *    the depth limit with an error.
 *  - A directive found nowhere is left as it is: the server decides (a
 *    header the platform provides, or one in a branch that is never taken).
 *
 * Every function is reentrant (no global state); the inliner reads files
 * with the caller's identity and working directory.
 */
#ifndef RGPU_CL_INCLUDE_H
#define RGPU_CL_INCLUDE_H

#include <stddef.h>

#include "rgpu/status.h"

/* The name #line gives the program source once headers are inlined. */
#define RGPU_CL_INCLUDE_MAIN_NAME "<source>"
/* Defaults of rgpu_cl_include_cfg_t's limits. The total stays well under
 * the 64 MiB protobuf body a server accepts by default. */
#define RGPU_CL_INCLUDE_MAX_DEPTH 64
#define RGPU_CL_INCLUDE_MAX_SIZE (32u << 20)

/* Build or compile options with the -I options taken out. */
typedef struct {
    char *options;      /* the other options, as given (trailing blanks trimmed) */
    char **dirs;        /* the -I directories, unquoted, in order */
    size_t n_dirs;
} rgpu_cl_include_opts_t;

/* Splits options (NULL = none) into *opts_p, which the caller frees with
 * rgpu__cl_include_opts_free. Options are blank-separated words; a word may
 * hold "double-quoted" (with \" and \\ escapes) or 'single-quoted' parts.
 * Returns RGPU_OK; RGPU_ERR_INVALID_ARG with a sentence in why for a
 * malformed -I (no directory, an empty one) or an unterminated quote;
 * RGPU_ERR_NOMEM. *opts_p is set only on RGPU_OK. */
rgpu_status_t rgpu__cl_include_opts_parse(const char *options, rgpu_cl_include_opts_t *opts_p, char *why,
                                          size_t why_cap);

/* Frees what rgpu__cl_include_opts_parse set (the struct itself is the
 * caller's). */
void rgpu__cl_include_opts_free(rgpu_cl_include_opts_t *opts);

typedef struct {
    const char *const *dirs;        /* -I directories, in order */
    size_t n_dirs;
    const char *const *embedded;    /* embedded header names (NULL entries skipped) */
    size_t n_embedded;
    const char *cwd;                /* the working directory's name; NULL: "." */
    const char *options;            /* the build options, for their -D and -U (NULL: none) */
    unsigned max_depth;             /* nesting of inlined files; 0: RGPU_CL_INCLUDE_MAX_DEPTH */
    size_t max_size;                /* bytes of the result; 0: RGPU_CL_INCLUDE_MAX_SIZE */
} rgpu_cl_include_cfg_t;

/* Inlines into source (len bytes) every header it and its headers include
 * that cfg's search finds (see the rules above).
 *
 * On RGPU_OK, *out_p is the new source (NUL-terminated, NUL bytes of
 * headers turned into spaces; the caller frees it) or NULL when nothing was
 * inlined (use the source as it is).
 * Errors, with a sentence in why naming the file and line:
 *   RGPU_ERR_IO        a header that exists cannot be read (or is not a
 *                      regular file);
 *   RGPU_ERR_TOO_LARGE nesting deeper than max_depth, or a result larger
 *                      than max_size;
 *   RGPU_ERR_NOMEM. */
rgpu_status_t rgpu__cl_include_inline(const char *source, size_t len, const rgpu_cl_include_cfg_t *cfg,
                                      char **out_p, char *why, size_t why_cap);

#endif

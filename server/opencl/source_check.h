/*
 * Checks on what a client asks the OpenCL compiler to do, before the server
 * hands it to the platform. A program source may not reach files of the
 * server: the build log quotes whatever the compiler read (an
 * `#include "/etc/shadow"` would come back line by line), and build options
 * may not point the compiler at server files either.
 *
 * Both functions are pure (no I/O, no global state): any thread.
 */
#ifndef RGPU_SERVER_SOURCE_CHECK_H
#define RGPU_SERVER_SOURCE_CHECK_H

#include <stddef.h>

/* Checks one program source (or the text of one embedded header) of len
 * bytes (NUL bytes count as whitespace, as compilers treat them).
 *
 * Refused: any #include, #include_next, #import, #embed (or `%:` digraph
 * spellings, with comments or line splices anywhere) whose operand is not a
 * quoted name equal to one of allowed_headers[0..n_allowed-1] (the embedded
 * headers given to clCompileProgram; NULL entries are skipped). A listed name
 * is refused too when it is absolute, has a ".." component or a backslash.
 * <system> headers and macro operands (`#include FOO`) are always refused, as
 * are __has_include/__has_embed probes of other names, #pragma include_alias,
 * #pragma GCC dependency, and the trigraphs ??= ??/ ??' (which would change
 * where lines and literals end).
 *
 * The source is scanned under every lexing the compiler might apply (lone
 * CR as a newline or not, backslash-space-newline as a splice or not, C++
 * raw strings and digit separators or not), so that no choice of language
 * mode can show the compiler a directive the check did not see.
 *
 * Returns 0 when the source may be compiled; -1 with one sentence (naming
 * the line) in why (NUL terminated, truncated to why_cap) otherwise, also
 * when memory runs out. why may be NULL when why_cap is 0. */
int rgpu_cl_source_check(const char *source, size_t len, const char *const *allowed_headers,
                         size_t n_allowed, char *why, size_t why_cap);

/* Checks the name of an embedded header given to clCompileProgram: the
 * compiler writes each header under its name, so it must be a relative
 * path inside its directory (1 to 1024 characters, not absolute, no "..",
 * no backslash). Returns 0, or -1 with a sentence in why. */
int rgpu_cl_header_name_check(const char *name, char *why, size_t why_cap);

/* At most this many directives are rewritten in one source. */
#define RGPU_CL_NEUTRALIZE_MAX 256
/* Sources larger than this are checked, never rewritten. */
#define RGPU_CL_NEUTRALIZE_MAX_LEN (4u << 20)

/* As rgpu_cl_source_check, but an include-like directive that would be
 * refused is rewritten instead: its logical line becomes
 * "#error rgpu-server cannot read headers of its own machine: <why>" (line
 * numbers kept). The compiler then fails with that message only if it takes
 * the branch the directive is in: an #include <stddef.h> under
 * #ifndef __OPENCL_VERSION__ builds, as it would locally, while one in
 * active code fails the build, and no file of the server is ever read. The
 * result is checked again, whole, until it passes.
 *
 * Returns 0 with *out_p = NULL (nothing to rewrite) or a malloc'ed,
 * NUL-terminated source of *out_len_p bytes (caller frees); -1 with a
 * sentence in why for what cannot be rewritten (the refusals of
 * rgpu_cl_source_check other than include operands: trigraphs, include
 * pragmas, __has_include probes, ...), or past RGPU_CL_NEUTRALIZE_MAX. */
int rgpu_cl_source_neutralize(const char *source, size_t len, const char *const *allowed_headers,
                              size_t n_allowed, char **out_p, size_t *out_len_p, char *why, size_t why_cap);

/* Checks clBuildProgram/clCompileProgram options (NULL = none): refuses
 * options that point the compiler at server files or run server code:
 * -I, -include, -imacros, -isystem, -iquote and every other -i option,
 * --sysroot and --include..., -x, @file response files, -Xclang and other
 * -X options, -load, -fplugin, -fpass-plugin, -o, -M dependency files,
 * -mllvm, -B, -L, -Wp/-Wl/-Wa, --config, -save-temps and file-reading
 * -f options (profiles, sanitizer lists, modules). Everything else passes.
 * Returns 0, or -1 with a sentence in why. */
int rgpu_cl_build_options_check(const char *options, char *why, size_t why_cap);

#endif

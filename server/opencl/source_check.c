/*
 * The program-source and build-option checks (source_check.h).
 *
 * The source is not preprocessed, only lexed, the way the compiler's own
 * lexer would: line splices (backslash-newline) are skipped wherever they
 * fall, comments are whitespace, string and character literals end at their
 * quote or at the end of the line. Whatever the lexer sees outside comments
 * and literals is checked:
 *
 *   # or %:  then spaces/comments, then include, include_next, import, embed
 *            or __include_macros: the operand must be "an allowed header";
 *            error, warning: the rest of the line is raw text (clang reads it
 *            without lexing comments);
 *   __has_include, __has_include_next, __has_embed ( operand ): as above;
 *   include_alias, GCC dependency: refused (pragmas that map or read files).
 *
 * A "#" is checked anywhere, not only first on a line: checking more places
 * than the compiler treats as directives can only refuse more.
 *
 * Where compilers may lex differently (a lone CR as a newline, backslash
 * then spaces then newline as a splice, C++ raw strings, C++14 digit
 * separators), the scan runs once per combination, and any refusal counts:
 * otherwise a comment opened in one reading and not in another could hide a
 * directive from the check that the compiler executes.
 */
#include "source_check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest header name looked at; longer ones are refused. */
#define RGPU_CL_HEADER_NAME_MAX 1024

typedef struct {
    const unsigned char *s;
    size_t n;
    /* The lexing this pass applies. */
    int cr_newline;             /* a lone \r ends a line (clang, gcc) */
    int ws_splice;              /* backslash, spaces, newline is a splice (clang, gcc) */
    int raw_strings;            /* R"delim(...)delim" (C++ for OpenCL) */
    int digit_sep;              /* 1'000 (C++14 and later, C23) */
    int pragma_op;              /* saw _Pragma or __pragma */
    const char *const *allowed;
    size_t n_allowed;
    char *why;
    size_t why_cap;
    /* Where the refused include-like directive starts (its # or %:), when
     * that was the refusal: rgpu_cl_source_neutralize rewrites it. */
    int refused_directive;
    size_t refused_pos;
} rgpu_scan_t;

/* ---- messages -------------------------------------------------------- */

static unsigned rgpu_scan_line(const rgpu_scan_t *sc, size_t pos)
{
    unsigned line = 1;

    for (size_t i = 0; i < pos && i < sc->n; i++)
        line += sc->s[i] == '\n';
    return line;
}

/* Copies name into out as printable ASCII (others as '?'), shortened with
 * "..." to fit. */
static void rgpu_scan_printable(const char *name, size_t len, char *out, size_t cap)
{
    size_t j = 0, keep = cap > 4 ? cap - 4 : 0;     /* room for "..." and the NUL */

    if (!cap)
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (j >= keep) {
            if (cap >= 4) {
                memcpy(out + j, "...", 3);
                j += 3;
            }
            break;
        }
        out[j++] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
    }
    out[j] = '\0';
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int rgpu_scan_refuse(rgpu_scan_t *sc, size_t pos, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!sc->why || !sc->why_cap)
        return -1;
    n = snprintf(sc->why, sc->why_cap, "line %u: ", rgpu_scan_line(sc, pos));
    if (n < 0 || (size_t)n >= sc->why_cap)
        return -1;
    va_start(ap, fmt);
    vsnprintf(sc->why + n, sc->why_cap - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- logical characters (splices skipped) ----------------------------- */

static int rgpu_scan_is_nl(const rgpu_scan_t *sc, int c)
{
    return c == '\n' || (sc->cr_newline && c == '\r');
}

/* Whitespace inside a line. NUL counts: compilers ignore it with a warning. */
static int rgpu_scan_is_hws(const rgpu_scan_t *sc, int c)
{
    return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\0' ||
           (!sc->cr_newline && c == '\r');
}

/* Length of the line splice at raw position p, 0 if there is none. */
static size_t rgpu_scan_splice_len(const rgpu_scan_t *sc, size_t p)
{
    size_t q = p + 1;

    if (p >= sc->n || sc->s[p] != '\\')
        return 0;
    if (sc->ws_splice)
        while (q < sc->n && (sc->s[q] == ' ' || sc->s[q] == '\t' || sc->s[q] == '\v' ||
                             sc->s[q] == '\f' || (!sc->cr_newline && sc->s[q] == '\r')))
            q++;
    if (q >= sc->n || !rgpu_scan_is_nl(sc, sc->s[q]))
        return 0;
    /* \n, \r, \r\n and \n\r are each one line end (clang's getEscapedNewLineSize). */
    if (q + 1 < sc->n && sc->cr_newline && sc->s[q + 1] != sc->s[q] &&
        (sc->s[q + 1] == '\n' || sc->s[q + 1] == '\r'))
        q++;
    return q + 1 - p;
}

/* The first logical character at or after raw position p. */
static size_t rgpu_scan_norm(const rgpu_scan_t *sc, size_t p)
{
    size_t k;

    while ((k = rgpu_scan_splice_len(sc, p)) != 0)
        p += k;
    return p;
}

static size_t rgpu_scan_adv(const rgpu_scan_t *sc, size_t p)
{
    return p >= sc->n ? sc->n : rgpu_scan_norm(sc, p + 1);
}

/* The logical character at p (normalized), -1 at the end. */
static int rgpu_scan_chr(const rgpu_scan_t *sc, size_t p)
{
    return p < sc->n ? sc->s[p] : -1;
}

static int rgpu_is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int rgpu_is_hex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A universal character name (\uXXXX, \UXXXXXXXX) at p: returns the
 * position after it and its code point in *cp_p, or p when there is none. */
static size_t rgpu_scan_ucn(const rgpu_scan_t *sc, size_t p, uint32_t *cp_p)
{
    size_t q = rgpu_scan_adv(sc, p);
    int c = rgpu_scan_chr(sc, q), digits;
    uint32_t cp = 0;

    if (rgpu_scan_chr(sc, p) != '\\' || (c != 'u' && c != 'U'))
        return p;
    digits = c == 'u' ? 4 : 8;
    for (int i = 0; i < digits; i++) {
        q = rgpu_scan_adv(sc, q);
        c = rgpu_scan_chr(sc, q);
        if (!rgpu_is_hex(c))
            return p;
        cp = cp * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    *cp_p = cp;
    return rgpu_scan_adv(sc, q);
}

static int rgpu_scan_ident_start(const rgpu_scan_t *sc, size_t p)
{
    int c = rgpu_scan_chr(sc, p);
    uint32_t cp;

    if (c < 0)
        return 0;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c >= 0x80)
        return 1;
    return c == '\\' && rgpu_scan_ucn(sc, p, &cp) != p;
}

/* Lexes the identifier at p into name (ASCII; UCNs below 0x80 decoded,
 * anything else as '?'); *odd_p tells whether it had UCNs or non-ASCII
 * bytes. Returns the position after it. */
static size_t rgpu_scan_ident(const rgpu_scan_t *sc, size_t p, char *name, size_t cap, int *odd_p)
{
    size_t len = 0;
    int odd = 0;

    for (;;) {
        int c = rgpu_scan_chr(sc, p);
        uint32_t cp;
        size_t q;

        if (rgpu_is_alnum(c) || c == '_' || c == '$') {
            p = rgpu_scan_adv(sc, p);
        } else if (c >= 0x80) {
            odd = 1;
            c = '?';
            p = rgpu_scan_adv(sc, p);
        } else if (c == '\\' && (q = rgpu_scan_ucn(sc, p, &cp)) != p) {
            odd = 1;
            c = cp > 0 && cp < 0x80 ? (int)cp : '?';
            p = q;
        } else {
            break;
        }
        if (len + 1 < cap)
            name[len++] = (char)c;
    }
    if (cap)
        name[len] = '\0';
    *odd_p = odd;
    return p;
}

/* ---- skipping --------------------------------------------------------- */

/* p is just past the opening slash-star; returns the position after the
 * closing star-slash (or the end). */
static size_t rgpu_scan_skip_block_comment(const rgpu_scan_t *sc, size_t p)
{
    int star = 0;

    for (; p < sc->n; p = rgpu_scan_adv(sc, p)) {
        if (star && sc->s[p] == '/')
            return rgpu_scan_adv(sc, p);
        star = sc->s[p] == '*';
    }
    return sc->n;
}

/* The position of the next newline (or the end). */
static size_t rgpu_scan_skip_to_eol(const rgpu_scan_t *sc, size_t p)
{
    while (p < sc->n && !rgpu_scan_is_nl(sc, sc->s[p]))
        p = rgpu_scan_adv(sc, p);
    return p;
}

/* Skips whitespace and block comments; with newlines, also line ends and
 * line comments. */
static size_t rgpu_scan_skip_space(const rgpu_scan_t *sc, size_t p, int newlines)
{
    for (;;) {
        int c = rgpu_scan_chr(sc, p);

        if (c < 0)
            return p;
        if (rgpu_scan_is_hws(sc, c) || (newlines && rgpu_scan_is_nl(sc, c))) {
            p = rgpu_scan_adv(sc, p);
            continue;
        }
        if (c == '/') {
            size_t q = rgpu_scan_adv(sc, p);
            int d = rgpu_scan_chr(sc, q);

            if (d == '*') {
                p = rgpu_scan_skip_block_comment(sc, rgpu_scan_adv(sc, q));
                continue;
            }
            if (d == '/' && newlines) {
                p = rgpu_scan_skip_to_eol(sc, q);
                continue;
            }
        }
        return p;
    }
}

/* A string or character literal from its opening quote at p: ends after
 * the closing quote, or at the end of the line (unterminated). */
static size_t rgpu_scan_skip_quoted(const rgpu_scan_t *sc, size_t p, int quote)
{
    p = rgpu_scan_adv(sc, p);
    for (;;) {
        int c = rgpu_scan_chr(sc, p);

        if (c < 0 || rgpu_scan_is_nl(sc, c))
            return p;
        if (c == quote)
            return rgpu_scan_adv(sc, p);
        if (c == '\\') {
            size_t q = rgpu_scan_adv(sc, p);
            int d = rgpu_scan_chr(sc, q);

            if (d < 0 || rgpu_scan_is_nl(sc, d))
                return q;
            p = rgpu_scan_adv(sc, q);
            continue;
        }
        p = rgpu_scan_adv(sc, p);
    }
}

/* A preprocessing number from p (a digit, or a dot before a digit). */
static size_t rgpu_scan_skip_number(const rgpu_scan_t *sc, size_t p)
{
    int prev = 0;

    for (;;) {
        int c = rgpu_scan_chr(sc, p);
        uint32_t cp;
        size_t q;

        if (rgpu_is_alnum(c) || c == '_' || c == '.' || c >= 0x80 ||
            ((c == '+' || c == '-') && (prev == 'e' || prev == 'E' || prev == 'p' || prev == 'P'))) {
            prev = c;
            p = rgpu_scan_adv(sc, p);
        } else if (c == '\\' && (q = rgpu_scan_ucn(sc, p, &cp)) != p) {
            prev = 'x';
            p = q;
        } else if (c == '\'' && sc->digit_sep) {
            /* 1'000: the quote is part of the number when an identifier
             * character follows it (clang's LexNumericConstant). */
            q = rgpu_scan_adv(sc, p);
            c = rgpu_scan_chr(sc, q);
            if (!(rgpu_is_alnum(c) || c == '_'))
                return p;
            prev = c;
            p = rgpu_scan_adv(sc, q);
        } else {
            return p;
        }
    }
}

/* A raw string literal whose opening quote is at p (a logical position).
 * Its delimiter and body are raw text: splices are not removed there. */
static int rgpu_scan_skip_raw_string(rgpu_scan_t *sc, size_t p, size_t *next_p)
{
    size_t d = p + 1, k = 0;

    /* Delimiters with punctuation, or none before "(", are where compilers'
     * error recovery differs: refused rather than guessed. */
    while (k < 17 && d + k < sc->n && (rgpu_is_alnum(sc->s[d + k]) || sc->s[d + k] == '_'))
        k++;
    if (k > 16 || d + k >= sc->n || sc->s[d + k] != '(')
        return rgpu_scan_refuse(sc, p, "a raw string literal (R\"delimiter(...)delimiter\") "
                                "whose delimiter is not up to 16 letters, digits or underscores "
                                "is refused");
    for (size_t q = d + k + 1; q < sc->n; q++) {
        if (sc->s[q] == ')' && q + k + 1 < sc->n && memcmp(sc->s + q + 1, sc->s + d, k) == 0 &&
            sc->s[q + k + 1] == '"') {
            *next_p = rgpu_scan_norm(sc, q + k + 2);
            return 0;
        }
    }
    *next_p = sc->n;
    return 0;
}

/* ---- the checks --------------------------------------------------------- */

static int rgpu_header_name_allowed(const rgpu_scan_t *sc, const char *name, size_t len)
{
    for (size_t i = 0; i < sc->n_allowed; i++) {
        const char *a = sc->allowed[i];

        if (a && strlen(a) == len && memcmp(a, name, len) == 0)
            return 1;
    }
    return 0;
}

/* Absolute, "..", or a backslash (which ends quoted names differently in
 * different compilers): refused even when listed. */
static int rgpu_header_name_unsafe(const char *name, size_t len)
{
    if (len == 0 || name[0] == '/' || memchr(name, '\\', len) || memchr(name, '\0', len))
        return 1;
    for (size_t i = 0; i + 1 < len; i++)
        if (name[i] == '.' && name[i + 1] == '.' && (i == 0 || name[i - 1] == '/') &&
            (i + 2 == len || name[i + 2] == '/'))
            return 1;
    return 0;
}

/* The operand of an include-like directive (or __has_include probe) that
 * starts at p; what names it (for messages) at pos. */
static int rgpu_scan_check_header(rgpu_scan_t *sc, size_t pos, const char *what, size_t p,
                                  size_t *next_p)
{
    char name[RGPU_CL_HEADER_NAME_MAX + 1] = "", shown[96];
    size_t len = 0;
    int c, close;

    p = rgpu_scan_skip_space(sc, p, 0);
    c = rgpu_scan_chr(sc, p);
    if (c != '"' && c != '<')
        return rgpu_scan_refuse(sc, pos, "%s must name a header in double quotes; a macro or "
                                "any other operand is refused", what);
    close = c == '"' ? '"' : '>';
    for (p = rgpu_scan_adv(sc, p);; p = rgpu_scan_adv(sc, p)) {
        c = rgpu_scan_chr(sc, p);
        if (c < 0 || rgpu_scan_is_nl(sc, c) || c == close)
            break;
        if (len == RGPU_CL_HEADER_NAME_MAX)
            return rgpu_scan_refuse(sc, pos, "%s names a header longer than %d characters",
                                    what, RGPU_CL_HEADER_NAME_MAX);
        name[len++] = (char)c;
    }
    rgpu_scan_printable(name, len, shown, sizeof(shown));
    if (close == '>')
        return rgpu_scan_refuse(sc, pos, "%s <%s> is refused: system headers of the server "
                                "cannot be included", what, shown);
    if (c != '"')
        return rgpu_scan_refuse(sc, pos, "%s: the header name \"%s\" has no closing quote",
                                what, shown);
    if (!rgpu_header_name_allowed(sc, name, len))
        return rgpu_scan_refuse(sc, pos, "%s \"%s\" is refused: %s", what, shown,
                                sc->n_allowed ? "only the headers given with the program may "
                                                "be included"
                                              : "no headers were given with the program, so "
                                                "none may be included");
    if (rgpu_header_name_unsafe(name, len))
        return rgpu_scan_refuse(sc, pos, "%s \"%s\" is refused: a header name may not be "
                                "absolute, contain \"..\" or a backslash", what, shown);
    *next_p = rgpu_scan_adv(sc, p);
    return 0;
}

/* A # (or %:) at pos; p is just after it. */
static int rgpu_scan_check_directive(rgpu_scan_t *sc, size_t pos, size_t p, size_t *next_p)
{
    static const char *const includes[] = {"include", "include_next", "import", "embed",
                                           "__include_macros"};
    char name[32], what[40];
    size_t q = rgpu_scan_skip_space(sc, p, 0), end;
    int odd;

    *next_p = p;
    if (!rgpu_scan_ident_start(sc, q))
        return 0;
    end = rgpu_scan_ident(sc, q, name, sizeof(name), &odd);
    if (odd)
        return rgpu_scan_refuse(sc, pos, "a preprocessing directive whose name has universal "
                                "character names or non-ASCII characters is refused");
    for (size_t i = 0; i < sizeof(includes) / sizeof(includes[0]); i++) {
        if (strcmp(name, includes[i]) == 0) {
            snprintf(what, sizeof(what), "#%s", name);
            if (rgpu_scan_check_header(sc, pos, what, end, next_p) == 0)
                return 0;
            sc->refused_directive = 1;
            sc->refused_pos = pos;
            return -1;
        }
    }
    /* clang reads the rest of these lines raw, comments included. */
    if (strcmp(name, "error") == 0 || strcmp(name, "warning") == 0)
        *next_p = rgpu_scan_skip_to_eol(sc, end);
    return 0;
}

/* An identifier name, from pos to end, outside literals and comments. */
static int rgpu_scan_check_ident(rgpu_scan_t *sc, size_t pos, const char *name, size_t end,
                                 size_t *next_p)
{
    *next_p = end;
    if (strcmp(name, "__has_include") == 0 || strcmp(name, "__has_include_next") == 0 ||
        strcmp(name, "__has_embed") == 0) {
        size_t q = rgpu_scan_skip_space(sc, end, 1);

        if (rgpu_scan_chr(sc, q) != '(')
            return 0;       /* #ifdef __has_include */
        return rgpu_scan_check_header(sc, pos, name, rgpu_scan_adv(sc, q), next_p);
    }
    if (strcmp(name, "include_alias") == 0)
        return rgpu_scan_refuse(sc, pos, "#pragma include_alias is refused: it maps header "
                                "names to files of the server");
    /* #pragma clang __debug crash / llvm_fatal_error / overflow_stack trap
     * the compiler, which runs inside the server (also through _Pragma). */
    if (strcmp(name, "__debug") == 0)
        return rgpu_scan_refuse(sc, pos, "clang's __debug pragmas are refused: they crash the "
                                "compiler, which runs inside the server");
    if (strcmp(name, "GCC") == 0) {
        size_t q = rgpu_scan_skip_space(sc, end, 1);
        char next[16];
        int odd;

        if (rgpu_scan_ident_start(sc, q)) {
            rgpu_scan_ident(sc, q, next, sizeof(next), &odd);
            if (strcmp(next, "dependency") == 0)
                return rgpu_scan_refuse(sc, pos, "#pragma GCC dependency is refused: it looks "
                                        "at files of the server");
        }
    }
    if (strcmp(name, "_Pragma") == 0 || strcmp(name, "__pragma") == 0)
        sc->pragma_op = 1;
    return 0;
}

/* Whether word occurs in the logical text (splices removed). */
static int rgpu_scan_contains(const rgpu_scan_t *sc, const char *word)
{
    for (size_t p = rgpu_scan_norm(sc, 0); p < sc->n; p = rgpu_scan_adv(sc, p)) {
        size_t q = p, i;

        for (i = 0; word[i] && rgpu_scan_chr(sc, q) == (unsigned char)word[i]; i++)
            q = rgpu_scan_adv(sc, q);
        if (!word[i])
            return 1;
    }
    return 0;
}

static int rgpu_scan_is_raw_prefix(const char *name)
{
    return !strcmp(name, "R") || !strcmp(name, "LR") || !strcmp(name, "uR") ||
           !strcmp(name, "UR") || !strcmp(name, "u8R");
}

/* One pass under the lexing sc describes. */
static int rgpu_scan_run(rgpu_scan_t *sc)
{
    size_t p = rgpu_scan_norm(sc, 0);

    while (p < sc->n) {
        int c = sc->s[p];
        size_t q;

        if (c == '/') {
            q = rgpu_scan_adv(sc, p);
            if (rgpu_scan_chr(sc, q) == '/')
                p = rgpu_scan_skip_to_eol(sc, q);
            else if (rgpu_scan_chr(sc, q) == '*')
                p = rgpu_scan_skip_block_comment(sc, rgpu_scan_adv(sc, q));
            else
                p = q;
        } else if (c == '"' || c == '\'') {
            p = rgpu_scan_skip_quoted(sc, p, c);
        } else if ((c >= '0' && c <= '9') ||
                   (c == '.' && rgpu_scan_chr(sc, rgpu_scan_adv(sc, p)) >= '0' &&
                    rgpu_scan_chr(sc, rgpu_scan_adv(sc, p)) <= '9')) {
            p = rgpu_scan_skip_number(sc, p);
        } else if (c == '#') {
            if (rgpu_scan_check_directive(sc, p, rgpu_scan_adv(sc, p), &p) != 0)
                return -1;
        } else if (c == '%' && rgpu_scan_chr(sc, (q = rgpu_scan_adv(sc, p))) == ':') {
            if (rgpu_scan_check_directive(sc, p, rgpu_scan_adv(sc, q), &p) != 0)
                return -1;
        } else if (rgpu_scan_ident_start(sc, p)) {
            char name[64];
            size_t start = p;
            int odd;

            p = rgpu_scan_ident(sc, p, name, sizeof(name), &odd);
            if (sc->raw_strings && !odd && rgpu_scan_chr(sc, p) == '"' &&
                rgpu_scan_is_raw_prefix(name)) {
                if (rgpu_scan_skip_raw_string(sc, p, &p) != 0)
                    return -1;
            } else if (rgpu_scan_check_ident(sc, start, name, p, &p) != 0) {
                return -1;
            }
        } else {
            p = rgpu_scan_adv(sc, p);
        }
    }
    if (sc->pragma_op && (rgpu_scan_contains(sc, "dependency") ||
                          rgpu_scan_contains(sc, "include_alias") || rgpu_scan_contains(sc, "__debug")))
        return rgpu_scan_refuse(sc, sc->n, "a _Pragma naming \"dependency\" or "
                                "\"include_alias\" is refused: those pragmas reach files of "
                                "the server");
    return 0;
}

/* Trigraphs are replaced before anything else, and these three change where
 * lines, literals and directives are: ??= is #, ??/ a backslash (a splice
 * before a newline), ??' a caret instead of a quote. Whether a compiler
 * replaces them depends on its language mode, so they are refused. */
static int rgpu_scan_trigraphs(rgpu_scan_t *sc)
{
    for (size_t i = 0; i + 2 < sc->n; i++) {
        if (sc->s[i] == '?' && sc->s[i + 1] == '?' &&
            (sc->s[i + 2] == '=' || sc->s[i + 2] == '/' || sc->s[i + 2] == '\''))
            return rgpu_scan_refuse(sc, i, "the trigraph \"??%c\" is refused (write %s)",
                                    sc->s[i + 2], sc->s[i + 2] == '=' ? "#" :
                                    sc->s[i + 2] == '/' ? "a backslash" : "^");
    }
    return 0;
}

static int rgpu_scan_has_cr(const rgpu_scan_t *sc)
{
    return sc->n && memchr(sc->s, '\r', sc->n) != NULL;
}

/* A backslash, then spaces, then a line end: a splice only for some. */
static int rgpu_scan_has_ws_splice(const rgpu_scan_t *sc)
{
    for (size_t i = 0; i + 2 < sc->n; i++) {
        size_t j = i + 1;

        if (sc->s[i] != '\\')
            continue;
        while (j < sc->n && (sc->s[j] == ' ' || sc->s[j] == '\t' || sc->s[j] == '\v' ||
                             sc->s[j] == '\f' || sc->s[j] == '\r'))
            j++;
        if (j > i + 1 && ((j < sc->n && sc->s[j] == '\n') || sc->s[j - 1] == '\r'))
            return 1;
    }
    return 0;
}

/* R then a quote (or a splice before one): a raw string for C++ only. */
static int rgpu_scan_has_raw_prefix(const rgpu_scan_t *sc)
{
    for (size_t i = 0; i + 1 < sc->n; i++)
        if (sc->s[i] == 'R' && (sc->s[i + 1] == '"' || sc->s[i + 1] == '\\'))
            return 1;
    return 0;
}

static int rgpu_cl_source_scan(rgpu_scan_t *scp)
{
    rgpu_scan_t sc = *scp;
    int rc = -1;
    char *why = sc.why;
    size_t why_cap = sc.why_cap;

    if (why && why_cap)
        why[0] = '\0';
    if (rgpu_scan_trigraphs(&sc) != 0)
        return -1;
    /* Mode 0 is clang's OpenCL C lexing, so the usual refusal reads as the
     * compiler would see the source. A reading is skipped when the source
     * has nothing it would lex differently. */
    for (unsigned mode = 0; mode < 16; mode++) {
        if ((mode & 1) && !rgpu_scan_has_cr(&sc))
            continue;
        if ((mode & 2) && !rgpu_scan_has_ws_splice(&sc))
            continue;
        if ((mode & 4) && !rgpu_scan_has_raw_prefix(&sc))
            continue;
        if ((mode & 8) && !memchr(sc.s, '\'', sc.n))
            continue;
        sc.cr_newline = !(mode & 1);
        sc.ws_splice = !(mode & 2);
        sc.raw_strings = !!(mode & 4);
        sc.digit_sep = !!(mode & 8);
        sc.pragma_op = 0;
        if (rgpu_scan_run(&sc) != 0)
            goto out;
    }
    rc = 0;
out:
    scp->refused_directive = sc.refused_directive;
    scp->refused_pos = sc.refused_pos;
    return rc;
}

int rgpu_cl_source_check(const char *source, size_t len, const char *const *allowed_headers,
                         size_t n_allowed, char *why, size_t why_cap)
{
    rgpu_scan_t sc = {
        .s = (const unsigned char *)source,
        .n = source ? len : 0,
        .allowed = allowed_headers,
        .n_allowed = allowed_headers ? n_allowed : 0,
        .why = why,
        .why_cap = why_cap,
    };

    return rgpu_cl_source_scan(&sc);
}

/* Replaces the logical line around pos (its physical lines joined by
 * splices) by an #error directive saying why, followed by as many newlines
 * as the line had, so later lines keep their numbers. */
static char *rgpu_source_replace_line(const char *src, size_t len, size_t pos, const char *why, size_t *len_p)
{
    size_t start = pos, end = pos, newlines = 0, msg_len, out_len;
    char msg[300], *out;
    size_t m = 0;

    /* Back to the start of the physical line, and of earlier ones spliced to it. */
    for (;;) {
        while (start > 0 && src[start - 1] != '\n' && src[start - 1] != '\r')
            start--;
        if (start >= 2) {
            size_t b = start - 1;       /* the line break before this line */
            if (src[b] == '\n' && b > 0 && src[b - 1] == '\r')
                b--;
            while (b > 0 && (src[b - 1] == ' ' || src[b - 1] == '\t'))
                b--;
            if (b > 0 && src[b - 1] == '\\') {
                start = b - 1;
                continue;
            }
        }
        break;
    }
    /* When something precedes the directive on its line (a comment, or
     * tokens, as in "#else #include <x>"), only the directive goes: the
     * rest of the line stays as it was. */
    for (size_t i = start; i < pos; i++) {
        if (src[i] != ' ' && src[i] != '\t') {
            start = pos;
            break;
        }
    }
    /* On to the end of the logical line. */
    for (;;) {
        size_t b;
        while (end < len && src[end] != '\n' && src[end] != '\r')
            end++;
        b = end;
        while (b > start && (src[b - 1] == ' ' || src[b - 1] == '\t'))
            b--;
        if (end < len && b > start && src[b - 1] == '\\') {
            end += (src[end] == '\r' && end + 1 < len && src[end + 1] == '\n') ? 2 : 1;
            newlines++;
            continue;
        }
        break;
    }
    /* The message: letters, digits and plain punctuation only (#error reads
     * its line raw; nothing in it may look like a literal or a directive). */
    m = (size_t)snprintf(msg, sizeof(msg), "#error rgpu-server cannot read headers of its own machine: ");
    for (const char *w = why; *w && m + 1 < sizeof(msg); w++) {
        char c = *w;
        msg[m++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                           c == ' ' || c == '.' || c == ',' || c == ':' || c == '-' || c == '_' || c == '/'
                       ? c
                       : ' ';
    }
    msg[m] = '\0';
    msg_len = m;
    out_len = start + msg_len + newlines + (len - end);
    out = malloc(out_len + 1);
    if (!out)
        return NULL;
    memcpy(out, src, start);
    memcpy(out + start, msg, msg_len);
    memset(out + start + msg_len, '\n', newlines);
    memcpy(out + start + msg_len + newlines, src + end, len - end);
    out[out_len] = '\0';
    *len_p = out_len;
    return out;
}

int rgpu_cl_source_neutralize(const char *source, size_t len, const char *const *allowed_headers,
                              size_t n_allowed, char **out_p, size_t *out_len_p, char *why, size_t why_cap)
{
    char *cur = NULL, reason[512];
    size_t cur_len = len;

    *out_p = NULL;
    *out_len_p = 0;
    for (int round = 0; round < RGPU_CL_NEUTRALIZE_MAX; round++) {
        /* Each round rescans the whole source: past a first refusal, only
         * sources of a reasonable size are rewritten. */
        if (round == 1 && len > RGPU_CL_NEUTRALIZE_MAX_LEN) {
            snprintf(why, why_cap, "%s (a source over %u MiB is not rewritten)", reason,
                     RGPU_CL_NEUTRALIZE_MAX_LEN >> 20);
            free(cur);
            return -1;
        }
        rgpu_scan_t sc = {
            .s = (const unsigned char *)(cur ? cur : source),
            .n = cur ? cur_len : (source ? len : 0),
            .allowed = allowed_headers,
            .n_allowed = allowed_headers ? n_allowed : 0,
            .why = reason,
            .why_cap = sizeof(reason),
        };
        char *next;
        size_t next_len;

        if (rgpu_cl_source_scan(&sc) == 0) {
            *out_p = cur;
            *out_len_p = cur ? cur_len : 0;
            return 0;
        }
        if (!sc.refused_directive || sc.refused_pos >= sc.n) {
            snprintf(why, why_cap, "%s", reason);
            free(cur);
            return -1;
        }
        next = rgpu_source_replace_line((const char *)sc.s, sc.n, sc.refused_pos, reason, &next_len);
        free(cur);
        if (!next) {
            snprintf(why, why_cap, "out of memory rewriting the program source");
            return -1;
        }
        cur = next;
        cur_len = next_len;
    }
    snprintf(why, why_cap, "more than %d #include directives refer to files of the server",
             RGPU_CL_NEUTRALIZE_MAX);
    free(cur);
    return -1;
}

/* ---- build options ------------------------------------------------------ */

typedef struct {
    const char *prefix;
    const char *does;
} rgpu_refused_option_t;

/* Prefixes of refused options (case matters: -O2 and -D pass). */
static const rgpu_refused_option_t rgpu_refused_options[] = {
    {"-I", "adds a header search directory on the server"},
    {"-i", "reads or searches files of the server (-include, -imacros, -isystem, -iquote, "
           "-idirafter, -isysroot, -ivfsoverlay, ...)"},
    {"--", "is a long driver option (--sysroot, --include..., --config, --output, ...)"},
    {"-x", "changes the input language"},
    {"-X", "passes options on past this check (-Xclang, -Xpreprocessor, -Xlinker)"},
    {"-load", "loads a plugin"},
    {"-plugin", "runs a plugin"},
    {"-add-plugin", "runs a plugin"},
    {"-fplugin", "loads a plugin"},
    {"-fpass-plugin", "loads a plugin"},
    {"-o", "names an output file on the server"},
    {"-M", "writes a dependency file on the server"},
    {"-mllvm", "passes options to LLVM past this check"},
    {"-mlink-", "links files of the server"},
    {"-B", "adds a program search directory on the server"},
    {"-L", "adds a library search directory on the server"},
    {"-Wp,", "passes options to the preprocessor past this check"},
    {"-Wl,", "passes options to the linker"},
    {"-Wa,", "passes options to the assembler"},
    {"-save-temps", "writes files on the server"},
    {"-dump", "writes files on the server"},
    {"-resource-dir", "points the compiler at another resource directory"},
    {"-working-directory", "changes the compiler's directory on the server"},
    {"-remap-file", "reads a file of the server"},
    {"-chain-include", "reads a file of the server"},
    {"-cxx-isystem", "adds a header search directory on the server"},
    {"-dependency-", "writes a dependency file on the server"},
    {"-header-include", "writes a file on the server"},
    {"-diagnostic-log-file", "writes a file on the server"},
    {"-stats-file", "writes a file on the server"},
    {"-serialize-diagnostic", "writes a file on the server"},
    {"-split-dwarf", "writes a file on the server"},
    {"-coverage-", "writes a file on the server"},
    {"-opt-record", "writes a file on the server"},
    {"-ast-merge", "reads a file of the server"},
    {"-code-completion", "reads a file of the server"},
    {"-specs", "reads a file of the server"},
    {"-wrapper", "runs a program on the server"},
    {"-fmodule", "reads or writes module files on the server"},
    {"-fprebuilt-module", "reads module files of the server"},
    {"-fimplicit-module", "reads module maps of the server"},
    {"-fprofile", "reads or writes profile files on the server"},
    {"-fsanitize", "reads lists from files of the server"},
    {"-fxray", "reads lists from files of the server"},
    {"-fsave-optimization-record", "writes a file on the server"},
    {"-foptimization-record", "writes a file on the server"},
    {"-fcrash-diagnostics", "writes files on the server"},
    {"-ftime-trace", "writes a file on the server"},
    {"-fembed", "reads files of the server"},
    {"-fthinlto", "reads a file of the server"},
    {"-fbasic-block-sections", "reads a file of the server"},
    {"-fopenmp-host-ir", "reads a file of the server"},
    {"-fcuda-include", "reads a file of the server"},
};

int rgpu_cl_header_name_check(const char *name, char *why, size_t why_cap)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > RGPU_CL_HEADER_NAME_MAX || rgpu_header_name_unsafe(name, len)) {
        snprintf(why, why_cap, "the embedded header name \"%.64s\" is refused: a name is 1 to %d "
                 "characters, not absolute, without \"..\" or a backslash (the compiler writes "
                 "headers under these names)", name ? name : "", RGPU_CL_HEADER_NAME_MAX);
        return -1;
    }
    return 0;
}

int rgpu_cl_build_options_check(const char *options, char *why, size_t why_cap)
{
    /* Anywhere in the options, -D values included: they reach the
     * preprocessor as source text. */
    static const char *const words[] = {"_Pragma", "__pragma", "__has_include", "__has_embed", "__debug"};

    for (size_t i = 0; options && i < sizeof(words) / sizeof(words[0]); i++) {
        if (strstr(options, words[i])) {
            snprintf(why, why_cap, "build options containing %s are refused: they would reach files "
                     "of the server or crash its compiler", words[i]);
            return -1;
        }
    }
    const char *p = options;

    if (why && why_cap)
        why[0] = '\0';
    while (p && *p) {
        const char *tok, *t;
        size_t len;

        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f')
            p++;
        if (!*p)
            break;
        tok = p;
        while (*p && !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' ||
                       *p == '\f'))
            p++;
        len = (size_t)(p - tok);
        /* Platforms that honour quotes or escapes would see the option
         * without them: "-I/etc" is -I/etc. */
        for (t = tok; t < p && (*t == '"' || *t == '\'' || *t == '\\'); t++)
            ;
        if (t < p && *t == '@') {
            char shown[96];

            rgpu_scan_printable(tok, len, shown, sizeof(shown));
            if (why && why_cap)
                snprintf(why, why_cap, "build option \"%s\" is refused: it reads options from "
                         "a file of the server", shown);
            return -1;
        }
        for (size_t i = 0; i < sizeof(rgpu_refused_options) / sizeof(rgpu_refused_options[0]);
             i++) {
            size_t plen = strlen(rgpu_refused_options[i].prefix);
            char shown[96];

            if ((size_t)(p - t) < plen || strncmp(t, rgpu_refused_options[i].prefix, plen) != 0)
                continue;
            rgpu_scan_printable(tok, len, shown, sizeof(shown));
            if (why && why_cap)
                snprintf(why, why_cap, "build option \"%s\" is refused: it %s", shown,
                         rgpu_refused_options[i].does);
            return -1;
        }
    }
    return 0;
}

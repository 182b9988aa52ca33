/* The program-source and build-option checks of the OpenCL backend: what a
 * client may ask the compiler to read. Each case is a source and whether it
 * may be compiled with the headers {"my.h", "dir/util.h"} given. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/source_check.h"

static const char *const headers[] = {"my.h", "dir/util.h"};

typedef struct {
    const char *what;
    const char *src;
    size_t len;                 /* 0: strlen(src) */
} src_case_t;

#define CASE(what, src) {what, src, 0}
#define CASE_LEN(what, src) {what, src, sizeof(src) - 1}

static const src_case_t allowed[] = {
    CASE("no include", "__kernel void k(__global int *a) { a[0] = 1; }\n"),
    CASE("an allowed header", "#include \"my.h\"\n__kernel void k(void) {}\n"),
    CASE("an allowed header in a folder", "#include \"dir/util.h\"\n"),
    CASE("spaces and a trailing comment", "  #  include   \"dir/util.h\"  // why\n"),
    CASE("the digraph", "%:include \"my.h\"\n"),
    CASE("comments between # and include", "#/**/include/**/\"my.h\"\n"),
    CASE("include_next of an allowed header", "#include_next \"my.h\"\n"),
    CASE("embed of an allowed header", "#embed \"my.h\"\n"),
    CASE("CRLF line ends", "#include \"my.h\"\r\nint a;\r\n"),
    CASE("a directive inside a string",
         "constant char s[] = \"#include \\\"/etc/shadow\\\"\";\n"),
    CASE("escaped quotes in strings", "constant char s[] = \"\\\"#include </etc/shadow>\\\"\";\n"),
    CASE("a wide string", "constant char s[] = u8\"#include </etc/shadow>\";\n"),
    CASE("# in a character literal", "char c = '#'; char d = '\\''; char q = '\"';\n"
                                     "#include \"my.h\"\n"),
    CASE("a line comment", "int a; // #include \"/etc/passwd\"\n"),
    CASE("a block comment", "/* #include \"/etc/passwd\" */ int a;\n"),
    CASE("a block comment over lines", "/*\n#include \"/etc/passwd\"\n#include <stdio.h>\n*/\n"),
    CASE("a line comment after #", "# // include \"/etc/passwd\"\n"),
    CASE("a spliced line comment (the compiler sees no directive either)",
         "// note \\\n#include \"/etc/passwd\"\nint a;\n"),
    CASE("stringizing", "#define STR(x) #x\n#define CAT(a, b) a ## b\nconstant char *s = STR(hi);\n"),
    CASE("pragmas", "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n#pragma unroll 4\n"),
    CASE("ifdef __has_include", "#ifdef __has_include\n#endif\n#if defined(__has_include)\n#endif\n"),
    CASE("__has_include of an allowed header", "#if __has_include(\"my.h\")\n#include \"my.h\"\n#endif\n"),
    CASE("harmless trigraph-like text", "constant char s[] = \"what?\?!\"; // (really?\?)\n"),
    CASE("an apostrophe in #error", "#if 0\n#error don't do this\n#endif\nint a;\n"),
    CASE("#warning with an unclosed comment opener", "#warning /* not a comment\nint a;\n"),
    CASE("digit separators and char literals", "int a = 1'000; char b = 'x';\n"),
    CASE("a raw string with a plain delimiter", "constant char *s = R\"x(#)x\";\n"),
    CASE("a trailing NUL counted in the length", "__kernel void k(void) {}\n"),
    CASE("a hash in a macro body", "#define H(x) # x\n#define E(x) x\n"),
    CASE("an allowed include after a splice", "#inc\\\nlude \"my.h\"\n"),
    CASE("an empty source", ""),
    /* The last backslash and the newline are a splice: the string goes on
     * over "#include " and the compiler sees no directive either. */
    CASE("a backslash before a newline inside a string",
         "char *s = \"a\\\\\n#include \"/etc/shadow\"\n"),
};

static const src_case_t refused[] = {
    CASE("an absolute path", "#include \"/etc/shadow\"\n"),
    CASE("an angle-bracket path", "#include </etc/shadow>\n"),
    CASE("a system header", "#include <stdio.h>\n"),
    CASE("a macro operand", "#define F \"/etc/shadow\"\n#include F\n"),
    CASE("a function-like macro operand", "#define P(x) #x\n#include P(/etc/shadow)\n"),
    CASE("a header that was not given", "#include \"other.h\"\n"),
    CASE("a header name differing in case", "#include \"MY.h\"\n"),
    CASE("./ before an allowed name", "#include \"./my.h\"\n"),
    CASE("include_next", "#include_next \"/etc/shadow\"\n"),
    CASE("import", "#import \"/etc/shadow\"\n"),
    CASE("embed", "#embed \"/etc/shadow\" limit(100)\n"),
    CASE("embed with angle brackets", "#embed </etc/shadow>\n"),
    CASE("__include_macros", "#__include_macros \"/etc/shadow\"\n"),
    CASE("a splice between # and include", "#\\\ninclude \"/etc/shadow\"\n"),
    CASE("a splice inside include", "#inc\\\nlude \"/etc/shadow\"\n"),
    CASE("a splice inside the name", "#include \"/etc/sha\\\ndow\"\n"),
    CASE("a splice before the name", "#include \\\n \"/etc/shadow\"\n"),
    CASE("a CRLF splice", "#inc\\\r\nlude \"/etc/shadow\"\r\n"),
    CASE("a splice with spaces after the backslash", "#inc\\  \nlude \"/etc/shadow\"\n"),
    CASE("backslash-space-newline ending a line comment",
         "// note \\ \n#include \"/etc/shadow\"\n"),
    CASE("the digraph", "%:include \"/etc/shadow\"\n"),
    CASE("a doubled digraph", "%:%:include \"/etc/shadow\"\n"),
    CASE("a comment between # and include", "#/**/include \"/etc/shadow\"\n"),
    CASE("a comment over lines between # and include", "#/*\n*/include \"/etc/shadow\"\n"),
    CASE("a comment before the name", "#include/* x */\"/etc/shadow\"\n"),
    CASE("leading whitespace", "   \t#include \"/etc/shadow\"\n"),
    CASE("form feed and vertical tab", "\f\v#  include \"/etc/shadow\"\n"),
    CASE("a comment before #", "/* x */ #include \"/etc/shadow\"\n"),
    CASE("after code on the line (checked anywhere)", "int a; #include \"/etc/shadow\"\n"),
    CASE("a lone CR ending a line comment", "// x\r#include \"/etc/shadow\"\n"),
    CASE("a CR inside a string, for compilers where CR is no line end",
         "char *s = \"\r/*\";\n#include \"/etc/shadow\"\n// */\n"),
    CASE("after a lone CR", "int a;\r#include \"/etc/shadow\"\r"),
    CASE("after an unterminated string", "constant char *s = \"abc\n#include \"/etc/shadow\"\n"),
    CASE("after an unterminated char", "char c = 'a\n#include \"/etc/shadow\"\n"),
    CASE("the trigraph ?\?=", "?\?=include \"/etc/shadow\"\n"),
    CASE("the trigraph ?\?/ splicing a comment", "// x ?\?/\n#include \"my.h\"\n"),
    CASE("the trigraph ?\?'", "char c = ?\?'x';\n"),
    CASE("a non-breaking space in the directive name", "#\xc2\xa0include \"/etc/shadow\"\n"),
    CASE("a UCN in the directive name", "#\\u0069nclude \"/etc/shadow\"\n"),
    CASE("a macro-built header name", "#define H </etc/shadow>\n#include H\n"),
    CASE("no operand", "#include\nint a;\n"),
    CASE("an unterminated name", "#include \"my.h\nint a;\n"),
    CASE("__has_include probe", "#if __has_include(\"/etc/shadow\")\n#endif\n"),
    CASE("__has_include probe with brackets", "#if __has_include(</etc/shadow>)\n#endif\n"),
    CASE("__has_include_next probe", "#if __has_include_next(\"x.h\")\n#endif\n"),
    CASE("__has_embed probe", "#if __has_embed(\"/etc/shadow\")\n#endif\n"),
    CASE("pragma GCC dependency", "#pragma GCC dependency \"/etc/shadow\"\n"),
    CASE("_Pragma GCC dependency", "_Pragma(\"GCC dependency \\\"/etc/shadow\\\"\")\n"),
    CASE("a macro building pragma GCC dependency",
         "#define P(x) _Pragma(#x)\nP(GCC dependency \"/etc/shadow\")\n"),
    CASE("pragma include_alias", "#pragma include_alias(\"my.h\", \"/etc/shadow\")\n#include \"my.h\"\n"),
    CASE("#error hiding nothing: its line is raw", "#error /*\n#include \"/etc/shadow\"\n// */\n"),
    CASE("a raw string hiding a directive from C", "char *s = R\"(\n#include \"/etc/shadow\"\n)\";\n"),
    CASE("a raw string whose end a splice fakes",
         "char *s = R\"x(a )x\\\n\" /*\n)x\";\n#include \"/etc/shadow\"\n// */\n"),
    CASE("a raw string with a punctuation delimiter", "char *s = R\"+(x)+\";\n"),
    CASE("a digit separator opening a char literal in C++",
         "int a = 1'0'/*\n#include \"/etc/shadow\"\n// */\n"),
    CASE("a second include on a spliced line", "#include \"my.h\" \\\n#include \"/etc/shadow\"\n"),
    CASE("a stringized directive", "#define S(x) #x\nS(#include \"/etc/shadow\")\n"),
    CASE("dot-dot", "#include \"dir/../../etc/shadow\"\n"),
    CASE("a backslash in the name", "#include \"my.h\\\\\"\n"),
    CASE("on the last line without a newline", "int a;\n#include \"/proc/self/environ\""),
    CASE_LEN("a NUL between # and include", "#\0include \"/etc/shadow\"\n"),
    CASE_LEN("a NUL before #", "int a;\n\0#include \"/etc/shadow\"\n"),
};

static size_t case_len(const src_case_t *c)
{
    return c->len ? c->len : strlen(c->src);
}

TestSuite(source_check, .timeout = 30);

Test(source_check, allowed_sources_pass)
{
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        char why[256] = "";
        int rc = rgpu_cl_source_check(allowed[i].src, case_len(&allowed[i]), headers, 2, why,
                                      sizeof(why));

        cr_expect_eq(rc, 0, "allowed case \"%s\" was refused: %s", allowed[i].what, why);
    }
}

Test(source_check, refused_sources_say_why)
{
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char why[256] = "";
        int rc = rgpu_cl_source_check(refused[i].src, case_len(&refused[i]), headers, 2, why,
                                      sizeof(why));

        cr_expect_eq(rc, -1, "refused case \"%s\" passed", refused[i].what);
        cr_expect(strncmp(why, "line ", 5) == 0, "case \"%s\": why is \"%s\"", refused[i].what,
                  why);
    }
}

Test(source_check, a_trailing_nul_is_whitespace)
{
    static const char src[] = "__kernel void k(void) {}\n";

    cr_expect_eq(rgpu_cl_source_check(src, sizeof(src), headers, 2, NULL, 0), 0);
}

Test(source_check, why_names_the_line_and_the_file)
{
    char why[256];
    const char *src = "int a;\n\n  #include \"/etc/shadow\"\n";

    cr_assert_eq(rgpu_cl_source_check(src, strlen(src), headers, 2, why, sizeof(why)), -1);
    cr_expect(strstr(why, "line 3:") != NULL, "%s", why);
    cr_expect(strstr(why, "/etc/shadow") != NULL, "%s", why);
    cr_expect(strstr(why, "#include") != NULL, "%s", why);
}

Test(source_check, listed_but_unsafe_names_are_refused)
{
    static const char *const bad[] = {"/etc/shadow", "../secret.h", "a\\b.h"};
    char why[256];

    cr_expect_eq(rgpu_cl_source_check("#include \"/etc/shadow\"\n", 23, bad, 3, why, sizeof(why)),
                 -1);
    cr_expect(strstr(why, "absolute") != NULL, "%s", why);
    cr_expect_eq(rgpu_cl_source_check("#include \"../secret.h\"\n", 23, bad, 3, why, sizeof(why)),
                 -1);
}

Test(source_check, no_headers_given)
{
    char why[256];

    cr_expect_eq(rgpu_cl_source_check("#include \"my.h\"\n", 16, NULL, 0, why, sizeof(why)), -1);
    cr_expect(strstr(why, "no headers were given") != NULL, "%s", why);
    cr_expect_eq(rgpu_cl_source_check("int a;\n", 7, NULL, 0, why, sizeof(why)), 0);
    static const char *const with_null[] = {NULL, "my.h"};
    cr_expect_eq(rgpu_cl_source_check("#include \"my.h\"\n", 16, with_null, 2, why, sizeof(why)), 0);
}

Test(source_check, why_is_truncated_safely)
{
    char why[8];
    char big[3000];

    memset(big, 'a', sizeof(big));
    memcpy(big, "#include \"", 10);
    big[sizeof(big) - 2] = '"';
    big[sizeof(big) - 1] = '\n';
    cr_expect_eq(rgpu_cl_source_check(big, sizeof(big), headers, 2, why, sizeof(why)), -1);
    cr_expect_lt(strlen(why), sizeof(why));
    cr_expect_eq(rgpu_cl_source_check(big, sizeof(big), headers, 2, NULL, 0), -1);
}

Test(source_check, a_large_source_is_fine)
{
    size_t n = 1 << 20;
    char *src = malloc(n);

    cr_assert_not_null(src);
    for (size_t i = 0; i < n; i++)
        src[i] = "int a = 1; /* c */ // x\n"[i % 24];
    cr_expect_eq(rgpu_cl_source_check(src, n, headers, 2, NULL, 0), 0);
    free(src);
}

/* Random text from the characters that matter to the lexer: no crash, no
 * overrun (the sanitizers watch), and why is always terminated. */
Test(source_check, random_text_is_handled)
{
    static const char alphabet[] = "#%:/*\\\"'\n\r \tRu8include<>?=()1.xe+\0";
    unsigned seed = 12345;
    char src[160], why[64];

    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)(iter % (int)sizeof(src));

        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            src[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        memset(why, 'z', sizeof(why));
        rgpu_cl_source_check(src, n, headers, 2, why, sizeof(why));
        cr_assert(memchr(why, '\0', sizeof(why)) != NULL);
    }
}

/* ---- build options ---- */

static const char *const options_allowed[] = {
    "",
    "-cl-fast-relaxed-math",
    "-DN=4 -D FOO=bar -cl-std=CL2.0 -w -Werror",
    "-cl-mad-enable -O2 -g -cl-kernel-arg-info",
    "-Wno-unused-variable -cl-denorms-are-zero",
    "-DPATH=\"x\" -UNDEBUG",
    "  -cl-opt-disable\t",
};

static const char *const options_refused[] = {
    "-I/etc",
    "-I /etc",
    "-DX=1 -I.",
    "-include /etc/shadow",
    "-imacros /etc/shadow",
    "-isystem /usr",
    "-iquote /etc",
    "-idirafter /etc",
    "--sysroot=/",
    "--sysroot /",
    "-x c",
    "-xc",
    "@/etc/opts",
    "-Xclang -load",
    "-load /tmp/x.so",
    "-fplugin=/tmp/x.so",
    "-fpass-plugin=/tmp/x.so",
    "-o /tmp/out",
    "-cl-std=CL2.0 -I/x",
    "\"-I/etc\"",
    "'@file'",
    "-DX\t-I/etc",
    "-MF /tmp/deps",
    "-MD",
    "-mllvm -debug",
    "-Wp,-I/etc",
    "-fsanitize-ignorelist=/etc/shadow",
    "-save-temps=/tmp/x",
    "-fprofile-use=/etc/shadow",
};

Test(source_check, build_options)
{
    char why[256];

    cr_expect_eq(rgpu_cl_build_options_check(NULL, why, sizeof(why)), 0);
    for (size_t i = 0; i < sizeof(options_allowed) / sizeof(options_allowed[0]); i++)
        cr_expect_eq(rgpu_cl_build_options_check(options_allowed[i], why, sizeof(why)), 0,
                     "options \"%s\" were refused: %s", options_allowed[i], why);
    for (size_t i = 0; i < sizeof(options_refused) / sizeof(options_refused[0]); i++) {
        why[0] = '\0';
        cr_expect_eq(rgpu_cl_build_options_check(options_refused[i], why, sizeof(why)), -1,
                     "options \"%s\" passed", options_refused[i]);
        cr_expect(strstr(why, "is refused") != NULL, "options \"%s\": why is \"%s\"",
                  options_refused[i], why);
    }
}

/* ---- neutralizing: refused includes become #error lines ---------------- */

/* Neutralizes src and checks the result passes the check, holds no
 * directive naming the header, and keeps the number of lines. */
static char *neutralized(const char *src)
{
    char *out = NULL, why[256] = "";
    size_t out_len = 0, lines_in = 0, lines_out = 0;

    cr_assert_eq(rgpu_cl_source_neutralize(src, strlen(src), headers, 2, &out, &out_len, why, sizeof(why)), 0,
                 "neutralize refused: %s", why);
    if (!out)
        return NULL;
    cr_assert_eq(strlen(out), out_len);
    cr_assert_eq(rgpu_cl_source_check(out, out_len, headers, 2, why, sizeof(why)), 0,
                 "the rewritten source still fails the check: %s\n%s", why, out);
    for (const char *p = src; *p; p++)
        lines_in += *p == '\n';
    for (const char *p = out; *p; p++)
        lines_out += *p == '\n';
    cr_assert_eq(lines_in, lines_out, "line count %zu -> %zu:\n%s", lines_in, lines_out, out);
    return out;
}

Test(source_check, neutralize_leaves_clean_sources_alone)
{
    cr_assert_null(neutralized("#include \"my.h\"\n__kernel void k(void) {}\n"));
}

Test(source_check, neutralize_turns_refused_includes_into_errors)
{
    static const char *const srcs[] = {
        "#include </etc/shadow>\nkernel void k(void) {}\n",
        "#ifndef __OPENCL_VERSION__\n#include <stddef.h>\n#endif\nkernel void k(void) {}\n",
        "  #  include \"/etc/passwd\"\nkernel void k(void) {}\n",
        "#/* c */include <a.h>\n#include \"my.h\"\n%:include \"../x.h\"\n",
        "#inc\\\nlude </etc/hostname>\nint x;\n",
        "#define F \"/etc/passwd\"\n#include F\nint y;\n",
    };

    for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
        char *out = neutralized(srcs[i]);

        cr_assert_not_null(out, "case %zu: nothing rewritten", i);
        cr_assert_not_null(strstr(out, "#error rgpu-server cannot read headers"), "case %zu:\n%s", i, out);
        /* No include directive is left but the allowed one. */
        for (const char *line = out; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "") {
            const char *p = line + strspn(line, " \t");
            if (*p == '#' || (p[0] == '%' && p[1] == ':')) {
                p += *p == '#' ? 1 : 2;
                p += strspn(p, " \t");
                cr_assert(strncmp(p, "include", 7) != 0 || strncmp(p + 7, " \"my.h\"", 7) == 0,
                          "case %zu still includes a file:\n%s", i, out);
            }
        }
        free(out);
    }
}

Test(source_check, neutralize_keeps_allowed_includes_and_code)
{
    char *out = neutralized("#include \"my.h\"\n#include <stdio.h>\n#include \"dir/util.h\"\nint z;\n");

    cr_assert_not_null(out);
    cr_assert_not_null(strstr(out, "#include \"my.h\"\n"));
    cr_assert_not_null(strstr(out, "#include \"dir/util.h\"\nint z;\n"));
    cr_assert_null(strstr(out, "<stdio.h>"));
    free(out);
}

Test(source_check, neutralize_refuses_what_it_cannot_rewrite)
{
    static const char *const srcs[] = {
        "?\?=include <a.h>\n",
        "#pragma GCC dependency \"/etc/passwd\"\n",
        "#if __has_include(</etc/passwd>)\n#endif\n",
    };
    char *out = NULL, why[256];
    size_t len;

    for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
        cr_assert_eq(rgpu_cl_source_neutralize(srcs[i], strlen(srcs[i]), headers, 2, &out, &len, why, sizeof(why)),
                     -1, "case %zu was accepted", i);
        cr_assert_null(out);
        cr_assert_neq(why[0], '\0');
    }
}

Test(source_check, neutralize_is_bounded)
{
    size_t n = RGPU_CL_NEUTRALIZE_MAX + 1, len = 0;
    char *src = malloc(n * 24 + 1), *out = NULL, why[256];

    cr_assert_not_null(src);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(src + len, "#include <h%zu.h>\n", i);
    cr_assert_eq(rgpu_cl_source_neutralize(src, len, NULL, 0, &out, &len, why, sizeof(why)), -1);
    cr_assert_null(out);
    free(src);
}

Test(source_check, neutralize_keeps_what_precedes_the_directive)
{
    char *out = neutralized("#if 1\n#else #include <x.h>\nint b;\n#endif\n/* c */ #include </etc/passwd>\nint a;\n");

    cr_assert_not_null(out);
    cr_assert_not_null(strstr(out, "\n#else #error rgpu-server"), "%s", out);
    cr_assert_not_null(strstr(out, "\n/* c */ #error rgpu-server"), "%s", out);
    cr_assert_not_null(strstr(out, "int b;\n#endif\n"), "%s", out);
    free(out);
}

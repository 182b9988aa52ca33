/*
 * Headers of the application's machine inlined into program sources
 * (client/opencl/include.c): -I option parsing, the search order, #line
 * markers, #pragma once, include guards, directives that are text, the
 * limits. Each test works in a fresh temporary directory that stands for
 * the working directory.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "include.h"

static char root[64];
static char why[512];

static void setup(void)
{
    strcpy(root, "/tmp/rgpu-test-include.XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    why[0] = '\0';
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(client_include, .init = setup, .fini = teardown, .timeout = 30);

/* root/REL, directories made on the way. */
static const char *path_of(const char *rel)
{
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];

    snprintf(p, 512, "%s/%s", root, rel);
    return p;
}

static void put(const char *rel, const char *text)
{
    char dir[512], *slash;
    FILE *f;

    snprintf(dir, sizeof(dir), "%s", path_of(rel));
    for (slash = strchr(dir + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(dir, 0755);
        *slash = '/';
    }
    f = fopen(path_of(rel), "w");
    cr_assert_not_null(f, "%s", path_of(rel));
    fputs(text, f);
    fclose(f);
}

/* Inlines src with root/cwd as the working directory and root/DIR for each
 * -I directory named (NULL-terminated). */
static rgpu_status_t inl(const char *src, char **out_p, const char *const *embedded, size_t n_embedded, ...)
{
    char cwd[512], *dirs[8];
    const char *dir;
    rgpu_cl_include_cfg_t cfg = {0};
    size_t n = 0;
    rgpu_status_t status;
    va_list ap;

    snprintf(cwd, sizeof(cwd), "%s/cwd", root);
    mkdir(cwd, 0755);
    va_start(ap, n_embedded);
    while ((dir = va_arg(ap, const char *)) && n < 8)
        cr_assert_geq(asprintf(&dirs[n++], "%s/%s", root, dir), 0);
    va_end(ap);
    cfg.dirs = (const char *const *)dirs;
    cfg.n_dirs = n;
    cfg.cwd = cwd;
    cfg.embedded = embedded;
    cfg.n_embedded = n_embedded;
    status = rgpu__cl_include_inline(src, strlen(src), &cfg, out_p, why, sizeof(why));
    while (n > 0)
        free(dirs[--n]);
    return status;
}

/* inl with build options (for their -D and -U) and root/inc as the one
 * -I directory. */
static rgpu_status_t inl_opt(const char *src, const char *options, char **out_p)
{
    char cwd[512], *dir;
    rgpu_cl_include_cfg_t cfg = {0};
    rgpu_status_t status;

    snprintf(cwd, sizeof(cwd), "%s/cwd", root);
    mkdir(cwd, 0755);
    cr_assert_geq(asprintf(&dir, "%s/inc", root), 0);
    cfg.dirs = (const char *const *)&dir;
    cfg.n_dirs = 1;
    cfg.cwd = cwd;
    cfg.options = options;
    status = rgpu__cl_include_inline(src, strlen(src), &cfg, out_p, why, sizeof(why));
    free(dir);
    return status;
}

/* The expected text: "@" stands for root. */
static char *expect(const char *fmt)
{
    size_t n = 0;
    char *e = malloc(strlen(fmt) * (strlen(root) + 1) + 1);

    for (const char *p = fmt; *p; p++) {
        if (*p == '@') {
            memcpy(e + n, root, strlen(root));
            n += strlen(root);
        } else {
            e[n++] = *p;
        }
    }
    e[n] = '\0';
    return e;
}

static void assert_text(const char *got, const char *fmt)
{
    char *want = expect(fmt);

    cr_assert_not_null(got, "nothing was inlined (why: %s)", why);
    cr_assert_str_eq(got, want, "got:\n%s\n--- want:\n%s", got, want);
    free(want);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- options ---- */

static void parse_ok(const char *options, const char *rest, size_t n_dirs, ...)
{
    rgpu_cl_include_opts_t opts;
    va_list ap;

    cr_assert_eq(rgpu__cl_include_opts_parse(options, &opts, why, sizeof(why)), RGPU_OK, "%s: %s", options, why);
    cr_assert_str_eq(opts.options, rest, "options of \"%s\"", options);
    cr_assert_eq(opts.n_dirs, n_dirs, "directories of \"%s\"", options);
    va_start(ap, n_dirs);
    for (size_t i = 0; i < n_dirs; i++)
        cr_assert_str_eq(opts.dirs[i], va_arg(ap, const char *), "directory %zu of \"%s\"", i, options);
    va_end(ap);
    rgpu__cl_include_opts_free(&opts);
}

Test(client_include, options_forms)
{
    parse_ok(NULL, "", 0);
    parse_ok("", "", 0);
    parse_ok("-I /usr/lib/python3/dist-packages/pyopencl/cl", "", 1, "/usr/lib/python3/dist-packages/pyopencl/cl");
    parse_ok("-I/a -DREPRO=1", "-DREPRO=1", 1, "/a");
    parse_ok("-DREPRO=1 -I/a", "-DREPRO=1", 1, "/a");
    parse_ok("-cl-mad-enable -I \"/dir with spaces\" -I'/other dir' -Werror", "-cl-mad-enable -Werror", 2,
             "/dir with spaces", "/other dir");
    parse_ok("-I\"/q\\\"uote\"", "", 1, "/q\"uote");
    parse_ok("-I a -I b\t-Ic", "", 3, "a", "b", "c");
    parse_ok("--include-directory=/x --include-directory /y -w", "-w", 2, "/x", "/y");
}

Test(client_include, options_other_untouched)
{
    /* Not -I options: a macro's value, the argument of -D, a word that
     * merely contains -I. */
    parse_ok(" -cl-std=CL1.2  -D NAME=\"-I x\"", " -cl-std=CL1.2  -D NAME=\"-I x\"", 0);
    parse_ok("-D -Inotadir -cl-fast-relaxed-math", "-D -Inotadir -cl-fast-relaxed-math", 0);
    parse_ok("-DX=-I/y", "-DX=-I/y", 0);
    parse_ok("-cl-kernel-arg-info -I /d -cl-opt-disable", "-cl-kernel-arg-info -cl-opt-disable", 1, "/d");
}

Test(client_include, options_malformed)
{
    static const char *const bad[] = {"-I", "-DX -I  ", "-I \"\"", "-I''", "-I \"/unterminated", "-DX='a"};
    rgpu_cl_include_opts_t opts = {0};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        cr_assert_eq(rgpu__cl_include_opts_parse(bad[i], &opts, why, sizeof(why)), RGPU_ERR_INVALID_ARG, "%s",
                     bad[i]);
        cr_assert_neq(why[0], '\0', "a reason for \"%s\"", bad[i]);
        cr_assert_null(opts.options, "nothing set for \"%s\"", bad[i]);
    }
}

/* ---- inlining ---- */

Test(client_include, nothing_to_inline)
{
    char *out = (char *)1;

    cr_assert_eq(inl("__kernel void k(__global int *x) { *x = 1; }", &out, NULL, 0, "inc", NULL), RGPU_OK);
    cr_assert_null(out);
    /* Not found anywhere: left to the server. */
    cr_assert_eq(inl("#ifndef __OPENCL_VERSION__\n#include <stddef.h>\n#endif\n#include \"nowhere.h\"\n", &out,
                     NULL, 0, "inc", NULL),
                 RGPU_OK);
    cr_assert_null(out);
}

Test(client_include, line_markers)
{
    char *out;

    put("inc/scale.h", "#define SCALE 3\n");
    cr_assert_eq(inl("#include \"scale.h\"\nint x = SCALE;\n", &out, NULL, 0, "inc", NULL), RGPU_OK, "%s", why);
    assert_text(out, "#line 1 \"<source>\"\n"
                     "#line 1 \"@/inc/scale.h\"\n"
                     "#define SCALE 3\n"
                     "#line 2 \"<source>\"\n"
                     "int x = SCALE;\n");
    free(out);
    /* A directive over three lines (splices, a comment), a header without
     * its last newline, angle brackets, the source's last line. */
    put("inc/nonl.h", "int a;");
    cr_assert_eq(inl("int y;\n  # /* c */ in\\\nclude \\\n <nonl.h> /* a\ncomment */\nint z;\n#include <nonl.h>", &out,
                     NULL, 0, "inc", NULL),
                 RGPU_OK, "%s", why);
    assert_text(out, "#line 1 \"<source>\"\n"
                     "int y;\n"
                     "  #line 1 \"@/inc/nonl.h\"\n"
                     "int a;\n"
                     "#line 6 \"<source>\"\n"
                     "int z;\n"
                     "#line 1 \"@/inc/nonl.h\"\n"
                     "int a;\n"
                     "#line 8 \"<source>\"\n");
    free(out);
}

Test(client_include, nested_and_escaped_names)
{
    char *out;

    put("inc/sub/b.h", "int b;\n");
    put("inc/a \"q\".h", "int a1;\n#include \"sub/b.h\"\nint a2;\n");
    cr_assert_eq(inl("#include \"a \\\"q\\\".h\"\n", &out, NULL, 0, "inc", NULL), RGPU_OK, "%s", why);
    /* The header name is not a string literal: its backslashes are kept,
     * so this name is not found... */
    cr_assert_null(out);
    cr_assert_eq(inl("#include <a \"q\".h>\nint s;\n", &out, NULL, 0, "inc", NULL), RGPU_OK, "%s", why);
    /* ...but this one is, and #line escapes the quotes. */
    assert_text(out, "#line 1 \"<source>\"\n"
                     "#line 1 \"@/inc/a \\\"q\\\".h\"\n"
                     "int a1;\n"
                     "#line 1 \"@/inc/sub/b.h\"\n"
                     "int b;\n"
                     "#line 3 \"@/inc/a \\\"q\\\".h\"\n"
                     "int a2;\n"
                     "#line 2 \"<source>\"\n"
                     "int s;\n");
    free(out);
}

Test(client_include, search_order)
{
    char *out;

    put("cwd/h.h", "int from_cwd;\n");
    put("one/h.h", "int from_one;\n");
    put("two/h.h", "int from_two;\n");
    put("two/only2.h", "int only_two;\n");
    put("two/sub/n.h", "#include \"k.h\"\n#include <k.h>\n");
    put("two/sub/k.h", "int k_beside;\n");
    put("one/k.h", "int k_one;\n");

    /* The working directory comes first (PoCL compiles with "-I." before
     * the application's options), for both forms. */
    cr_assert_eq(inl("#include \"h.h\"\n#include <h.h>\n", &out, NULL, 0, "one", "two", NULL), RGPU_OK);
    cr_assert_eq(count(out, "from_cwd"), 2, "%s", out);
    cr_assert_eq(count(out, "from_one") + count(out, "from_two"), 0);
    free(out);
    /* Then the -I directories in order. */
    cr_assert_eq(inl("#include <only2.h>\n", &out, NULL, 0, "one", "two", NULL), RGPU_OK);
    cr_assert_eq(count(out, "only_two"), 1, "%s", out);
    free(out);
    unlink(path_of("cwd/h.h"));
    cr_assert_eq(inl("#include \"h.h\"\n", &out, NULL, 0, "one", "two", NULL), RGPU_OK);
    cr_assert_eq(count(out, "from_one"), 1, "%s", out);
    cr_assert_eq(count(out, "from_two"), 0, "%s", out);
    free(out);
    cr_assert_eq(inl("#include \"h.h\"\n", &out, NULL, 0, "two", "one", NULL), RGPU_OK);
    cr_assert_eq(count(out, "from_two"), 1, "%s", out);
    free(out);
    /* From a header, "k.h" is looked for beside it first; <k.h> is not. */
    cr_assert_eq(inl("#include <sub/n.h>\n", &out, NULL, 0, "one", "two", NULL), RGPU_OK);
    cr_assert_eq(count(out, "k_beside"), 1, "%s", out);
    cr_assert_eq(count(out, "k_one"), 1, "%s", out);
    cr_assert_lt(strstr(out, "k_beside") - out, strstr(out, "k_one") - out);
    free(out);
    /* An absolute name is itself; a directory is no header. */
    put("abs/x.h", "int absolute;\n");
    mkdir(path_of("one/d.h"), 0755);
    {
        char src[600];
        snprintf(src, sizeof(src), "#include \"%s\"\n#include <d.h>\n", path_of("abs/x.h"));
        cr_assert_eq(inl(src, &out, NULL, 0, "one", NULL), RGPU_OK);
        cr_assert_eq(count(out, "absolute"), 1);
        cr_assert_eq(count(out, "#include <d.h>"), 1, "%s", out);
        free(out);
    }
}

Test(client_include, embedded_headers_left_to_the_server)
{
    static const char *const embedded[] = {NULL, "emb.h"};
    char *out;

    put("inc/emb.h", "int client_copy;\n");
    put("inc/other.h", "int other;\n");
    cr_assert_eq(inl("#include \"emb.h\"\n#include \"other.h\"\n", &out, embedded, 2, "inc", NULL), RGPU_OK);
    cr_assert_eq(count(out, "#include \"emb.h\""), 1, "%s", out);
    cr_assert_eq(count(out, "client_copy"), 0);
    cr_assert_eq(count(out, "int other;"), 1);
    free(out);
}

Test(client_include, directives_in_comments_and_literals)
{
    char *out = NULL;

    put("inc/a.h", "int a;\n");
    cr_assert_eq(inl("/* #include \"a.h\" */\n"
                     "// #include \"a.h\"\n"
                     "// a comment that goes on \\\n#include \"a.h\"\n"
                     "/* a comment that\n#include \"a.h\"\n*/\n"
                     "char *s = \"\\\n#include \\\"a.h\\\"\";\n"
                     "int x; #include \"a.h\"\n"
                     "#define INC \"/*\"\n#include \"a.h\" /* ends here */\n",
                     &out, NULL, 0, "inc", NULL),
                 RGPU_OK);
    cr_assert_eq(count(out, "int a;"), 1, "only the last one is a directive:\n%s", out);
    cr_assert_eq(count(out, "#include \"a.h\""), 5, "%s", out);
    free(out);
    /* The digraph, and comments before the '#'. */
    cr_assert_eq(inl("/* x */ %:include \"a.h\"\n/* multi\nline */ # include <a.h>\n", &out, NULL, 0, "inc", NULL),
                 RGPU_OK);
    cr_assert_eq(count(out, "int a;"), 2, "%s", out);
    free(out);
}

Test(client_include, pragma_once)
{
    char *out;

    put("inc/once.h", "#pragma once\nint once_body;\n");
    put("inc/user.h", "#include <once.h>\nint user;\n");
    cr_assert_eq(inl("#include <once.h>\n#include \"user.h\"\n#include <once.h>\nint end;\n", &out, NULL, 0, "inc",
                     NULL),
                 RGPU_OK, "%s", why);
    cr_assert_eq(count(out, "once_body"), 1, "%s", out);
    cr_assert_eq(count(out, "#pragma once"), 0, "%s", out);
    cr_assert_eq(count(out, "#define __RGPU_PRAGMA_ONCE_0\n"), 1, "%s", out);
    assert_text(out, "#line 1 \"<source>\"\n"
                     "#ifndef __RGPU_PRAGMA_ONCE_0\n"
                     "#define __RGPU_PRAGMA_ONCE_0\n"
                     "#line 1 \"@/inc/once.h\"\n"
                     "\n"
                     "int once_body;\n"
                     "\n#endif\n"
                     "#line 2 \"<source>\"\n"
                     "#line 1 \"@/inc/user.h\"\n"
                     "\n"
                     "int user;\n"
                     "#line 3 \"<source>\"\n"
                     "\n"
                     "int end;\n");
    free(out);
    /* First included in a branch that may not be taken: the second one is
     * written too, and the generated guard decides. */
    cr_assert_eq(inl("#ifdef FOO\n#include <once.h>\n#endif\n#include <once.h>\n#include <once.h>\n", &out, NULL, 0,
                     "inc", NULL),
                 RGPU_OK);
    cr_assert_eq(count(out, "once_body"), 2, "%s", out);
    cr_assert_eq(count(out, "#ifndef __RGPU_PRAGMA_ONCE_0"), 2, "%s", out);
    free(out);
}

Test(client_include, include_guards)
{
    char *out;

    put("inc/a.h", "/* a */\n#ifndef A_H\n#define A_H\n#include \"b.h\"\nint a;\n#endif /* A_H */\n");
    put("inc/b.h", "#ifndef B_H\n#define B_H\n#include \"a.h\"\nint b;\n#endif\n");
    /* a.h and b.h include each other: the guards end the cycle. */
    cr_assert_eq(inl("#include <a.h>\n#include <a.h>\n#include <b.h>\n", &out, NULL, 0, "inc", NULL), RGPU_OK,
                 "%s", why);
    /* Guarded text is written each time: the preprocessor skips it. */
    cr_assert_eq(count(out, "int a;"), 3, "%s", out);
    cr_assert_eq(count(out, "int b;"), 3, "%s", out);
    free(out);
}

Test(client_include, cycle_without_guards)
{
    char *out = (char *)1;

    put("inc/c.h", "#include \"d.h\"\n");
    put("inc/d.h", "#include \"c.h\"\n");
    cr_assert_eq(inl("#include <c.h>\n", &out, NULL, 0, "inc", NULL), RGPU_ERR_TOO_LARGE);
    cr_assert_null(out);
    cr_assert(strstr(why, "nested more than 64 levels"), "%s", why);
    /* A guard with an #else is no guard. */
    put("inc/e.h", "#ifndef E\n#define E\n#else\n#include \"e.h\"\n#endif\n");
    cr_assert_eq(inl("#include <e.h>\n", &out, NULL, 0, "inc", NULL), RGPU_ERR_TOO_LARGE);
}

Test(client_include, depth_limit)
{
    rgpu_cl_include_cfg_t cfg = {0};
    char dir[512], *out = (char *)1;
    const char *dirs[] = {dir};

    /* l0.h includes l1.h ... l3.h: three levels of nesting under l0.h. */
    put("inc/l0.h", "#include \"l1.h\"\n");
    put("inc/l1.h", "#include \"l2.h\"\n");
    put("inc/l2.h", "#include \"l3.h\"\n");
    put("inc/l3.h", "int deep;\n");
    snprintf(dir, sizeof(dir), "%s/inc", root);
    cfg.dirs = dirs;
    cfg.n_dirs = 1;
    cfg.cwd = root;
    cfg.max_depth = 4;
    cr_assert_eq(rgpu__cl_include_inline("#include <l0.h>\n", 16, &cfg, &out, why, sizeof(why)), RGPU_OK, "%s", why);
    cr_assert_eq(count(out, "int deep;"), 1);
    free(out);
    cfg.max_depth = 3;
    cr_assert_eq(rgpu__cl_include_inline("#include <l0.h>\n", 16, &cfg, &out, why, sizeof(why)),
                 RGPU_ERR_TOO_LARGE);
    cr_assert(strstr(why, "l2.h:1"), "names where: %s", why);
}

Test(client_include, size_limit)
{
    rgpu_cl_include_cfg_t cfg = {0};
    char dir[512], big[3000], *out = (char *)1;
    const char *dirs[] = {dir};

    memset(big, 'x', sizeof(big) - 2);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    put("inc/big.h", big);
    snprintf(dir, sizeof(dir), "%s/inc", root);
    cfg.dirs = dirs;
    cfg.n_dirs = 1;
    cfg.cwd = root;
    cfg.max_size = 4096;
    cr_assert_eq(rgpu__cl_include_inline("#include <big.h>\n", 17, &cfg, &out, why, sizeof(why)), RGPU_OK, "%s",
                 why);
    free(out);
    cr_assert_eq(rgpu__cl_include_inline("#include <big.h>\n#include <big.h>\n", 34, &cfg, &out, why, sizeof(why)),
                 RGPU_ERR_TOO_LARGE);
    cr_assert_null(out);
    cr_assert(strstr(why, "passes 4096 bytes"), "%s", why);
}

Test(client_include, unreadable_header)
{
    char *out = (char *)1;

    cr_assert_eq(mkfifo(path_of("inc-fifo.h"), 0644), 0);
    cr_assert_eq(inl("#include <inc-fifo.h>\n", &out, NULL, 0, ".", NULL), RGPU_ERR_IO);
    cr_assert_null(out);
    cr_assert(strstr(why, "cannot read header") && strstr(why, "not a regular file") && strstr(why, "<source>:1"),
              "%s", why);
    if (geteuid() != 0) {
        put("inc/secret.h", "int s;\n");
        cr_assert_eq(chmod(path_of("inc/secret.h"), 0), 0);
        cr_assert_eq(inl("#include \"secret.h\"\n", &out, NULL, 0, "inc", NULL), RGPU_ERR_IO);
        cr_assert(strstr(why, "Permission denied"), "%s", why);
    }
}

Test(client_include, nul_bytes_and_last_splice)
{
    static const char header[] = "int a;\0int b; \\";
    char *out;
    FILE *f = fopen(path_of("nul.h"), "w");

    cr_assert_not_null(f);
    fwrite(header, 1, sizeof(header) - 1, f);
    fclose(f);
    cr_assert_eq(inl("#include <nul.h>\nint c;\n", &out, NULL, 0, ".", NULL), RGPU_OK);
    assert_text(out, "#line 1 \"<source>\"\n"
                     "#line 1 \"@/./nul.h\"\n"
                     "int a; int b; \\\n"
                     "\n"
                     "#line 2 \"<source>\"\n"
                     "int c;\n");
    free(out);
}

/* ---- macro operands ---- */

/* src with options inlines header root/inc/h.h (its text "H"): the
 * directive becomes the header. */
static void macro_inlines(const char *src, const char *options)
{
    char *out = NULL;

    put("inc/h.h", "int h;\n");
    cr_assert_eq(inl_opt(src, options, &out), RGPU_OK, "%s: %s", src, why);
    cr_assert_not_null(out, "nothing inlined for \"%s\" with \"%s\"", src, options ? options : "");
    cr_assert_eq(count(out, "int h;"), 1, "%s:\n%s", src, out);
    cr_assert_eq(count(out, "#include"), 0, "%s:\n%s", src, out);
    free(out);
}

/* src with options is left alone. */
static void macro_left(const char *src, const char *options)
{
    char *out = (char *)1;

    put("inc/h.h", "int h;\n");
    cr_assert_eq(inl_opt(src, options, &out), RGPU_OK, "%s: %s", src, why);
    cr_assert_null(out, "\"%s\" with \"%s\" inlined:\n%s", src, options ? options : "", out);
}

Test(client_include, macro_stringify)
{
    /* hashcat's definitions (its build options) and path. */
    char opts[1024];

    snprintf(opts, sizeof(opts), "-D INCLUDE_PATH=%s/inc -D XM2S(x)=#x -D M2S(x)=XM2S(x) -D KERNEL_STATIC", root);
    macro_inlines("#ifdef KERNEL_STATIC\n#include M2S(INCLUDE_PATH/h.h)\n#endif\n", opts);
    /* The same defined in the source; -D forms without a blank, quoted. */
    snprintf(opts, sizeof(opts), "-DINCLUDE_PATH=%s/inc -cl-std=CL1.2", root);
    macro_inlines("#define M2S(x) M2S_INDIRECT(x)\n#define M2S_INDIRECT(x) #x\n#include M2S(INCLUDE_PATH/h.h)\n",
                  opts);
    snprintf(opts, sizeof(opts), "-D 'INCLUDE_PATH=%s/inc' -D \"S(x)=#x\"", root);
    /* Without indirection the argument is not expanded: "INCLUDE_PATH/h.h". */
    macro_left("#include S(INCLUDE_PATH/h.h)\n", opts);
    put("cwd/INCLUDE_PATH/h.h", "int h;\n");
    macro_inlines("#include S(INCLUDE_PATH/h.h)\n", opts);
    /* Relative names with dots, through the search directories. */
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#include X(h.h)\n", NULL);
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#include X(../inc/h.h)\n", NULL);
    /* Blanks collapse to one, around nothing: "h.h" not " h . h ". */
    macro_inlines("#define S(x) #x\n#include S(  h.h   )\n", NULL);
    macro_left("#define S(x) #x\n#include S(h . h)\n", NULL);
    /* An object-like macro naming the header, both forms. */
    macro_inlines("#define HDR \"h.h\"\n#include HDR\n", NULL);
    macro_inlines("#define HDR <h.h>\n#include HDR\n", NULL);
    macro_inlines("#define HDR(d) <d/h.h>\n#include HDR(../inc)\n", NULL);
    macro_inlines("#include HDR\n", "-DHDR='\"h.h\"'");
}

Test(client_include, macro_stringify_escapes)
{
    char *out = NULL;

    /* # escapes the quotes and backslashes of literals: the header name
     * is the literal's spelling. */
    put("cwd/a \"b\" c.h", "int q;\n");
    cr_assert_eq(inl_opt("#define S(x) #x\n#include S(a \"b\" c.h)\n", NULL, &out), RGPU_OK);
    cr_assert_null(out, "the name is a \\\"b\\\" c.h:\n%s", out);
    put("cwd/a \\\"b\\\" c.h", "int q;\n");
    cr_assert_eq(inl_opt("#define S(x) #x\n#include S(a \"b\" c.h)\n", NULL, &out), RGPU_OK);
    cr_assert_not_null(out, "%s", why);
    cr_assert_eq(count(out, "int q;"), 1, "%s", out);
    free(out);
}

Test(client_include, macro_paste_and_values)
{
    /* ## pastes before expansion; the result is rescanned. */
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#define CAT(a, b) a##b\n#include X(CAT(h, .h))\n", NULL);
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#define CAT(a, b) a ## b\n#define hh h.h\n"
                  "#include X(CAT(h, h))\n",
                  NULL);
    /* An empty argument of ## is a placemarker. */
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#define CAT(a, b) a##b\n#include X(CAT(, h.h))\n", NULL);
    /* Variadic. */
    macro_inlines("#define S(...) #__VA_ARGS__\n#include S(h.h)\n", NULL);
    /* -D values with slashes and dots, -U, order. */
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#include X(DIR/NAME)\n", "-D DIR=../inc -DNAME=h.h");
    macro_left("#define S(x) #x\n#define X(x) S(x)\n#include X(DIR/NAME)\n", "-D DIR=../inc -DNAME=h.h -UNAME");
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#include X(DIR/NAME)\n", "-U NAME -D DIR=../inc -DNAME=h.h");
    /* A -D without a value is 1. */
    macro_inlines("#if ON == 1\n#define HDR \"h.h\"\n#endif\n#include HDR\n", "-DON");
}

Test(client_include, macro_from_inlined_header)
{
    char *out = NULL;

    /* defs.h defines the macros; the including file uses them. */
    put("inc/defs.h", "#ifndef DEFS_H\n#define DEFS_H\n#define S(x) #x\n#define X(x) S(x)\n#define P inc\n#endif\n");
    put("inc/h.h", "int h;\n");
    cr_assert_eq(inl_opt("#include \"defs.h\"\n#include X(../P/h.h)\nint after;\n", NULL, &out), RGPU_OK, "%s", why);
    cr_assert_not_null(out);
    cr_assert_eq(count(out, "int h;"), 1, "%s", out);
    cr_assert_eq(count(out, "#include"), 0, "%s", out);
    free(out);
    /* #undef in between: that include is left alone. */
    cr_assert_eq(inl_opt("#include \"defs.h\"\n#undef P\n#include X(../P/h.h)\n", NULL, &out), RGPU_OK, "%s", why);
    cr_assert_not_null(out);
    cr_assert_eq(count(out, "int h;"), 0, "%s", out);
    cr_assert_eq(count(out, "#include X(../P/h.h)"), 1, "%s", out);
    free(out);
    /* A redefinition takes over. */
    macro_inlines("#include \"defs.h\"\n#undef P\n#define P inc\n#include X(../P/h.h)\n", NULL);
}

Test(client_include, macro_conditions)
{
    /* Definitions in branches not taken do not count. */
    macro_inlines("#define HDR \"h.h\"\n#if 0\n#define HDR \"no.h\"\n#endif\n#include HDR\n", NULL);
    macro_inlines("#define HDR \"h.h\"\n#ifdef NOPE\n#undef HDR\n#endif\n#include HDR\n", NULL);
    macro_inlines("#if defined(A) && A > 2\n#define HDR \"no.h\"\n#elif B\n#define HDR \"h.h\"\n#else\n"
                  "#define HDR \"no.h\"\n#endif\n#include HDR\n",
                  "-DA=2 -DB");
    macro_inlines("#ifndef A\n#define HDR \"no.h\"\n#else\n#define HDR \"h.h\"\n#endif\n#include HDR\n", "-DA");
    /* An include in a branch not taken is left alone. */
    macro_left("#define HDR \"h.h\"\n#if 0\n#include HDR\n#endif\n", NULL);
    /* A definition in a branch only the compiler can decide makes the
     * include uncertain: left to the server. */
    macro_left("#define HDR \"h.h\"\n#ifdef __OPENCL_VERSION__\n#undef HDR\n#define HDR \"other.h\"\n#endif\n"
               "#include HDR\n",
               NULL);
    /* ... unless a known branch decides it afterwards. */
    macro_inlines("#ifdef cl_khr_fp64\n#define HDR \"x.h\"\n#endif\n#if 1\n#undef HDR\n#define HDR \"h.h\"\n#endif\n"
                  "#include HDR\n",
                  NULL);
    macro_inlines("#if defined(__FOO__) || 1\n#define HDR \"h.h\"\n#endif\n#include HDR\n", NULL);
    macro_left("#if defined(__FOO__) && 1\n#define HDR \"h.h\"\n#endif\n#include HDR\n", NULL);
}

Test(client_include, macro_recursion_guard)
{
    /* A macro is not expanded inside its own replacement. */
    macro_left("#define HDR HDR\n#include HDR\n", NULL);
    macro_left("#define A B\n#define B A\n#include A\n", NULL);
    macro_left("#define F(x) F(x)\n#include F(1)\n", NULL);
    /* ... but its name may be rescanned as an argument elsewhere. */
    macro_inlines("#define S(x) #x\n#define X(x) S(x)\n#define h h\n#include X(h.h)\n", NULL);
}

Test(client_include, macro_limits)
{
    /* Exponential growth stops at the limits: left alone, quickly. */
    char src[2048];
    size_t n = 0;

    n += (size_t)snprintf(src + n, sizeof(src) - n, "#define A0 x x\n");
    for (int i = 1; i < 40; i++)
        n += (size_t)snprintf(src + n, sizeof(src) - n, "#define A%d A%d A%d\n", i, i - 1, i - 1);
    snprintf(src + n, sizeof(src) - n, "#include A39\n");
    macro_left(src, NULL);
    /* Deep nesting of arguments. */
    n = (size_t)snprintf(src, sizeof(src), "#define F(x) x\n#include ");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(src + n, sizeof(src) - n, "F(");
    n += (size_t)snprintf(src + n, sizeof(src) - n, "\"h.h\"");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(src + n, sizeof(src) - n, ")");
    snprintf(src + n, sizeof(src) - n, "\n");
    macro_left(src, NULL);
}

Test(client_include, macro_not_a_header_name)
{
    macro_left("#include NOT_DEFINED\n", NULL);
    macro_left("#define N 42\n#include N\n", NULL);
    macro_left("#define HDR \"h.h\" extra\n#include HDR\n", NULL);
    macro_left("#define HDR <h.h> x\n#include HDR\n", NULL);
    macro_left("#define F(x) #x\n#include F\n", NULL);
    macro_left("#define F(x) #x\n#include F(h.h\n", NULL);
    macro_left("#define F(x, y) #x\n#include F(h.h)\n", NULL);
    /* Found nowhere: left alone like a literal one. */
    macro_left("#define HDR \"nowhere.h\"\n#include HDR\n", NULL);
    /* #include_next and #import stay alone. */
    macro_left("#define HDR \"h.h\"\n#include_next HDR\n#import HDR\n", NULL);
}

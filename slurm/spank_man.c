/*
 * spank_rgpu_man: prints spank-rgpu(8) from the plugin's option table
 * (spank_options.c); man/CMakeLists.txt runs it at build time. The plugin
 * is a module Slurm loads, with no main() to print its own page.
 */
#include <string.h>

#include "spank_options.h"

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--man") == 0) {
        rgpu_opt_man(&rgpu_spank_options, stdout);
        return 0;
    }
    fprintf(stderr, "usage: %s --man\n", argv[0]);
    return 2;
}

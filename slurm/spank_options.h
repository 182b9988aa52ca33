/*
 * The Slurm plugin's configuration: the NAME=VALUE words of its
 * plugstack.conf line, over /etc/rgpu/client.conf (the scheduler, its
 * timeout and the cluster key, shared with the rgpu CLI and the ICD), over
 * the defaults. One table (spank_options.c) parses them and prints
 * spank-rgpu(8) through spank_rgpu_man.
 */
#ifndef RGPU_SPANK_OPTIONS_H
#define RGPU_SPANK_OPTIONS_H

#include <stddef.h>

#include "rgpu/options.h"

typedef struct {
    char config[512];           /* the client.conf read first */
    char scheduler[256];
    char icd_vendors[1024];
    char cuda_libdir[1024];
    char key[1024];
    char state_dir[512];
    char munge_socket[512];     /* "": RGPU_MUNGE_SOCKET or libmunge's default */
    int timeout_ms;
    int ttl_s;
    int key_default;            /* key is the default path: may be absent */
    rgpu_opt_state_t opt;
} rgpu_spank_conf_t;

extern const rgpu_opt_table_t rgpu_spank_options;

/* Fills conf from the defaults, client.conf (config=FILE names another,
 * which must exist) and the words av[0..ac-1]. Returns 0, or -1 with one
 * sentence in why. Allocates nothing that outlives the call. */
int rgpu_spank_conf_load(int ac, char **av, rgpu_spank_conf_t *conf, char *why, size_t why_cap);

#endif

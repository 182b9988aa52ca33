/*
 * What the verbs (InfiniBand / RoCE) transport offers beyond the transport
 * interface: asking whether this node can use it, and a fault hook for
 * tests. Everything else goes through rgpu/transport.h ("verbs://host:port").
 * Declared only in builds with rdma-core (RGPU_HAVE_VERBS).
 */
#ifndef RGPU_VERBS_H
#define RGPU_VERBS_H

#include <stddef.h>

#include "rgpu/transport.h"

#ifdef RGPU_HAVE_VERBS

/* Whether this node has an RDMA device with an active port that the verbs
 * transport would use (RGPU_VERBS_DEVICE names one; otherwise the first
 * with an active port). Returns RGPU_OK, or RGPU_ERR_UNSUPPORTED with a
 * sentence in reason starting "no RDMA device: " (e.g. "no RDMA device:
 * this kernel has no RDMA support (ibv_get_device_list: Function not
 * implemented)"). Cheap enough to call once per process; thread-safe. */
rgpu_status_t rgpu_verbs_probe(char *reason, size_t reason_cap);

/* Fault injection for tests: moves the link's queue pair to the error
 * state behind the transport's back, as a failing HCA or cable would. The
 * link then fails with a reason at its next progress. */
void rgpu_verbs_inject_qp_error(rgpu_link_t *link);

#endif

#endif

/*
 * The verbs transport: InfiniBand and RoCE through rdma-core (libibverbs for
 * the data path, librdmacm to connect "host:port", the address of an IPoIB
 * or RoCE interface). docs/verbs.md describes the design; in short:
 *
 *  - One RC queue pair per link, one completion queue for its sends and
 *    receives, one completion channel and one rdma_cm event channel, both
 *    watched by the instance's progress thread (below).
 *  - Messages are SENDs into receive buffers of max_eager bytes pre-posted
 *    by the peer. Flow control is by credits: each side may have at most as
 *    many messages in flight to the peer as the peer posted buffers. The
 *    receiver copies a message out into its queue and reposts the buffer at
 *    once, and gives the credit back while the queue holds less than
 *    RGPU_VERBS_QUEUE_BYTES; past that, only when the layer above takes
 *    messages, so a slow consumer holds the sender back instead of queueing
 *    without bound (as a full socket buffer does on TCP).
 *    Credits go back as a cumulative count of freed buffers, in the
 *    immediate data of every SEND, and, when the receiver has nothing to
 *    send, by an RDMA WRITE of the count into a word the sender registered
 *    for it. A credit return therefore never needs a receive buffer, which
 *    is what makes receiver-not-ready impossible: the QPs are connected with
 *    rnr_retry 0, so a bug here would show as a failed link, not a stall.
 *  - get/put are RDMA READ/WRITE between registrations (ibv_reg_mr); a
 *    descriptor's key carries the registration's rkey, and the peer's HCA
 *    checks bounds and permissions against its memory region. Transfers are
 *    split at the port's max_msg_sz and kept in flight up to a window.
 *  - Completions: whoever waits polls the completion queue (one thread at a
 *    time, the others wait on a condition variable) while traffic flows and
 *    for RGPU_VERBS_SPIN_US after (50 by default), without arming it, so
 *    no completion event wakes anyone while messages flow; then it arms the
 *    CQ and sleeps on the link's completion channel, still the poller, so
 *    that the answer wakes it directly. The instance's progress thread
 *    sleeps on the completion and cm channels of all its links and serves a
 *    link nobody polls: it reposts buffers, returns credits, queues
 *    messages, completes get/put, wakes waiters and turns the link's event
 *    fd (an eventfd) readable. A link its waiter left unarmed is armed by
 *    the progress thread's timer (RGPU_VERBS_TICK_MS) once it has been idle
 *    for the spin time. So an idle session burns no core, a busy one pays
 *    no wake-up per message, and a peer never stalls because the
 *    application here is busy elsewhere, as TCP's kernel keeps receiving
 *    for a busy application.
 *  - Accept returns at once (the server accepts on its event loop); an
 *    accepted link's sends wait until its peer finished connecting, and a
 *    peer that has not within RGPU_VERBS_ACCEPT_MS fails its link.
 *  - A peer's disconnect (rdma_cm), an error completion or a QP in error
 *    fails the link once, with a reason: pending operations complete with
 *    the status, frames received before it are still handed over.
 *
 * Every limit (max_msg_sz, queue depths, read/atomic depths, CQ entries,
 * inline data) comes from ibv_query_device / ibv_query_port or from what
 * the provider granted at QP creation.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "rgpu/verbs.h"
#include "transport_int.h"

/* Our sizing policy, clipped by the device's limits at open. */
#define RGPU_VERBS_EAGER       (64u * 1024u)  /* bytes per message buffer */
#define RGPU_VERBS_DEPTH       32u            /* receive buffers (credits) per link */
#define RGPU_VERBS_RMA_WINDOW  64u            /* RDMA READ/WRITE work requests in flight */
#define RGPU_VERBS_CTRL_WRITES 16u            /* credit writes in flight */
#define RGPU_VERBS_INLINE_WANT 256u           /* inline data asked of the provider */
#define RGPU_VERBS_ACCEPT_DEFAULT_MS 5000     /* an accepted peer must finish connecting within it
                                               * (RGPU_VERBS_ACCEPT_MS overrides it) */
#define RGPU_VERBS_TICK_MS     1              /* the progress thread's timer, while wanted */
#define RGPU_VERBS_DRAIN_MS    2000           /* sends get this long to leave before a close */
#define RGPU_VERBS_QUEUE_BYTES (16u << 20)    /* received, not taken: past it credits wait */
#define RGPU_VERBS_MAGIC       0x72475056u    /* "rGPV", in the connection's private data */
#define RGPU_VERBS_VERSION     1u
/* A key is the rkey with this tag above it, so that a zero, forged or
 * foreign key is refused here before it reaches the wire and harms the
 * link (the HCA refuses a wrong rkey by moving the QP to error). */
#define RGPU_VERBS_KEY_TAG     0x7276ull      /* "rv" */

/* wr_id's low two bits say what a completion is for. */
enum { WR_RECV = 0, WR_SEND = 1, WR_CTRL = 2, WR_RMA = 3 };

/* Exchanged in the rdma_cm private data (network byte order). */
typedef struct {
    uint32_t magic;
    uint16_t version;
    uint16_t depth;             /* receive buffers the sender posted */
    uint32_t eager;             /* bytes each */
    uint32_t credit_rkey;       /* the word the peer writes consumed counts into */
    uint64_t credit_addr;
} __attribute__((packed)) rgpu_verbs_hello_t;

typedef struct {
    struct ibv_context **devs;  /* rdma_get_devices(), freed at close */
    struct ibv_context *ctx;    /* the device used (librdmacm's own context) */
    struct ibv_pd *pd;
    struct ibv_device_attr dev;
    struct ibv_port_attr port;
    uint8_t port_num;
    uint32_t eager, depth, sq_depth, cq_depth, rma_window;
    uint64_t max_msg;
    int spin_us;
    /* The progress thread and the links it watches. */
    pthread_t progress;
    int progress_started, stopping;
    int epfd;                   /* every link's completion and cm channel */
    int wake_fd;                /* an eventfd that stops or wakes the thread */
    int timer_wanted;           /* a link is unarmed or still connecting: tick */
    uint64_t last_tick_ns;
    int accept_ms;              /* RGPU_VERBS_ACCEPT_MS */
    pthread_mutex_t links_lock; /* links; held while the thread serves one */
    struct rgpu_verbs_link *links;
} rgpu_verbs_tp_t;

typedef struct rgpu_verbs_op {
    rgpu_completion_t *c;
    int is_get;
    uint64_t laddr, raddr, len, next_off;  /* next_off: first byte not yet posted */
    uint32_t lkey, rkey;
    unsigned posted, completed;             /* work requests */
    rgpu_status_t status;
    int finished;                           /* c completed (or about to be) */
    struct rgpu_verbs_op *next;
} rgpu_verbs_op_t;

typedef struct rgpu_verbs_link {
    rgpu_link_t link;           /* first: the public part */
    rgpu_verbs_tp_t *vtp;
    struct rgpu_verbs_link *next_link;  /* vtp->links */
    int listed;
    struct rdma_event_channel *ech;
    struct rdma_cm_id *id;
    struct ibv_comp_channel *cch;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    int evfd;                   /* the layer above's event fd (an eventfd) */
    int sleep_wake_fd;          /* an eventfd that ends a poller's sleep on the
                                 * channels when the link fails or stops */
    int evfd_signalled;         /* written since progress last read it (under lock) */
    uint32_t max_inline;

    uint8_t *rx, *tx;           /* depth buffers of eager bytes each */
    struct ibv_mr *rx_mr, *tx_mr;
    uint32_t *ctrl;             /* [0]: the peer writes its consumed count here;
                                 * [1..]: sources of our credit writes */
    struct ibv_mr *ctrl_mr;
    uint32_t *tx_free;          /* a stack of free tx buffer indexes */
    uint32_t tx_nfree;

    pthread_mutex_t lock;       /* everything below */
    pthread_cond_t cond;        /* something completed, arrived or failed; poller left */
    int polling;                /* a thread polls the CQ */
    int sleeping;               /* the poller sleeps on the channels itself */
    int poll_again;             /* the progress thread found it polling: poll once more */
    int armed;                  /* a notification is requested (ibv_req_notify_cq) and
                                 * its event not yet taken */
    int established;            /* the connection is complete: sends may go */
    uint64_t connect_deadline_ns;  /* accepted links: established by then, or fail */
    unsigned handled_unseen;    /* completions handled since rgpu_link_progress last asked */
    size_t q_bytes;             /* bytes in the queue */
    uint32_t deferred;          /* buffers freed but not yet counted: the queue is full */
    unsigned finishing;         /* ops taken off the list, completions not yet written */
    int credit_waiters;         /* threads waiting for credits (they arrive silently) */
    uint32_t peer_depth, peer_credit_rkey;
    uint64_t peer_credit_addr;
    uint32_t sent, peer_consumed;   /* messages sent; consumed by the peer (mod 2^32) */
    uint32_t consumed, returned;    /* buffers of the peer's we freed; count last told it */
    uint32_t ctrl_inflight, ctrl_seq;
    uint32_t sq_used, rma_wrs;      /* send queue entries and RMA work requests in flight */
    rgpu_msg_t *q_head, *q_tail;
    rgpu_verbs_op_t *ops_head, *ops_tail;
    rgpu_status_t failed;       /* the link is dead: nothing goes either way */
    rgpu_status_t rx_failed;    /* receiving ended (a broken frame from the peer, or
                                 * rgpu_link_shutdown_recv) while sends still go */
    int rx_stopped;             /* rgpu_link_shutdown_recv: queued frames are dropped */
    char reason[512];           /* written once, at the first of the two failures */
    uint64_t last_activity_ns;
} rgpu_verbs_link_t;

/* A registration's private part (rgpu_mem_t.priv). */
typedef struct {
    struct ibv_mr *mr;
    int local_write;            /* 0: a read-only mapping, registered without
                                 * LOCAL_WRITE; a get into it is refused here */
} rgpu_verbs_mr_t;

typedef struct {
    rgpu_listener_t l;          /* first: the public part */
    struct rdma_event_channel *ech;
    struct rdma_cm_id *id;
} rgpu_verbs_listener_t;

static void *rgpu_verbs_progress_main(void *arg);

static uint64_t rgpu_verbs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int rgpu_verbs_left_ms(int timeout_ms, uint64_t deadline_ns)
{
    uint64_t now;

    if (timeout_ms < 0)
        return -1;
    now = rgpu_verbs_now_ns();
    return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

static void rgpu_complete(rgpu_completion_t *c, rgpu_status_t status)
{
    c->status = status;
    if (c->cb)
        c->cb(c);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
}

static int rgpu_verbs_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* ------------------------------------------------------------------------
 * Finding a device
 * ---------------------------------------------------------------------- */

/* Picks the device: RGPU_VERBS_DEVICE's, or the first with an active port.
 * Returns its index in devs and its port, or -1 with a reason. */
static int rgpu_verbs_pick(struct ibv_context **devs, int n, uint8_t *port_p,
                           struct ibv_port_attr *pattr, char *reason, size_t cap)
{
    const char *want = getenv("RGPU_VERBS_DEVICE");

    for (int i = 0; i < n; i++) {
        struct ibv_device_attr da;
        const char *name = ibv_get_device_name(devs[i]->device);

        if (want && *want && strcmp(want, name) != 0)
            continue;
        if (ibv_query_device(devs[i], &da) != 0)
            continue;
        for (uint8_t p = 1; p <= da.phys_port_cnt; p++) {
            if (ibv_query_port(devs[i], p, pattr) == 0 && pattr->state == IBV_PORT_ACTIVE) {
                *port_p = p;
                return i;
            }
        }
    }
    if (want && *want)
        snprintf(reason, cap, "no RDMA device: RGPU_VERBS_DEVICE=%s names no device with an "
                 "active port", want);
    else
        snprintf(reason, cap, "no RDMA device: %d device%s found, none with an active port", n,
                 n == 1 ? "" : "s");
    return -1;
}

rgpu_status_t rgpu_verbs_probe(char *reason, size_t reason_cap)
{
    char scratch[256];
    struct ibv_device **list;
    struct ibv_context **devs;
    struct ibv_port_attr pattr;
    uint8_t port;
    int n = 0, i;

    if (!reason) {
        reason = scratch;
        reason_cap = sizeof(scratch);
    }
    /* libibverbs answers NULL with ENOSYS where the kernel has no RDMA at
     * all, an empty list where it has no device: both mean "use TCP". */
    errno = 0;
    list = ibv_get_device_list(&n);
    if (!list) {
        int err = errno;
        snprintf(reason, reason_cap, "no RDMA device: %s (ibv_get_device_list: %s)",
                 err == ENOSYS ? "this kernel has no RDMA support" : "the RDMA stack is unusable",
                 strerror(err ? err : ENODEV));
        return RGPU_ERR_UNSUPPORTED;
    }
    ibv_free_device_list(list);
    if (n == 0) {
        snprintf(reason, reason_cap, "no RDMA device: ibv_get_device_list found none (no HCA, "
                 "or its driver or ibverbs provider is not installed)");
        return RGPU_ERR_UNSUPPORTED;
    }
    devs = rdma_get_devices(&n);
    if (!devs || n == 0) {
        snprintf(reason, reason_cap, "no RDMA device: librdmacm sees none (%s; is the rdma_ucm "
                 "module loaded?)", strerror(errno ? errno : ENODEV));
        if (devs)
            rdma_free_devices(devs);
        return RGPU_ERR_UNSUPPORTED;
    }
    i = rgpu_verbs_pick(devs, n, &port, &pattr, reason, reason_cap);
    rdma_free_devices(devs);
    if (i < 0)
        return RGPU_ERR_UNSUPPORTED;
    reason[0] = '\0';
    return RGPU_OK;
}

static rgpu_status_t rgpu_verbs_tp_open(rgpu_transport_t *tp)
{
    rgpu_verbs_tp_t *vtp;
    char reason[512];
    const char *spin = getenv("RGPU_VERBS_SPIN_US");
    const char *accept_ms = getenv("RGPU_VERBS_ACCEPT_MS");
    int n = 0, i;

    if (rgpu_verbs_probe(reason, sizeof(reason)) != RGPU_OK)
        return RGPU_ERR_UNSUPPORTED;
    vtp = calloc(1, sizeof(*vtp));
    if (!vtp)
        return RGPU_ERR_NOMEM;
    vtp->devs = rdma_get_devices(&n);
    if (!vtp->devs)
        goto out_free;
    i = rgpu_verbs_pick(vtp->devs, n, &vtp->port_num, &vtp->port, reason, sizeof(reason));
    if (i < 0)
        goto out_devs;
    vtp->ctx = vtp->devs[i];
    if (ibv_query_device(vtp->ctx, &vtp->dev) != 0)
        goto out_devs;
    vtp->pd = ibv_alloc_pd(vtp->ctx);
    if (!vtp->pd)
        goto out_devs;

    /* Size everything from the device. */
    vtp->max_msg = vtp->port.max_msg_sz;
    vtp->eager = RGPU_VERBS_EAGER;
    if (vtp->eager > vtp->max_msg)
        vtp->eager = (uint32_t)vtp->max_msg;
    vtp->depth = RGPU_VERBS_DEPTH;
    if ((int)vtp->depth > vtp->dev.max_qp_wr)
        vtp->depth = (uint32_t)vtp->dev.max_qp_wr;
    vtp->rma_window = RGPU_VERBS_RMA_WINDOW;
    vtp->sq_depth = vtp->depth + RGPU_VERBS_CTRL_WRITES + vtp->rma_window;
    if ((int)vtp->sq_depth > vtp->dev.max_qp_wr) {
        vtp->sq_depth = (uint32_t)vtp->dev.max_qp_wr;
        /* Keep room for messages and credit writes; RMA gets the rest. */
        vtp->rma_window = vtp->sq_depth > vtp->depth + RGPU_VERBS_CTRL_WRITES + 1
                              ? vtp->sq_depth - vtp->depth - RGPU_VERBS_CTRL_WRITES
                              : 1;
    }
    vtp->cq_depth = vtp->sq_depth + vtp->depth;
    if ((int)vtp->cq_depth > vtp->dev.max_cqe)
        goto out_pd;  /* a device this small cannot carry a link */
    vtp->spin_us = spin && *spin ? atoi(spin) : 50;
    if (vtp->spin_us < 0 || vtp->spin_us > 100000)
        vtp->spin_us = 50;
    vtp->accept_ms = accept_ms && *accept_ms ? atoi(accept_ms) : RGPU_VERBS_ACCEPT_DEFAULT_MS;
    if (vtp->accept_ms < 10 || vtp->accept_ms > 600000)
        vtp->accept_ms = RGPU_VERBS_ACCEPT_DEFAULT_MS;

    vtp->epfd = vtp->wake_fd = -1;
    vtp->epfd = epoll_create1(EPOLL_CLOEXEC);
    vtp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&vtp->links_lock, NULL);
    if (vtp->epfd < 0 || vtp->wake_fd < 0)
        goto out_fds;
    {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(vtp->epfd, EPOLL_CTL_ADD, vtp->wake_fd, &ev) != 0 ||
            pthread_create(&vtp->progress, NULL, rgpu_verbs_progress_main, vtp) != 0)
            goto out_fds;
    }
    vtp->progress_started = 1;

    tp->caps.max_eager = vtp->eager;
    tp->caps.remote_access = 1;
    tp->caps.max_rma = (uint64_t)1 << 40; /* split at max_msg_sz here, not by callers */
    tp->caps.rma_align = 1;
    /* Registration pins pages, but until memory hooks invalidate the
     * registration cache (docs/transport.md), caches must keep no unused
     * region: reg_pins 0 makes RGPU_RCACHE_DEFAULT do that. */
    tp->caps.reg_pins = 0;
    tp->priv = vtp;
    return RGPU_OK;

out_fds:
    if (vtp->epfd >= 0)
        close(vtp->epfd);
    if (vtp->wake_fd >= 0)
        close(vtp->wake_fd);
    pthread_mutex_destroy(&vtp->links_lock);
out_pd:
    ibv_dealloc_pd(vtp->pd);
out_devs:
    rdma_free_devices(vtp->devs);
out_free:
    free(vtp);
    return RGPU_ERR_UNSUPPORTED;
}

static void rgpu_verbs_tp_close(rgpu_transport_t *tp)
{
    rgpu_verbs_tp_t *vtp = tp->priv;

    if (!vtp)
        return;
    if (vtp->progress_started) {
        uint64_t one = 1;
        __atomic_store_n(&vtp->stopping, 1, __ATOMIC_RELEASE);
        if (write(vtp->wake_fd, &one, sizeof(one)) != sizeof(one)) {
            /* Cannot fail: the counter was 0. */
        }
        pthread_join(vtp->progress, NULL);
    }
    close(vtp->epfd);
    close(vtp->wake_fd);
    pthread_mutex_destroy(&vtp->links_lock);
    ibv_dealloc_pd(vtp->pd);
    rdma_free_devices(vtp->devs);
    free(vtp);
    tp->priv = NULL;
}

/* ------------------------------------------------------------------------
 * Registrations
 * ---------------------------------------------------------------------- */

static rgpu_status_t rgpu_verbs_mem_register(rgpu_transport_t *tp, rgpu_mem_t *mem)
{
    rgpu_verbs_tp_t *vtp = tp->priv;
    int access = IBV_ACCESS_LOCAL_WRITE;
    rgpu_verbs_mr_t *vmr = calloc(1, sizeof(*vmr));
    struct ibv_mr *mr;

    if (!vmr)
        return RGPU_ERR_NOMEM;
    /* RGPU_MEM_LOCAL (no remote bits): the HCA lets no peer reach it. */
    if (mem->access & RGPU_MEM_REMOTE_READ)
        access |= IBV_ACCESS_REMOTE_READ;
    if (mem->access & RGPU_MEM_REMOTE_WRITE)
        access |= IBV_ACCESS_REMOTE_WRITE;
    mr = ibv_reg_mr(vtp->pd, mem->addr, mem->len, access);
    if (!mr) {
        /* A read-only mapping cannot take local writes: register it for
         * remote reads only, which is all a peer could do with it. */
        if ((errno == EFAULT || errno == EACCES) && !(mem->access & RGPU_MEM_REMOTE_WRITE))
            mr = ibv_reg_mr(vtp->pd, mem->addr, mem->len, access & ~IBV_ACCESS_LOCAL_WRITE);
        if (!mr) {
            int err = errno;
            free(vmr);
            return err == ENOMEM || err == EAGAIN ? RGPU_ERR_NOMEM : RGPU_ERR_INVALID_ARG;
        }
    } else {
        vmr->local_write = 1;
    }
    vmr->mr = mr;
    mem->priv = vmr;
    mem->key = (RGPU_VERBS_KEY_TAG << 32) | mr->rkey;
    return RGPU_OK;
}

static void rgpu_verbs_mem_deregister(rgpu_transport_t *tp, rgpu_mem_t *mem)
{
    rgpu_verbs_mr_t *vmr = mem->priv;

    if (vmr) {
        ibv_dereg_mr(vmr->mr);
        free(vmr);
    }
    mem->priv = NULL;
}

/* ------------------------------------------------------------------------
 * Failure
 * ---------------------------------------------------------------------- */

/* A poller asleep on the channels wakes now, not at the end of its slice:
 * a failure or a stop changes what its waiters wait for. Lock held. */
static void rgpu_verbs_wake_sleeper(rgpu_verbs_link_t *vl)
{
    uint64_t one = 1;

    if (vl->sleeping && vl->sleep_wake_fd >= 0 && write(vl->sleep_wake_fd, &one, sizeof(one)) < 0) {
        /* Already readable: the sleeper wakes anyway. */
    }
}

/* Records the link's first failure and moves the QP to error (telling the
 * peer through rdma_cm), so that every posted work request flushes and
 * completes its operation. Called with the lock held. */
static void rgpu_verbs_fail_locked(rgpu_verbs_link_t *vl, rgpu_status_t status, const char *reason)
{
    if (vl->failed != RGPU_OK)
        return;
    rgpu_verbs_wake_sleeper(vl);
    vl->failed = status;
    if (vl->rx_failed == RGPU_OK)
        snprintf(vl->reason, sizeof(vl->reason), "%s", reason);
    if (vl->id)
        rdma_disconnect(vl->id);
    if (vl->qp) {
        struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};
        ibv_modify_qp(vl->qp, &attr, IBV_QP_STATE);
    }
    pthread_cond_broadcast(&vl->cond);
}

/* Ends the receive side only: the peer sent what is no frame, or the
 * owner stopped receiving (rgpu_link_shutdown_recv). Sends still go, so
 * that a server can tell its client why. Frames that arrive from now on
 * are dropped, their buffers reposted and credited (a peer that goes on
 * sending is not driven into receiver-not-ready); gets and puts in flight
 * complete with status once their posted work requests have (the HCA may
 * still be writing into their memory until then), and new ones are
 * refused. Lock held. */
static void rgpu_verbs_fail_rx_locked(rgpu_verbs_link_t *vl, rgpu_status_t status,
                                      const char *reason)
{
    if (vl->rx_failed != RGPU_OK)
        return;
    rgpu_verbs_wake_sleeper(vl);
    vl->rx_failed = status;
    if (vl->failed == RGPU_OK)
        snprintf(vl->reason, sizeof(vl->reason), "%s", reason);
    for (rgpu_verbs_op_t *op = vl->ops_head; op; op = op->next) {
        if (op->status == RGPU_OK)
            op->status = status;
    }
    pthread_cond_broadcast(&vl->cond);
}

/* Ops whose every posted work request completed and that will post no
 * more are taken off the list into *done, to be completed by the caller
 * outside the lock (rgpu_verbs_finish_ops). Until then they count in
 * vl->finishing, so that no waiter takes a failed link for finished while
 * its completion, maybe on its stack, is still to be written. */
static void rgpu_verbs_reap_ops(rgpu_verbs_link_t *vl, rgpu_verbs_op_t **done)
{
    rgpu_verbs_op_t **pp = &vl->ops_head, *prev = NULL;

    while (*pp) {
        rgpu_verbs_op_t *op = *pp;
        int no_more = op->next_off >= op->len || op->status != RGPU_OK || vl->failed != RGPU_OK;

        if (no_more && op->completed == op->posted) {
            if (op->status == RGPU_OK && op->next_off < op->len)
                op->status = vl->failed;
            *pp = op->next;
            if (vl->ops_tail == op)
                vl->ops_tail = prev;
            op->next = *done;
            *done = op;
            vl->finishing++;
            continue;
        }
        prev = op;
        pp = &op->next;
    }
}

static void rgpu_verbs_finish_ops(rgpu_verbs_link_t *vl, rgpu_verbs_op_t *done)
{
    unsigned n = 0;

    if (!done)
        return;
    while (done) {
        rgpu_verbs_op_t *next = done->next;
        rgpu_completion_t *c = done->c;
        rgpu_status_t status = done->status;

        free(done);
        rgpu_complete(c, status);
        done = next;
        n++;
    }
    pthread_mutex_lock(&vl->lock);
    vl->finishing -= n;
    pthread_cond_broadcast(&vl->cond);
    pthread_mutex_unlock(&vl->lock);
}

/* ------------------------------------------------------------------------
 * Posting
 * ---------------------------------------------------------------------- */

static rgpu_status_t rgpu_verbs_post_recv(rgpu_verbs_link_t *vl, uint32_t i)
{
    struct ibv_sge sge = {(uint64_t)(uintptr_t)(vl->rx + (size_t)i * vl->vtp->eager),
                          vl->vtp->eager, vl->rx_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = ((uint64_t)i << 2) | WR_RECV, .sg_list = &sge, .num_sge = 1};
    struct ibv_recv_wr *bad;

    return ibv_post_recv(vl->qp, &wr, &bad) == 0 ? RGPU_OK : RGPU_ERR_IO;
}

/* Messages we may still send: the peer's buffers minus ours it has not
 * consumed. The count the peer writes into ctrl[0] is checked like anything
 * else from the peer. Lock held. */
static int rgpu_verbs_credits(rgpu_verbs_link_t *vl)
{
    uint32_t written = __atomic_load_n(&vl->ctrl[0], __ATOMIC_ACQUIRE);

    if ((int32_t)(written - vl->peer_consumed) > 0) {
        if ((uint32_t)(vl->sent - written) > vl->peer_depth) {
            rgpu_verbs_fail_locked(vl, RGPU_ERR_PROTOCOL,
                                   "the peer returned credits for messages never sent");
            return 0;
        }
        vl->peer_consumed = written;
    }
    return (int)vl->peer_depth - (int)(uint32_t)(vl->sent - vl->peer_consumed);
}

/* Tells the peer how many of its messages were consumed, by an RDMA WRITE
 * into its credit word, when enough have piled up (or force). Lock held. */
static void rgpu_verbs_return_credits(rgpu_verbs_link_t *vl, int force)
{
    uint32_t pending = vl->consumed - vl->returned;
    uint32_t *src;
    struct ibv_sge sge;
    struct ibv_send_wr wr = {0}, *bad;

    if (vl->failed != RGPU_OK || pending == 0 || (!force && pending < vl->vtp->depth / 4 + 1) ||
        vl->ctrl_inflight >= RGPU_VERBS_CTRL_WRITES || vl->sq_used >= vl->vtp->sq_depth)
        return;
    src = &vl->ctrl[1 + vl->ctrl_seq++ % RGPU_VERBS_CTRL_WRITES];
    *src = vl->consumed;
    sge = (struct ibv_sge){(uint64_t)(uintptr_t)src, sizeof(*src), vl->ctrl_mr->lkey};
    wr.wr_id = WR_CTRL;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = vl->peer_credit_addr;
    wr.wr.rdma.rkey = vl->peer_credit_rkey;
    if (ibv_post_send(vl->qp, &wr, &bad) != 0) {
        rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "returning credits: ibv_post_send failed");
        return;
    }
    vl->ctrl_inflight++;
    vl->sq_used++;
    vl->returned = vl->consumed;
}

/* Posts what the RMA window allows of the ops' remaining chunks, each at
 * most the port's max_msg_sz. Lock held. */
static void rgpu_verbs_post_rma(rgpu_verbs_link_t *vl)
{
    rgpu_verbs_tp_t *vtp = vl->vtp;

    for (rgpu_verbs_op_t *op = vl->ops_head; op && vl->failed == RGPU_OK; op = op->next) {
        while (op->next_off < op->len && op->status == RGPU_OK && vl->rma_wrs < vtp->rma_window &&
               vl->sq_used < vtp->sq_depth) {
            uint64_t n = op->len - op->next_off;
            struct ibv_sge sge;
            struct ibv_send_wr wr = {0}, *bad;

            if (n > vtp->max_msg)
                n = vtp->max_msg;
            sge = (struct ibv_sge){op->laddr + op->next_off, (uint32_t)n, op->lkey};
            wr.wr_id = (uint64_t)(uintptr_t)op | WR_RMA;
            wr.sg_list = &sge;
            wr.num_sge = 1;
            wr.opcode = op->is_get ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
            wr.send_flags = IBV_SEND_SIGNALED;
            wr.wr.rdma.remote_addr = op->raddr + op->next_off;
            wr.wr.rdma.rkey = op->rkey;
            if (ibv_post_send(vl->qp, &wr, &bad) != 0) {
                rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "posting an RDMA transfer failed");
                return;
            }
            op->next_off += n;
            op->posted++;
            vl->rma_wrs++;
            vl->sq_used++;
        }
        if (op->next_off < op->len)
            return; /* in order: later ops wait for this one's window */
    }
}

/* ------------------------------------------------------------------------
 * Completions
 * ---------------------------------------------------------------------- */

static const char *rgpu_verbs_wr_name(int kind, const rgpu_verbs_op_t *op)
{
    switch (kind) {
    case WR_RECV: return "a receive";
    case WR_SEND: return "a message send";
    case WR_CTRL: return "a credit return";
    default: return op && op->is_get ? "an RDMA READ (get)" : "an RDMA WRITE (put)";
    }
}

/* Handles one work completion. Lock held. */
static void rgpu_verbs_handle_wc(rgpu_verbs_link_t *vl, const struct ibv_wc *wc)
{
    int kind = (int)(wc->wr_id & 3);
    rgpu_verbs_op_t *op = kind == WR_RMA ? (rgpu_verbs_op_t *)(uintptr_t)(wc->wr_id & ~3ull) : NULL;
    char why[512];

    if (kind == WR_SEND) {
        vl->tx_free[vl->tx_nfree++] = (uint32_t)(wc->wr_id >> 2);
        vl->sq_used--;
    } else if (kind == WR_CTRL) {
        vl->ctrl_inflight--;
        vl->sq_used--;
    } else if (kind == WR_RMA) {
        op->completed++;
        vl->rma_wrs--;
        vl->sq_used--;
    }

    if (wc->status != IBV_WC_SUCCESS) {
        rgpu_status_t status = RGPU_ERR_IO;

        if (wc->status == IBV_WC_WR_FLUSH_ERR) {
            /* The QP is in error: the failure that put it there says why. */
            if (vl->failed == RGPU_OK)
                rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "the queue pair went into the error "
                                       "state (its work requests were flushed)");
            if (op && op->status == RGPU_OK)
                op->status = vl->failed;
            return;
        }
        if (wc->status == IBV_WC_REM_ACCESS_ERR || wc->status == IBV_WC_REM_INV_REQ_ERR) {
            /* The peer's HCA refused the key, the range or the access. It
             * cannot tell a forged key from one whose process just died
             * (its registrations go first), so the operation gets the
             * link's failure, as any other operation of the link does. */
            snprintf(why, sizeof(why), "the peer %s refused %s (%s): a wrong, stale or forged "
                     "key, a range outside its registration, an access it does not permit, or "
                     "its process is gone; the link is closed", vl->link.peer,
                     rgpu_verbs_wr_name(kind, op), ibv_wc_status_str(wc->status));
        } else if (wc->status == IBV_WC_RETRY_EXC_ERR || wc->status == IBV_WC_RNR_RETRY_EXC_ERR) {
            snprintf(why, sizeof(why), "the peer %s stopped answering during %s (%s)",
                     vl->link.peer, rgpu_verbs_wr_name(kind, op), ibv_wc_status_str(wc->status));
            status = RGPU_ERR_CONN_CLOSED;
        } else {
            snprintf(why, sizeof(why), "%s with %s failed: %s", rgpu_verbs_wr_name(kind, op),
                     vl->link.peer, ibv_wc_status_str(wc->status));
        }
        if (op && op->status == RGPU_OK)
            op->status = status;
        rgpu_verbs_fail_locked(vl, status, why);
        return;
    }

    if (kind == WR_RECV) {
        uint32_t i = (uint32_t)(wc->wr_id >> 2);
        const uint8_t *buf = vl->rx + (size_t)i * vl->vtp->eager;
        rgpu_frame_limits_t limits = {vl->vtp->eager, RGPU_FRAME_DEFAULT_MAX_BULK};
        rgpu_frame_header_t h;
        rgpu_status_t status = RGPU_ERR_PROTOCOL;
        rgpu_msg_t *msg;

        if (i >= vl->vtp->depth) {
            rgpu_verbs_fail_locked(vl, RGPU_ERR_PROTOCOL, "a receive completed for a buffer "
                                   "this side never posted");
            return;
        }
        /* A message proves the peer's side complete, whether or not the
         * cm's ESTABLISHED was seen yet. */
        vl->established = 1;
        if (!(wc->wc_flags & IBV_WC_WITH_IMM) || wc->byte_len < RGPU_FRAME_HEADER_SIZE ||
            (status = rgpu_frame_header_decode(buf, &limits, &h)) != RGPU_OK ||
            h.type >= RGPU_FRAME_TYPE_TRANSPORT_FIRST ||
            RGPU_FRAME_HEADER_SIZE + (uint64_t)h.body_len + h.bulk_len != wc->byte_len) {
            /* Only receiving ends: the layer above may still answer why. */
            if (status != RGPU_OK && wc->byte_len >= RGPU_FRAME_HEADER_SIZE) {
                char what[256];
                rgpu_frame_header_explain(buf, &limits, status, what, sizeof(what));
                snprintf(why, sizeof(why), "the peer %s sent a bad frame header: %s",
                         vl->link.peer, what);
            } else {
                status = RGPU_ERR_PROTOCOL;
                snprintf(why, sizeof(why), "the peer %s sent a message that is not a whole rgpu "
                         "frame (%u bytes)", vl->link.peer, wc->byte_len);
            }
            rgpu_verbs_fail_rx_locked(vl, status, why);
            goto out_repost;
        }
        /* The immediate data is the peer's count of our consumed messages:
         * taken even after receiving ended, as sends go on. */
        {
            uint32_t cons = ntohl(wc->imm_data);
            if ((int32_t)(cons - vl->peer_consumed) > 0) {
                if ((uint32_t)(vl->sent - cons) > vl->peer_depth) {
                    rgpu_verbs_fail_locked(vl, RGPU_ERR_PROTOCOL,
                                           "the peer returned credits for messages never sent");
                    return;
                }
                vl->peer_consumed = cons;
            }
        }
        if (vl->rx_failed != RGPU_OK)
            goto out_repost; /* dropped: nobody takes it */
        msg = malloc(sizeof(*msg) + wc->byte_len - RGPU_FRAME_HEADER_SIZE);
        if (!msg) {
            rgpu_verbs_fail_locked(vl, RGPU_ERR_NOMEM, "out of memory receiving a message");
            return;
        }
        msg->header = h;
        msg->body = (const uint8_t *)(msg + 1);
        msg->bulk = msg->body + h.body_len;
        msg->link = &vl->link;
        msg->next = NULL;
        msg->stream_left = 0;       /* whole messages: no RGPU_FRAME_F_STREAM */
        memcpy(msg + 1, buf + RGPU_FRAME_HEADER_SIZE, wc->byte_len - RGPU_FRAME_HEADER_SIZE);
        if (vl->q_tail)
            vl->q_tail->next = msg;
        else
            vl->q_head = msg;
        vl->q_tail = msg;
        /* The buffer goes back at once; the credit too unless the queue is
         * full, then when the layer above takes messages. */
        vl->q_bytes += wc->byte_len;
        if (vl->q_bytes <= RGPU_VERBS_QUEUE_BYTES && !vl->deferred)
            vl->consumed++;
        else
            vl->deferred++;
        if (rgpu_verbs_post_recv(vl, i) != RGPU_OK)
            rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "reposting a receive buffer failed");
        return;

    out_repost:
        vl->consumed++;
        if (rgpu_verbs_post_recv(vl, i) != RGPU_OK)
            rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "reposting a receive buffer failed");
    }
}

/* Handles the link's rdma_cm events: an accepted link's ESTABLISHED, or
 * its peer giving up half way; a disconnect. Lock held. */
static void rgpu_verbs_handle_cm(rgpu_verbs_link_t *vl)
{
    struct rdma_cm_event *ev;
    char why[256];

    while (rdma_get_cm_event(vl->ech, &ev) == 0) {
        enum rdma_cm_event_type type = ev->event;
        int status = ev->status;

        rdma_ack_cm_event(ev);
        if (type == RDMA_CM_EVENT_ESTABLISHED) {
            vl->established = 1;
            pthread_cond_broadcast(&vl->cond);
        } else if (type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_TIMEWAIT_EXIT) {
            snprintf(why, sizeof(why), "the peer %s closed the connection", vl->link.peer);
            rgpu_verbs_fail_locked(vl, RGPU_ERR_CONN_CLOSED, why);
        } else if (type == RDMA_CM_EVENT_REJECTED || type == RDMA_CM_EVENT_CONNECT_ERROR ||
                   type == RDMA_CM_EVENT_UNREACHABLE) {
            snprintf(why, sizeof(why), "%s did not finish connecting (%s, status %d)",
                     vl->link.peer, rdma_event_str(type), status);
            rgpu_verbs_fail_locked(vl, RGPU_ERR_CONN_CLOSED, why);
        } else if (type == RDMA_CM_EVENT_DEVICE_REMOVAL || type == RDMA_CM_EVENT_ADDR_CHANGE) {
            snprintf(why, sizeof(why), "the RDMA device of the link to %s went away (%s)",
                     vl->link.peer, rdma_event_str(type));
            rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, why);
        }
    }
}

/* Wakes whoever waits on the link: its condition variable, and the layer
 * above's event fd. Once is enough until rgpu_link_progress reads the fd,
 * which keeps the write off the path of a caller that only uses msg_recv
 * and waits. Lock held. */
static void rgpu_verbs_signal_locked(rgpu_verbs_link_t *vl)
{
    uint64_t one = 1;

    pthread_cond_broadcast(&vl->cond);
    if (!vl->evfd_signalled && write(vl->evfd, &one, sizeof(one)) == sizeof(one))
        vl->evfd_signalled = 1;
}

/* An accepted link whose peer has not finished connecting by the deadline
 * fails, so that whoever waits on it, or on its event fd, learns why and
 * closes it. Lock held. */
static void rgpu_verbs_check_connect(rgpu_verbs_link_t *vl, uint64_t now_ns)
{
    char why[256];

    if (vl->established || vl->failed != RGPU_OK || now_ns < vl->connect_deadline_ns)
        return;
    snprintf(why, sizeof(why), "%s did not finish connecting within %d ms", vl->link.peer,
             vl->vtp->accept_ms);
    rgpu_verbs_fail_locked(vl, RGPU_ERR_CONN_CLOSED, why);
    rgpu_verbs_signal_locked(vl);
}

/* Polls the CQ once, and with cm the cm channel (a read(2) each time, so
 * not while spinning: the progress thread watches that channel and asks for
 * it), without blocking; the caller is the poller (vl->polling) and does not
 * hold the lock. Returns how many completions it handled. */
static int rgpu_verbs_poll_once(rgpu_verbs_link_t *vl, int cm)
{
    struct ibv_wc wc[32];
    rgpu_verbs_op_t *done = NULL;
    int n, total = 0;

    pthread_mutex_lock(&vl->lock);
    while ((n = ibv_poll_cq(vl->cq, 32, wc)) > 0) {
        for (int i = 0; i < n; i++)
            rgpu_verbs_handle_wc(vl, &wc[i]);
        total += n;
    }
    if (n < 0)
        rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "polling the completion queue failed");
    /* cm events after the CQ: what arrived before a disconnect is queued
     * before the failure is seen. */
    if (cm)
        rgpu_verbs_handle_cm(vl);
    rgpu_verbs_post_rma(vl);
    rgpu_verbs_return_credits(vl, 0);
    rgpu_verbs_reap_ops(vl, &done);
    if (total || vl->failed != RGPU_OK) {
        vl->handled_unseen += (unsigned)total;
        vl->last_activity_ns = rgpu_verbs_now_ns();
        rgpu_verbs_signal_locked(vl);
    }
    pthread_mutex_unlock(&vl->lock);
    rgpu_verbs_finish_ops(vl, done);
    return total;
}

/* What the progress thread asks of a poller in vl->poll_again. */
#define RGPU_VERBS_AGAIN_CQ 1   /* a completion event came: poll the CQ once more */
#define RGPU_VERBS_AGAIN_CM 2   /* a cm event came: read the cm channel */

/* Polls as the poller: again while the progress thread found the role
 * taken meanwhile, so nothing it was woken for is left unpolled. Called
 * with the lock held and vl->polling set by the caller; returns so. */
static int rgpu_verbs_poll_as_poller(rgpu_verbs_link_t *vl, int cm)
{
    int n = 0;

    do {
        cm |= vl->poll_again & RGPU_VERBS_AGAIN_CM;
        vl->poll_again = 0;
        pthread_mutex_unlock(&vl->lock);
        n += rgpu_verbs_poll_once(vl, cm);
        pthread_mutex_lock(&vl->lock);
        cm = 0;
    } while (vl->poll_again);
    return n;
}

/* Takes the completion channel's events, each acknowledged at once: the
 * notification they answer is spent, so the CQ is no longer armed. Lock
 * held. */
static void rgpu_verbs_take_cq_events(rgpu_verbs_link_t *vl)
{
    struct ibv_cq *ev_cq;
    void *ev_ctx;

    while (ibv_get_cq_event(vl->cch, &ev_cq, &ev_ctx) == 0) {
        ibv_ack_cq_events(ev_cq, 1);
        vl->armed = 0;
    }
}

/* Asks the progress thread to run its timer (a link is left unarmed, or
 * still connecting); wakes it only when it was not ticking already. */
static void rgpu_verbs_want_timer(rgpu_verbs_tp_t *vtp)
{
    uint64_t one = 1;

    if (!__atomic_exchange_n(&vtp->timer_wanted, 1, __ATOMIC_ACQ_REL) &&
        write(vtp->wake_fd, &one, sizeof(one)) != sizeof(one)) {
        /* Already readable: it wakes anyway. */
    }
}

/* Arms the CQ (a completion event for the next completion) unless it is,
 * then polls once more: what completed before the request fires nothing,
 * and this poll finds it. The caller is the poller and holds the lock.
 * Returns the completions that poll handled. On rxe a request is a system
 * call, on mlx5 a doorbell; either way it is paid only when the link goes
 * idle, never per message while traffic flows. */
static int rgpu_verbs_arm(rgpu_verbs_link_t *vl)
{
    if (vl->armed)
        return 0;
    if (ibv_req_notify_cq(vl->cq, 0) != 0) {
        rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "requesting completion events failed");
        return 0;
    }
    vl->armed = 1;
    return rgpu_verbs_poll_as_poller(vl, 1);
}

/* Gives the poller role up: polls again first if the progress thread asked
 * meanwhile. A CQ left unarmed (the waiter polled through the traffic and
 * returns) is armed by the progress thread's timer once the link has been
 * idle for the spin time: while messages flow, no completion wakes the
 * progress thread, and when they stop it watches the link again within
 * RGPU_VERBS_TICK_MS. Lock held. */
static void rgpu_verbs_poller_leave(rgpu_verbs_link_t *vl)
{
    while (vl->poll_again)
        rgpu_verbs_poll_as_poller(vl, 0);
    vl->polling = 0;
    pthread_cond_broadcast(&vl->cond);
    /* A load first: in a spin this runs every turn (see rgpu_verbs_tick
     * for why a stale 1 is harmless). */
    if (!vl->armed && !__atomic_load_n(&vl->vtp->timer_wanted, __ATOMIC_RELAXED))
        rgpu_verbs_want_timer(vl->vtp);
}

/* The progress thread's timer: fails accepted links whose peer did not
 * finish connecting in time, and arms links their pollers left unarmed once
 * they have been idle for the spin time. It keeps ticking while a link
 * needs it. links_lock held. */
static void rgpu_verbs_tick(rgpu_verbs_tp_t *vtp, uint64_t now_ns)
{
    int64_t spin_ns = (int64_t)vtp->spin_us * 1000;
    int want = 0;

    /* Cleared before the scan: a poller that leaves a link unarmed after
     * the scan passed it (under the link's lock, so it sees the 0) sets it
     * again and wakes this thread; one that left it before is found by the
     * scan. */
    __atomic_store_n(&vtp->timer_wanted, 0, __ATOMIC_RELEASE);
    for (rgpu_verbs_link_t *vl = vtp->links; vl; vl = vl->next_link) {
        pthread_mutex_lock(&vl->lock);
        if (!vl->established && vl->failed == RGPU_OK) {
            rgpu_verbs_check_connect(vl, now_ns);
            want |= vl->failed == RGPU_OK;
        }
        if (!vl->armed && !vl->polling) {
            if ((int64_t)(now_ns - vl->last_activity_ns) >= spin_ns) {
                vl->polling = 1;
                rgpu_verbs_arm(vl);
                rgpu_verbs_poller_leave(vl);
            } else {
                want = 1;
            }
        }
        pthread_mutex_unlock(&vl->lock);
    }
    if (want)
        __atomic_store_n(&vtp->timer_wanted, 1, __ATOMIC_RELEASE);
}

/* The progress thread: sleeps on every link's completion and cm channels
 * (edge-triggered) and, while a link wants it, on a timer. Serves a link
 * that nobody polls; leaves a link whose poller spins or sleeps on the
 * channels itself to that poller. */
static void *rgpu_verbs_progress_main(void *arg)
{
    rgpu_verbs_tp_t *vtp = arg;
    struct epoll_event evs[16];

    for (;;) {
        int timeout = __atomic_load_n(&vtp->timer_wanted, __ATOMIC_ACQUIRE) ? RGPU_VERBS_TICK_MS : -1;
        int n = epoll_wait(vtp->epfd, evs, 16, timeout);
        uint64_t now;

        if (__atomic_load_n(&vtp->stopping, __ATOMIC_ACQUIRE))
            break;
        pthread_mutex_lock(&vtp->links_lock);
        for (int i = 0; i < n; i++) {
            uintptr_t tag = (uintptr_t)evs[i].data.ptr;
            int is_cm = (int)(tag & 1);
            rgpu_verbs_link_t *vl = vtp->links;

            if (tag == 0) {
                uint64_t count;
                if (read(vtp->wake_fd, &count, sizeof(count)) < 0) {
                    /* Read by an earlier turn: nothing to do. */
                }
                continue;
            }
            /* Only links still listed: a closed one is gone. */
            while (vl && (uintptr_t)vl != (tag & ~(uintptr_t)1))
                vl = vl->next_link;
            if (!vl)
                continue;
            pthread_mutex_lock(&vl->lock);
            if (vl->sleeping) {
                /* The poller sleeps on these channels itself: the event
                 * wakes it, and it takes it. */
            } else if (vl->polling) {
                /* A poller spins: it finds the completions. The event
                 * spends the notification; have it poll once more before
                 * it leaves, and read the cm channel if that fired. */
                if (!is_cm)
                    rgpu_verbs_take_cq_events(vl);
                vl->poll_again |= is_cm ? RGPU_VERBS_AGAIN_CM : RGPU_VERBS_AGAIN_CQ;
            } else {
                rgpu_verbs_take_cq_events(vl);
                vl->polling = 1;
                rgpu_verbs_poll_as_poller(vl, 1);
                rgpu_verbs_arm(vl);
                rgpu_verbs_poller_leave(vl);
            }
            pthread_mutex_unlock(&vl->lock);
        }
        now = rgpu_verbs_now_ns();
        if (__atomic_load_n(&vtp->timer_wanted, __ATOMIC_ACQUIRE) &&
            now - vtp->last_tick_ns >= RGPU_VERBS_TICK_MS * 1000000ull) {
            vtp->last_tick_ns = now;
            rgpu_verbs_tick(vtp, now);
        }
        pthread_mutex_unlock(&vtp->links_lock);
    }
    return NULL;
}

/* Progresses the link until ready() holds (RGPU_OK), the link failed with
 * nothing of ours left in flight (its status) or timeout_ms passed
 * (RGPU_ERR_TIMEOUT). Polls while traffic flows (RGPU_VERBS_SPIN_US after
 * the last completion or post) without arming the CQ, so the progress
 * thread is not woken per message; then arms it and sleeps on the link's
 * completion and cm channels as the poller, so that the answer wakes this
 * thread directly. Returns with the lock held. */
static rgpu_status_t rgpu_verbs_run(rgpu_verbs_link_t *vl,
                                    int (*ready)(rgpu_verbs_link_t *, void *), void *arg,
                                    int timeout_ms)
{
    uint64_t deadline_ns = timeout_ms >= 0 ? rgpu_verbs_now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
    int64_t spin_ns = (int64_t)vl->vtp->spin_us * 1000;
    int tried = 0, polled = 0;

    pthread_mutex_lock(&vl->lock);
    for (;;) {
        uint64_t now;
        int left;

        if (ready(vl, arg))
            return RGPU_OK;
        now = rgpu_verbs_now_ns();
        if (!vl->established)
            rgpu_verbs_check_connect(vl, now);
        /* After a failure, work requests still flush: keep waiting until
         * they have, so every operation completes with a status. */
        if (vl->failed != RGPU_OK && vl->sq_used == 0 && !vl->ops_head && !vl->finishing)
            return vl->failed;
        left = rgpu_verbs_left_ms(timeout_ms, deadline_ns);
        if (left == 0 && tried) {
            /* The caller may sleep on the event fd next: arm first, so
             * that what completes from now on makes it readable. */
            if (!vl->armed && !vl->polling) {
                vl->polling = 1;
                rgpu_verbs_arm(vl);
                rgpu_verbs_poller_leave(vl);
                if (ready(vl, arg))
                    return RGPU_OK;
            }
            return RGPU_ERR_TIMEOUT;
        }
        tried = 1;
        if (!vl->polling && (!polled || (int64_t)(now - vl->last_activity_ns) < spin_ns)) {
            vl->polling = 1;
            rgpu_verbs_poll_as_poller(vl, !vl->established);
            rgpu_verbs_poller_leave(vl);
            polled = 1;
        } else if (!vl->polling) {
            /* Idle: arm, and sleep on the channels unless that found
             * something. The progress thread leaves the events to us. */
            vl->polling = 1;
            if (rgpu_verbs_arm(vl) == 0 && vl->armed && !ready(vl, arg)) {
                struct pollfd pfd[3] = {{vl->cch->fd, POLLIN, 0}, {vl->ech->fd, POLLIN, 0},
                                        {vl->sleep_wake_fd, POLLIN, 0}};
                /* Credits come back by RDMA WRITE, which wakes nobody. */
                int wait_ms = vl->credit_waiters ? 1 : 100;

                if (left >= 0 && left < wait_ms)
                    wait_ms = left;
                if (!vl->established && vl->failed == RGPU_OK) {
                    int conn_ms = rgpu_verbs_left_ms(1, vl->connect_deadline_ns);
                    if (conn_ms < wait_ms)
                        wait_ms = conn_ms > 0 ? conn_ms : 1;
                }
                vl->sleeping = 1;
                pthread_mutex_unlock(&vl->lock);
                poll(pfd, 3, wait_ms);
                pthread_mutex_lock(&vl->lock);
                vl->sleeping = 0;
                if (pfd[2].revents & POLLIN) {
                    uint64_t count;

                    if (read(vl->sleep_wake_fd, &count, sizeof(count)) < 0) {
                        /* Read by an earlier turn: nothing to do. */
                    }
                }
                rgpu_verbs_take_cq_events(vl);
                rgpu_verbs_poll_as_poller(vl, 1);
            }
            rgpu_verbs_poller_leave(vl);
        } else {
            struct timespec until;
            long wait_ms = vl->credit_waiters ? 1 : 100;

            if (left >= 0 && left < wait_ms)
                wait_ms = left;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += wait_ms * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&vl->cond, &vl->lock, &until);
            polled = 0;
        }
    }
}

/* A frame to hand over, or the end of receiving (after the frames that
 * arrived before a broken one; none after rgpu_link_shutdown_recv). */
static int rgpu_verbs_ready_msg(rgpu_verbs_link_t *vl, void *arg)
{
    return (vl->q_head != NULL && !vl->rx_stopped) || vl->rx_failed != RGPU_OK;
}

static int rgpu_verbs_ready_completion(rgpu_verbs_link_t *vl, void *arg)
{
    return __atomic_load_n(&((rgpu_completion_t *)arg)->done, __ATOMIC_ACQUIRE);
}

static int rgpu_verbs_ready_credit(rgpu_verbs_link_t *vl, void *arg)
{
    /* An accepted link sends once its peer finished connecting. */
    return vl->failed == RGPU_OK && vl->established && rgpu_verbs_credits(vl) > 0 &&
           vl->tx_nfree > 0 &&
           vl->sq_used < vl->vtp->sq_depth;
}

static int rgpu_verbs_ready_drained(rgpu_verbs_link_t *vl, void *arg)
{
    return vl->sq_used == 0;
}

/* ------------------------------------------------------------------------
 * Messages, get/put, progress
 * ---------------------------------------------------------------------- */

static rgpu_status_t rgpu_verbs_msg_send(rgpu_link_t *link, const struct iovec *iov, int iovcnt,
                                         rgpu_completion_t *c)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    rgpu_frame_header_t h;
    uint64_t total = 0;
    rgpu_status_t status;
    struct ibv_sge sge;
    struct ibv_send_wr wr = {0}, *bad;
    uint32_t slot;
    uint8_t *dst;

    if (iovcnt < 1 || iovcnt > 16 || iov[0].iov_len < RGPU_FRAME_HEADER_SIZE)
        return RGPU_ERR_INVALID_ARG;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (rgpu_frame_header_decode(iov[0].iov_base, NULL, &h) != RGPU_OK ||
        h.type >= RGPU_FRAME_TYPE_TRANSPORT_FIRST ||
        RGPU_FRAME_HEADER_SIZE + (uint64_t)h.body_len + h.bulk_len != total)
        return RGPU_ERR_INVALID_ARG;
    if (total > link->tp->caps.max_eager)
        return RGPU_ERR_TOO_LARGE;

    pthread_mutex_lock(&vl->lock);
    vl->credit_waiters++;
    pthread_mutex_unlock(&vl->lock);
    status = rgpu_verbs_run(vl, rgpu_verbs_ready_credit, NULL, -1);
    vl->credit_waiters--;
    if (status != RGPU_OK) {
        pthread_mutex_unlock(&vl->lock);
        return status;
    }
    /* Copy into a registered buffer: the caller may reuse its own at once,
     * and small frames go inline where the device allows. */
    slot = vl->tx_free[--vl->tx_nfree];
    dst = vl->tx + (size_t)slot * vl->vtp->eager;
    for (int i = 0, off = 0; i < iovcnt; off += (int)iov[i].iov_len, i++)
        memcpy(dst + off, iov[i].iov_base, iov[i].iov_len);
    sge = (struct ibv_sge){(uint64_t)(uintptr_t)dst, (uint32_t)total, vl->tx_mr->lkey};
    wr.wr_id = ((uint64_t)slot << 2) | WR_SEND;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND_WITH_IMM;
    wr.imm_data = htonl(vl->consumed);
    wr.send_flags = IBV_SEND_SIGNALED | (total <= vl->max_inline ? IBV_SEND_INLINE : 0);
    if (ibv_post_send(vl->qp, &wr, &bad) != 0) {
        vl->tx_free[vl->tx_nfree++] = slot;
        rgpu_verbs_fail_locked(vl, RGPU_ERR_IO, "posting a message send failed");
        status = vl->failed;
        pthread_mutex_unlock(&vl->lock);
        return status;
    }
    vl->sent++;
    vl->sq_used++;
    vl->returned = vl->consumed;
    vl->last_activity_ns = rgpu_verbs_now_ns();  /* traffic: the reply is worth spinning for */
    pthread_mutex_unlock(&vl->lock);
    if (c)
        rgpu_complete(c, RGPU_OK);
    return RGPU_OK;
}

static rgpu_status_t rgpu_verbs_msg_recv(rgpu_link_t *link, rgpu_msg_t **msg_p, int timeout_ms)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    rgpu_status_t status = rgpu_verbs_run(vl, rgpu_verbs_ready_msg, NULL, timeout_ms);

    if (status == RGPU_OK && (!vl->q_head || vl->rx_stopped))
        status = vl->rx_failed;
    if (status == RGPU_OK) {
        rgpu_msg_t *msg = vl->q_head;

        vl->q_head = msg->next;
        if (!vl->q_head)
            vl->q_tail = NULL;
        msg->next = NULL;
        *msg_p = msg;
        vl->q_bytes -= RGPU_FRAME_HEADER_SIZE + msg->header.body_len + (size_t)msg->header.bulk_len;
        if (vl->deferred && vl->q_bytes <= RGPU_VERBS_QUEUE_BYTES) {
            vl->consumed += vl->deferred;
            vl->deferred = 0;
        }
        rgpu_verbs_return_credits(vl, 0);
    }
    pthread_mutex_unlock(&vl->lock);
    return status;
}

static void rgpu_verbs_msg_release(rgpu_msg_t *msg)
{
    free(msg);
}

static rgpu_status_t rgpu_verbs_wait(rgpu_link_t *link, rgpu_completion_t *c, int timeout_ms)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    rgpu_status_t status = rgpu_verbs_run(vl, rgpu_verbs_ready_completion, c, timeout_ms);

    pthread_mutex_unlock(&vl->lock);
    if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE))
        return c->status;
    return status == RGPU_OK ? RGPU_ERR_TIMEOUT : status;
}

static rgpu_status_t rgpu_verbs_rma(rgpu_link_t *link, int is_get, rgpu_mem_t *local,
                                    uint64_t local_off, const rgpu_mem_desc_t *remote,
                                    uint64_t remote_off, uint64_t len, rgpu_completion_t *c)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    rgpu_completion_t own = {0};
    rgpu_verbs_op_t *op, *done = NULL;
    rgpu_status_t status;
    int nothing;

    /* Bounds, max_rma, alignment and len 0: the checks every transport
     * makes (transport.c); then verbs' own. */
    status = rgpu__rma_check(link, local, local_off, remote, remote_off, len, c, &nothing);
    if (status != RGPU_OK || nothing)
        return status;
    if (!local->priv)
        return RGPU_ERR_INVALID_ARG;
    /* The HCA would fail the READ's local write by closing the link. */
    if (is_get && !((rgpu_verbs_mr_t *)local->priv)->local_write)
        return RGPU_ERR_INVALID_ARG;
    /* Not a key this transport hands out: refused here, before the HCA
     * would refuse it by closing the link. */
    if ((remote->key >> 32) != RGPU_VERBS_KEY_TAG)
        return RGPU_ERR_NOT_FOUND;
    if (remote->memtype != RGPU_MEMTYPE_HOST)
        return RGPU_ERR_UNSUPPORTED;
    if (!c)
        c = &own;
    op = calloc(1, sizeof(*op));
    if (!op)
        return RGPU_ERR_NOMEM;
    op->c = c;
    op->is_get = is_get;
    op->laddr = (uint64_t)(uintptr_t)((uint8_t *)local->addr + local_off);
    op->lkey = ((rgpu_verbs_mr_t *)local->priv)->mr->lkey;
    op->raddr = remote->addr + remote_off;
    op->rkey = (uint32_t)remote->key;
    op->len = len;
    pthread_mutex_lock(&vl->lock);
    /* A get or put waits on the receive side: refused once it ended. */
    status = vl->failed != RGPU_OK ? vl->failed : vl->rx_failed;
    if (status != RGPU_OK) {
        pthread_mutex_unlock(&vl->lock);
        free(op);
        return status;
    }
    if (vl->ops_tail)
        vl->ops_tail->next = op;
    else
        vl->ops_head = op;
    vl->ops_tail = op;
    vl->last_activity_ns = rgpu_verbs_now_ns();
    rgpu_verbs_post_rma(vl);
    rgpu_verbs_reap_ops(vl, &done);
    pthread_mutex_unlock(&vl->lock);
    /* Only a failure of the post itself can have finished it this soon. */
    rgpu_verbs_finish_ops(vl, done);
    if (c == &own)
        return rgpu_verbs_wait(link, c, -1);
    return RGPU_OK;
}

static int rgpu_verbs_progress(rgpu_link_t *link)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    uint64_t count;
    int n = 0;

    /* The event fd is read here: whoever sleeps on it progresses first. */
    pthread_mutex_lock(&vl->lock);
    if (vl->evfd_signalled && read(vl->evfd, &count, sizeof(count)) == sizeof(count))
        vl->evfd_signalled = 0;
    if (!vl->established)
        rgpu_verbs_check_connect(vl, rgpu_verbs_now_ns());
    if (!vl->polling) {
        /* The caller sleeps on the event fd next: arm before leaving. */
        vl->polling = 1;
        rgpu_verbs_poll_as_poller(vl, 1);
        rgpu_verbs_arm(vl);
        rgpu_verbs_poller_leave(vl);
    }
    /* What this call or the progress thread handled since the last call;
     * once the link failed and everything flushed, the failure. */
    n = (int)vl->handled_unseen;
    vl->handled_unseen = 0;
    if (vl->failed != RGPU_OK && vl->sq_used == 0 && !vl->ops_head && !vl->finishing)
        n = vl->failed;
    else if (vl->rx_failed != RGPU_OK && (!vl->q_head || vl->rx_stopped))
        n = vl->rx_failed;
    pthread_mutex_unlock(&vl->lock);
    return n;
}

static int rgpu_verbs_event_fd(rgpu_link_t *link)
{
    return ((rgpu_verbs_link_t *)link)->evfd;
}

static const char *rgpu_verbs_reason(rgpu_link_t *link)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    int failed;

    /* Written once, with the first of failed and rx_failed, and never again. */
    pthread_mutex_lock(&vl->lock);
    failed = vl->failed != RGPU_OK || vl->rx_failed != RGPU_OK;
    pthread_mutex_unlock(&vl->lock);
    return failed ? vl->reason : "";
}

static int rgpu_verbs_has_buffered(rgpu_link_t *link)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    int n;

    /* Completions not yet polled need no answer here: a CQ is armed
     * whenever its link is left to the event fd (rgpu_link_progress, a
     * receive that timed out, the progress thread's timer). */
    pthread_mutex_lock(&vl->lock);
    n = vl->q_head != NULL && !vl->rx_stopped;
    pthread_mutex_unlock(&vl->lock);
    return n;
}

/* Stops receiving (rgpu_link_shutdown_recv): see rgpu_verbs_fail_rx_locked.
 * The peer's own gets and puts are served by the HCA, not by this side,
 * and go on until the link closes. */
static void rgpu_verbs_shutdown_recv(rgpu_link_t *link)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    rgpu_verbs_op_t *done = NULL;

    pthread_mutex_lock(&vl->lock);
    rgpu_verbs_fail_rx_locked(vl, RGPU_ERR_CONN_CLOSED, "receiving was stopped on this side");
    vl->rx_stopped = 1;
    /* Frames not taken yet are not handed over any more: their space is
     * free, and the credits they held go back. */
    while (vl->q_head) {
        rgpu_msg_t *next = vl->q_head->next;
        free(vl->q_head);
        vl->q_head = next;
    }
    vl->q_tail = NULL;
    vl->q_bytes = 0;
    vl->consumed += vl->deferred;
    vl->deferred = 0;
    rgpu_verbs_return_credits(vl, 1);
    rgpu_verbs_reap_ops(vl, &done);
    rgpu_verbs_signal_locked(vl);
    pthread_mutex_unlock(&vl->lock);
    rgpu_verbs_finish_ops(vl, done);
}

void rgpu_verbs_inject_qp_error(rgpu_link_t *link)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};

    ibv_modify_qp(vl->qp, &attr, IBV_QP_STATE);
}

/* ------------------------------------------------------------------------
 * Links: setup and teardown
 * ---------------------------------------------------------------------- */

/* Hands an established link to the progress thread and to the instance's
 * event fd. */
static rgpu_status_t rgpu_verbs_link_list(rgpu_verbs_link_t *vl)
{
    rgpu_verbs_tp_t *vtp = vl->vtp;
    /* Edge-triggered: an event the thread leaves to a sleeping poller does
     * not wake it again and again. The cm channel's tag has the low bit. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = vl};
    struct epoll_event cm = {.events = EPOLLIN | EPOLLET, .data.ptr = (char *)vl + 1};
    struct epoll_event up = {.events = EPOLLIN, .data.ptr = &vl->link};
    rgpu_status_t status = RGPU_OK;

    vl->last_activity_ns = rgpu_verbs_now_ns();
    pthread_mutex_lock(&vtp->links_lock);
    if (epoll_ctl(vtp->epfd, EPOLL_CTL_ADD, vl->cch->fd, &ev) != 0 ||
        epoll_ctl(vtp->epfd, EPOLL_CTL_ADD, vl->ech->fd, &cm) != 0 ||
        epoll_ctl(vl->link.tp->epfd, EPOLL_CTL_ADD, vl->evfd, &up) != 0) {
        status = RGPU_ERR_NOMEM;
    }
    vl->next_link = vtp->links;
    vtp->links = vl;
    vl->listed = 1;
    pthread_mutex_unlock(&vtp->links_lock);
    /* An accepted link still connecting: the timer fails it at its
     * deadline even if nobody waits on it. */
    if (!vl->established)
        rgpu_verbs_want_timer(vtp);
    return status;
}

/* Takes the link from the progress thread (waiting while it serves it). */
static void rgpu_verbs_link_unlist(rgpu_verbs_link_t *vl)
{
    rgpu_verbs_tp_t *vtp = vl->vtp;

    if (!vl->listed)
        return;
    pthread_mutex_lock(&vtp->links_lock);
    for (rgpu_verbs_link_t **pp = &vtp->links; *pp; pp = &(*pp)->next_link) {
        if (*pp == vl) {
            *pp = vl->next_link;
            break;
        }
    }
    epoll_ctl(vtp->epfd, EPOLL_CTL_DEL, vl->cch->fd, NULL);
    epoll_ctl(vtp->epfd, EPOLL_CTL_DEL, vl->ech->fd, NULL);
    epoll_ctl(vl->link.tp->epfd, EPOLL_CTL_DEL, vl->evfd, NULL);
    vl->listed = 0;
    pthread_mutex_unlock(&vtp->links_lock);
}

static rgpu_verbs_link_t *rgpu_verbs_link_new(rgpu_transport_t *tp)
{
    rgpu_verbs_link_t *vl = calloc(1, sizeof(*vl));

    if (!vl)
        return NULL;
    vl->link.ops = &rgpu_verbs_ops;
    vl->link.tp = tp;
    vl->vtp = tp->priv;
    vl->evfd = -1;
    vl->sleep_wake_fd = -1;
    pthread_mutex_init(&vl->lock, NULL);
    pthread_cond_init(&vl->cond, NULL);
    return vl;
}

/* Frees everything the link holds, in the order verbs requires: QP before
 * CQ, MRs before their memory, the cm id before its channel. Every step
 * copes with a link built only part way. */
static void rgpu_verbs_link_free(rgpu_verbs_link_t *vl)
{
    rgpu_verbs_op_t *done = NULL;

    rgpu_verbs_link_unlist(vl);
    if (vl->qp)
        rdma_destroy_qp(vl->id);
    vl->qp = NULL;
    if (vl->cq) {
        struct ibv_cq *ev_cq;
        void *ev_ctx;
        while (ibv_get_cq_event(vl->cch, &ev_cq, &ev_ctx) == 0)
            ibv_ack_cq_events(ev_cq, 1);
        ibv_destroy_cq(vl->cq);
    }
    if (vl->cch)
        ibv_destroy_comp_channel(vl->cch);
    if (vl->rx_mr)
        ibv_dereg_mr(vl->rx_mr);
    if (vl->tx_mr)
        ibv_dereg_mr(vl->tx_mr);
    if (vl->ctrl_mr)
        ibv_dereg_mr(vl->ctrl_mr);
    free(vl->rx);
    free(vl->tx);
    free(vl->ctrl);
    free(vl->tx_free);
    if (vl->id)
        rdma_destroy_id(vl->id);
    if (vl->ech)
        rdma_destroy_event_channel(vl->ech);
    if (vl->evfd >= 0)
        close(vl->evfd);
    if (vl->sleep_wake_fd >= 0)
        close(vl->sleep_wake_fd);
    /* Nothing flushes any more: every operation still listed ends here. */
    pthread_mutex_lock(&vl->lock);
    for (rgpu_verbs_op_t *op = vl->ops_head; op; op = op->next) {
        op->completed = op->posted;
        if (op->status == RGPU_OK)
            op->status = RGPU_ERR_CONN_CLOSED;
    }
    if (vl->failed == RGPU_OK)
        vl->failed = RGPU_ERR_CONN_CLOSED;
    rgpu_verbs_reap_ops(vl, &done);
    pthread_mutex_unlock(&vl->lock);
    rgpu_verbs_finish_ops(vl, done);
    while (vl->q_head) {
        rgpu_msg_t *next = vl->q_head->next;
        free(vl->q_head);
        vl->q_head = next;
    }
    pthread_cond_destroy(&vl->cond);
    pthread_mutex_destroy(&vl->lock);
    free(vl);
}

/* Creates the CQ, QP, buffers and their registrations on the id's device
 * and posts every receive buffer. */
static rgpu_status_t rgpu_verbs_link_setup(rgpu_verbs_link_t *vl, char *reason, size_t cap)
{
    rgpu_verbs_tp_t *vtp = vl->vtp;
    struct ibv_qp_init_attr qa;
    size_t bytes = (size_t)vtp->depth * vtp->eager;
    uint32_t want_inline = RGPU_VERBS_INLINE_WANT;

    if (vl->id->verbs != vtp->ctx) {
        snprintf(reason, cap, "%s is reached through RDMA device %s, but this transport uses %s "
                 "(set RGPU_VERBS_DEVICE)", vl->link.peer,
                 vl->id->verbs ? ibv_get_device_name(vl->id->verbs->device) : "(none)",
                 ibv_get_device_name(vtp->ctx->device));
        return RGPU_ERR_ADDRESS;
    }
    vl->cch = ibv_create_comp_channel(vtp->ctx);
    if (!vl->cch || rgpu_verbs_nonblock(vl->cch->fd) != 0 ||
        rgpu_verbs_nonblock(vl->ech->fd) != 0)
        goto out_nomem;
    vl->cq = ibv_create_cq(vtp->ctx, (int)vtp->cq_depth, vl, vl->cch, 0);
    if (!vl->cq)
        goto out_nomem;
    for (;;) {
        memset(&qa, 0, sizeof(qa));
        qa.send_cq = qa.recv_cq = vl->cq;
        qa.qp_type = IBV_QPT_RC;
        qa.cap.max_send_wr = vtp->sq_depth;
        qa.cap.max_recv_wr = vtp->depth;
        qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
        qa.cap.max_inline_data = want_inline;
        if (rdma_create_qp(vl->id, vtp->pd, &qa) == 0)
            break;
        /* No query says how much inline data a device takes: ask less. */
        if (want_inline == 0)
            goto out_nomem;
        want_inline /= 2;
        if (want_inline < 16)
            want_inline = 0;
    }
    vl->qp = vl->id->qp;
    vl->max_inline = qa.cap.max_inline_data;
    vl->rx = malloc(bytes);
    vl->tx = malloc(bytes);
    vl->ctrl = calloc(1 + RGPU_VERBS_CTRL_WRITES, sizeof(uint32_t));
    vl->tx_free = malloc(vtp->depth * sizeof(uint32_t));
    if (!vl->rx || !vl->tx || !vl->ctrl || !vl->tx_free)
        goto out_nomem;
    vl->rx_mr = ibv_reg_mr(vtp->pd, vl->rx, bytes, IBV_ACCESS_LOCAL_WRITE);
    vl->tx_mr = ibv_reg_mr(vtp->pd, vl->tx, bytes, 0);
    /* The peer may write our credit word and nothing else. */
    vl->ctrl_mr = ibv_reg_mr(vtp->pd, vl->ctrl, (1 + RGPU_VERBS_CTRL_WRITES) * sizeof(uint32_t),
                             IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!vl->rx_mr || !vl->tx_mr || !vl->ctrl_mr)
        goto out_nomem;
    for (uint32_t i = 0; i < vtp->depth; i++) {
        vl->tx_free[vl->tx_nfree++] = vtp->depth - 1 - i;
        if (rgpu_verbs_post_recv(vl, i) != RGPU_OK)
            goto out_nomem;
    }
    if (ibv_req_notify_cq(vl->cq, 0) != 0)
        goto out_nomem;
    vl->armed = 1;
    vl->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vl->evfd < 0)
        goto out_nomem;
    vl->sleep_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vl->sleep_wake_fd < 0)
        goto out_nomem;
    return RGPU_OK;

out_nomem:
    snprintf(reason, cap, "cannot set up the RDMA resources of a link to %s: %s", vl->link.peer,
             strerror(errno ? errno : ENOMEM));
    return RGPU_ERR_NOMEM;
}

static void rgpu_verbs_hello_fill(rgpu_verbs_link_t *vl, rgpu_verbs_hello_t *hello)
{
    hello->magic = htonl(RGPU_VERBS_MAGIC);
    hello->version = htons(RGPU_VERBS_VERSION);
    hello->depth = htons((uint16_t)vl->vtp->depth);
    hello->eager = htonl(vl->vtp->eager);
    hello->credit_rkey = htonl(vl->ctrl_mr->rkey);
    hello->credit_addr = htobe64((uint64_t)(uintptr_t)vl->ctrl);
}

/* Takes the peer's hello from the connection's private data. */
static rgpu_status_t rgpu_verbs_hello_take(rgpu_verbs_link_t *vl, const void *data, uint8_t len,
                                           char *reason, size_t cap)
{
    rgpu_verbs_hello_t h;

    if (!data || len < sizeof(h)) {
        snprintf(reason, cap, "%s is not an rgpu verbs peer (no greeting in its connection "
                 "request)", vl->link.peer);
        return RGPU_ERR_PROTOCOL;
    }
    memcpy(&h, data, sizeof(h));
    if (ntohl(h.magic) != RGPU_VERBS_MAGIC || ntohs(h.version) != RGPU_VERBS_VERSION) {
        snprintf(reason, cap, "%s is not an rgpu verbs peer of this version", vl->link.peer);
        return RGPU_ERR_PROTOCOL;
    }
    if (ntohs(h.depth) == 0 || ntohl(h.eager) < vl->vtp->eager) {
        snprintf(reason, cap, "%s takes messages of %u bytes, fewer than this side's %u",
                 vl->link.peer, ntohl(h.eager), vl->vtp->eager);
        return RGPU_ERR_PROTOCOL;
    }
    /* We track at most our own depth of credits: our send queue is sized
     * for that many messages in flight. */
    vl->peer_depth = ntohs(h.depth) < vl->vtp->depth ? ntohs(h.depth) : vl->vtp->depth;
    vl->peer_credit_rkey = ntohl(h.credit_rkey);
    vl->peer_credit_addr = be64toh(h.credit_addr);
    return RGPU_OK;
}

static void rgpu_verbs_conn_param(rgpu_verbs_link_t *vl, struct rdma_conn_param *p,
                                  rgpu_verbs_hello_t *hello)
{
    rgpu_verbs_tp_t *vtp = vl->vtp;

    memset(p, 0, sizeof(*p));
    rgpu_verbs_hello_fill(vl, hello);
    p->private_data = hello;
    p->private_data_len = sizeof(*hello);
    p->responder_resources = (uint8_t)(vtp->dev.max_qp_rd_atom < 255 ? vtp->dev.max_qp_rd_atom : 255);
    p->initiator_depth = (uint8_t)(vtp->dev.max_qp_init_rd_atom < 255 ? vtp->dev.max_qp_init_rd_atom : 255);
    p->retry_count = 7;
    /* Credits make receiver-not-ready impossible; should it happen anyway,
     * fail the link at once rather than retry behind everyone's back. */
    p->rnr_retry_count = 0;
}

/* Waits on the link's own channel for an event of type want; anything
 * else is an error with a reason. */
static rgpu_status_t rgpu_verbs_wait_cm(rgpu_verbs_link_t *vl, enum rdma_cm_event_type want,
                                        uint64_t deadline_ns, struct rdma_cm_event **ev_p,
                                        char *reason, size_t cap)
{
    for (;;) {
        struct pollfd pfd = {vl->ech->fd, POLLIN, 0};
        struct rdma_cm_event *ev;
        int left = rgpu_verbs_left_ms(1, deadline_ns);

        if (rdma_get_cm_event(vl->ech, &ev) == 0) {
            rgpu_status_t status = RGPU_OK;

            if (ev->event == want) {
                *ev_p = ev;
                return RGPU_OK;
            }
            switch (ev->event) {
            case RDMA_CM_EVENT_ADDR_ERROR:
            case RDMA_CM_EVENT_ROUTE_ERROR:
                snprintf(reason, cap, "no RDMA route to %s (%s, status %d): is it an IPoIB or "
                         "RoCE address?", vl->link.peer, rdma_event_str(ev->event), ev->status);
                status = RGPU_ERR_ADDRESS;
                break;
            case RDMA_CM_EVENT_REJECTED:
                snprintf(reason, cap, "connection refused by %s (nothing listens there, or it "
                         "refused us)", vl->link.peer);
                status = RGPU_ERR_CONN_REFUSED;
                break;
            case RDMA_CM_EVENT_UNREACHABLE:
            case RDMA_CM_EVENT_CONNECT_ERROR:
                snprintf(reason, cap, "%s is unreachable over RDMA (%s, status %d)", vl->link.peer,
                         rdma_event_str(ev->event), ev->status);
                status = RGPU_ERR_CONN_REFUSED;
                break;
            default:
                snprintf(reason, cap, "connecting to %s: unexpected %s", vl->link.peer,
                         rdma_event_str(ev->event));
                status = RGPU_ERR_IO;
            }
            rdma_ack_cm_event(ev);
            return status;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(reason, cap, "connecting to %s: %s", vl->link.peer, strerror(errno));
            return RGPU_ERR_IO;
        }
        if (left == 0) {
            snprintf(reason, cap, "connecting to %s over RDMA timed out", vl->link.peer);
            return RGPU_ERR_TIMEOUT;
        }
        poll(&pfd, 1, left);
    }
}

/* "host:port" or "[v6]:port" into a socket address; port 0 allowed. */
static rgpu_status_t rgpu_verbs_parse(const char *addr, int passive, struct sockaddr_storage *ss,
                                      char *reason, size_t cap)
{
    char host[256];
    const char *colon, *port, *h = addr;
    size_t hlen;
    struct addrinfo hints = {0}, *ai = NULL;
    char *end;
    long p;

    colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr)
        goto out_bad;
    port = colon + 1;
    p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535)
        goto out_bad;
    hlen = (size_t)(colon - addr);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        goto out_bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        goto out_bad;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return RGPU_OK;

out_bad:
    snprintf(reason, cap, "\"%s\" is not an RDMA address (expected host:port or [v6]:port of an "
             "IPoIB or RoCE interface)", addr ? addr : "(null)");
    return RGPU_ERR_ADDRESS;
}

static rgpu_status_t rgpu_verbs_tp_connect(rgpu_transport_t *tp, const char *addr, int timeout_ms,
                                           rgpu_link_t **link_p, char *reason_out, size_t reason_cap)
{
    char scratch[256], *reason = reason_out ? reason_out : scratch;
    size_t cap = reason_out ? reason_cap : sizeof(scratch);
    struct sockaddr_storage ss;
    rgpu_verbs_link_t *vl;
    struct rdma_cm_event *ev;
    struct rdma_conn_param param;
    rgpu_verbs_hello_t hello;
    rgpu_status_t status;
    uint64_t deadline_ns = rgpu_verbs_now_ns() + (uint64_t)(timeout_ms < 0 ? 60000 : timeout_ms) * 1000000ull;

    if (reason_out && reason_cap)
        reason_out[0] = '\0';
    if ((status = rgpu_verbs_parse(addr, 0, &ss, reason, cap)) != RGPU_OK)
        return status;
    vl = rgpu_verbs_link_new(tp);
    if (!vl)
        return RGPU_ERR_NOMEM;
    snprintf(vl->link.peer, sizeof(vl->link.peer), "%s", addr);
    vl->ech = rdma_create_event_channel();
    if (!vl->ech || rgpu_verbs_nonblock(vl->ech->fd) != 0 ||
        rdma_create_id(vl->ech, &vl->id, vl, RDMA_PS_TCP) != 0) {
        snprintf(reason, cap, "cannot open an rdma_cm channel: %s", strerror(errno));
        status = RGPU_ERR_IO;
        goto out_free;
    }
    if (rdma_resolve_addr(vl->id, NULL, (struct sockaddr *)&ss, 2000) != 0) {
        snprintf(reason, cap, "no RDMA route to %s: %s", addr, strerror(errno));
        status = RGPU_ERR_ADDRESS;
        goto out_free;
    }
    if ((status = rgpu_verbs_wait_cm(vl, RDMA_CM_EVENT_ADDR_RESOLVED, deadline_ns, &ev, reason, cap)) != RGPU_OK)
        goto out_free;
    rdma_ack_cm_event(ev);
    if (rdma_resolve_route(vl->id, 2000) != 0) {
        snprintf(reason, cap, "no RDMA route to %s: %s", addr, strerror(errno));
        status = RGPU_ERR_ADDRESS;
        goto out_free;
    }
    if ((status = rgpu_verbs_wait_cm(vl, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline_ns, &ev, reason, cap)) != RGPU_OK)
        goto out_free;
    rdma_ack_cm_event(ev);
    if ((status = rgpu_verbs_link_setup(vl, reason, cap)) != RGPU_OK)
        goto out_free;
    rgpu_verbs_conn_param(vl, &param, &hello);
    if (rdma_connect(vl->id, &param) != 0) {
        snprintf(reason, cap, "connecting to %s: %s", addr, strerror(errno));
        status = RGPU_ERR_IO;
        goto out_free;
    }
    if ((status = rgpu_verbs_wait_cm(vl, RDMA_CM_EVENT_ESTABLISHED, deadline_ns, &ev, reason, cap)) != RGPU_OK)
        goto out_free;
    status = rgpu_verbs_hello_take(vl, ev->param.conn.private_data,
                                   ev->param.conn.private_data_len, reason, cap);
    rdma_ack_cm_event(ev);
    if (status != RGPU_OK)
        goto out_free;
    vl->established = 1;
    if ((status = rgpu_verbs_link_list(vl)) != RGPU_OK) {
        snprintf(reason, cap, "cannot watch the link to %s: %s", addr, strerror(errno));
        goto out_free;
    }
    *link_p = &vl->link;
    return RGPU_OK;

out_free:
    rgpu_verbs_link_free(vl);
    return status;
}

static rgpu_status_t rgpu_verbs_tp_listen(rgpu_transport_t *tp, const char *addr,
                                          rgpu_listener_t **listener_p)
{
    char reason[256], host[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss;
    rgpu_verbs_listener_t *vls;
    struct sockaddr *sa;
    rgpu_status_t status;

    if ((status = rgpu_verbs_parse(addr, 1, &ss, reason, sizeof(reason))) != RGPU_OK)
        return status;
    vls = calloc(1, sizeof(*vls));
    if (!vls)
        return RGPU_ERR_NOMEM;
    vls->l.ops = &rgpu_verbs_ops;
    vls->l.tp = tp;
    vls->ech = rdma_create_event_channel();
    if (!vls->ech || rgpu_verbs_nonblock(vls->ech->fd) != 0 ||
        rdma_create_id(vls->ech, &vls->id, vls, RDMA_PS_TCP) != 0) {
        status = RGPU_ERR_IO;
        goto out_free;
    }
    if (rdma_bind_addr(vls->id, (struct sockaddr *)&ss) != 0) {
        status = errno == EADDRINUSE ? RGPU_ERR_EXISTS : RGPU_ERR_ADDRESS;
        goto out_free;
    }
    if (rdma_listen(vls->id, 64) != 0) {
        status = RGPU_ERR_IO;
        goto out_free;
    }
    sa = rdma_get_local_addr(vls->id);
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
        snprintf(vls->l.local, sizeof(vls->l.local), "[%s]:%u", host, ntohs(rdma_get_src_port(vls->id)));
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
        snprintf(vls->l.local, sizeof(vls->l.local), "%s:%u", host, ntohs(rdma_get_src_port(vls->id)));
    }
    *listener_p = &vls->l;
    return RGPU_OK;

out_free:
    if (vls->id)
        rdma_destroy_id(vls->id);
    if (vls->ech)
        rdma_destroy_event_channel(vls->ech);
    free(vls);
    return status;
}

static int rgpu_verbs_listener_fd(rgpu_listener_t *l)
{
    return ((rgpu_verbs_listener_t *)l)->ech->fd;
}

/* Takes the next connection request (RGPU_ERR_TIMEOUT: none waiting),
 * accepts it and returns the link at once, without waiting for the peer to
 * finish connecting: the server accepts on its event loop, where a slow or
 * hostile peer must not hold up everyone else's accept. The link's sends
 * wait for the connection to complete (its ESTABLISHED event, or a first
 * message from the peer); if it has not within RGPU_VERBS_ACCEPT_MS (5 s
 * by default), the link fails with a reason, whoever waits on it. A request
 * from something that is not an rgpu verbs peer is rejected. */
static rgpu_status_t rgpu_verbs_accept(rgpu_listener_t *l, rgpu_link_t **link_p)
{
    rgpu_verbs_listener_t *vls = (rgpu_verbs_listener_t *)l;
    struct rdma_cm_event *ev;
    struct rdma_cm_id *id;
    rgpu_verbs_link_t *vl;
    struct rdma_conn_param param;
    rgpu_verbs_hello_t hello;
    char reason[256], host[INET6_ADDRSTRLEN] = "?";
    struct sockaddr *sa;
    rgpu_status_t status;

    for (;;) {
        if (rdma_get_cm_event(vls->ech, &ev) != 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? RGPU_ERR_TIMEOUT : RGPU_ERR_IO;
        if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST)
            break;
        rdma_ack_cm_event(ev);
    }
    id = ev->id;
    vl = rgpu_verbs_link_new(l->tp);
    if (!vl) {
        rdma_reject(id, NULL, 0);
        rdma_ack_cm_event(ev);
        rdma_destroy_id(id);
        return RGPU_ERR_NOMEM;
    }
    vl->id = id;
    id->context = vl;
    sa = rdma_get_peer_addr(id);
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
        snprintf(vl->link.peer, sizeof(vl->link.peer), "[%s]:%u", host, ntohs(rdma_get_dst_port(id)));
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
        snprintf(vl->link.peer, sizeof(vl->link.peer), "%s:%u", host, ntohs(rdma_get_dst_port(id)));
    }
    status = rgpu_verbs_hello_take(vl, ev->param.conn.private_data, ev->param.conn.private_data_len,
                                   reason, sizeof(reason));
    if (status == RGPU_OK) {
        vl->ech = rdma_create_event_channel();
        if (!vl->ech)
            status = RGPU_ERR_NOMEM;
    }
    /* The connection's own events (ESTABLISHED, a disconnect) go to the
     * link's channel from here on, before the peer can cause any. */
    if (status == RGPU_OK && rdma_migrate_id(id, vl->ech) != 0)
        status = RGPU_ERR_IO;
    if (status == RGPU_OK)
        status = rgpu_verbs_link_setup(vl, reason, sizeof(reason));
    if (status != RGPU_OK) {
        rdma_reject(id, NULL, 0);
        rdma_ack_cm_event(ev);
        rgpu_verbs_link_free(vl);
        return status;
    }
    rgpu_verbs_conn_param(vl, &param, &hello);
    vl->connect_deadline_ns = rgpu_verbs_now_ns() + (uint64_t)vl->vtp->accept_ms * 1000000ull;
    if (rdma_accept(id, &param) != 0) {
        rdma_ack_cm_event(ev);
        rgpu_verbs_link_free(vl);
        return RGPU_ERR_IO;
    }
    rdma_ack_cm_event(ev);
    if ((status = rgpu_verbs_link_list(vl)) != RGPU_OK) {
        rgpu_verbs_link_free(vl);
        return status;
    }
    *link_p = &vl->link;
    return RGPU_OK;
}

static void rgpu_verbs_listener_close(rgpu_listener_t *l)
{
    rgpu_verbs_listener_t *vls = (rgpu_verbs_listener_t *)l;

    if (!l)
        return;
    rdma_destroy_id(vls->id);
    rdma_destroy_event_channel(vls->ech);
    free(vls);
}

/* Lets the sends already posted leave (a bounded wait), then disconnects:
 * the peer gets what was sent before the close, then the close. */
static void rgpu_verbs_shutdown(rgpu_link_t *link)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;
    char why[256];

    rgpu_verbs_run(vl, rgpu_verbs_ready_drained, NULL, RGPU_VERBS_DRAIN_MS);
    snprintf(why, sizeof(why), "the link to %s was shut down here", link->peer);
    rgpu_verbs_fail_locked(vl, RGPU_ERR_CONN_CLOSED, why);
    pthread_mutex_unlock(&vl->lock);
}

static void rgpu_verbs_close(rgpu_link_t *link)
{
    rgpu_verbs_link_t *vl = (rgpu_verbs_link_t *)link;

    if (!link)
        return;
    pthread_mutex_lock(&vl->lock);
    if (vl->failed == RGPU_OK) {
        pthread_mutex_unlock(&vl->lock);
        rgpu_verbs_shutdown(link);
    } else {
        pthread_mutex_unlock(&vl->lock);
    }
    rgpu_verbs_link_free(vl);
}

static rgpu_status_t rgpu_verbs_connect(const char *addr, int timeout_ms, rgpu_link_t **link_p,
                                        char *reason, size_t reason_cap)
{
    rgpu_transport_t *tp = rgpu__transport_default(&rgpu_verbs_ops);

    if (!tp) {
        rgpu_verbs_probe(reason, reason_cap);
        return RGPU_ERR_UNSUPPORTED;
    }
    return rgpu_verbs_tp_connect(tp, addr, timeout_ms, link_p, reason, reason_cap);
}

static rgpu_status_t rgpu_verbs_listen(const char *addr, rgpu_listener_t **listener_p)
{
    rgpu_transport_t *tp = rgpu__transport_default(&rgpu_verbs_ops);

    return tp ? rgpu_verbs_tp_listen(tp, addr, listener_p) : RGPU_ERR_UNSUPPORTED;
}

const rgpu_transport_ops_t rgpu_verbs_ops = {
    .name = "verbs",
    .connect = rgpu_verbs_connect,
    .listen = rgpu_verbs_listen,
    .listener_fd = rgpu_verbs_listener_fd,
    .accept = rgpu_verbs_accept,
    .listener_close = rgpu_verbs_listener_close,
    /* Messages only: no stream entries (sendv, recv, buffered,
     * wait_readable). */
    .shutdown = rgpu_verbs_shutdown,
    .shutdown_recv = rgpu_verbs_shutdown_recv,
    .close = rgpu_verbs_close,
    .tp_open = rgpu_verbs_tp_open,
    .tp_close = rgpu_verbs_tp_close,
    .tp_connect = rgpu_verbs_tp_connect,
    .tp_listen = rgpu_verbs_tp_listen,
    .mem_register = rgpu_verbs_mem_register,
    .mem_deregister = rgpu_verbs_mem_deregister,
    .msg_send = rgpu_verbs_msg_send,
    .msg_recv = rgpu_verbs_msg_recv,
    .msg_release = rgpu_verbs_msg_release,
    .rma = rgpu_verbs_rma,
    .wait = rgpu_verbs_wait,
    .progress = rgpu_verbs_progress,
    .event_fd = rgpu_verbs_event_fd,
    .reason = rgpu_verbs_reason,
    .has_buffered = rgpu_verbs_has_buffered,
};

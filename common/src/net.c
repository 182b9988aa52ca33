#include "rgpu/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rgpu/util.h"

rgpu_status_t rgpu_addr_resolve(const char *addr, int passive, struct addrinfo **res_p, char *why,
                                size_t why_cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char host[256], port[8];
    uint16_t port_num;
    int rc;

    if (rgpu_addr_split(addr, host, sizeof(host), &port_num) != RGPU_OK) {
        if (why)
            snprintf(why, why_cap, "not an address (expected host:port)");
        return RGPU_ERR_ADDRESS;
    }
    snprintf(port, sizeof(port), "%u", port_num);
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    rc = getaddrinfo(host, port, &hints, res_p);
    if (rc != 0) {
        if (why)
            snprintf(why, why_cap, "cannot resolve it: %s", gai_strerror(rc));
        return RGPU_ERR_ADDRESS;
    }
    return RGPU_OK;
}

/* One attempt: 0 once fd is connected to ai within timeout_ms, or the errno
 * of the failure. The socket is non-blocking, so that the wait has a bound. */
static int rgpu_socket_connect_one(int fd, const struct addrinfo *ai, int timeout_ms)
{
    struct pollfd pfd = {fd, POLLOUT, 0};
    socklen_t len;
    int err = 0, n;

    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return errno;
    do {
        n = poll(&pfd, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        return ETIMEDOUT;
    len = sizeof(err);
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

int rgpu_socket_connect(const struct addrinfo *res, int timeout_ms, int *err_p)
{
    int err = ECONNREFUSED;

    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0) {
            err = errno;
            continue;
        }
        err = rgpu_socket_connect_one(fd, ai, timeout_ms);
        if (err == 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            return fd;
        }
        close(fd);
    }
    *err_p = err;
    return -1;
}

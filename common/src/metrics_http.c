/*
 * The Prometheus endpoint (rgpu/metrics_http.h): read the request head,
 * answer with the metrics, close. HTTP/1.0, no keep-alive, no routing: any
 * GET gets the text.
 */
#include "rgpu/metrics_http.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/log.h"
#include "rgpu/util.h"

typedef struct rgpu_metrics_conn rgpu_metrics_conn_t;

struct rgpu_metrics_http {
    uv_tcp_t tcp;
    rgpu_metrics_conn_t *conns;     /* open connections, linked by next/prev */
    int n_conns;
    int listener_open;              /* until the listener's close callback */
    int stopping;
    rgpu_metrics_format_fn format;
    void *format_arg;
};

/* One HTTP exchange. Two handles: freed when both close callbacks ran. */
struct rgpu_metrics_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;               /* the connection's whole lifetime is bounded */
    uv_write_t write;
    uv_shutdown_t shutdown;
    rgpu_metrics_http_t *server;
    rgpu_metrics_conn_t *next, *prev;
    char request[RGPU_METRICS_MAX_REQUEST + 1];
    size_t request_len;
    char *response;
    int answered;                   /* the answer is being written; what comes is dropped */
    int written;                    /* ... and it was written */
    int peer_done;                  /* the client closed its side (or the read failed) */
    int open_handles;               /* handles not yet through their close callback */
};

static void rgpu_metrics_http_maybe_free(rgpu_metrics_http_t *server)
{
    if (!server->listener_open && server->n_conns == 0)
        free(server);
}

static void rgpu_metrics_conn_handle_closed(uv_handle_t *handle)
{
    rgpu_metrics_conn_t *conn = handle->data;
    rgpu_metrics_http_t *server = conn->server;

    if (--conn->open_handles > 0)
        return;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        server->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    server->n_conns--;
    free(conn->response);
    free(conn);
    rgpu_metrics_http_maybe_free(server);
}

/* Closes both handles of conn, once; a write in flight is cancelled. */
static void rgpu_metrics_conn_close(rgpu_metrics_conn_t *conn)
{
    if (uv_is_closing((uv_handle_t *)&conn->tcp))
        return;
    uv_close((uv_handle_t *)&conn->tcp, rgpu_metrics_conn_handle_closed);
    uv_close((uv_handle_t *)&conn->timer, rgpu_metrics_conn_handle_closed);
}

static void rgpu_metrics_conn_shut(uv_shutdown_t *req, int status)
{
    if (status < 0)
        rgpu_metrics_conn_close(req->data);
}

/* Closing with unread request bytes would reset the connection, and the
 * client could lose the answer: say we are done (FIN) and read on until
 * the client closes too, within the connection's time limit. */
static void rgpu_metrics_conn_written(uv_write_t *req, int status)
{
    rgpu_metrics_conn_t *conn = req->data;

    conn->written = 1;
    if (status < 0 || conn->peer_done || uv_is_closing((uv_handle_t *)&conn->tcp)) {
        rgpu_metrics_conn_close(conn);
        return;
    }
    conn->shutdown.data = conn;
    if (uv_shutdown(&conn->shutdown, (uv_stream_t *)&conn->tcp, rgpu_metrics_conn_shut) != 0)
        rgpu_metrics_conn_close(conn);
}

static void rgpu_metrics_conn_timeout(uv_timer_t *timer)
{
    rgpu_metrics_conn_t *conn = timer->data;

    rgpu_debug("metrics", "closing a connection idle for %d ms", RGPU_METRICS_CONN_TIMEOUT_MS);
    rgpu_metrics_conn_close(conn);
}

/* Checks the request head: returns the HTTP status to answer with. */
static int rgpu_metrics_request_check(const rgpu_metrics_conn_t *conn, int complete, int *is_head_p)
{
    const char *req = conn->request;
    size_t len = conn->request_len, i, method_len;

    *is_head_p = 0;
    if (!complete)
        return 400;     /* too long, or cut short: no end of the head */
    if (memchr(req, '\0', len))
        return 400;
    /* request-line = method SP target SP version */
    for (method_len = 0; method_len < len && req[method_len] >= 'A' && req[method_len] <= 'Z';
         method_len++)
        ;
    if (method_len == 0 || method_len >= len || req[method_len] != ' ')
        return 400;
    for (i = method_len + 1; i < len && req[i] != ' ' && req[i] != '\r' && req[i] != '\n'; i++)
        if ((unsigned char)req[i] < 0x21 || (unsigned char)req[i] > 0x7e)
            return 400;
    if (i == method_len + 1 || i >= len || req[i] != ' ' || strncmp(req + i + 1, "HTTP/", 5) != 0)
        return 400;
    if (method_len == 3 && strncmp(req, "GET", 3) == 0)
        return 200;
    if (method_len == 4 && strncmp(req, "HEAD", 4) == 0) {
        *is_head_p = 1;
        return 200;
    }
    return 405;
}

static void rgpu_metrics_conn_answer(rgpu_metrics_conn_t *conn, int complete)
{
    rgpu_metrics_http_t *server = conn->server;
    int is_head;
    int code = rgpu_metrics_request_check(conn, complete, &is_head);
    const char *status_line;
    rgpu_prom_t body;
    size_t cap;
    uv_buf_t buf;

    conn->answered = 1;
    rgpu_prom_init(&body);
    if (code == 200) {
        server->format(&body, server->format_arg);
        if (body.failed) {
            rgpu_warn("metrics", "cannot format the metrics (out of memory, or past %u bytes)",
                      RGPU_PROM_MAX_BYTES);
            rgpu_prom_free(&body);
            code = 500;
        }
    }
    switch (code) {
    case 200:
        status_line = "200 OK";
        break;
    case 405:
        status_line = "405 Method Not Allowed";
        rgpu_prom_printf(&body, "only GET is served here\n");
        break;
    case 500:
        status_line = "500 Internal Server Error";
        rgpu_prom_printf(&body, "the metrics could not be formatted (see the daemon's log)\n");
        break;
    default:
        status_line = "400 Bad Request";
        rgpu_prom_printf(&body, "not an HTTP request head of at most %d bytes\n",
                         RGPU_METRICS_MAX_REQUEST);
        break;
    }
    cap = body.len + 256;
    conn->response = malloc(cap);
    if (!conn->response) {
        rgpu_prom_free(&body);
        rgpu_metrics_conn_close(conn);
        return;
    }
    buf.len = (size_t)snprintf(conn->response, cap,
                               "HTTP/1.0 %s\r\n"
                               "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                               "Content-Length: %zu\r\n"
                               "Connection: close\r\n\r\n",
                               status_line, body.len);
    if (!is_head && body.len) {
        memcpy(conn->response + buf.len, body.text, body.len);
        buf.len += body.len;
    }
    rgpu_prom_free(&body);
    buf.base = conn->response;
    conn->write.data = conn;
    if (uv_write(&conn->write, (uv_stream_t *)&conn->tcp, &buf, 1, rgpu_metrics_conn_written) != 0)
        rgpu_metrics_conn_close(conn);
}

static void rgpu_metrics_conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char dropped[4096];      /* after the answer: read and forgotten (loop thread) */
    rgpu_metrics_conn_t *conn = handle->data;

    if (conn->answered) {
        buf->base = dropped;
        buf->len = sizeof(dropped);
        return;
    }
    /* Keep one byte for the terminating NUL. */
    buf->base = conn->request + conn->request_len;
    buf->len = sizeof(conn->request) - 1 - conn->request_len;
}

/* Where the head ends (an empty line), NUL bytes included in the search. */
static int rgpu_metrics_head_complete(const rgpu_metrics_conn_t *conn)
{
    const char *req = conn->request;
    size_t len = conn->request_len;

    return memmem(req, len, "\r\n\r\n", 4) != NULL || memmem(req, len, "\n\n", 2) != NULL;
}

static void rgpu_metrics_conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    rgpu_metrics_conn_t *conn = stream->data;

    if (nread == 0)
        return;
    if (conn->answered) {
        if (nread < 0) {
            conn->peer_done = 1;
            uv_read_stop(stream);
            if (conn->written)
                rgpu_metrics_conn_close(conn);
        }
        return;
    }
    if (nread < 0) {
        conn->peer_done = nread == UV_EOF;
        /* EOF before a full head: answer what we have (a client that
         * half-closed after "GET / HTTP/1.0\r\n"), otherwise just close. */
        if (nread == UV_EOF && conn->request_len > 0)
            rgpu_metrics_conn_answer(conn, memchr(conn->request, '\n', conn->request_len) != NULL);
        else
            rgpu_metrics_conn_close(conn);
        return;
    }
    conn->request_len += (size_t)nread;
    conn->request[conn->request_len] = '\0';
    /* HTTP/1.0 heads end with an empty line; a full buffer gets a 400. */
    if (rgpu_metrics_head_complete(conn))
        rgpu_metrics_conn_answer(conn, 1);
    else if (conn->request_len >= sizeof(conn->request) - 1)
        rgpu_metrics_conn_answer(conn, 0);
}

static void rgpu_metrics_refused_closed(uv_handle_t *handle)
{
    free(handle);
}

static void rgpu_metrics_on_connection(uv_stream_t *listener, int status)
{
    rgpu_metrics_http_t *server = listener->data;
    rgpu_metrics_conn_t *conn;

    if (status < 0) {
        rgpu_debug("metrics", "accept failed: %s", uv_strerror(status));
        return;
    }
    if (server->stopping || server->n_conns >= RGPU_METRICS_MAX_CONNS) {
        /* Accept it to close it: an unaccepted connection stops libuv
         * from accepting any other. */
        uv_tcp_t *refused = malloc(sizeof(*refused));

        if (!refused)
            return;
        uv_tcp_init(listener->loop, refused);
        if (uv_accept(listener, (uv_stream_t *)refused) == 0)
            rgpu_debug("metrics", "%d connections open already: refusing one", server->n_conns);
        uv_close((uv_handle_t *)refused, rgpu_metrics_refused_closed);
        return;
    }
    conn = calloc(1, sizeof(*conn));
    if (!conn)
        return;
    conn->server = server;
    uv_tcp_init(listener->loop, &conn->tcp);
    conn->tcp.data = conn;
    uv_timer_init(listener->loop, &conn->timer);
    conn->timer.data = conn;
    conn->open_handles = 2;
    conn->next = server->conns;
    if (server->conns)
        server->conns->prev = conn;
    server->conns = conn;
    server->n_conns++;
    uv_timer_start(&conn->timer, rgpu_metrics_conn_timeout, RGPU_METRICS_CONN_TIMEOUT_MS, 0);
    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&conn->tcp, rgpu_metrics_conn_alloc, rgpu_metrics_conn_read) != 0)
        rgpu_metrics_conn_close(conn);
}

static void rgpu_metrics_http_closed(uv_handle_t *handle)
{
    rgpu_metrics_http_t *server = handle->data;

    server->listener_open = 0;
    rgpu_metrics_http_maybe_free(server);
}

rgpu_status_t rgpu_metrics_http_start(uv_loop_t *loop, const char *addr,
                                      rgpu_metrics_format_fn format, void *arg,
                                      rgpu_metrics_http_t **server_p, char *local,
                                      size_t local_cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    struct sockaddr_storage ss;
    int ss_len = sizeof(ss);
    rgpu_metrics_http_t *server;
    char host[256], port[8];
    uint16_t port_num;
    rgpu_status_t status;
    int err;

    if (rgpu_addr_split(addr, host, sizeof(host), &port_num) != RGPU_OK)
        return RGPU_ERR_ADDRESS;
    snprintf(port, sizeof(port), "%u", port_num);
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return RGPU_ERR_ADDRESS;
    server = calloc(1, sizeof(*server));
    if (!server) {
        status = RGPU_ERR_NOMEM;
        goto out_free_res;
    }
    server->format = format;
    server->format_arg = arg;
    uv_tcp_init(loop, &server->tcp);
    server->tcp.data = server;
    server->listener_open = 1;
    err = uv_tcp_bind(&server->tcp, res->ai_addr, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&server->tcp, 16, rgpu_metrics_on_connection);
    if (err != 0) {
        rgpu_error("metrics", "cannot listen on %s: %s", addr, uv_strerror(err));
        status = RGPU_ERR_IO;
        goto out_close;
    }
    if (local && uv_tcp_getsockname(&server->tcp, (struct sockaddr *)&ss, &ss_len) == 0) {
        char name[64] = "?";
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, name, sizeof(name));
            snprintf(local, local_cap, "[%s]:%u", name,
                     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, name, sizeof(name));
            snprintf(local, local_cap, "%s:%u", name, ntohs(((struct sockaddr_in *)&ss)->sin_port));
        }
    }
    freeaddrinfo(res);
    *server_p = server;
    return RGPU_OK;

out_close:
    uv_close((uv_handle_t *)&server->tcp, rgpu_metrics_http_closed);
out_free_res:
    freeaddrinfo(res);
    return status;
}

void rgpu_metrics_http_stop(rgpu_metrics_http_t *server)
{
    if (!server || server->stopping)
        return;
    server->stopping = 1;
    uv_close((uv_handle_t *)&server->tcp, rgpu_metrics_http_closed);
    /* Open connections would keep the loop, and so the daemon, running. */
    for (rgpu_metrics_conn_t *conn = server->conns; conn; conn = conn->next)
        rgpu_metrics_conn_close(conn);
}

/*
 * A tiny HTTP/1.0 endpoint on the libuv loop: read the request head, answer
 * with the metrics, close. No keep-alive, no routing: any GET gets the text.
 */
#include "metrics.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/log.h"
#include "rgpu/util.h"

rgpu_metrics_t rgpu_metrics;

struct rgpu_metrics_server {
    uv_tcp_t tcp;               /* first: the close callback frees the struct */
};

typedef struct {
    uv_tcp_t tcp;               /* first: the close callback frees the struct */
    uv_write_t write;
    char request[4096];
    size_t request_len;
    char *response;
    int answered;
} rgpu_metrics_conn_t;

size_t rgpu_metrics_format(char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "# HELP rgpu_server_sessions_active Client sessions now open.\n"
                     "# TYPE rgpu_server_sessions_active gauge\n"
                     "rgpu_server_sessions_active %lld\n"
                     "# HELP rgpu_server_sessions_total Client sessions accepted since start.\n"
                     "# TYPE rgpu_server_sessions_total counter\n"
                     "rgpu_server_sessions_total %llu\n"
                     "# HELP rgpu_server_buffer_bytes Bytes of live device buffers of all sessions (sub-buffers not counted).\n"
                     "# TYPE rgpu_server_buffer_bytes gauge\n"
                     "rgpu_server_buffer_bytes %lld\n"
                     "# HELP rgpu_server_buffers Live device buffers of all sessions (sub-buffers not counted).\n"
                     "# TYPE rgpu_server_buffers gauge\n"
                     "rgpu_server_buffers %lld\n"
                     "# HELP rgpu_server_protocol_errors_total Sessions ended by a protocol error.\n"
                     "# TYPE rgpu_server_protocol_errors_total counter\n"
                     "rgpu_server_protocol_errors_total %llu\n",
                     (long long)atomic_load(&rgpu_metrics.sessions_active),
                     (unsigned long long)atomic_load(&rgpu_metrics.sessions_total),
                     (long long)atomic_load(&rgpu_metrics.buffer_bytes),
                     (long long)atomic_load(&rgpu_metrics.buffers),
                     (unsigned long long)atomic_load(&rgpu_metrics.protocol_errors_total));

    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

static void rgpu_metrics_conn_closed(uv_handle_t *handle)
{
    rgpu_metrics_conn_t *conn = (rgpu_metrics_conn_t *)handle;

    free(conn->response);
    free(conn);
}

static void rgpu_metrics_conn_written(uv_write_t *req, int status)
{
    uv_close((uv_handle_t *)req->handle, rgpu_metrics_conn_closed);
}

static void rgpu_metrics_conn_answer(rgpu_metrics_conn_t *conn)
{
    char body[4096];
    size_t body_len;
    int is_get = strncmp(conn->request, "GET ", 4) == 0;
    int is_head = strncmp(conn->request, "HEAD ", 5) == 0;
    size_t cap;
    uv_buf_t buf;

    conn->answered = 1;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    if (is_get || is_head)
        body_len = rgpu_metrics_format(body, sizeof(body));
    else
        body_len = (size_t)snprintf(body, sizeof(body), "only GET is served here\n");
    cap = body_len + 256;
    conn->response = malloc(cap);
    if (!conn->response) {
        uv_close((uv_handle_t *)&conn->tcp, rgpu_metrics_conn_closed);
        return;
    }
    buf.len = (size_t)snprintf(conn->response, cap,
                               "HTTP/1.0 %s\r\n"
                               "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                               "Content-Length: %zu\r\n"
                               "Connection: close\r\n\r\n",
                               is_get || is_head ? "200 OK" : "405 Method Not Allowed", body_len);
    if (!is_head) {
        memcpy(conn->response + buf.len, body, body_len);
        buf.len += body_len;
    }
    buf.base = conn->response;
    if (uv_write(&conn->write, (uv_stream_t *)&conn->tcp, &buf, 1, rgpu_metrics_conn_written) != 0)
        uv_close((uv_handle_t *)&conn->tcp, rgpu_metrics_conn_closed);
}

static void rgpu_metrics_conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    rgpu_metrics_conn_t *conn = (rgpu_metrics_conn_t *)handle;

    /* Keep one byte for the terminating NUL. */
    buf->base = conn->request + conn->request_len;
    buf->len = sizeof(conn->request) - 1 - conn->request_len;
}

static void rgpu_metrics_conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    rgpu_metrics_conn_t *conn = (rgpu_metrics_conn_t *)stream;

    if (conn->answered)
        return;
    if (nread < 0) {
        /* EOF before a full head: answer what we have if it looks like a
         * request, otherwise just close. */
        if (nread == UV_EOF && conn->request_len > 0)
            rgpu_metrics_conn_answer(conn);
        else
            uv_close((uv_handle_t *)stream, rgpu_metrics_conn_closed);
        return;
    }
    conn->request_len += (size_t)nread;
    conn->request[conn->request_len] = '\0';
    /* HTTP/1.0 heads end with an empty line; a full buffer gets an answer too. */
    if (strstr(conn->request, "\r\n\r\n") || strstr(conn->request, "\n\n") ||
        conn->request_len >= sizeof(conn->request) - 1)
        rgpu_metrics_conn_answer(conn);
}

static void rgpu_metrics_on_connection(uv_stream_t *server, int status)
{
    rgpu_metrics_conn_t *conn;

    if (status < 0)
        return;
    conn = calloc(1, sizeof(*conn));
    if (!conn)
        return;
    uv_tcp_init(server->loop, &conn->tcp);
    if (uv_accept(server, (uv_stream_t *)&conn->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&conn->tcp, rgpu_metrics_conn_alloc, rgpu_metrics_conn_read) != 0)
        uv_close((uv_handle_t *)&conn->tcp, rgpu_metrics_conn_closed);
}

static void rgpu_metrics_server_closed(uv_handle_t *handle)
{
    free(handle);
}

rgpu_status_t rgpu_metrics_server_start(uv_loop_t *loop, const char *addr,
                                        rgpu_metrics_server_t **server_p,
                                        char *local, size_t local_cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    struct sockaddr_storage ss;
    int ss_len = sizeof(ss);
    rgpu_metrics_server_t *server;
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
    uv_tcp_init(loop, &server->tcp);
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
    uv_close((uv_handle_t *)&server->tcp, rgpu_metrics_server_closed);
out_free_res:
    freeaddrinfo(res);
    return status;
}

void rgpu_metrics_server_stop(rgpu_metrics_server_t *server)
{
    if (server)
        uv_close((uv_handle_t *)&server->tcp, rgpu_metrics_server_closed);
}

/*
 * rgpu status codes: one type for every layer.
 *
 * RGPU_OK is 0; errors are negative, grouped in ranges:
 *   -1   .. -99   generic
 *   -100 .. -199  link (transport)
 *   -200 .. -299  session and protocol
 * Remote API errors (cl_int, cudaError_t) are not rgpu_status_t: they travel
 * in replies and become the application's error only at the API edge.
 */
#ifndef RGPU_STATUS_H
#define RGPU_STATUS_H

#define RGPU_STATUS_LIST(X)                                                   \
    X(RGPU_OK, 0, "success")                                                  \
    X(RGPU_ERR_NOMEM, -1, "out of memory")                                    \
    X(RGPU_ERR_INVALID_ARG, -2, "invalid argument")                           \
    X(RGPU_ERR_UNSUPPORTED, -3, "not supported in this build")                \
    X(RGPU_ERR_NOT_FOUND, -4, "not found")                                    \
    X(RGPU_ERR_EXISTS, -5, "already exists")                                  \
    X(RGPU_ERR_IO, -100, "input/output error")                                \
    X(RGPU_ERR_CONN_REFUSED, -101, "connection refused")                      \
    X(RGPU_ERR_CONN_CLOSED, -102, "connection closed by peer")                \
    X(RGPU_ERR_TIMEOUT, -103, "timed out")                                    \
    X(RGPU_ERR_ADDRESS, -104, "bad or unresolvable address")                  \
    X(RGPU_ERR_BAD_MAGIC, -200, "not an rgpu frame (bad magic)")              \
    X(RGPU_ERR_BAD_VERSION, -201, "unsupported protocol version")             \
    X(RGPU_ERR_TOO_LARGE, -202, "frame length past the configured limit")     \
    X(RGPU_ERR_BAD_MESSAGE, -203, "message body does not unpack")             \
    X(RGPU_ERR_UNKNOWN_TYPE, -204, "unknown message type")                    \
    X(RGPU_ERR_PROTOCOL, -205, "protocol violation")                          \
    X(RGPU_ERR_REFUSED, -206, "session refused by server")

typedef enum {
#define RGPU_STATUS_ENUM(name, value, str) name = value,
    RGPU_STATUS_LIST(RGPU_STATUS_ENUM)
#undef RGPU_STATUS_ENUM
} rgpu_status_t;

/* A static, human-readable string for a status. Never NULL. */
const char *rgpu_status_str(rgpu_status_t status);

#endif

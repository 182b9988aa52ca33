/*
 * failed_wait: commands that wait on a user event set to an error status.
 * They must fail with CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST, not
 * hang: a blocking read would otherwise hold the server's session thread
 * (and the session's device memory) forever. Then the session still works.
 *
 *   failed_wait        exits 0 and prints "... PASS", or 1 with the reason
 *
 * Only through rgpu: PoCL 3.1 itself waits forever on such a command.
 */
#include <stdlib.h>
#include <string.h>

#include "cl_util.h"

#define EXPECT(cond, ...)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "failed_wait: " __VA_ARGS__);                     \
            fprintf(stderr, "\n");                                            \
            return 1;                                                         \
        }                                                                     \
    } while (0)

int main(void)
{
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_mem buf;
    cl_event user, ev = NULL;
    cl_int err, host[64], back[64], status = 0;

    cl_pick_device(&platform, &device);
    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK_ERR(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, 0, &err);
    CHECK_ERR(err, "clCreateCommandQueue");
    for (int i = 0; i < 64; i++)
        host[i] = i * 3 + 1;
    buf = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(host), host, &err);
    CHECK_ERR(err, "clCreateBuffer");
    user = clCreateUserEvent(context, &err);
    CHECK_ERR(err, "clCreateUserEvent");
    CHECK(clSetUserEventStatus(user, -1));

    /* A blocking read waiting on the failed event. */
    err = clEnqueueReadBuffer(queue, buf, CL_TRUE, 0, sizeof(back), back, 1, &user, NULL);
    EXPECT(err == CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST,
           "blocking read after a failed event returned %s (%d)", cl_err_name(err), err);

    /* A non-blocking write: its error comes at the next sync point, and its
     * event carries a negative status. */
    err = clEnqueueWriteBuffer(queue, buf, CL_FALSE, 0, sizeof(host), host, 1, &user, &ev);
    if (err == CL_SUCCESS) {
        err = clFinish(queue);
        EXPECT(err != CL_SUCCESS, "clFinish after a write waiting on a failed event succeeded");
        CHECK(clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(status), &status, NULL));
        EXPECT(status < 0, "the write's event has status %d, expected an error", status);
        clReleaseEvent(ev);
    }

    /* The session goes on. */
    CHECK(clFinish(queue));
    CHECK(clEnqueueReadBuffer(queue, buf, CL_TRUE, 0, sizeof(back), back, 0, NULL, NULL));
    EXPECT(memcmp(back, host, sizeof(host)) == 0, "the buffer changed");
    clReleaseEvent(user);
    clReleaseMemObject(buf);
    clReleaseCommandQueue(queue);
    clReleaseContext(context);
    printf("failed_wait: commands waiting on a failed event fail, the session goes on: PASS\n");
    return 0;
}

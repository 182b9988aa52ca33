/*
 * hold_memory: allocates MIB mebibytes of device buffers (default 1024) on
 * device DEVICE (default 0, counting the devices of all platforms), writes
 * every byte of them so the memory is really in use, prints
 * "READY <MIB> MiB ..." and then sleeps until it is killed.
 *
 *   hold_memory [MIB] [CHUNK_MIB] [DEVICE]
 *
 * The end-to-end test of a crashing client SIGKILLs it and watches the
 * server give that memory back.
 */
#include <unistd.h>

#include "cl_util.h"

int main(int argc, char **argv)
{
    size_t total_mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    size_t chunk_mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
    unsigned device_index = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 0;
    size_t chunk, nchunks;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_ulong max_alloc = 0;
    unsigned char *host, probe[16];
    cl_mem *bufs;
    cl_int err;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (total_mib == 0 || chunk_mib == 0) {
        fprintf(stderr, "usage: %s [MIB] [CHUNK_MIB] [DEVICE]\n", argv[0]);
        return 2;
    }
    cl_pick_device_index(device_index, &platform, &device);
    CHECK(clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(max_alloc), &max_alloc, NULL));
    chunk = chunk_mib << 20;
    if (chunk > max_alloc)
        chunk = (size_t)max_alloc;
    nchunks = ((total_mib << 20) + chunk - 1) / chunk;
    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK_ERR(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, 0, &err);
    CHECK_ERR(err, "clCreateCommandQueue");

    host = malloc(chunk);
    bufs = calloc(nchunks, sizeof(*bufs));
    if (!host || !bufs)
        return 1;
    for (size_t i = 0; i < chunk; i++)
        host[i] = (unsigned char)(i * 13 + 1);
    for (size_t c = 0; c < nchunks; c++) {
        bufs[c] = clCreateBuffer(context, CL_MEM_READ_WRITE, chunk, NULL, &err);
        CHECK_ERR(err, "clCreateBuffer");
        CHECK(clEnqueueWriteBuffer(queue, bufs[c], CL_TRUE, 0, chunk, host, 0, NULL, NULL));
    }
    CHECK(clFinish(queue));
    /* Read a little of the last buffer back: the writes really happened. */
    CHECK(clEnqueueReadBuffer(queue, bufs[nchunks - 1], CL_TRUE, chunk - sizeof(probe),
                              sizeof(probe), probe, 0, NULL, NULL));
    if (memcmp(probe, host + chunk - sizeof(probe), sizeof(probe)) != 0) {
        fprintf(stderr, "hold_memory: read-back differs\n");
        return 1;
    }
    free(host);
    printf("READY %zu MiB in %zu buffers\n", (nchunks * chunk) >> 20, nchunks);
    for (;;)
        pause();
}

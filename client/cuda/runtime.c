/*
 * Servers and devices: the connections, opened once on the first call that
 * needs a device (never in a constructor: a program that links CUDA but
 * never uses it does not connect), the devices and their properties from
 * the handshake, and the device management calls, all answered locally
 * except those that must wait for the GPU (cudaDeviceSynchronize,
 * cudaDeviceReset).
 *
 * The servers are those of RGPU_SERVERS ("host:port,..."), or else those
 * the lease in RGPU_LEASE_TOKEN names, or else client.conf's (the OpenCL
 * ICD's rules, rgpu/client_lease.h); devices are numbered in server order,
 * then in each server's order.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cudart.h"
#include "rgpu/client_lease.h"

rgpu_cu_state_t rgpu__cu;
static pthread_once_t rgpu_cu_once = PTHREAD_ONCE_INIT;
static _Thread_local int rgpu_cu_current_device;
static _Atomic uint64_t rgpu_cu_next_id = 1;

uint64_t rgpu__cu_new_id(void)
{
    return atomic_fetch_add(&rgpu_cu_next_id, 1);
}

int rgpu__cu_current(void)
{
    return rgpu_cu_current_device;
}

/* cudaDeviceProp's fields and the attribute each comes from. */
#define PROP_INT(field, attr) {offsetof(struct cudaDeviceProp, field), sizeof(int), attr}
#define PROP_SIZE(field, attr) {offsetof(struct cudaDeviceProp, field), sizeof(size_t), attr}
#define PROP_AT(field, i, attr) {offsetof(struct cudaDeviceProp, field) + (i) * sizeof(int), sizeof(int), attr}
static const struct {
    size_t offset;
    size_t size;
    int attr;
} rgpu_cu_props[] = {
    PROP_SIZE(sharedMemPerBlock, cudaDevAttrMaxSharedMemoryPerBlock),
    PROP_INT(regsPerBlock, cudaDevAttrMaxRegistersPerBlock),
    PROP_INT(warpSize, cudaDevAttrWarpSize),
    PROP_SIZE(memPitch, cudaDevAttrMaxPitch),
    PROP_INT(maxThreadsPerBlock, cudaDevAttrMaxThreadsPerBlock),
    PROP_AT(maxThreadsDim, 0, cudaDevAttrMaxBlockDimX),
    PROP_AT(maxThreadsDim, 1, cudaDevAttrMaxBlockDimY),
    PROP_AT(maxThreadsDim, 2, cudaDevAttrMaxBlockDimZ),
    PROP_AT(maxGridSize, 0, cudaDevAttrMaxGridDimX),
    PROP_AT(maxGridSize, 1, cudaDevAttrMaxGridDimY),
    PROP_AT(maxGridSize, 2, cudaDevAttrMaxGridDimZ),
    PROP_SIZE(totalConstMem, cudaDevAttrTotalConstantMemory),
    PROP_INT(major, cudaDevAttrComputeCapabilityMajor),
    PROP_INT(minor, cudaDevAttrComputeCapabilityMinor),
    PROP_SIZE(textureAlignment, cudaDevAttrTextureAlignment),
    PROP_SIZE(texturePitchAlignment, cudaDevAttrTexturePitchAlignment),
    PROP_INT(multiProcessorCount, cudaDevAttrMultiProcessorCount),
    PROP_INT(integrated, cudaDevAttrIntegrated),
    PROP_INT(canMapHostMemory, cudaDevAttrCanMapHostMemory),
    PROP_INT(maxTexture1D, cudaDevAttrMaxTexture1DWidth),
    PROP_INT(maxTexture1DMipmap, cudaDevAttrMaxTexture1DMipmappedWidth),
    PROP_AT(maxTexture2D, 0, cudaDevAttrMaxTexture2DWidth),
    PROP_AT(maxTexture2D, 1, cudaDevAttrMaxTexture2DHeight),
    PROP_AT(maxTexture2DMipmap, 0, cudaDevAttrMaxTexture2DMipmappedWidth),
    PROP_AT(maxTexture2DMipmap, 1, cudaDevAttrMaxTexture2DMipmappedHeight),
    PROP_AT(maxTexture2DLinear, 0, cudaDevAttrMaxTexture2DLinearWidth),
    PROP_AT(maxTexture2DLinear, 1, cudaDevAttrMaxTexture2DLinearHeight),
    PROP_AT(maxTexture2DLinear, 2, cudaDevAttrMaxTexture2DLinearPitch),
    PROP_AT(maxTexture2DGather, 0, cudaDevAttrMaxTexture2DGatherWidth),
    PROP_AT(maxTexture2DGather, 1, cudaDevAttrMaxTexture2DGatherHeight),
    PROP_AT(maxTexture3D, 0, cudaDevAttrMaxTexture3DWidth),
    PROP_AT(maxTexture3D, 1, cudaDevAttrMaxTexture3DHeight),
    PROP_AT(maxTexture3D, 2, cudaDevAttrMaxTexture3DDepth),
    PROP_AT(maxTexture3DAlt, 0, cudaDevAttrMaxTexture3DWidthAlt),
    PROP_AT(maxTexture3DAlt, 1, cudaDevAttrMaxTexture3DHeightAlt),
    PROP_AT(maxTexture3DAlt, 2, cudaDevAttrMaxTexture3DDepthAlt),
    PROP_INT(maxTextureCubemap, cudaDevAttrMaxTextureCubemapWidth),
    PROP_AT(maxTexture1DLayered, 0, cudaDevAttrMaxTexture1DLayeredWidth),
    PROP_AT(maxTexture1DLayered, 1, cudaDevAttrMaxTexture1DLayeredLayers),
    PROP_AT(maxTexture2DLayered, 0, cudaDevAttrMaxTexture2DLayeredWidth),
    PROP_AT(maxTexture2DLayered, 1, cudaDevAttrMaxTexture2DLayeredHeight),
    PROP_AT(maxTexture2DLayered, 2, cudaDevAttrMaxTexture2DLayeredLayers),
    PROP_AT(maxTextureCubemapLayered, 0, cudaDevAttrMaxTextureCubemapLayeredWidth),
    PROP_AT(maxTextureCubemapLayered, 1, cudaDevAttrMaxTextureCubemapLayeredLayers),
    PROP_INT(maxSurface1D, cudaDevAttrMaxSurface1DWidth),
    PROP_AT(maxSurface2D, 0, cudaDevAttrMaxSurface2DWidth),
    PROP_AT(maxSurface2D, 1, cudaDevAttrMaxSurface2DHeight),
    PROP_AT(maxSurface3D, 0, cudaDevAttrMaxSurface3DWidth),
    PROP_AT(maxSurface3D, 1, cudaDevAttrMaxSurface3DHeight),
    PROP_AT(maxSurface3D, 2, cudaDevAttrMaxSurface3DDepth),
    PROP_AT(maxSurface1DLayered, 0, cudaDevAttrMaxSurface1DLayeredWidth),
    PROP_AT(maxSurface1DLayered, 1, cudaDevAttrMaxSurface1DLayeredLayers),
    PROP_AT(maxSurface2DLayered, 0, cudaDevAttrMaxSurface2DLayeredWidth),
    PROP_AT(maxSurface2DLayered, 1, cudaDevAttrMaxSurface2DLayeredHeight),
    PROP_AT(maxSurface2DLayered, 2, cudaDevAttrMaxSurface2DLayeredLayers),
    PROP_INT(maxSurfaceCubemap, cudaDevAttrMaxSurfaceCubemapWidth),
    PROP_AT(maxSurfaceCubemapLayered, 0, cudaDevAttrMaxSurfaceCubemapLayeredWidth),
    PROP_AT(maxSurfaceCubemapLayered, 1, cudaDevAttrMaxSurfaceCubemapLayeredLayers),
    PROP_SIZE(surfaceAlignment, cudaDevAttrSurfaceAlignment),
    PROP_INT(concurrentKernels, cudaDevAttrConcurrentKernels),
    PROP_INT(ECCEnabled, cudaDevAttrEccEnabled),
    PROP_INT(pciBusID, cudaDevAttrPciBusId),
    PROP_INT(pciDeviceID, cudaDevAttrPciDeviceId),
    PROP_INT(pciDomainID, cudaDevAttrPciDomainId),
    PROP_INT(tccDriver, cudaDevAttrTccDriver),
    PROP_INT(asyncEngineCount, cudaDevAttrAsyncEngineCount),
    PROP_INT(unifiedAddressing, cudaDevAttrUnifiedAddressing),
    PROP_INT(memoryBusWidth, cudaDevAttrGlobalMemoryBusWidth),
    PROP_INT(l2CacheSize, cudaDevAttrL2CacheSize),
    PROP_INT(persistingL2CacheMaxSize, cudaDevAttrMaxPersistingL2CacheSize),
    PROP_INT(maxThreadsPerMultiProcessor, cudaDevAttrMaxThreadsPerMultiProcessor),
    PROP_INT(streamPrioritiesSupported, cudaDevAttrStreamPrioritiesSupported),
    PROP_INT(globalL1CacheSupported, cudaDevAttrGlobalL1CacheSupported),
    PROP_INT(localL1CacheSupported, cudaDevAttrLocalL1CacheSupported),
    PROP_SIZE(sharedMemPerMultiprocessor, cudaDevAttrMaxSharedMemoryPerMultiprocessor),
    PROP_INT(regsPerMultiprocessor, cudaDevAttrMaxRegistersPerMultiprocessor),
    PROP_INT(managedMemory, cudaDevAttrManagedMemory),
    PROP_INT(isMultiGpuBoard, cudaDevAttrIsMultiGpuBoard),
    PROP_INT(multiGpuBoardGroupID, cudaDevAttrMultiGpuBoardGroupID),
    PROP_INT(hostNativeAtomicSupported, cudaDevAttrHostNativeAtomicSupported),
    PROP_INT(pageableMemoryAccess, cudaDevAttrPageableMemoryAccess),
    PROP_INT(concurrentManagedAccess, cudaDevAttrConcurrentManagedAccess),
    PROP_INT(computePreemptionSupported, cudaDevAttrComputePreemptionSupported),
    PROP_INT(canUseHostPointerForRegisteredMem, cudaDevAttrCanUseHostPointerForRegisteredMem),
    PROP_INT(cooperativeLaunch, cudaDevAttrCooperativeLaunch),
    PROP_SIZE(sharedMemPerBlockOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin),
    PROP_INT(pageableMemoryAccessUsesHostPageTables, cudaDevAttrPageableMemoryAccessUsesHostPageTables),
    PROP_INT(directManagedMemAccessFromHost, cudaDevAttrDirectManagedMemAccessFromHost),
    PROP_INT(maxBlocksPerMultiProcessor, cudaDevAttrMaxBlocksPerMultiprocessor),
    PROP_INT(accessPolicyMaxWindowSize, cudaDevAttrMaxAccessPolicyWindowSize),
    PROP_SIZE(reservedSharedMemPerBlock, cudaDevAttrReservedSharedMemoryPerBlock),
    PROP_INT(hostRegisterSupported, cudaDevAttrHostRegisterSupported),
    PROP_INT(sparseCudaArraySupported, cudaDevAttrSparseCudaArraySupported),
    PROP_INT(hostRegisterReadOnlySupported, cudaDevAttrHostRegisterReadOnlySupported),
    PROP_INT(timelineSemaphoreInteropSupported, cudaDevAttrTimelineSemaphoreInteropSupported),
    PROP_INT(memoryPoolsSupported, cudaDevAttrMemoryPoolsSupported),
    PROP_INT(gpuDirectRDMASupported, cudaDevAttrGPUDirectRDMASupported),
    PROP_INT(gpuDirectRDMAFlushWritesOptions, cudaDevAttrGPUDirectRDMAFlushWritesOptions),
    PROP_INT(gpuDirectRDMAWritesOrdering, cudaDevAttrGPUDirectRDMAWritesOrdering),
    PROP_INT(memoryPoolSupportedHandleTypes, cudaDevAttrMemoryPoolSupportedHandleTypes),
    PROP_INT(deferredMappingCudaArraySupported, cudaDevAttrDeferredMappingCudaArraySupported),
    PROP_INT(ipcEventSupported, cudaDevAttrIpcEventSupport),
    PROP_INT(clusterLaunch, cudaDevAttrClusterLaunch),
    PROP_INT(deviceNumaConfig, cudaDevAttrNumaConfig),
    PROP_INT(deviceNumaId, cudaDevAttrNumaId),
    PROP_INT(mpsEnabled, cudaDevAttrMpsEnabled),
    PROP_INT(hostNumaId, cudaDevAttrHostNumaId),
    PROP_INT(gpuPciDeviceID, cudaDevAttrGpuPciDeviceId),
    PROP_INT(gpuPciSubsystemID, cudaDevAttrGpuPciSubsystemId),
    PROP_INT(hostNumaMultinodeIpcSupported, cudaDevAttrHostNumaMultinodeIpcSupported),
};

static uint64_t rgpu_cu_le(const uint8_t *p, size_t len)
{
    uint64_t v = 0;

    for (size_t i = len; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

/* Fills a device from its HelloReply entry. Returns 0, or -1 when the
 * server's device is not a CUDA device (no compute capability). */
static int rgpu_cu_device_fill(rgpu_cu_device_t *d, const Rgpu__Device *dev)
{
    memset(&d->prop, 0, sizeof(d->prop));
    for (size_t i = 0; i < dev->n_params; i++) {
        const Rgpu__DeviceParam *p = dev->params[i];

        if (p->param < RGPU__CU_DEVICE_PARAM__CU_PARAM_BASE) {
            if (p->param < RGPU_CU_MAX_ATTRS && p->value.len == 4) {
                d->attrs[p->param] = (int)(int32_t)rgpu_cu_le(p->value.data, 4);
                d->has_attr[p->param] = 1;
            }
            continue;
        }
        switch (p->param) {
        case RGPU__CU_DEVICE_PARAM__CU_PARAM_NAME:
            snprintf(d->prop.name, sizeof(d->prop.name), "%.*s", (int)p->value.len, (const char *)p->value.data);
            break;
        case RGPU__CU_DEVICE_PARAM__CU_PARAM_TOTAL_MEM:
            if (p->value.len == 8)
                d->prop.totalGlobalMem = (size_t)rgpu_cu_le(p->value.data, 8);
            break;
        case RGPU__CU_DEVICE_PARAM__CU_PARAM_UUID:
            if (p->value.len == sizeof(d->prop.uuid))
                memcpy(&d->prop.uuid, p->value.data, sizeof(d->prop.uuid));
            break;
        case RGPU__CU_DEVICE_PARAM__CU_PARAM_LUID:
            if (p->value.len == 12) {
                memcpy(d->prop.luid, p->value.data, 8);
                d->prop.luidDeviceNodeMask = (unsigned)rgpu_cu_le(p->value.data + 8, 4);
            }
            break;
        case RGPU__CU_DEVICE_PARAM__CU_PARAM_DRIVER_VERSION:
            if (p->value.len == 4)
                d->driver_version = (int)(int32_t)rgpu_cu_le(p->value.data, 4);
            break;
        case RGPU__CU_DEVICE_PARAM__CU_PARAM_EMULATED:
            if (p->value.len == 4)
                d->emulated = rgpu_cu_le(p->value.data, 4) != 0;
            break;
        default:
            break;
        }
    }
    if (!d->has_attr[cudaDevAttrComputeCapabilityMajor])
        return -1;
    for (size_t i = 0; i < sizeof(rgpu_cu_props) / sizeof(rgpu_cu_props[0]); i++) {
        int v = d->attrs[rgpu_cu_props[i].attr];
        char *field = (char *)&d->prop + rgpu_cu_props[i].offset;

        if (rgpu_cu_props[i].size == sizeof(int)) {
            memcpy(field, &v, sizeof(v));
        } else {
            size_t s = (size_t)(unsigned)v;

            memcpy(field, &s, sizeof(s));
        }
    }
    return 0;
}

static void rgpu_cu_init_once(void)
{
    static rgpu_client_conf_t conf;     /* client.conf and RGPU_* (rgpu/client_lease.h) */
    static char servers[4096];
    const char *env = servers, *token = conf.token;
    int timeout_ms;
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    struct utsname uts;
    char host[256] = "";
    char *list, *save = NULL;
    size_t n;

    rgpu_log_init("rgpu-cudart", RGPU_LOG_WARN);
    /* The servers as the OpenCL ICD finds them: RGPU_SERVERS, else the
     * lease's (RGPU_LEASE_TOKEN), else client.conf's. */
    if (rgpu_client_setup(&conf, servers, sizeof(servers), rgpu__cu.why, sizeof(rgpu__cu.why)) != 0)
        return;
    timeout_ms = conf.connect_timeout_ms;
    if (!*env) {
        snprintf(rgpu__cu.why, sizeof(rgpu__cu.why),
                 "neither RGPU_SERVERS nor RGPU_LEASE_TOKEN is set, nor servers in %.200s, so rgpu's CUDA "
                 "runtime has no GPU to use (ask for one with srun --rgpu=1:api=cuda or rgpu alloc --api cuda)",
                 conf.opt.file[0] ? conf.opt.file : "client.conf");
        return;
    }
    uname(&uts);
    gethostname(host, sizeof(host) - 1);
    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.client_arch = uts.machine;
    hello.api = RGPU__API_FAMILY__API_CUDA;
    hello.client_host = host;
    hello.client_pid = (uint32_t)getpid();
    hello.lease_token = (char *)token;

    list = strdup(env);
    n = strlen(env) / 2 + 1;    /* at least two characters per address but the last */
    rgpu__cu.servers = list ? calloc(n, sizeof(*rgpu__cu.servers)) : NULL;
    if (!rgpu__cu.servers) {
        snprintf(rgpu__cu.why, sizeof(rgpu__cu.why), "out of memory");
        free(list);
        return;
    }
    for (char *addr = strtok_r(list, ", ", &save); addr; addr = strtok_r(NULL, ", ", &save)) {
        rgpu_cu_server_t *server = &rgpu__cu.servers[rgpu__cu.num_servers++];
        char reason[256];
        rgpu_status_t status;

        snprintf(server->addr, sizeof(server->addr), "%s", addr);
        status = rgpu_conn_open(addr, &hello, timeout_ms, NULL, NULL, &server->conn, &server->hello, reason,
                                sizeof(reason));
        if (status != RGPU_OK) {
            server->conn = NULL;
            /* A refusal carries the server's own reason (no CUDA on that
             * node, a lease for another server, ...). */
            snprintf(rgpu__cu.why, sizeof(rgpu__cu.why), "rgpu server %s %s: %s", addr,
                     status == RGPU_ERR_REFUSED ? "refused the CUDA session" : "cannot be reached", reason);
            fprintf(stderr, "rgpu: %s; its GPUs are not available\n", rgpu__cu.why);
            continue;
        }
        if (!server->hello->little_endian) {
            snprintf(rgpu__cu.why, sizeof(rgpu__cu.why),
                     "rgpu server %s is big-endian, which this client does not support", addr);
            fprintf(stderr, "rgpu: %s\n", rgpu__cu.why);
            continue;
        }
        for (size_t i = 0; i < server->hello->n_devices; i++) {
            rgpu_cu_device_t *d = &rgpu__cu.devices[rgpu__cu.num_devices];

            if (rgpu__cu.num_devices == RGPU_CU_MAX_DEVICES) {
                fprintf(stderr, "rgpu: only the first %d GPUs are used\n", RGPU_CU_MAX_DEVICES);
                break;
            }
            d->server = server;
            d->index = server->hello->devices[i]->index;
            if (rgpu_cu_device_fill(d, server->hello->devices[i]) != 0) {
                fprintf(stderr, "rgpu: server %s's device %u is not a CUDA device; skipped\n", addr, d->index);
                memset(d, 0, sizeof(*d));
                continue;
            }
            rgpu__cu.num_devices++;
        }
    }
    free(list);
    if (!rgpu__cu.num_devices && !rgpu__cu.why[0])
        snprintf(rgpu__cu.why, sizeof(rgpu__cu.why), "the rgpu servers (%.400s) have no CUDA device",
                 env);
}

cudaError_t rgpu__cu_init(void)
{
    static int told;

    pthread_once(&rgpu_cu_once, rgpu_cu_init_once);
    if (rgpu__cu.num_devices)
        return cudaSuccess;
    if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "rgpu: no CUDA device: %s\n", rgpu__cu.why);
    return cudaErrorNoDevice;
}

rgpu_cu_device_t *rgpu__cu_device(int dev, cudaError_t *err)
{
    rgpu_cu_device_t *d;

    if ((*err = rgpu__cu_init()) != cudaSuccess)
        return NULL;
    if (dev < 0 || dev >= rgpu__cu.num_devices) {
        *err = cudaErrorInvalidDevice;
        return NULL;
    }
    d = &rgpu__cu.devices[dev];
    if ((*err = (cudaError_t)atomic_load(&d->sticky)) != cudaSuccess)
        return NULL;
    return d;
}

cudaError_t rgpu__cu_link_lost(rgpu_cu_device_t *d)
{
    const char *reason = NULL;
    int expected = 0;

    rgpu_conn_health(d->server->conn, &reason);
    if (atomic_compare_exchange_strong(&d->sticky, &expected, cudaErrorDevicesUnavailable))
        fprintf(stderr, "rgpu: the link to rgpu server %s failed (%s); its GPUs are unavailable from now on\n",
                d->server->addr, reason ? reason : "unknown reason");
    return cudaErrorDevicesUnavailable;
}

cudaError_t rgpu__cu_post(rgpu_cu_device_t *d, Rgpu__MsgType type, const ProtobufCMessage *msg,
                          const void *bulk, uint64_t bulk_len)
{
    if (rgpu_conn_post(d->server->conn, (uint16_t)type, msg, bulk, bulk_len) != RGPU_OK)
        return rgpu__cu_link_lost(d);
    if (rgpu_conn_sync_mode()) {
        /* RGPU_SYNC=1, for debugging: each call waits until the device has
         * done it, so that its error is its own. */
        Rgpu__CuDeviceSync req = RGPU__CU_DEVICE_SYNC__INIT;
        Rgpu__CuStatusReply *reply;
        rgpu_call_t call = {0};
        cudaError_t err;

        req.device = d->index;
        err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_DEVICE_SYNC, &req.base, NULL, 0,
                            RGPU__MSG_TYPE__MSG_CU_STATUS_REPLY, &rgpu__cu_status_reply__descriptor, &call,
                            (ProtobufCMessage **)&reply);
        if (err != cudaSuccess)
            return err;
        err = rgpu__cu_sync_result(d, reply->cu_error);
        rgpu__cu_status_reply__free_unpacked(reply, NULL);
        rgpu_call_cleanup(&call);
        return err;
    }
    return cudaSuccess;
}

cudaError_t rgpu__cu_call(rgpu_cu_device_t *d, Rgpu__MsgType type, const ProtobufCMessage *msg,
                          const void *bulk, uint64_t bulk_len, Rgpu__MsgType reply_type,
                          const ProtobufCMessageDescriptor *reply_desc, rgpu_call_t *call,
                          ProtobufCMessage **reply_p)
{
    ProtobufCMessage *reply;

    if (rgpu_conn_call(d->server->conn, (uint16_t)type, msg, bulk, bulk_len, call) != RGPU_OK) {
        rgpu_call_cleanup(call);
        return rgpu__cu_link_lost(d);
    }
    if (call->reply_type != (uint16_t)reply_type ||
        !(reply = protobuf_c_message_unpack(reply_desc, NULL, call->body_len, call->body))) {
        fprintf(stderr, "rgpu: server %s answered message %d with an unexpected reply (type %u)\n",
                d->server->addr, (int)type, call->reply_type);
        rgpu_call_cleanup(call);
        return cudaErrorUnknown;
    }
    *reply_p = reply;
    return cudaSuccess;
}

cudaError_t rgpu__cu_sync_result(rgpu_cu_device_t *d, int32_t cu_error)
{
    cudaError_t err = rgpu__cu_from_cu(cu_error);
    cudaError_t deferred = rgpu__cu_from_cu(rgpu_conn_take_deferred_error(d->server->conn));

    if (err == cudaSuccess)
        err = deferred;
    if (rgpu__cu_is_sticky(err)) {
        int expected = 0;

        atomic_compare_exchange_strong(&d->sticky, &expected, (int)err);
    }
    return err;
}

/* ---- device management ---- */

RGPU_CUDA_EXPORT cudaError_t cudaGetDeviceCount(int *count)
{
    cudaError_t err;

    if (!count)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    err = rgpu__cu_init();
    *count = rgpu__cu.num_devices;
    return rgpu__cu_fail(err);
}

RGPU_CUDA_EXPORT cudaError_t cudaGetDevice(int *device)
{
    cudaError_t err;

    if (!device)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    *device = rgpu_cu_current_device;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaSetDevice(int device)
{
    cudaError_t err;

    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (device < 0 || device >= rgpu__cu.num_devices)
        return rgpu__cu_fail(cudaErrorInvalidDevice);
    rgpu_cu_current_device = device;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaInitDevice(int device, unsigned int deviceFlags, unsigned int flags)
{
    cudaError_t err;

    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (device < 0 || device >= rgpu__cu.num_devices)
        return rgpu__cu_fail(cudaErrorInvalidDevice);
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaSetDeviceFlags(unsigned int flags)
{
    cudaError_t err;
    rgpu_cu_device_t *d = rgpu__cu_device(rgpu_cu_current_device, &err);

    if (!d)
        return rgpu__cu_fail(err);
    /* Scheduling flags (spin, yield, blocking sync) concern the host thread
     * that waits: here it waits on a socket whatever they say. */
    d->flags = flags;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaGetDeviceFlags(unsigned int *flags)
{
    cudaError_t err;
    rgpu_cu_device_t *d = rgpu__cu_device(rgpu_cu_current_device, &err);

    if (!flags)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!d)
        return rgpu__cu_fail(err);
    *flags = d->flags;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    cudaError_t err;

    if (!prop)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (device < 0 || device >= rgpu__cu.num_devices)
        return rgpu__cu_fail(cudaErrorInvalidDevice);
    *prop = rgpu__cu.devices[device].prop;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    cudaError_t err;
    const rgpu_cu_device_t *d;

    if (!value)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (device < 0 || device >= rgpu__cu.num_devices)
        return rgpu__cu_fail(cudaErrorInvalidDevice);
    d = &rgpu__cu.devices[device];
    if ((int)attr <= 0 || (int)attr >= RGPU_CU_MAX_ATTRS || !d->has_attr[attr])
        return rgpu__cu_fail(cudaErrorInvalidValue);
    *value = d->attrs[attr];
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceGetStreamPriorityRange(int *leastPriority, int *greatestPriority)
{
    cudaError_t err;

    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    /* The range every CUDA GPU since Kepler reports. */
    if (leastPriority)
        *leastPriority = 0;
    if (greatestPriority)
        *greatestPriority = rgpu__cu.devices[rgpu_cu_current_device].prop.streamPrioritiesSupported ? -5 : 0;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceGetPCIBusId(char *pciBusId, int len, int device)
{
    cudaError_t err;
    const rgpu_cu_device_t *d;

    if (!pciBusId || len <= 0)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (device < 0 || device >= rgpu__cu.num_devices)
        return rgpu__cu_fail(cudaErrorInvalidDevice);
    d = &rgpu__cu.devices[device];
    /* The bus id on the server: it names the GPU there, not here. */
    snprintf(pciBusId, (size_t)len, "%08x:%02x:%02x.0", d->prop.pciDomainID, d->prop.pciBusID, d->prop.pciDeviceID);
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceCanAccessPeer(int *canAccessPeer, int device, int peerDevice)
{
    cudaError_t err;

    if (!canAccessPeer)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (device < 0 || device >= rgpu__cu.num_devices || peerDevice < 0 || peerDevice >= rgpu__cu.num_devices)
        return rgpu__cu_fail(cudaErrorInvalidDevice);
    /* Peer access is not carried over rgpu (yet). */
    *canAccessPeer = 0;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceSetCacheConfig(enum cudaFuncCache cacheConfig)
{
    /* A preference the driver may ignore; CUDA documents it so. */
    return rgpu__cu_fail(rgpu__cu_init());
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceGetCacheConfig(enum cudaFuncCache *pCacheConfig)
{
    if (!pCacheConfig)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    *pCacheConfig = cudaFuncCachePreferNone;
    return rgpu__cu_fail(rgpu__cu_init());
}

RGPU_CUDA_EXPORT cudaError_t cudaDriverGetVersion(int *driverVersion)
{
    if (!driverVersion)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    /* Without a device there is no driver: CUDA answers 0 then. */
    *driverVersion = rgpu__cu_init() == cudaSuccess ? rgpu__cu.devices[0].driver_version : 0;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaRuntimeGetVersion(int *runtimeVersion)
{
    if (!runtimeVersion)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    *runtimeVersion = CUDART_VERSION;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceSynchronize(void)
{
    cudaError_t err;
    rgpu_cu_device_t *d = rgpu__cu_device(rgpu_cu_current_device, &err);
    Rgpu__CuDeviceSync req = RGPU__CU_DEVICE_SYNC__INIT;
    Rgpu__CuStatusReply *reply;
    rgpu_call_t call = {0};
    cudaError_t pending;

    if (!d)
        return rgpu__cu_fail(err);
    req.device = d->index;
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_DEVICE_SYNC, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CU_STATUS_REPLY, &rgpu__cu_status_reply__descriptor, &call,
                        (ProtobufCMessage **)&reply);
    pending = rgpu__cu_pending_wait(d, 0, 1, 0);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    err = rgpu__cu_sync_result(d, reply->cu_error);
    rgpu__cu_status_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return rgpu__cu_fail(err != cudaSuccess ? err : pending);
}

RGPU_CUDA_EXPORT cudaError_t cudaDeviceReset(void)
{
    cudaError_t err;
    int dev = rgpu_cu_current_device;
    rgpu_cu_device_t *d;
    Rgpu__CuDeviceReset req = RGPU__CU_DEVICE_RESET__INIT;
    Rgpu__CuStatusReply *reply;
    rgpu_call_t call = {0};

    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    d = &rgpu__cu.devices[dev];
    if (atomic_load(&d->sticky) == cudaErrorDevicesUnavailable)
        return rgpu__cu_fail(cudaErrorDevicesUnavailable);
    req.device = d->index;
    rgpu__cu_pending_wait(d, 0, 1, 0);
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_DEVICE_RESET, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CU_STATUS_REPLY, &rgpu__cu_status_reply__descriptor, &call,
                        (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    err = rgpu__cu_from_cu(reply->cu_error);
    rgpu__cu_status_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    /* A reset forgets the device's earlier failures, sticky or not, and
     * the calling thread's record of them. */
    rgpu_conn_take_deferred_error(d->server->conn);
    if (err == cudaSuccess) {
        rgpu__cu_clear_error();
        atomic_store(&d->sticky, 0);
        rgpu__cu_mem_forget_device(dev);
        rgpu__cu_vars_forget_device(dev);
    }
    return rgpu__cu_fail(err);
}

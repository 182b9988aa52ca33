/*
 * The CUDA backend of an rgpu-server built without the CUDA toolkit (no
 * cuda.h at build time): it opens nothing, and a client asking for CUDA is
 * told why. One stub instead of #ifdefs through the callers.
 */
#include "backend.h"

static rgpu_status_t rgpu_cuda_none_open(const rgpu_server_config_t *config,
                                         rgpu_backend_t **backend_p)
{
    (void)config;
    (void)backend_p;
    return RGPU_ERR_UNSUPPORTED;
}

static const char *rgpu_cuda_none_open_failure(void)
{
    return "this rgpu-server was built without the CUDA toolkit (cuda.h)";
}

const rgpu_backend_ops_t rgpu_backend_cuda_ops = {
    .name = "cuda",
    .api = RGPU__API_FAMILY__API_CUDA,
    .open = rgpu_cuda_none_open,
    .open_failure = rgpu_cuda_none_open_failure,
};

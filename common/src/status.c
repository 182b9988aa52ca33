#include "rgpu/status.h"

const char *rgpu_status_str(rgpu_status_t status)
{
    switch (status) {
#define RGPU_STATUS_CASE(name, value, str) case name: return str;
        RGPU_STATUS_LIST(RGPU_STATUS_CASE)
#undef RGPU_STATUS_CASE
    }
    return "unknown status";
}

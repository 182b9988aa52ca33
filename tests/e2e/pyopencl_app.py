#!/usr/bin/python3
"""A pyopencl program as numerical Python code uses OpenCL, every result
checked against numpy (tests/e2e/pyopencl.sh runs it on local PoCL and
through rgpu, twice each, and compares the outputs).

  pyopencl_app.py --platform NAME --cache cold|warm

--platform: the OpenCL platform name the context must be on (it is chosen by
  PYOPENCL_CTX, as pyopencl users do; the name is checked here).
--cache: pyopencl's binary cache (PYOPENCL_CACHE_DIR, else XDG_CACHE_HOME)
  must be empty (cold: every program is built from source and its binary
  saved) or hold every program (warm: every program is created from its
  cached binary, clCreateProgramWithBinary + clBuildProgram).

Prints one "PASS <check>" line per check, in a fixed order, then "ALL N
checks PASS", and exits 0. A wrong result ends its section with "FAIL
<check>: ..." and the first differing element; an exception (a refused
build, say) ends it with "FAIL <section>: <exception>" and its traceback on
stderr; the other sections still run, and the program exits 1. The output
holds no timing, addresses or platform-specific text, so it is the same on
every platform that computes the same results.
"""

import argparse
import hashlib
import logging
import os
import sys
import traceback
import warnings

import numpy as np

# pyopencl's cache falls back to a source build, with a warning only, when a
# cached binary does not load: that must fail this program instead.
warnings.filterwarnings("error", message=".*caching failed.*")

import pyopencl as cl  # noqa: E402
import pyopencl.array as cla  # noqa: E402
import pyopencl.clmath as clmath  # noqa: E402
import pyopencl.clrandom as clrandom  # noqa: E402
from pyopencl.elementwise import ElementwiseKernel  # noqa: E402
from pyopencl.reduction import ReductionKernel  # noqa: E402
from pyopencl.scan import GenericScanKernel  # noqa: E402


class CacheCounter(logging.Handler):
    """Counts pyopencl.cache's "binary cache hit" / "miss" debug messages."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.hits = 0
        self.misses = 0

    def emit(self, record):
        msg = record.getMessage()
        if "binary cache hit" in msg:
            self.hits += 1
        elif "binary cache miss" in msg:
            self.misses += 1


CHECKS = 0


class CheckFailed(Exception):
    pass


def fail(name, msg):
    raise CheckFailed("FAIL %s: %s" % (name, msg))


def ok(name):
    global CHECKS
    CHECKS += 1
    print("PASS %s" % name, flush=True)


def check(name, got, want, rtol=0.0, atol=0.0):
    """got and want equal (exactly, or within rtol/atol for floats)."""
    got = got.get() if isinstance(got, cla.Array) else np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        fail(name, "shape %s, expected %s" % (got.shape, want.shape))
    if got.dtype != want.dtype:
        fail(name, "dtype %s, expected %s" % (got.dtype, want.dtype))
    if rtol == 0.0 and atol == 0.0:
        bad = got != want
    else:
        bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if np.any(bad):
        idx = np.argwhere(bad)
        first = tuple(idx[0])
        fail(name, "%d of %d elements differ; first at %s: got %r, expected %r"
             % (len(idx), got.size, first, got[first], want[first]))
    ok(name)


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


PLAIN_SRC = r"""
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
/* 64-bit scalars by value beside buffers: an LCG step and a scaled copy. */
__kernel void lcg_scale(__global const ulong *in, __global ulong *out,
                        __global double *dout, ulong mul, ulong add,
                        double scale, uint n)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    out[i] = in[i] * mul + add;
    dout[i] = (double)(in[i] & 0xffffffffUL) * scale;
}

/* Local memory given as a kernel argument (no buffer): per-group sums. */
__kernel void group_sum(__global const long *in, __global long *out,
                        __local long *scratch)
{
    size_t l = get_local_id(0), g = get_group_id(0), n = get_local_size(0);
    scratch[l] = in[get_global_id(0)];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t s = n / 2; s > 0; s /= 2) {
        if (l < s)
            scratch[l] += scratch[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0)
        out[g] = scratch[0];
}
"""


def section_array(S):
    """pyopencl.array: transfers, arithmetic, reductions, scans."""
    queue, n, rng = S.queue, S.n, S.rng("array")
    a32 = rng.standard_normal(n).astype(np.float32)
    b32 = (rng.random(n) + 0.5).astype(np.float32)
    a64 = rng.standard_normal(n)
    b64 = rng.random(n) + 0.5
    i32 = rng.integers(-1000, 1000, n).astype(np.int32)
    u64 = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    da32, db32 = cla.to_device(queue, a32), cla.to_device(queue, b32)
    da64, db64 = cla.to_device(queue, a64), cla.to_device(queue, b64)
    di32, du64 = cla.to_device(queue, i32), cla.to_device(queue, u64)

    check("array round trip float32", da32, a32)
    check("array round trip uint64", du64, u64)
    check("array float32 a+b", da32 + db32, a32 + b32)
    check("array float32 2a-3b", 2 * da32 - 3 * db32,
          (2 * a32 - 3 * b32).astype(np.float32), rtol=1e-6, atol=1e-6)
    check("array float64 a*b", da64 * db64, a64 * b64)
    check("array float64 a/b", da64 / db64, a64 / b64, rtol=1e-15)
    check("array float64 a**2", da64 ** 2, a64 ** 2, rtol=1e-15)
    check("array int32 abs", abs(di32), np.abs(i32))
    check("array int32 3*i+7", 3 * di32 + 7, 3 * i32 + 7)
    check("array uint64 xor", du64 ^ np.uint64(0x9E3779B97F4A7C15),
          u64 ^ np.uint64(0x9E3779B97F4A7C15))
    check("array astype float32->float64", da32.astype(np.float64),
          a32.astype(np.float64))
    check("array slice", da64[10:n - 10], a64[10:n - 10])
    check("array arange", cla.arange(queue, 0, n, 1, dtype=np.int32),
          np.arange(n, dtype=np.int32))
    check("array if_positive", cla.if_positive(da64, da64, -da64), np.abs(a64))
    check("array maximum", cla.maximum(da64, db64), np.maximum(a64, b64))
    check("array sum float64", cla.sum(da64).get(), np.sum(a64), rtol=1e-10)
    check("array sum int32", cla.sum(di32).get(), np.sum(i32, dtype=np.int32))
    check("array dot float64", cla.dot(da64, db64).get(), np.dot(a64, b64), rtol=1e-10)
    check("array max/min float32",
          np.array([cla.max(da32).get(), cla.min(da32).get()]),
          np.array([a32.max(), a32.min()]))
    check("array cumsum int32", cla.cumsum(di32), np.cumsum(i32, dtype=np.int32))
    idx = rng.integers(0, n, 1000).astype(np.int32)
    check("array take", cla.take(da64, cla.to_device(queue, idx)), a64[idx])


def section_elementwise(S):
    """ElementwiseKernel with 64-bit scalars."""
    ctx, queue, n, rng = S.ctx, S.queue, S.n, S.rng("elementwise")
    a64, b64 = rng.standard_normal(n), rng.standard_normal(n)
    u64 = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    da64, db64, du64 = (cla.to_device(queue, x) for x in (a64, b64, u64))
    axpbyz = ElementwiseKernel(
        ctx, "double a, double *x, double b, double *y, double *z",
        "z[i] = a*x[i] + b*y[i]", "axpbyz")
    dz = cla.empty_like(da64)
    axpbyz(np.float64(2.5), da64, np.float64(-0.75), db64, dz)
    # rtol: the device may contract a*x+b*y into an fma.
    check("ElementwiseKernel axpbyz float64", dz, 2.5 * a64 - 0.75 * b64,
          rtol=1e-13, atol=1e-15)

    mix = ElementwiseKernel(
        ctx, "unsigned long *x, unsigned long mul, unsigned long key, unsigned long *out",
        "out[i] = (x[i] * mul) ^ key", "mix64")
    dout = cla.empty_like(du64)
    mul, key = np.uint64(6364136223846793005), np.uint64(0xFFFFFFFF00000001)
    mix(du64, mul, key, dout)
    with np.errstate(over="ignore"):
        check("ElementwiseKernel uint64 scalars", dout, (u64 * mul) ^ key)


def section_reduction(S):
    """ReductionKernel and GenericScanKernel."""
    ctx, queue, n, rng = S.ctx, S.queue, S.n, S.rng("reduction")
    a64, b64 = rng.standard_normal(n), rng.standard_normal(n)
    u64 = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    da64, db64, du64 = (cla.to_device(queue, x) for x in (a64, b64, u64))
    dot64 = ReductionKernel(ctx, np.float64, neutral="0",
                            reduce_expr="a+b", map_expr="x[i]*y[i]",
                            arguments="__global const double *x, __global const double *y")
    check("ReductionKernel dot float64", dot64(da64, db64).get(),
          np.dot(a64, b64), rtol=1e-10)
    maxu64 = ReductionKernel(ctx, np.uint64, neutral="0",
                             reduce_expr="max(a, b)", map_expr="x[i] >> shift",
                             arguments="__global const unsigned long *x, unsigned int shift")
    check("ReductionKernel max uint64", maxu64(du64, np.uint32(3)).get(),
          (u64 >> np.uint64(3)).max())

    i64 = rng.integers(-10**12, 10**12, n).astype(np.int64)
    scan = GenericScanKernel(ctx, np.int64, arguments="__global long *ary, __global long *out",
                             input_expr="ary[i]", scan_expr="a+b", neutral="0",
                             output_statement="out[i] = prev_item")
    di64, dscan = cla.to_device(queue, i64), cla.empty(queue, n, np.int64)
    scan(di64, dscan)
    check("GenericScanKernel exclusive int64",
          dscan, np.concatenate(([0], np.cumsum(i64)[:-1])).astype(np.int64))


def section_clmath(S):
    """pyopencl.clmath against numpy's functions."""
    queue, n, rng = S.queue, S.n, S.rng("clmath")
    a64, b64 = rng.standard_normal(n), rng.random(n) + 0.5
    a32 = rng.standard_normal(n).astype(np.float32)
    pos64 = np.abs(a64) + 0.1
    da64, db64, da32, dpos64 = (cla.to_device(queue, x) for x in (a64, b64, a32, pos64))
    check("clmath sin float64", clmath.sin(da64), np.sin(a64), rtol=1e-13, atol=1e-15)
    check("clmath exp float64", clmath.exp(da64), np.exp(a64), rtol=1e-13)
    check("clmath log float64", clmath.log(dpos64), np.log(pos64), rtol=1e-13, atol=1e-15)
    check("clmath sqrt float64", clmath.sqrt(dpos64), np.sqrt(pos64), rtol=1e-15)
    check("clmath atan2 float64", clmath.atan2(da64, db64), np.arctan2(a64, b64),
          rtol=1e-13, atol=1e-15)
    check("clmath cos float32", clmath.cos(da32), np.cos(a32), rtol=1e-5, atol=1e-6)
    check("clmath tanh float32", clmath.tanh(da32), np.tanh(a32), rtol=1e-5, atol=1e-6)


def section_clrandom(S):
    """clrandom's Philox: counter-based, so the bits are fixed by the seed
    (their digest is printed: every platform must give the same)."""
    gen = clrandom.PhiloxGenerator(S.ctx, seed=2024)
    r = gen.uniform(S.queue, S.n, np.float64, a=0.0, b=1.0).get()
    if not (r.min() >= 0.0 and r.max() < 1.0 and abs(r.mean() - 0.5) < 0.01):
        fail("clrandom Philox uniform", "min %r max %r mean %r" % (r.min(), r.max(), r.mean()))
    ok("clrandom Philox uniform float64 in [0,1), mean 0.5 (bits %s)" % digest(r))


def section_program(S):
    """A plain Program: ulong/double scalars, buffers, local memory, maps."""
    ctx, queue, n, rng = S.ctx, S.queue, S.n, S.rng("program")
    u64 = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    a64 = rng.standard_normal(n)
    prg = cl.Program(ctx, PLAIN_SRC).build()
    how = prg._build_duration_info[0]
    want_how = "cache retrieval" if S.cache == "warm" else "binary cache miss"
    if want_how not in how:
        fail("plain Program build", "built by %r, expected a %s" % (how, want_how))
    ok("plain Program built (%s)" % S.cache)
    lcg = prg.lcg_scale
    if lcg.function_name != "lcg_scale" or lcg.num_args != 7:
        fail("kernel info", "%r with %d args" % (lcg.function_name, lcg.num_args))
    ok("kernel info: lcg_scale, 7 arguments")
    sizes = prg.get_info(cl.program_info.BINARY_SIZES)
    if len(sizes) != 1 or sizes[0] <= 0:
        fail("program binary", "binary sizes %r" % (sizes,))
    ok("program has one device binary")

    mf = cl.mem_flags
    bin_ = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=u64)
    bout = cl.Buffer(ctx, mf.WRITE_ONLY, u64.nbytes)
    bdout = cl.Buffer(ctx, mf.READ_WRITE, a64.nbytes)
    mul2, add2 = np.uint64(2862933555777941757), np.uint64(3037000493)
    scale = np.float64(2.0 ** -32)
    low = (u64 & np.uint64(0xFFFFFFFF)).astype(np.float64)
    gsize = ((n + 63) // 64) * 64
    ev = lcg(queue, (gsize,), (64,), bin_, bout, bdout, mul2, add2, scale, np.uint32(n))
    got_u, got_d = np.empty_like(u64), np.empty_like(a64)
    cl.enqueue_copy(queue, got_u, bout, wait_for=[ev])
    cl.enqueue_copy(queue, got_d, bdout, wait_for=[ev])
    queue.finish()
    with np.errstate(over="ignore"):
        check("Program lcg_scale ulong scalars", got_u, u64 * mul2 + add2)
    check("Program lcg_scale double scalar", got_d, low * scale)
    if not ev.profile.end >= ev.profile.start > 0:
        fail("event profiling", "start %d end %d" % (ev.profile.start, ev.profile.end))
    ok("event profiling times of the kernel")

    # The same kernel again, its scalars set one by one.
    lcg.set_arg(3, np.uint64(1))
    lcg.set_arg(4, np.uint64(2**64 - 1))
    lcg.set_arg(5, np.float64(-1.5))
    cl.enqueue_nd_range_kernel(queue, lcg, (gsize,), (64,))
    cl.enqueue_copy(queue, got_u, bout)
    cl.enqueue_copy(queue, got_d, bdout)
    with np.errstate(over="ignore"):
        check("Program set_arg ulong 2^64-1", got_u, u64 + np.uint64(2**64 - 1))
    check("Program set_arg double -1.5", got_d, low * -1.5)

    wg, groups = 128, 64
    vals = rng.integers(-2**40, 2**40, wg * groups).astype(np.int64)
    bvals = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=vals)
    bsums = cl.Buffer(ctx, mf.WRITE_ONLY, groups * 8)
    prg.group_sum(queue, (wg * groups,), (wg,), bvals, bsums, cl.LocalMemory(wg * 8))
    sums = np.empty(groups, np.int64)
    cl.enqueue_copy(queue, sums, bsums)
    check("Program local memory argument", sums, vals.reshape(groups, wg).sum(axis=1))

    # Writing through a mapped buffer, reading it back.
    mapped, _ = cl.enqueue_map_buffer(queue, bdout, cl.map_flags.WRITE, 0,
                                      a64.shape, a64.dtype)
    mapped[:] = a64
    mapped.base.release(queue)
    back = np.empty_like(a64)
    cl.enqueue_copy(queue, back, bdout)
    check("map/unmap buffer write", back, a64)
    queue.finish()


SECTIONS = [section_array, section_elementwise, section_reduction, section_clmath,
            section_clrandom, section_program]


class State:
    def __init__(self, ctx, queue, n, cache):
        self.ctx, self.queue, self.n, self.cache = ctx, queue, n, cache

    @staticmethod
    def rng(name):
        """Each section's own random numbers: a failed section leaves the
        others' inputs as they are."""
        return np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8],
                                                    "little"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--platform", required=True)
    ap.add_argument("--cache", choices=("cold", "warm"), required=True)
    ap.add_argument("--n", type=int, default=100003)
    args = ap.parse_args()

    counter = CacheCounter()
    cache_log = logging.getLogger("pyopencl.cache")
    cache_log.setLevel(logging.DEBUG)
    cache_log.addHandler(counter)
    cache_log.propagate = False

    ctx = cl.create_some_context(interactive=False)
    dev = ctx.devices[0]
    if dev.platform.name != args.platform:
        print("FAIL platform: the context is on platform %r, expected %r"
              % (dev.platform.name, args.platform))
        return 1
    if not dev.double_fp_config:
        print("FAIL platform: device %r has no double precision" % dev.name)
        return 1
    ok("context on the expected platform, fp64 device")
    queue = cl.CommandQueue(
        ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
    S = State(ctx, queue, args.n, args.cache)

    # Every section runs, so that one run shows every failure; the first
    # line of an exception's message is the FAIL line, the traceback goes
    # to stderr.
    failed = []
    for sec in SECTIONS:
        name = sec.__name__[len("section_"):]
        try:
            sec(S)
        except CheckFailed as e:
            print(e, flush=True)
            failed.append(name)
        except Exception as e:  # noqa: BLE001
            first = (str(e).strip().splitlines() or [""])[0]
            print("FAIL %s: %s: %s" % (name, type(e).__name__, first), flush=True)
            for line in str(e).strip().splitlines()[1:]:
                if "refused" in line or "error" in line.lower():
                    print("    %s" % line, flush=True)
            traceback.print_exc()
            failed.append(name)

    # The binary cache did what the run asked. A cold run may find a program
    # it built earlier in the same run.
    try:
        if args.cache == "cold":
            if counter.misses == 0:
                fail("binary cache", "cold run: %d misses, %d hits (expected misses)"
                     % (counter.misses, counter.hits))
            ok("binary cache cold: %d programs built from source and saved, %d found again"
               % (counter.misses, counter.hits))
        else:
            if counter.hits == 0 or counter.misses != 0:
                fail("binary cache", "warm run: %d hits, %d misses (expected hits only)"
                     % (counter.hits, counter.misses))
            ok("binary cache warm: %d programs created from cached binaries" % counter.hits)
    except CheckFailed as e:
        print(e, flush=True)
        failed.append("binary cache")

    if failed:
        print("FAILED %d section(s): %s (%d checks passed)"
              % (len(failed), ", ".join(failed), CHECKS), flush=True)
        return 1
    print("ALL %d checks PASS" % CHECKS, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

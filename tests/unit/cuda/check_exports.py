#!/usr/bin/env python3
"""unit.cuda.exports: rgpu's libcudart.so.13 against the toolkit's.

    check_exports.py OURS [TOOLKIT]

A program built with nvcc -cudart shared loads whatever libcudart.so.13 the
dynamic linker finds, and binds each CUDA function by name and version
node. So rgpu's must have the same soname, the same version definitions and
every function the toolkit's exports, under the same version. Without the
toolkit's library (a cross build, headers only) the test is skipped (77),
not passed."""
import os
import re
import subprocess
import sys


def readelf(*args):
    return subprocess.run(['readelf', *args], check=True, capture_output=True, text=True).stdout


def soname(lib):
    m = re.search(r'\(SONAME\)\s+Library soname: \[(.*?)\]', readelf('-d', lib))
    return m.group(1) if m else None


def verdefs(lib):
    out = readelf('-V', lib)
    sect = re.search(r"Version definition section.*?\n\n", out, re.S)
    return sorted(re.findall(r'Name: (\S+)', sect.group(0))) if sect else []


def functions(lib):
    funcs = set()
    for line in readelf('--dyn-syms', '-W', lib).splitlines():
        f = line.split()
        if len(f) >= 8 and f[3] == 'FUNC' and f[6] != 'UND' and '@' in f[7]:
            funcs.add(f[7].replace('@@', '@'))
    return funcs


def main():
    ours = sys.argv[1]
    theirs = sys.argv[2] if len(sys.argv) > 2 else ''
    if not theirs or not os.path.exists(theirs):
        print('SKIP: no toolkit libcudart.so.13 to compare with')
        return 77
    failures = []
    if soname(ours) != soname(theirs):
        failures.append('soname %r, the toolkit\'s is %r' % (soname(ours), soname(theirs)))
    if verdefs(ours) != verdefs(theirs):
        failures.append('version definitions %s, the toolkit\'s are %s' % (verdefs(ours), verdefs(theirs)))
    missing = sorted(functions(theirs) - functions(ours))
    extra = sorted(functions(ours) - functions(theirs))
    if missing:
        failures.append('%d functions missing: %s' % (len(missing), ', '.join(missing[:20])))
    if extra:
        failures.append('%d functions the toolkit does not export: %s' % (len(extra), ', '.join(extra[:20])))
    for f in failures:
        print('FAIL:', f)
    if failures:
        return 1
    print('PASS: soname %s, version node %s, %d functions as the toolkit\'s'
          % (soname(ours), verdefs(ours)[0], len(functions(ours))))
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""cffi out-of-line API-mode build of `torswitch._core` from native/core.

Every native/core/*.c is compiled in, and every native/ffi/*.cdef is concatenated into the
declarations, so a new core module needs no edit here. The same C sources are compiled into the
DPDK data plane, so Python tests exercise exactly the code the data plane runs.
"""

from __future__ import annotations

import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
NATIVE = HERE.parent
ROOT = NATIVE.parent

CDEFS = sorted(HERE.glob("*.cdef"))
SOURCES = sorted(NATIVE.glob("core/*.c"))
HEADERS = sorted((NATIVE / "include" / "tsw").glob("*.h"))

ffibuilder = FFI()
ffibuilder.cdef("\n".join(p.read_text() for p in CDEFS))
ffibuilder.set_source(
    "torswitch._core",
    "\n".join(f'#include "tsw/{h.name}"' for h in HEADERS),
    # Paths relative to the project root: setuptools rejects absolute source paths.
    sources=[str(p.relative_to(ROOT)) for p in SOURCES],
    include_dirs=[str((NATIVE / "include").relative_to(ROOT))],
    extra_compile_args=["-std=c11", "-O3", "-Wall", "-Wextra", "-D_GNU_SOURCE"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

"""The native kernels: everything else about the package is declared in pyproject.toml.

On Linux x86-64 the whole-sequence LSTM and GRU kernels (jaxrnn/_native) are compiled against
XLA's FFI headers (from jaxlib) and oneDNN (the onednn-cpu-gomp wheels), both build requirements.
Elsewhere, or if it fails to build, jaxrnn runs every cell as its lax.scan.
"""

import os
import platform
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup


def _native_kernels() -> list[Extension]:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return []
    import jaxlib

    prefix = Path(sysconfig.get_paths()["data"])  # where the oneDNN wheels put include/, lib/
    return [
        Extension(
            "jaxrnn._native._kernels",
            sources=[
                "jaxrnn/_native/lstm.cc",
                "jaxrnn/_native/gru.cc",
                "jaxrnn/_native/gru_before.cc",
            ],
            depends=["jaxrnn/_native/common.h"],  # rebuilt when the shared header changes
            include_dirs=[str(prefix / "include"), os.path.join(jaxlib.__path__[0], "include")],
            # -fno-trapping-math: the gate loops' clamps and exponentials are if-converted into
            # vector code only when floating-point operations may not trap; with the default, GCC
            # keeps them scalar in every clone but the AVX-512 one (seven times slower on AVX2).
            extra_compile_args=["-std=c++17", "-O3", "-g0", "-fopenmp", "-fno-trapping-math", "-w"],
            # libdnnl.so.3 sits in <prefix>/lib, four levels above jaxrnn/_native/ in an
            # installed tree; jaxrnn._native also loads it by path first.
            extra_link_args=[
                f"-L{prefix / 'lib'}",
                "-l:libdnnl.so.3",
                "-lstdc++",
                "-fopenmp",  # GNU OpenMP, the runtime this oneDNN build runs on
                "-lpthread",
                "-Wl,-rpath,$ORIGIN/../../../..",
            ],
            optional=True,  # without a compiler the package still installs, scan only
        )
    ]


setup(ext_modules=_native_kernels())

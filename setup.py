"""The native kernels: everything else about the package is declared in pyproject.toml.

On Linux x86-64 the whole-sequence LSTM and GRU kernels (jaxrnn/_native) are compiled against
XLA's FFI headers (from jaxlib) and oneDNN (the onednn-cpu-gomp wheels), both build requirements.
Elsewhere, or if it fails to build, jaxrnn runs every cell as its lax.scan.
"""

import os
import platform
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


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


class _BuildExtCompilingSourcesAtOnce(build_ext):
    """build_ext with an extension's sources compiled side by side, one compiler process per
    core: the kernels' sources take about 15 s each at -O3, and setuptools compiles them one
    after another."""

    def build_extensions(self):
        compile_sources = self.compiler.compile

        def compile_each_at_once(sources, **options):
            workers = min(len(sources), os.cpu_count() or 1)
            if workers < 2:
                return compile_sources(sources, **options)
            with ThreadPoolExecutor(workers) as pool:
                objects = pool.map(lambda source: compile_sources([source], **options), sources)
                return [name for names in objects for name in names]

        self.compiler.compile = compile_each_at_once
        super().build_extensions()


setup(ext_modules=_native_kernels(), cmdclass={"build_ext": _BuildExtCompilingSourcesAtOnce})

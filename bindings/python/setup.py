"""Builds the shared library and its generated module into the wheel (pyproject.toml).

maturin's `bindings = "uniffi"` cannot be used here: it runs the workspace's `uniffi-bindgen`
with `cargo run` at the workspace root, where the default member is the root crate, not
bindings/ffi. So this does the same two steps itself, with the crate's own generator:

    cargo build -p huddle-ffi --profile wheel
    cargo run -p huddle-ffi --features bindgen --bin uniffi-bindgen -- generate --library ...

HUDDLE_CARGO_ARGS (for example `--frozen`) is added to both cargo commands.
"""

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
MANIFEST = HERE.parent / "ffi" / "Cargo.toml"
PROFILE = "wheel"


def library_name():
    """The shared library's file name on this platform (what the generated module loads)."""
    if sys.platform == "darwin":
        return "libhuddle_ffi.dylib"
    if sys.platform == "win32":
        return "huddle_ffi.dll"
    return "libhuddle_ffi.so"


def cargo(*args):
    extra = shlex.split(os.environ.get("HUDDLE_CARGO_ARGS", ""))
    cmd = ["cargo", args[0], *extra, "--manifest-path", str(MANIFEST), *args[1:]]
    print("running", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE if args[0] == "metadata"
                          else None, text=True)


class BuildWithCargo(build_py):
    """The Python sources, plus `huddle/_ffi/`: the shared library and the generated module."""

    def run(self):
        super().run()
        meta = json.loads(cargo("metadata", "--format-version", "1", "--no-deps").stdout)
        built = pathlib.Path(meta["target_directory"]) / PROFILE / library_name()
        cargo("build", "-p", "huddle-ffi", "--lib", "--profile", PROFILE)
        out = pathlib.Path(self.build_lib) / "huddle" / "_ffi"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, out / library_name())
        cargo("run", "-p", "huddle-ffi", "--features", "bindgen", "--bin", "uniffi-bindgen",
              "--", "generate", "--no-format", "--language", "python", "--out-dir", str(out),
              "--library", str(out / library_name()))
        if not (out / "huddle_ffi.py").is_file():
            raise RuntimeError("uniffi-bindgen generated no huddle_ffi.py")
        (out / "__init__.py").write_text("from .huddle_ffi import *  # noqa: F401,F403\n")
        # The profile keeps the symbol table for uniffi-bindgen; the wheel's copy needs none.
        if sys.platform.startswith("linux") and shutil.which("strip"):
            subprocess.run(["strip", "--strip-all", str(out / library_name())], check=True)


class NativeDistribution(Distribution):
    """A distribution with a native library, installed as platform-specific."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """A wheel for this platform (it carries a native library) and any Python 3 (the module
    loads it through ctypes, not the CPython ABI)."""

    def get_tag(self):
        return "py3", "none", sysconfig.get_platform().replace("-", "_").replace(".", "_")


setup(distclass=NativeDistribution,
      cmdclass={"build_py": BuildWithCargo, "bdist_wheel": PlatformWheel})

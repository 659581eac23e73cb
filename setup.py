"""Build steps pyproject.toml cannot express: the cffi core and generated protobuf code.

Protobuf and gRPC modules are generated from protos/ into torswitch/api/ (git-ignored) by the
protoc bundled with the pinned grpcio-tools, on every build, so generated code always matches the
runtime the same build pins.
"""

from __future__ import annotations

import pathlib
import re
import sys

from setuptools import Command, setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "protos"
API_DIR = ROOT / "torswitch" / "api"


def generate_protos() -> None:
    """Run the bundled protoc over every .proto under protos/ into torswitch/api/."""
    from grpc_tools import protoc  # build-system requirement
    import grpc_tools

    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    API_DIR.mkdir(exist_ok=True)
    (API_DIR / "__init__.py").write_text('"""Generated protobuf and gRPC modules. Never edit."""\n')
    if not sources:
        return
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={API_DIR}",
        f"--pyi_out={API_DIR}",
        f"--grpc_python_out={API_DIR}",
        *sources,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed on: " + " ".join(sources))
    for d in API_DIR.rglob("*"):
        if d.is_dir() and not (d / "__init__.py").exists():
            (d / "__init__.py").write_text("")
    # protoc writes imports relative to the include root (`from hadoop import x_pb2`); the
    # modules live under torswitch.api, so anchor those imports there.
    roots = sorted({pathlib.Path(s).parts[0] for s in sources if len(pathlib.Path(s).parts) > 1})
    pattern = re.compile(r"^(from|import) (" + "|".join(map(re.escape, roots)) + r")([. ])", re.M)
    for f in [*API_DIR.rglob("*.py"), *API_DIR.rglob("*.pyi")]:
        text = f.read_text()
        fixed = pattern.sub(lambda m: f"{m[1]} torswitch.api.{m[2]}{m[3]}", text) if roots else text
        if fixed != text:
            f.write_text(fixed)


class BuildProto(Command):
    """`python setup.py build_proto`: regenerate torswitch/api/ in place."""

    description = "generate protobuf/gRPC modules into torswitch/api"
    user_options: list[tuple[str, str | None, str]] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        generate_protos()


class BuildPyWithProto(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


setup(
    cffi_modules=["native/ffi/build_ffi.py:ffibuilder"],
    cmdclass={"build_py": BuildPyWithProto, "build_proto": BuildProto},
)

"""Build hook: generates the gRPC stubs of belfry's API from the .proto files.

In a checkout the .proto files are read from ../proto and copied to ./proto, so an sdist built
from the checkout carries them; an sdist builds from its own copy. The generated modules land in
src/belfry/v1/ (ignored by git) before the package's files are collected.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
CHECKOUT_PROTO = HERE.parent / "proto"
LOCAL_PROTO = HERE / "proto"
OUT = HERE / "src"
PROTOS = ("belfry/v1/schedules.proto", "belfry/v1/cluster.proto")


def proto_root() -> Path:
    """Copies the checkout's .proto files next to this file (for the sdist) and returns them."""
    if all((CHECKOUT_PROTO / p).is_file() for p in PROTOS):
        for rel in PROTOS:
            target = LOCAL_PROTO / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(CHECKOUT_PROTO / rel, target)
    missing = [p for p in PROTOS if not (LOCAL_PROTO / p).is_file()]
    if missing:
        raise SystemExit(f"belfry: the API's .proto files are missing: {', '.join(missing)}")
    return LOCAL_PROTO


def generate_stubs() -> None:
    """Runs grpc_tools.protoc: messages, gRPC stubs and type stubs (.pyi)."""
    from importlib.resources import files

    from grpc_tools import protoc

    root = proto_root()
    well_known = files("grpc_tools") / "_proto"
    out = OUT / "belfry" / "v1"
    out.mkdir(parents=True, exist_ok=True)
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        *(str(root / p) for p in PROTOS),
    ])
    if status != 0:
        raise SystemExit(f"belfry: protoc failed ({status}) on {root}")
    (out / "__init__.py").write_text('"""Generated from proto/belfry/v1 at build time."""\n')


class BuildWithStubs(build_py):
    """build_py that generates the stubs before it lists the package's modules."""

    def finalize_options(self) -> None:
        generate_stubs()
        super().finalize_options()


proto_root()
setup(
    packages=["belfry", "belfry.v1", "belfry.celery_export"],
    cmdclass={"build_py": BuildWithStubs},
)

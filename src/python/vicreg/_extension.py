"""Loads libvicreg, which registers the ``torch.ops.vicreg`` operators, once per process.

As torchvision/extension.py does, the library is found relative to this package, never by a
build path or the loader's search path. Where: the library installed by ``cmake --install``
into the prefix's lib directory (``LIBRARY_DIR`` in _config.py, generated at configure time,
e.g. ``../../..`` from ``<prefix>/lib/python3/dist-packages/vicreg`` to ``<prefix>/lib``).

Why that copy rather than one placed next to the package: a process holds one libvicreg.
A second copy of the file (another inode) would register the ``vicreg`` operator namespace
again, which LibTorch refuses, as soon as a C++ extension or an embedding program that links
the installed libvicreg meets ``import vicreg``. Loading the installed file itself, through
the soname symlink that C++ programs use too, shares the one copy; and the relative path
holds for any ``cmake --install --prefix P`` because both directories are relative to P.
"""
import os

import torch

from . import _config

# The package's real directory: ".." must be taken from where the files are installed, not
# from a symlink that points at the package.
_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))
LIBRARY = os.path.join(os.path.realpath(os.path.join(_PACKAGE_DIR, _config.LIBRARY_DIR)),
                       _config.LIBRARY_NAME)


def _registered() -> bool:
    """Whether the vicreg operators are already in this process (library loaded or linked)."""
    try:
        torch.ops.vicreg.vicreg_loss
    except (RuntimeError, AttributeError):  # LibTorch 1.x raises RuntimeError, 2.x AttributeError
        return False
    return True


def _load() -> None:
    if _registered():
        return
    if not os.path.isfile(LIBRARY):
        raise ImportError(
            f"vicreg: the shared library {LIBRARY} is missing. The Python package loads the "
            "libvicreg installed next to it by `cmake --install <build> --prefix <prefix>`; "
            "install the library and the package together, into one prefix.")
    try:
        torch.ops.load_library(LIBRARY)
    except OSError as e:
        raise ImportError(
            f"vicreg: cannot load {LIBRARY}: {e}. It must be built against the LibTorch of "
            f"this torch ({torch.__version__}).") from e


_load()

"""Keep C++ exceptions (ONNX Runtime's errors) catchable once GStreamer is loaded.

Debian's ``libgstreamer-1.0.so.0`` links ``libunwind.so.8``, which exports the whole
``_Unwind_*`` API under the same names and versions as ``libgcc_s.so.1``. ``gi`` opens
libgstreamer with global binding, so every shared object loaded after it resolves ``_Unwind_*`` to
libunwind, while objects loaded before it resolved them to libgcc_s. A C++ exception is raised by
``libstdc++``'s ``__cxa_throw`` -> ``_Unwind_RaiseException`` (libstdc++'s binding) and each
cleanup landing pad ends in ``_Unwind_Resume`` (the throwing module's binding): when
libstdc++ was loaded before GStreamer (numpy, torch) and ONNX Runtime's module after it, the two
are different unwinders and the process aborts (SIGABRT) or crashes (SIGSEGV) instead of raising.
See docs/RELIABILITY.md.

Two remedies, both needed:

* :func:`pin_gcc_unwinder` (run by ``import hcml``): load libgcc_s with global binding before
  GStreamer can be, so libgcc_s stays the first ``_Unwind_*`` provider and every later object
  binds to it (a no-op when libunwind already is global: the order cannot change any more);
* :func:`import_consistently` (``import_onnxruntime`` in the ORT backend; torch in ``import hcml``):
  when GStreamer came first anyway (``gst-launch-1.0`` links it, a program may import ``Gst``
  before ``hcml``), read which unwinder libstdc++ is bound to and, if that is libgcc_s while a new
  object would bind to libunwind, load the module with ``RTLD_DEEPBIND`` so that it binds to its
  own dependency, libgcc_s, like libstdc++.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import struct
import sys
from types import ModuleType

UNWIND_SYMBOL = "_Unwind_RaiseException"
_RTLD_DI_LINKMAP = 2


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


class _LinkMap(ctypes.Structure):
    _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p)]


def _libdl() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(None)
        lib.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        lib.dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        return lib
    except (OSError, AttributeError):
        return None


def _object_of(address: int | None) -> str | None:
    """Path of the loaded object that holds ``address``."""
    lib = _libdl()
    if lib is None or not address:
        return None
    info = _DlInfo()
    if not lib.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def pin_gcc_unwinder() -> bool:
    """Load libgcc_s with global binding (True when done); call before GStreamer is loaded."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libgcc_s.so.1", mode=os.RTLD_GLOBAL | os.RTLD_NOW)
    except OSError:
        return False
    return True


def global_unwinder() -> str | None:
    """The object a shared library loaded now would bind ``_Unwind_RaiseException`` to."""
    if _libdl() is None:
        return None
    try:
        fn = getattr(ctypes.CDLL(None), UNWIND_SYMBOL)
    except AttributeError:
        return None  # nothing global provides it yet: a new object binds to its own deps
    return _object_of(ctypes.cast(fn, ctypes.c_void_p).value)


def _loaded(soname: str) -> tuple[int, str] | None:
    """(load bias, path) of ``soname`` when it is already loaded, else None."""
    lib = _libdl()
    if lib is None:
        return None
    try:
        handle = ctypes.CDLL(soname, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)._handle
    except OSError:
        return None
    lm = ctypes.POINTER(_LinkMap)()
    if lib.dlinfo(ctypes.c_void_p(handle), _RTLD_DI_LINKMAP, ctypes.byref(lm)) != 0:
        return None
    return lm.contents.l_addr or 0, lm.contents.l_name.decode()


def _got_slots(path: str, symbol: str) -> list[int]:
    """Offsets (from the load bias) of the GOT slots relocated against ``symbol`` (ELF64 LE)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    slots = []
    for _name, sh_type, _fl, _addr, off, size, link, _info, _al, entsize in sections:
        if sh_type != 4 or not entsize:  # SHT_RELA
            continue
        symtab = sections[link]
        strtab = sections[symtab[6]]
        for r in range(off, off + size, entsize):
            r_offset, r_info = struct.unpack_from("<QQ", data, r)
            sym = r_info >> 32
            if not sym:
                continue
            st_name = struct.unpack_from("<I", data, symtab[4] + sym * symtab[9])[0]
            start = strtab[4] + st_name
            if data[start : data.index(b"\0", start)].decode() == symbol:
                slots.append(r_offset)
    return slots


def bound_unwinder(soname: str = "libstdc++.so.6", symbol: str = UNWIND_SYMBOL) -> str | None:
    """The object ``soname`` (already loaded) has bound ``symbol`` to; None when unknown.

    Reads the library's GOT slot for the symbol; a slot still pointing into the library itself
    (lazy binding, not called yet) will bind to :func:`global_unwinder` on first use.
    """
    found = _loaded(soname)
    if found is None:
        return None
    bias, path = found
    try:
        slots = _got_slots(path, symbol)
    except (OSError, struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None
    for slot in slots:
        target = _object_of(ctypes.c_void_p.from_address(bias + slot).value)
        if target and target != os.path.realpath(path):
            return target
    return global_unwinder() if slots else None


def needs_deepbind() -> bool:
    """True when a C++ module loaded now would bind another unwinder than libstdc++ did."""
    new = global_unwinder()
    if new is None or "libgcc_s" in os.path.basename(new):
        return False  # no provider in the global scope yet, or libgcc_s first: consistent
    bound = bound_unwinder()  # reads libstdc++'s relocations: only once libunwind came first
    if bound is None or bound == new:
        return False
    return "libgcc_s" in os.path.basename(bound)


def import_consistently(name: str) -> ModuleType:
    """``import name``, with ``RTLD_DEEPBIND`` when :func:`needs_deepbind` says so."""
    if name in sys.modules or not needs_deepbind():
        return importlib.import_module(name)
    old = sys.getdlopenflags()
    sys.setdlopenflags(old | os.RTLD_DEEPBIND)
    try:
        return importlib.import_module(name)
    finally:
        sys.setdlopenflags(old)


def import_onnxruntime() -> ModuleType:
    """``import onnxruntime`` bound to the same unwinder as libstdc++."""
    return import_consistently("onnxruntime")

"""Two server settings exporter-toolkit has (Go's crypto/tls) that Python's `ssl` module does
not expose, set on the context's OpenSSL object through the libssl that `_ssl` is linked to:

- accepting any client certificate without verifying it (`RequestClientCert`,
  `RequireAnyClientCert`): `ssl` only knows "verify, and fail the handshake on any error";
- several ECDH groups in preference order (`curve_preferences`): `set_ecdh_curve` takes one.

Before anything is called, the OpenSSL pointer read from the context object is checked against
what `ssl` reports for it; if that fails, `available()` is False and callers refuse the setting
with a clear error rather than guess.
"""

from __future__ import annotations

import _ssl
import ctypes
import ssl
from collections.abc import Sequence
from functools import cache

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
# OpenSSL calls this for every certificate of the client's chain with its own verdict; saying
# yes to each is what Go's RequestClientCert / RequireAnyClientCert do.
_accept_any = _VERIFY_CALLBACK(lambda _preverified, _store: 1)
_NO_CALLBACK = _VERIFY_CALLBACK()  # a NULL function pointer: OpenSSL's own verdict stands
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02


class OpenSSLUnavailableError(Exception):
    pass


@cache
def _libssl() -> ctypes.CDLL | None:
    path = getattr(_ssl, "__file__", None)
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)  # dlsym on it searches the libssl it was linked against
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
        lib.SSL_CTX_set_verify.restype = None
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
    except (OSError, AttributeError):
        return None
    return lib


def _ctx_pointer(context: ssl.SSLContext, lib: ctypes.CDLL) -> int:
    """The SSL_CTX* of `context`: the first field after the object header (CPython's
    PySSLContext), confirmed by reading back the verify mode `ssl` set through it."""
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        raise OpenSSLUnavailableError("no OpenSSL context found")
    saved = context.verify_mode
    try:
        for mode, expected in (
            (ssl.CERT_OPTIONAL, _SSL_VERIFY_PEER),
            (ssl.CERT_REQUIRED, _SSL_VERIFY_PEER | _SSL_VERIFY_FAIL_IF_NO_PEER_CERT),
        ):
            context.verify_mode = mode
            if lib.SSL_CTX_get_verify_mode(pointer) & 0x03 != expected:
                raise OpenSSLUnavailableError("the OpenSSL context does not answer as expected")
    finally:
        context.verify_mode = saved
    return pointer


@cache
def available() -> bool:
    lib = _libssl()
    if lib is None:
        return False
    try:
        _ctx_pointer(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), lib)
    except OpenSSLUnavailableError:
        return False
    return True


def _lib_and_pointer(context: ssl.SSLContext) -> tuple[ctypes.CDLL, int]:
    lib = _libssl()
    if lib is None or not available():
        raise OpenSSLUnavailableError("this Python's ssl module gives no access to its OpenSSL")
    return lib, _ctx_pointer(context, lib)


def set_client_verification(context: ssl.SSLContext, *, require: bool, verify: bool) -> None:
    """Ask for a client certificate; fail without one if `require`; check it against the
    loaded CAs if `verify`, else accept whatever the client sends."""
    mode = _SSL_VERIFY_PEER | (_SSL_VERIFY_FAIL_IF_NO_PEER_CERT if require else 0)
    context.verify_mode = ssl.CERT_REQUIRED if require else ssl.CERT_OPTIONAL
    if verify and not available():
        return  # ssl's own setting above is what we want, with no callback to clear
    lib, pointer = _lib_and_pointer(context)
    lib.SSL_CTX_set_verify(pointer, mode, _NO_CALLBACK if verify else _accept_any)


def set_groups(context: ssl.SSLContext, groups: Sequence[str]) -> None:
    """ECDH groups in preference order, as OpenSSL names them (P-256, X25519, ...)."""
    lib, pointer = _lib_and_pointer(context)
    if lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, ":".join(groups).encode()) != 1:
        raise ssl.SSLError(f"OpenSSL refused the groups {', '.join(groups)}")

"""Opening a session on the token a PKCS#11 URI names: the module, the token, the PIN, the login.

The binding is ``python-pkcs11``. Its exceptions are wrapped here (``from e``) into
:mod:`donjon.hsm.errors`, so that what reaches the CLI is one line naming the token and the fix.

Which module (shared library): the URI's ``module-path``, else the first of
:data:`DEFAULT_MODULES` that exists (SoftHSM2 where Debian, Ubuntu, Fedora and a source build
put it). A real HSM's module is named with ``module-path``.

The PIN: the URI's ``pin-value``, or the file its ``pin-source`` names (``file:/abs/path``,
``file:///abs/path`` or a path, relative to the directory of the file that holds the URI). A PIN
file must not be readable by group or others, like every other secret file of the Steward.
"""

from __future__ import annotations

import os
import stat
import sysconfig
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from pkcs11 import exceptions as p11e

from donjon.hsm.errors import (
    BadPin,
    HsmError,
    MechanismUnsupported,
    ModuleNotFound,
    ObjectNotFound,
    TokenError,
    TokenNotFound,
)
from donjon.hsm.uri import Pkcs11Uri

__all__ = ["DEFAULT_MODULES", "MAX_PIN_FILE", "TokenSession", "find_module", "read_pin"]

_MULTIARCH = sysconfig.get_config_var("MULTIARCH") or ""
#: Where SoftHSM2's module is looked for when the URI has no ``module-path`` (Debian and Ubuntu,
#: their multiarch directory, Fedora and RHEL, a ``./configure && make install`` build).
DEFAULT_MODULES: tuple[str, ...] = tuple(
    dict.fromkeys(
        p
        for p in (
            "/usr/lib/softhsm/libsofthsm2.so",
            f"/usr/lib/{_MULTIARCH}/softhsm/libsofthsm2.so" if _MULTIARCH else "",
            "/usr/lib64/pkcs11/libsofthsm2.so",
            "/usr/local/lib/softhsm/libsofthsm2.so",
        )
        if p
    )
)
#: A PIN is at most a few dozen bytes.
MAX_PIN_FILE = 1024

T = TypeVar("T")


def find_module(uri: Pkcs11Uri) -> str:
    """The module to load for ``uri``; :class:`ModuleNotFound` listing where it looked."""
    candidates = (uri.module_path,) if uri.module_path else DEFAULT_MODULES
    for path in candidates:
        if os.path.isfile(path):
            return path
    reason = (
        "module-path does not name a file"
        if uri.module_path
        else "no module-path in the URI and SoftHSM2 is not installed where it usually is"
    )
    raise ModuleNotFound(candidates, reason)


def read_pin(uri: Pkcs11Uri, base: Path | None = None) -> str | None:
    """The user PIN the URI gives (``pin-value``) or points to (``pin-source``), or None."""
    if uri.pin_value is not None:
        return uri.pin_value
    if uri.pin_source is None:
        return None
    source = uri.pin_source
    if source.startswith("file://"):
        host, _, rest = source[len("file://") :].partition("/")
        if host not in ("", "localhost"):
            raise BadPin(uri.token or "?", f"pin-source {source!r}: only local files are supported")
        source = "/" + rest
    elif source.startswith("file:"):
        source = source[len("file:") :]
    elif ":" in source.split("/", 1)[0] or source.startswith("|"):
        raise BadPin(uri.token or "?", f"pin-source {source!r}: only a file (file:PATH) is supported")
    path = Path(source)
    if not path.is_absolute() and base is not None:
        path = base / path
    name = uri.token or "?"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise BadPin(name, f"cannot read the PIN file {path}: {e.strerror}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadPin(name, f"the PIN file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise BadPin(name, f"the PIN file {path} has mode {stat.S_IMODE(info.st_mode):04o}; chmod 600 it")
        data = os.read(fd, MAX_PIN_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PIN_FILE:
        raise BadPin(name, f"the PIN file {path} is larger than {MAX_PIN_FILE} bytes")
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise BadPin(name, f"the PIN file {path} is not UTF-8") from e


def _token_name(uri: Pkcs11Uri) -> str:
    return uri.token or uri.serial or uri.model or uri.manufacturer or "(any)"


def _wrap(name: str, e: p11e.PKCS11Error) -> HsmError:
    """One of our errors for a binding's exception, with the fix where there is one."""
    if isinstance(e, p11e.PinIncorrect):
        return BadPin(name, "the token refused the PIN")
    if isinstance(e, p11e.PinLocked):
        return BadPin(
            name, "the user PIN is locked after too many wrong tries; the security officer must reset it"
        )
    if isinstance(e, p11e.PinExpired):
        return BadPin(name, "the user PIN has expired; set a new one")
    if isinstance(e, p11e.UserPinNotInitialized):
        return BadPin(name, "the token's user PIN is not initialised")
    if isinstance(e, p11e.UserNotLoggedIn):
        return BadPin(name, "the operation needs a login: give the PIN (pin-source=file:PATH in the URI)")
    if isinstance(e, p11e.TokenNotPresent | p11e.DeviceRemoved | p11e.TokenNotRecognised):
        return TokenError(name, "the token is not present (removed or not recognised)")
    if isinstance(e, p11e.MechanismInvalid | p11e.FunctionNotSupported):
        return MechanismUnsupported(name, f"the token does not offer this mechanism ({type(e).__name__})")
    if isinstance(e, p11e.TokenWriteProtected):
        return TokenError(name, "the token is write-protected")
    detail = str(e) or "no detail"
    return TokenError(name, f"the token refused the operation ({type(e).__name__}: {detail})")


# What a token answers when it no longer knows the session (PKCS#11 v2.40 section 5.1).
_SESSION_LOST = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.UserNotLoggedIn,
    p11e.DeviceRemoved,
    p11e.ObjectHandleInvalid,
    p11e.KeyHandleInvalid,
)
_MODULE_LOCKS: dict[str, threading.Lock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def _module_lock(module: str) -> threading.Lock:
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(module, threading.Lock())


class TokenSession:
    """A logged-in session on one token, for the life of a CA, log or KEK; close() ends it.

    ``python-pkcs11`` calls ``C_Initialize`` without arguments, and PKCS#11 v2.40 section 5.4
    then does not promise that the module may be called from several threads at once: every
    call goes through :meth:`run`, under one lock per module, shared by all its sessions (the
    Steward signs certificates from its worker threads and checkpoints from the log's).
    """

    def __init__(
        self, uri: Pkcs11Uri, session: Any, name: str, module: str, pin: str | None, rw: bool
    ) -> None:
        self.uri = uri
        self.name = name
        self._session = session
        self._module = module
        self._pin = pin  # kept to log in again when the token drops the session (below)
        self._rw = rw
        self._lock = _module_lock(module)
        self._objects: dict[pkcs11.ObjectClass, Any] = {}
        self._closed = False

    @classmethod
    def open(cls, uri: Pkcs11Uri, *, base: Path | None = None, rw: bool = False) -> TokenSession:
        """Load the module, find the token, log in with the URI's PIN.

        :class:`ModuleNotFound`, :class:`TokenNotFound` (naming the tokens present), :class:`BadPin`.
        """
        name = _token_name(uri)
        module = find_module(uri)
        pin = read_pin(uri, base)
        with _module_lock(module):
            return cls._open(uri, name, module, pin, rw)

    @classmethod
    def _open(cls, uri: Pkcs11Uri, name: str, module: str, pin: str | None, rw: bool) -> TokenSession:
        try:
            lib = pkcs11.lib(module)
        except p11e.PKCS11Error as e:
            raise ModuleNotFound((module,), f"cannot load it: {e}") from e
        query: dict[str, Any] = {}
        if uri.token is not None:
            query["token_label"] = uri.token
        if uri.serial is not None:
            query["token_serial"] = uri.serial.encode()
        try:
            tokens = [
                t
                for t in lib.get_tokens(**query)
                if (uri.manufacturer is None or t.manufacturer_id == uri.manufacturer)
                and (uri.model is None or t.model == uri.model)
            ]
            if not tokens:
                present = sorted(repr(t.label) for t in lib.get_tokens() if t.label)
                raise TokenNotFound(
                    name, f"no such token in {module} (present: {', '.join(present) or 'none'})"
                )
            if len(tokens) > 1:
                raise TokenError(name, f"{len(tokens)} tokens match; add serial= to the URI")
            token = tokens[0]
            if pin is None and token.flags & pkcs11.TokenFlag.LOGIN_REQUIRED:
                raise BadPin(name, "the token needs a PIN: add ?pin-source=file:PATH to the URI")
            try:
                session = token.open(user_pin=pin, rw=rw)
            except p11e.UserAlreadyLoggedIn:
                # Login state is per application and token (PKCS#11 v2.40 section 5.6): another
                # session of this process (the KEK's, the log key's) already logged in.
                session = token.open(rw=rw)
        except p11e.PKCS11Error as e:
            raise _wrap(name, e) from e
        return cls(uri, session, name, module, pin, rw)

    def run(self, fn: Callable[[Any], T]) -> T:
        """``fn(session)`` under the lock, the binding's errors wrapped."""
        with self._lock:
            self._check_open()
            try:
                return fn(self._session)
            except p11e.PKCS11Error as e:
                raise _wrap(self.name, e) from e

    def use(self, object_class: pkcs11.ObjectClass, fn: Callable[[Any], T]) -> T:
        """``fn(key)`` for the URI's object of ``object_class``, under the lock.

        A session the token dropped (the HSM restarted, a network HSM reconnected: PKCS#11's
        ``CKR_SESSION_HANDLE_INVALID``, ``CKR_USER_NOT_LOGGED_IN``, ``CKR_DEVICE_REMOVED``...)
        is opened and logged in again once, and the object found again; a token that is gone
        for good is a :class:`TokenError` as at start-up.
        """
        with self._lock:
            for attempt in (1, 2):
                self._check_open()
                try:
                    key = self._objects.get(object_class)
                    if key is None:
                        key = self._find(object_class)
                    return fn(key)
                except _SESSION_LOST as e:
                    if attempt == 2:
                        raise _wrap(self.name, e) from e
                    self._reopen()
                except p11e.PKCS11Error as e:
                    raise _wrap(self.name, e) from e
        raise AssertionError("unreachable")

    def find_key(self, object_class: pkcs11.ObjectClass) -> Any:
        """The one object of ``object_class`` with the URI's ``object`` label and/or ``id``."""
        with self._lock:
            self._check_open()
            try:
                return self._find(object_class)
            except p11e.PKCS11Error as e:
                raise _wrap(self.name, e) from e

    def remember(self, object_class: pkcs11.ObjectClass, obj: Any) -> None:
        """Use ``obj`` (just generated) as the URI's object of ``object_class``, without a search.

        A search is what must not meet a dropped session: ``python-pkcs11`` 0.10 leaves a failed
        ``C_FindObjectsInit`` marked active and reports it again from a destructor.
        """
        with self._lock:
            self._objects[object_class] = obj

    def _check_open(self) -> None:
        if self._closed:
            raise TokenError(self.name, "the session is closed")

    def _find(self, object_class: pkcs11.ObjectClass) -> Any:
        uri = self.uri
        if uri.object is None and uri.id is None:
            raise ObjectNotFound(self.name, "the URI names no object: add object=LABEL (or id=)")
        what = f"object={uri.object!r}" if uri.object is not None else f"id={uri.id!r}"
        attrs: dict[pkcs11.Attribute, Any] = {pkcs11.Attribute.CLASS: object_class}
        if uri.object is not None:
            attrs[pkcs11.Attribute.LABEL] = uri.object
        if uri.id is not None:
            attrs[pkcs11.Attribute.ID] = uri.id
        found = list(self._session.get_objects(attrs))
        kind = object_class.name.lower().replace("_", " ")
        if not found:
            raise ObjectNotFound(self.name, f"no {kind} with {what}")
        if len(found) > 1:
            raise ObjectNotFound(self.name, f"{len(found)} {kind}s with {what}; add id= to the URI")
        self._objects[object_class] = found[0]
        return found[0]

    def _reopen(self) -> None:
        """A new session in place of one the token dropped (the lock is held)."""
        with suppress(p11e.PKCS11Error):
            self._session.close()
        fresh = self._open(self.uri, self.name, self._module, self._pin, self._rw)
        self._session = fresh._session
        self._objects.clear()

    def close(self) -> None:
        """End the session (the last one closed logs out); closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with suppress(p11e.PKCS11Error):  # a token already gone has no session to close
                self._session.close()

    def __enter__(self) -> TokenSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

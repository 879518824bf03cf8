"""callop — helper library for callop plugins written in Python.

A plugin is a directory with an ``app.py`` that defines ``init(loop, args)``
(and optionally ``shutdown(loop, deadline)``, and ``snapshot()`` /
``restore(data)`` to carry its state over a reload: see ``State`` and
``restored()``)::

    import callop
    from callop import Drop, ToInstant

    def init(loop, args):
        ticks = 0
        def on_tick(deadline):
            nonlocal ticks
            ticks += 1
            print(f"tick {ticks}")
            return Drop if ticks >= 3 else ToInstant(deadline + callop.seconds_to_ns(0.5))
        loop.insert_timer(0.5, on_tick)

``plugins/polyglot.sh`` componentizes *this* module (``componentize-py ...
componentize callop``) with the plugin directory on the Python path. This
module implements the WIT ``guest`` export (init / dispatch / shutdown) and
the ``state`` export (world ``plugin-with-state``),
imports ``app`` and maps the host's source ids back to your callbacks,
returning one event-result per event.

Units: durations are seconds (``float``, like ``time.sleep``); instants are
host-clock nanoseconds (``int``, ``loop.now()``, a timer's deadline).

Semantics are those of the WIT contract (``wit/callop-plugin.wit``): sources
registered inside a callback fire in a later batch at the earliest, a plugin
ends when it owns no source any more, ``loop.stop(code)`` ends it at once.
stdout/stderr are flushed after every call into the plugin.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from typing import Callable, Optional, Union

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import host_loop as _host
from wit_world.imports import types as _t

__all__ = [
    "Loop", "Token", "Ping", "Sender", "CallopError",
    "Drop", "ToDuration", "ToInstant",
    "Continue", "Reregister", "Disable", "Remove", "PostAction",
    "log", "parse_duration", "seconds_to_ns", "ns_to_seconds", "restored",
]

NS_PER_SEC = 1_000_000_000

# --------------------------------------------------------------------- units


def seconds_to_ns(seconds: float) -> int:
    """Seconds (int or float) -> nanoseconds (int)."""
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    return round(seconds * NS_PER_SEC)


def ns_to_seconds(ns: int) -> float:
    """Nanoseconds -> seconds (float)."""
    return ns / NS_PER_SEC


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "": 1e-3, "s": 1.0}


def parse_duration(text: str) -> float:
    """Parses ``10ms``, ``2s``, ``500us``, ``100ns`` (bare number: ms) into seconds.

    Raises ValueError with the same messages as the Rust example plugins.
    """
    m = re.match(r"[0-9]*", text)
    num, unit = text[: m.end()], text[m.end():]
    if not num:
        raise ValueError(f"bad duration {_quote(text)}")
    if unit not in _UNITS:
        raise ValueError(f"bad duration unit in {_quote(text)} (use ns, us, ms or s)")
    return int(num) * _UNITS[unit]


def _quote(text: str) -> str:
    """Double-quoted like Rust's ``{:?}`` (close enough for messages)."""
    return json.dumps(text, ensure_ascii=False)


# ------------------------------------------------------------------- actions

PostAction = _t.PostAction
#: Non-timer callback results (returning ``None`` means ``Continue``).
Continue = PostAction.CONTINUE
Reregister = PostAction.REREGISTER
Disable = PostAction.DISABLE
Remove = PostAction.REMOVE


class _DropType:
    """Timer result: remove the timer (also what returning ``None`` means)."""

    def __repr__(self) -> str:
        return "Drop"


Drop = _DropType()


class _Reschedule:
    """Base of the timer results carrying one value (``ToDuration``,
    ``ToInstant``): immutable, compared and hashed by class and value, like
    a frozen dataclass, but built without ``object.__setattr__`` (every
    timer event of a periodic timer makes one)."""

    __slots__ = ("_v",)
    _field = ""

    def __init__(self, value):
        self._v = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._field}={self._v!r})"

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._v == other._v
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.__class__, self._v))


class ToDuration(_Reschedule):
    """Timer result: fire again ``seconds`` after now."""

    __slots__ = ()
    __match_args__ = ("seconds",)
    _field = "seconds"

    @property
    def seconds(self) -> float:
        """Seconds from now (int or float)."""
        return self._v


class ToInstant(_Reschedule):
    """Timer result: fire again at host instant ``ns`` (int nanoseconds)."""

    __slots__ = ()
    __match_args__ = ("ns",)
    _field = "ns"

    @property
    def ns(self) -> int:
        """Host instant, int nanoseconds."""
        return self._v


TimeoutAction = Union[_DropType, ToDuration, ToInstant]


def _post(r) -> PostAction:
    if r is None:
        return Continue
    if isinstance(r, PostAction):
        return r
    raise TypeError(f"callback returned {r!r}; expected Continue, Reregister, Disable or Remove")


# -------------------------------------------------------------------- errors


class CallopError(Exception):
    """A host-loop call failed. ``code`` is the WIT error-code, e.g. ``"not-found"``."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _call(fn, *args):
    try:
        return fn(*args)
    except Err as e:
        err = e.value
        if isinstance(err, _t.Error):
            raise CallopError(err.code.name.lower().replace("_", "-"), err.message) from None
        raise


# ------------------------------------------------------------------- logging


class _Log:
    """Host logger, attributed to this plugin instance: ``callop.log.info("...")``."""

    def trace(self, msg: str) -> None:
        _host.log(_t.LogLevel.TRACE, str(msg))

    def debug(self, msg: str) -> None:
        _host.log(_t.LogLevel.DEBUG, str(msg))

    def info(self, msg: str) -> None:
        _host.log(_t.LogLevel.INFO, str(msg))

    def warn(self, msg: str) -> None:
        _host.log(_t.LogLevel.WARN, str(msg))

    warning = warn

    def error(self, msg: str) -> None:
        _host.log(_t.LogLevel.ERROR, str(msg))


log = _Log()

# ------------------------------------------------------------ handles/tokens


class Token:
    """Identifies a registered source; pass it to ``loop.remove/enable/disable``."""

    __slots__ = ("id", "kind")

    def __init__(self, id: int, kind: str):
        self.id = id
        self.kind = kind  # "timer" | "idle" | "ping" | "channel"

    def __repr__(self) -> str:
        return f"Token({self.kind} #{self.id})"


class Ping:
    """Triggers a ping source (own, or someone else's via ``loop.connect_ping``)."""

    def __init__(self, handle: _host.Ping):
        self._h = handle

    def trigger(self) -> None:
        """Wakes the ping source; triggers coalesce."""
        self._h.trigger()

    ping = trigger  # calloop spelling

    def close(self) -> None:
        """Releases the handle now (the ping source itself stays)."""
        if self._h is not None:
            self._h.__exit__(None, None, None)
            self._h = None


class Sender:
    """Sending end of a channel (``loop.connect(target)``)."""

    def __init__(self, handle: _host.Sender):
        self._h = handle

    def send(self, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Sends one message (``str`` is encoded as UTF-8). Raises CallopError."""
        if isinstance(data, str):
            data = data.encode()
        _call(self._h.send, bytes(data))

    @property
    def target(self) -> str:
        """Fully qualified target, e.g. ``pong/in`` or ``@app/out``."""
        return self._h.target()

    def close(self) -> None:
        """Drops the sender now (the channel closes when all senders are gone)."""
        if self._h is not None:
            self._h.__exit__(None, None, None)
            self._h = None


class _Source:
    __slots__ = ("kind", "cb", "on_closed")

    def __init__(self, kind, cb, on_closed=None):
        self.kind = kind
        self.cb = cb
        self.on_closed = on_closed


_sources: dict[int, _Source] = {}


def _register(id: int, kind: str, cb, on_closed=None) -> Token:
    _sources[id] = _Source(kind, cb, on_closed)
    return Token(id, kind)


def _check(cb, what):
    if not callable(cb):
        raise TypeError(f"{what}: callback must be callable")


class Loop:
    """The plugin's view of the host event loop (calloop's ``LoopHandle``)."""

    log = log

    def now(self) -> int:
        """Current host monotonic time, int nanoseconds."""
        return _host.now()

    @property
    def instance_name(self) -> str:
        """This instance's name (others address its channels as ``<name>/<chan>``)."""
        return _host.instance_name()

    def insert_timer(self, after: float, callback: Callable[[int], Optional[TimeoutAction]]) -> Token:
        """Timer firing ``after`` seconds from now (0 = next iteration).

        ``callback(deadline_ns)`` returns ``Drop`` (or ``None``),
        ``ToDuration(seconds)`` or ``ToInstant(ns)``.
        """
        _check(callback, "insert_timer")
        return self.insert_timer_at(_host.now() + seconds_to_ns(after), callback)

    def insert_timer_at(self, deadline: int, callback) -> Token:
        """Timer firing at host instant ``deadline`` (int ns)."""
        _check(callback, "insert_timer_at")
        return _register(_call(_host.add_timer, int(deadline)), "timer", callback)

    def insert_idle(self, callback: Callable[[], None]) -> Token:
        """One-shot ``callback()`` run after the current batch (calloop ``insert_idle``)."""
        _check(callback, "insert_idle")
        return _register(_call(_host.add_idle), "idle", callback)

    def make_ping(self, callback: Callable[[], Optional[PostAction]], name: Optional[str] = None):
        """Ping source; returns ``(ping, token)``. ``callback()`` runs once per
        batch in which the ping was triggered. With ``name`` others reach it
        as ``<instance>/<name>``."""
        _check(callback, "make_ping")
        id, handle = _call(_host.make_ping, name)
        return Ping(handle), _register(id, "ping", callback)

    def connect_ping(self, target: str) -> Ping:
        """Handle to an existing named ping ``<instance>/<name>`` (or own ``<name>``)."""
        return Ping(_call(_host.connect_ping, target))

    def open_channel(self, name: str, on_message: Callable[[bytes], Optional[PostAction]],
                     on_closed: Optional[Callable[[], Optional[PostAction]]] = None) -> Token:
        """Opens channel ``<instance>/<name>``. ``on_message(data: bytes)`` runs per
        message, ``on_closed()`` once when every sender is gone (default: the
        channel is removed). Both return a post action (``None`` = Continue)."""
        _check(on_message, "open_channel")
        if on_closed is not None:
            _check(on_closed, "open_channel(on_closed)")
        return _register(_call(_host.open_channel, name), "channel", on_message, on_closed)

    def connect(self, target: str) -> Sender:
        """Sender to ``<instance>/<name>``, own ``<name>``, or ``@app/<name>``."""
        return Sender(_call(_host.connect, target))

    def remove(self, token: Token) -> None:
        """Removes a source (no-op if it is already gone)."""
        if _sources.pop(token.id, None) is None:
            return
        try:
            _call(_host.remove, token.id)
        except CallopError as e:
            log.debug(f"remove({token.id}) failed: {e}")

    def enable(self, token: Token) -> None:
        """Re-enables a disabled source."""
        _call(_host.enable, token.id)

    def disable(self, token: Token) -> None:
        """Disables a source; it stays registered but produces no events."""
        _call(_host.disable, token.id)

    def update(self, token: Token) -> None:
        """Re-applies a registration (calloop ``update``; a no-op for non-I/O sources)."""
        _call(_host.update, token.id)

    def remove_all(self) -> None:
        """Removes every source; the plugin ends after the current call."""
        for id, src in list(_sources.items()):
            self.remove(Token(id, src.kind))

    def stop(self, code: int = 0) -> None:
        """Ends this plugin with exit ``code`` once the current call returns."""
        _host.stop(int(code))


loop = Loop()

# -------------------------------------------------------------- guest export

_failed = False

# The interpreter's own stdout: componentize-py pre-initializes Python with
# PYTHONUNBUFFERED=1, so it wrote every piece (print's text, then its "\n")
# to WASI at once, two host calls per print. Line-buffered, like Rust's
# stdout, it writes each line once; what is left of a line goes out at the
# end of every call into the plugin (`_flush`).
if getattr(sys.stdout, "write_through", False):
    sys.stdout.reconfigure(line_buffering=True, write_through=False)
# Its stderr stays unbuffered: flushing it would be a no-op, and `_flush`
# skips it (a replaced sys.stderr is flushed).
_unbuffered_stderr = sys.stderr if getattr(sys.stderr, "write_through", False) else None

# What every event needs, as module globals rather than `_t.` lookups.
_Timer = _t.EventKind_Timer
_Result_Timeout = _t.EventResult_Timeout
_Timeout_ToInstant = _t.TimeoutAction_ToInstant
_Timeout_ToDuration = _t.TimeoutAction_ToDuration
# Results without a varying payload are built once and shared: the bindings
# only read the returned list.
_TIMEOUT_DROP = _Result_Timeout(_t.TimeoutAction_Drop())
_POST = {a: _t.EventResult_Post(a) for a in (Continue, Reregister, Disable, Remove)}


def _unhandled(kind) -> _t.EventResult:
    if type(kind) is _Timer:
        return _TIMEOUT_DROP
    return _POST[Remove]


def _exit_code(e: SystemExit) -> int:
    """``sys.exit(x)`` -> exit code, as CPython does (None: 0, int, else print + 1)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def _exit(e: SystemExit) -> None:
    # sys.exit(code) inside the plugin means loop.stop(code).
    global _failed
    _failed = True
    _host.stop(_exit_code(e))


def _fail(where: str) -> None:
    # An exception escaping a callback ends the plugin with exit code 1 (the
    # equivalent of a Rust panic), after logging the traceback.
    global _failed
    log.error(f"uncaught exception in {where}:\n{traceback.format_exc()}")
    _failed = True
    _host.stop(1)


def _timer_result(id: int, r) -> _t.EventResult:
    """A timer callback's result as the WIT event-result (``Drop`` or
    ``None``: the timer's callback is forgotten)."""
    if r is None or r is Drop:
        _sources.pop(id, None)
        return _TIMEOUT_DROP
    if isinstance(r, ToInstant):
        return _Result_Timeout(_Timeout_ToInstant(int(r.ns)))
    if isinstance(r, ToDuration):
        return _Result_Timeout(_Timeout_ToDuration(seconds_to_ns(r.seconds)))
    raise TypeError(f"timer callback returned {r!r}; expected Drop, ToDuration(s) or ToInstant(ns)")


def _post_result(id: int, action: PostAction) -> _t.EventResult:
    if action is Remove:
        _sources.pop(id, None)
    return _POST[action]


def _run_batch(id: int, src, batch: _t.MessageBatch) -> PostAction:
    """Runs a channel callback once per message of a packed batch. ``Remove``
    (returned, or the callback removing its own source) ends the batch;
    ``Disable`` takes effect after it."""
    data = batch.data
    result = Continue
    start = 0
    for n in batch.lengths:
        action = _post(src.cb(bytes(data[start:start + n])))
        start += n
        if action is Remove or id not in _sources:
            return Remove
        if action is Disable:
            result = Disable
    return result


def _run_other(id: int, src, kind) -> _t.EventResult:
    """A non-timer event of a live source."""
    if isinstance(kind, _t.EventKind_Idle):
        _sources.pop(id, None)  # one-shot
        src.cb()
        return _POST[Continue]
    if isinstance(kind, _t.EventKind_Ping):
        return _post_result(id, _post(src.cb()))
    if isinstance(kind, _t.EventKind_Messages):
        return _post_result(id, _run_batch(id, src, kind.value))
    if isinstance(kind, _t.EventKind_Closed):
        action = _post(src.on_closed()) if src.on_closed is not None else Remove
        return _post_result(id, action)
    return _unhandled(kind)


def _flush() -> None:
    try:
        sys.stdout.flush()
    except Exception:
        pass
    err = sys.stderr
    if err is not _unbuffered_stderr:
        try:
            err.flush()
        except Exception:
            pass


_plugin = None


class Guest(_exports.Guest):
    """The WIT ``guest`` export; delegates to the plugin module (``app``)."""

    def init(self, args: list[str]) -> None:
        try:
            if _plugin is None or not callable(getattr(_plugin, "init", None)):
                raise RuntimeError("callop plugin module 'app' must define init(loop, args)")
            _plugin.init(loop, list(args))
        except SystemExit as e:
            _exit(e)
        except Exception as e:
            log.debug(traceback.format_exc())
            raise Err(str(e) or type(e).__name__)
        finally:
            _flush()

    def dispatch(self, events: list[_t.Event]) -> list[_t.EventResult]:
        results = []
        append = results.append
        get = _sources.get
        for ev in events:
            try:
                id = ev.source
                kind = ev.kind
                src = get(id)
                if src is None or _failed:  # removed earlier in this batch
                    append(_unhandled(kind))
                elif type(kind) is _Timer:
                    r = src.cb(kind.value)
                    # The common case inline: a periodic timer's next instant.
                    if type(r) is ToInstant and type(r._v) is int:
                        append(_Result_Timeout(_Timeout_ToInstant(r._v)))
                    else:
                        append(_timer_result(id, r))
                else:
                    append(_run_other(id, src, kind))
            except SystemExit as e:
                _exit(e)
                append(_unhandled(ev.kind))
            except Exception:
                _fail(f"{type(ev.kind).__name__.split('_')[-1].lower()} callback")
                append(_unhandled(ev.kind))
        _flush()
        return results

    def shutdown(self, deadline: int) -> None:
        try:
            hook = getattr(_plugin, "shutdown", None)
            if callable(hook):
                hook(loop, deadline)
            else:
                loop.remove_all()
        except SystemExit as e:
            _exit(e)
        except Exception:
            _fail("shutdown")
        finally:
            _flush()


_restored: Optional[bytes] = None


def restored() -> Optional[bytes]:
    """The previous version's snapshot while ``init`` runs after a reload
    (``None``: a first start, nothing handed over, or already taken)."""
    global _restored
    b, _restored = _restored, None
    return b


class State(_exports.State):
    """The WIT ``state`` export (world plugin-with-state): a reload calls the
    old version's ``snapshot()`` (the plugin module's optional
    ``snapshot() -> bytes | None``; without it the new version starts
    fresh) and hands the bytes to the new version's ``restore`` before its
    ``init`` (the module's optional ``restore(data)`` may raise to refuse
    them; ``init`` then gets them from ``callop.restored()``)."""

    def snapshot(self) -> Optional[bytes]:
        try:
            hook = getattr(_plugin, "snapshot", None)
            if not callable(hook):
                return None
            b = hook()
            if b is None:
                return None
            return bytes(b)
        except Exception:
            _fail("snapshot")
            return None
        finally:
            _flush()

    def restore(self, snapshot: bytes) -> None:
        global _restored
        try:
            hook = getattr(_plugin, "restore", None)
            if callable(hook):
                hook(bytes(snapshot))
        except Exception as e:
            raise Err(str(e) or type(e).__name__)
        finally:
            _flush()
        _restored = bytes(snapshot)


# Import the plugin module at build time, so that componentize-py's snapshot
# contains it (this module is the component's entry point). Done last: the
# plugin may `import callop` / `from callop import ...` (everything above is
# defined by now).
try:
    import app as _plugin  # noqa: E402
except ModuleNotFoundError as _e:
    if _e.name != "app":
        raise
    _plugin = None

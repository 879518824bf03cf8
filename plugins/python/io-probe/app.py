"""io-probe (Python twin of the ``std-*`` probes of plugins/io-probe): the
grants through WASI, with Python's own ``open`` and ``socket``.

Each argument is one probe, run in order in ``init``; each prints one line
``ALLOWED <probe>`` or ``DENIED <probe>: <message>`` (a ``PermissionError``)
or ``FAILED <probe>: <message>`` (any other error):

* ``std-read:PATH`` (also prints ``CONTENT <probe>: <text>``),
  ``std-write:PATH``, ``std-list:PATH``
* ``std-connect:HOST:PORT`` (connects and sends ``wasi``),
  ``std-bind:HOST:PORT``

The plugin registers no source and ends after the probes.
"""

import os
import socket


def addr(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def probe(p):
    what, _, arg = p.partition(":")
    if what == "std-read":
        with open(arg) as f:
            text = f.read()
        print(f"CONTENT {p}: {text.rstrip()}")
    elif what == "std-write":
        with open(arg, "w") as f:
            f.write("probe")
    elif what == "std-list":
        os.listdir(arg)
    elif what == "std-connect":
        # A numeric address: no name lookup (none is granted).
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.connect(addr(arg))
            s.sendall(b"wasi")
    elif what == "std-bind":
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(addr(arg))
            s.listen()
    else:
        raise ValueError(f"unknown probe {p!r}")


def init(loop, args):
    for p in args:
        try:
            probe(p)
            print(f"ALLOWED {p}")
        except PermissionError as e:
            print(f"DENIED {p}: {type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - every outcome is reported
            print(f"FAILED {p}: {type(e).__name__}: {e}")

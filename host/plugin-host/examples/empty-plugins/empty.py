"""The floor of a Python plugin: one `dispatch` call into a componentize-py
component, without the helper (plugins/python/callop.py). Its timer fires
again at once (`to-duration 0`) until `--count N` events, then it is
dropped; every answer is a prebuilt list. See `../event_cost.rs`.

    componentize-py -d wit -w plugin-with-state componentize empty \
        -p host/plugin-host/examples/empty-plugins -o target/polyglot/python-empty.wasm
"""

from wit_world import exports
from wit_world.imports import host_loop
from wit_world.imports import types as t

_AGAIN = [t.EventResult_Timeout(t.TimeoutAction_ToDuration(0))]
_DROP = [t.EventResult_Timeout(t.TimeoutAction_Drop())]
_left = 0


class Guest(exports.Guest):
    def init(self, args):
        global _left
        _left = int(args[args.index("--count") + 1])
        host_loop.add_timer(host_loop.now())

    def dispatch(self, events):
        global _left
        _left -= 1
        return _AGAIN if _left > 0 else _DROP

    def shutdown(self, deadline):
        pass


class State(exports.State):
    def snapshot(self):
        return None

    def restore(self, snapshot):
        pass

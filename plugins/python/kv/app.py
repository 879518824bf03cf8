"""kv (Python twin of plugins/kv-plugin): a plugin of the key-value example
application (tests/kv-app), using its API (``example:kv``) beside the loop.

Args: ``--count <n>`` (default 3), ``--key <key>`` (default
``<instance>/tick``). Every 10 ms a timer sets the key to the tick number;
after the last tick it notifies ``wrote <n> ticks``, sends the key to its own
channel ``read`` and drops itself. The channel callback reads the key back,
notifies ``read <key>=<value> (<m> of my keys)`` and removes the channel;
with no source left the plugin ends.

Built for the world ``example:kv/kv-plugin`` (file ``WORLD``): the
application's imports are ``wit_world.imports.store`` and
``wit_world.imports.notify``, beside callop's.
"""

import json

import callop
from callop import Drop, Remove, ToInstant
from wit_world.imports import notify, store


def parse_args(args):
    count, key = 3, None
    it = iter(args)
    for arg in it:
        def value(name):
            v = next(it, None)
            if v is None:
                raise ValueError(f"{name} needs a value")
            return v

        if arg == "--count":
            count = int(value("--count"))
        elif arg == "--key":
            key = value("--key")
        else:
            raise ValueError(f"unknown argument {json.dumps(arg)} (usage: [--count N] [--key KEY])")
    return max(count, 1), key


def init(loop, args):
    count, key = parse_args(args)
    name = loop.instance_name
    key = key or f"{name}/tick"
    every = 0.01
    period = callop.seconds_to_ns(every)
    ticks = 0

    def on_read(data):
        k = data.decode()
        v = store.get(k)
        mine = sum(1 for x in store.keys() if x.startswith(name + "/"))
        shown = v if v is not None else "<unset>"
        notify.notify(notify.Level.INFO, f"read {k}={shown} ({mine} of my keys)")
        return Remove

    def on_tick(deadline):
        nonlocal ticks
        ticks += 1
        store.set(key, str(ticks))
        if ticks < count:
            return ToInstant(deadline + period)
        notify.notify(notify.Level.INFO, f"wrote {ticks} ticks")
        tx = loop.connect("read")
        tx.send(key)
        tx.close()
        return Drop

    loop.open_channel("read", on_read)
    loop.insert_timer(every, on_tick)

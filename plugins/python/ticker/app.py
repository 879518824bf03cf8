"""ticker (Python twin of plugins/ticker): a repeating timer.

Args: ``--every <duration>`` (default ``100ms``; units ns, us, ms, s) and
``--count <n>`` (default 5). Prints ``tick 1`` … ``tick N`` on stdout, one per
period, then drops its timer; with no source left the plugin ends (exit 0).
"""

import json
import re

import callop
from callop import Drop, ToInstant


def parse_count(v):
    # Same messages as Rust's u64 parsing in plugins/ticker.
    if v == "":
        raise ValueError("bad --count: cannot parse integer from empty string")
    if not re.fullmatch(r"\+?[0-9]+", v):
        raise ValueError("bad --count: invalid digit found in string")
    n = int(v)
    if n >= 2**64:
        raise ValueError("bad --count: number too large to fit in target type")
    return n


def parse_args(args):
    every, count = 0.1, 5
    it = iter(args)
    for arg in it:
        def value(name):
            v = next(it, None)
            if v is None:
                raise ValueError(f"{name} needs a value")
            return v

        if arg == "--every":
            every = callop.parse_duration(value("--every"))
        elif arg == "--count":
            count = parse_count(value("--count"))
        else:
            raise ValueError(f"unknown argument {json.dumps(arg)} (usage: --every 10ms --count 5)")
    return every, count


def init(loop, args):
    every, count = parse_args(args)
    period = callop.seconds_to_ns(every)
    ticks = 0

    def on_tick(deadline):
        nonlocal ticks
        ticks += 1
        print(f"tick {ticks}")
        # Drift-free period, relative to the deadline that fired.
        return Drop if ticks >= count else ToInstant(deadline + period)

    if count > 0:
        loop.insert_timer(every, on_tick)

"""relay (Python twin of plugins/relay): answers messages from the application.

Args: ``--reply-to <target>`` (default ``@app/out``), ``--prefix <text>``
(default empty), ``--after <n> --then <disable|remove|self-remove>`` (once
``n`` messages were relayed the callback returns ``Disable`` or ``Remove``,
or removes its own channel; the host tests use it on packed batches).

Opens the channel ``in`` (addressed by the application as
``<instance-name>/in``, e.g. ``relay/in``) and answers every message with
``prefix + message`` on a sender to the reply target (connected lazily, on
the first message). When the application drops its last sender to
``relay/in`` the channel reports closed; the relay then prints
``relay: closed after N messages``, removes the channel and ends.
"""

import json

import callop
from callop import CallopError, Continue, Disable, Remove

THEN = ("disable", "remove", "self-remove")


def parse_args(args):
    reply_to, prefix, after, then = "@app/out", "", None, None
    it = iter(args)
    for arg in it:
        def value(name):
            v = next(it, None)
            if v is None:
                raise ValueError(f"{name} needs a value")
            return v

        if arg == "--reply-to":
            reply_to = value("--reply-to")
        elif arg == "--prefix":
            prefix = value("--prefix")
        elif arg == "--after":
            after = int(value("--after"))
        elif arg == "--then":
            then = value("--then")
            if then not in THEN:
                raise ValueError(f"bad --then {json.dumps(then)} (disable, remove or self-remove)")
        else:
            raise ValueError(
                f"unknown argument {json.dumps(arg)} "
                "(usage: [--reply-to @app/out] [--prefix TEXT] [--after N --then WHAT])"
            )
    if (after is None) != (then is None):
        raise ValueError("--after and --then go together")
    return reply_to, prefix.encode(), after, then


def init(loop, args):
    reply_to, prefix, after, then = parse_args(args)
    sender = None
    relayed = 0
    token = None

    def on_message(data):
        nonlocal sender, relayed
        if sender is None:
            try:
                sender = loop.connect(reply_to)
            except CallopError as e:
                callop.log.error(f"relay: cannot reach {reply_to}: {e}")
                return Continue
        try:
            sender.send(prefix + data)
            relayed += 1
        except CallopError as e:
            callop.log.error(f"relay: reply to {reply_to} failed: {e}")
        if relayed == after:
            if then == "disable":
                return Disable
            if then == "remove":
                return Remove
            loop.remove(token)
        return Continue

    def on_closed():
        nonlocal sender
        print(f"relay: closed after {relayed} messages")
        if sender is not None:
            sender.close()
            sender = None
        return Remove

    token = loop.open_channel("in", on_message, on_closed)

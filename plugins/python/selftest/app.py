"""selftest (Python twin of plugins/selftest): exercises callop.py against a host.

No args. Checks ping coalescing, disable/enable, idle cancel (remove), an
immediate timer, a periodic ToDuration timer, connect_ping to a named ping,
and host error reporting (bad channel name, duplicate channel, unknown
target). After ~50 ms it prints ``selftest: ok`` (exit code 0, by removing
every source) or ``selftest: FAILED: ...`` lines and stops with exit code 1.
"""

from callop import CallopError, Continue, Drop, Remove, ToDuration


def init(loop, args):
    failures = []
    s = dict(pings_a=0, pings_b=0, b_enabled_at=None, b_fired_at=None, cancelled_idle_ran=False,
             idle_ran=False, immediate_fired=False, periodic=0, named_pings=0)

    def check(ok, what):
        if not ok:
            failures.append(what)

    def expect_err(fn, code, what):
        try:
            fn()
        except CallopError as e:
            if e.code != code:
                failures.append(f"{what}: expected {code}, got {e}")
            return
        failures.append(f"{what}: expected {code}, got Ok")

    # Ping coalescing: two triggers before dispatch -> one event.
    def on_a():
        s["pings_a"] += 1
        return Continue

    ping_a, _ = loop.make_ping(on_a)
    ping_a.trigger()
    ping_a.trigger()

    # Disabled ping: triggered now, must only fire after enable.
    def on_b():
        s["pings_b"] += 1
        if s["b_fired_at"] is None:
            s["b_fired_at"] = loop.now()
        return Remove

    ping_b, token_b = loop.make_ping(on_b)
    loop.disable(token_b)
    ping_b.trigger()

    def enable_b(_deadline):
        s["b_enabled_at"] = loop.now()
        try:
            loop.enable(token_b)
        except CallopError as e:
            failures.append(f"enable: {e}")
        return Drop

    loop.insert_timer(0.015, enable_b)

    # Named ping, triggered through a handle obtained by name.
    def on_named():
        s["named_pings"] += 1
        return Continue

    loop.make_ping(on_named, name="wake")
    try:
        loop.connect_ping("wake").trigger()
    except CallopError as e:
        failures.append(f"connect_ping(wake): {e}")

    # Idles: one cancelled, one kept.
    idle = loop.insert_idle(lambda: s.__setitem__("cancelled_idle_ran", True))
    loop.remove(idle)
    loop.insert_idle(lambda: s.__setitem__("idle_ran", True))

    # Immediate timer, and a periodic one re-armed 3 times.
    def on_immediate(_deadline):
        s["immediate_fired"] = True
        return Drop

    loop.insert_timer(0, on_immediate)

    def on_periodic(_deadline):
        s["periodic"] += 1
        return ToDuration(0.001) if s["periodic"] < 3 else Drop

    loop.insert_timer(0.001, on_periodic)

    # Host errors (never traps).
    expect_err(lambda: loop.open_channel("bad/name", lambda data: Remove), "invalid-argument", "open_channel(bad/name)")
    loop.open_channel("dup", lambda data: Continue)
    expect_err(lambda: loop.open_channel("dup", lambda data: Continue), "already-exists", "open_channel(dup) twice")
    expect_err(lambda: loop.connect("no-such-plugin-xyz/in"), "not-found", "connect(unknown)")

    # Verdict, late enough that a loaded machine has run every step above (they take ~20 ms).
    # The checks are exact counts; only the wait is generous.
    def verdict(_deadline):
        check(s["pings_a"] == 1, f"ping coalescing: {s['pings_a']} events for 2 triggers")
        check(s["pings_b"] == 1, f"disabled ping: {s['pings_b']} events (want 1 after enable)")
        en, fired = s["b_enabled_at"], s["b_fired_at"]
        check(en is not None and fired is not None and fired >= en, "disabled ping fired before enable")
        check(not s["cancelled_idle_ran"], "cancelled idle ran")
        check(s["idle_ran"], "idle did not run")
        check(s["immediate_fired"], "immediate timer did not fire")
        check(s["periodic"] == 3, f"periodic timer fired {s['periodic']} times (want 3)")
        check(s["named_pings"] == 1, f"named ping: {s['named_pings']} events (want 1)")
        if not failures:
            print("selftest: ok")
            loop.remove_all()
        else:
            for f in failures:
                print(f"selftest: FAILED: {f}")
            loop.stop(1)
        return Drop

    loop.insert_timer(0.5, verdict)

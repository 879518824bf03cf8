// selftest (JavaScript twin of plugins/selftest): exercises callop.js against a host.
//
// No args. Checks ping coalescing, disable/enable, idle cancel (remove), an
// immediate timer, a periodic toDuration timer, connectPing to a named ping,
// and host error reporting (bad channel name, duplicate channel, unknown
// target). After ~50 ms it prints `selftest: ok` (exit code 0, by removing
// every source) or `selftest: FAILED: ...` lines and stops with exit code 1.

import { CallopError, Continue, Drop, Remove, toDuration } from '../callop.js';

export function init(loop, _args) {
  const failures = [];
  const s = {
    pingsA: 0, pingsB: 0, bEnabledAt: null, bFiredAt: null, cancelledIdleRan: false,
    idleRan: false, immediateFired: false, periodic: 0, namedPings: 0,
  };
  const check = (ok, what) => { if (!ok) failures.push(what); };
  const expectErr = (fn, code, what) => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof CallopError)) throw e;
      if (e.code !== code) failures.push(`${what}: expected ${code}, got ${e.message}`);
      return;
    }
    failures.push(`${what}: expected ${code}, got Ok`);
  };

  // Ping coalescing: two triggers before dispatch -> one event.
  const { ping: pingA } = loop.makePing(() => { s.pingsA += 1; return Continue; });
  pingA.trigger();
  pingA.trigger();

  // Disabled ping: triggered now, must only fire after enable.
  const { ping: pingB, token: tokenB } = loop.makePing(() => {
    s.pingsB += 1;
    if (s.bFiredAt === null) s.bFiredAt = loop.now();
    return Remove;
  });
  loop.disable(tokenB);
  pingB.trigger();
  loop.insertTimer(15, () => {
    s.bEnabledAt = loop.now();
    try {
      loop.enable(tokenB);
    } catch (e) {
      failures.push(`enable: ${e.message}`);
    }
    return Drop;
  });

  // Named ping, triggered through a handle obtained by name.
  loop.makePing(() => { s.namedPings += 1; return Continue; }, 'wake');
  try {
    loop.connectPing('wake').trigger();
  } catch (e) {
    failures.push(`connectPing(wake): ${e.message}`);
  }

  // Idles: one cancelled, one kept.
  const idle = loop.insertIdle(() => { s.cancelledIdleRan = true; });
  loop.remove(idle);
  loop.insertIdle(() => { s.idleRan = true; });

  // Immediate timer, and a periodic one re-armed 3 times.
  loop.insertTimer(0, () => { s.immediateFired = true; return Drop; });
  loop.insertTimer(1, () => {
    s.periodic += 1;
    return s.periodic < 3 ? toDuration(1) : Drop;
  });

  // Host errors (never traps).
  expectErr(() => loop.openChannel('bad/name', () => Remove), 'invalid-argument', 'openChannel(bad/name)');
  loop.openChannel('dup', () => Continue);
  expectErr(() => loop.openChannel('dup', () => Continue), 'already-exists', 'openChannel(dup) twice');
  expectErr(() => loop.connect('no-such-plugin-xyz/in'), 'not-found', 'connect(unknown)');

  // Verdict, late enough that a loaded machine has run every step above (they take ~20 ms).
  // The checks are exact counts; only the wait is generous.
  loop.insertTimer(500, () => {
    check(s.pingsA === 1, `ping coalescing: ${s.pingsA} events for 2 triggers`);
    check(s.pingsB === 1, `disabled ping: ${s.pingsB} events (want 1 after enable)`);
    check(s.bEnabledAt !== null && s.bFiredAt !== null && s.bFiredAt >= s.bEnabledAt, 'disabled ping fired before enable');
    check(!s.cancelledIdleRan, 'cancelled idle ran');
    check(s.idleRan, 'idle did not run');
    check(s.immediateFired, 'immediate timer did not fire');
    check(s.periodic === 3, `periodic timer fired ${s.periodic} times (want 3)`);
    check(s.namedPings === 1, `named ping: ${s.namedPings} events (want 1)`);
    if (failures.length === 0) {
      console.log('selftest: ok');
      loop.removeAll();
    } else {
      for (const f of failures) console.log(`selftest: FAILED: ${f}`);
      loop.stop(1);
    }
    return Drop;
  });
}

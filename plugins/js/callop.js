// callop.js — helper library for callop plugins written in JavaScript.
//
// A plugin is an ES module that exports `init(loop, args)` (and optionally
// `shutdown(loop, deadline)`, and `snapshot()` / `restore(bytes)` to carry
// its state over a reload, see `makeState`). `plugins/polyglot.sh` wraps it
// with this library into a component of the WIT world
// `callop:plugin/plugin-with-state@0.3.0`: this file implements the `guest`
// export (init / dispatch / shutdown) and the `state` export, maps
// the host's source ids back to your callbacks and returns one event-result
// per event.
//
//   import { Drop, toInstant, parseDuration, msToNs } from '../callop.js';
//
//   export function init(loop, args) {
//     let n = 0;
//     loop.insertTimer(500, (deadline) => {      // 500 ms from now
//       console.log(`tick ${++n}`);
//       return n < 3 ? toInstant(deadline + msToNs(500)) : Drop;
//     });
//   }
//
// Units: durations are milliseconds (numbers, like setTimeout); instants are
// host-clock nanoseconds as BigInt (`loop.now()`, a timer's deadline).
//
// Semantics are those of the WIT contract (wit/callop-plugin.wit): sources
// registered in a callback fire in a later batch at the earliest, a plugin
// ends when it owns no source any more, `loop.stop(code)` ends it at once.

import * as host from 'callop:plugin/host-loop@0.3.0';

// ------------------------------------------------------------------ actions

/** Timer result: remove the timer. */
export const Drop = Object.freeze({ tag: 'drop' });
/** Timer result: fire again `ms` milliseconds after now. */
export function toDuration(ms) {
  return { tag: 'to-duration', val: msToNs(ms) };
}
/** Timer result: fire again at host instant `ns` (BigInt nanoseconds). */
export function toInstant(ns) {
  return { tag: 'to-instant', val: typeof ns === 'bigint' ? ns : BigInt(ns) };
}

/** Post actions (return values of idle/ping/channel callbacks). */
export const Continue = 'continue';
export const Reregister = 'reregister';
export const Disable = 'disable';
export const Remove = 'remove';
const POST_ACTIONS = new Set([Continue, Reregister, Disable, Remove]);

// -------------------------------------------------------------------- units

/** Milliseconds (number, may be fractional) → nanoseconds (BigInt). */
export function msToNs(ms) {
  if (typeof ms === 'bigint') return ms * 1000000n;
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`bad duration: ${ms} ms`);
  return BigInt(Math.round(ms * 1e6));
}

/** Nanoseconds (BigInt) → milliseconds (number). */
export function nsToMs(ns) {
  return Number(ns) / 1e6;
}

const UNITS_MS = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, '': 1 };

/**
 * Parses "10ms", "2s", "500us", "100ns" (a bare number means ms) into ms.
 * Throws with the same messages as the Rust example plugins.
 */
export function parseDuration(text) {
  text = String(text);
  const num = /^[0-9]*/.exec(text)[0];
  const unit = text.slice(num.length);
  if (!num) throw new Error(`bad duration ${JSON.stringify(text)}`);
  if (!Object.hasOwn(UNITS_MS, unit)) throw new Error(`bad duration unit in ${JSON.stringify(text)} (use ns, us, ms or s)`);
  return Number(num) * UNITS_MS[unit];
}

// ------------------------------------------------------------------- errors

/** A host-loop call failed. `code` is the WIT error-code, e.g. 'not-found'. */
export class CallopError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = 'CallopError';
    this.code = code;
    this.hostMessage = message;
  }
}

function wrap(fn) {
  try {
    return fn();
  } catch (e) {
    const p = e && e.payload;
    if (p && typeof p === 'object' && 'code' in p) throw new CallopError(p.code, p.message);
    throw e;
  }
}

// ------------------------------------------------------------------ logging

function describe(args) {
  return args.map(describeOne).join(' ');
}

// SpiderMonkey's `stack` does not include the message: print both.
function describeOne(a) {
  if (typeof a === 'string') return a;
  if (a instanceof Error) return a.stack ? `${a}\n${a.stack}`.trimEnd() : String(a);
  return String(a);
}

/** Host logger, attributed to this plugin instance. */
export const log = Object.freeze({
  trace: (...a) => host.log('trace', describe(a)),
  debug: (...a) => host.log('debug', describe(a)),
  info: (...a) => host.log('info', describe(a)),
  warn: (...a) => host.log('warn', describe(a)),
  error: (...a) => host.log('error', describe(a)),
});

// ------------------------------------------------------------ handles/tokens

/** Identifies a registered source; pass it to loop.remove/enable/disable. */
export class Token {
  constructor(id, kind) {
    this.id = id; // BigInt source id
    this.kind = kind; // 'timer' | 'idle' | 'ping' | 'channel'
  }
}

/** Triggers a ping source (own or, via loop.connectPing, someone else's). */
export class Ping {
  constructor(handle) {
    this._h = handle;
  }
  /** Wakes the ping source; triggers coalesce. */
  trigger() {
    this._h.trigger();
  }
  /** Releases the handle (the ping source itself stays). */
  close() {
    dispose(this._h);
    this._h = null;
  }
}

/** Sending end of a channel (`loop.connect(target)`). */
export class Sender {
  constructor(handle) {
    this._h = handle;
  }
  /** Sends one message: a Uint8Array/ArrayBuffer, or a string (UTF-8). */
  send(data) {
    wrap(() => this._h.send(toBytes(data)));
  }
  /** Fully qualified target, e.g. 'pong/in' or '@app/out'. */
  get target() {
    return this._h.target();
  }
  /** Drops the sender now (the channel closes when all senders are gone). */
  close() {
    dispose(this._h);
    this._h = null;
  }
}

// Imported resource handles are released by `[Symbol.dispose]()` (or, late
// and not guaranteed, by garbage collection).
function dispose(h) {
  const sym = Symbol.dispose || Symbol.for('dispose');
  if (h && typeof h[sym] === 'function') h[sym]();
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toBytes(data) {
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('send() expects a string, Uint8Array or ArrayBuffer');
}

/** Decodes a message (Uint8Array) as UTF-8 text. */
export function text(bytes) {
  return decoder.decode(bytes);
}

// --------------------------------------------------------------------- loop

// source id (BigInt; a Map compares BigInt keys by value) → { kind, cb, onClosed }
const sources = new Map();

function register(id, kind, entry) {
  sources.set(id, { kind, ...entry });
  return new Token(id, kind);
}

function checkFn(cb, what) {
  if (typeof cb !== 'function') throw new TypeError(`${what}: callback must be a function`);
}

/** The plugin's view of the host event loop (calloop's LoopHandle). */
class Loop {
  /** Current host monotonic time, BigInt nanoseconds. */
  now() {
    return host.now();
  }

  /** This instance's name (others address its channels as `<name>/<chan>`). */
  get instanceName() {
    return host.instanceName();
  }

  /**
   * Timer firing `ms` milliseconds from now (0 = next iteration). The
   * callback gets the deadline that fired (BigInt ns) and returns Drop
   * (also the default for `undefined`), toDuration(ms) or toInstant(ns).
   */
  insertTimer(ms, cb) {
    checkFn(cb, 'insertTimer');
    return this.insertTimerAt(host.now() + msToNs(ms), cb);
  }

  /** Timer firing at host instant `deadline` (BigInt ns). */
  insertTimerAt(deadline, cb) {
    checkFn(cb, 'insertTimerAt');
    const id = wrap(() => host.addTimer(BigInt(deadline)));
    return register(id, 'timer', { cb });
  }

  /** One-shot callback run after the current batch of events (calloop insert_idle). */
  insertIdle(cb) {
    checkFn(cb, 'insertIdle');
    const id = wrap(() => host.addIdle());
    return register(id, 'idle', { cb });
  }

  /**
   * Ping source: returns { ping, token }. `cb()` runs once per batch in which
   * the ping was triggered. With `name`, others reach it as `<instance>/<name>`.
   */
  makePing(cb, name) {
    checkFn(cb, 'makePing');
    const [id, handle] = wrap(() => host.makePing(name === undefined || name === null ? undefined : String(name)));
    return { ping: new Ping(handle), token: register(id, 'ping', { cb }) };
  }

  /** Handle to an existing named ping, `<instance>/<name>` (or own `<name>`). */
  connectPing(target) {
    return new Ping(wrap(() => host.connectPing(String(target))));
  }

  /**
   * Opens channel `<instance>/<name>`. `onMessage(bytes: Uint8Array)` runs per
   * message; `onClosed()` once when every sender is gone (default: remove the
   * channel). Both return a post action (undefined = Continue).
   */
  openChannel(name, onMessage, onClosed) {
    checkFn(onMessage, 'openChannel');
    if (onClosed !== undefined) checkFn(onClosed, 'openChannel(onClosed)');
    const id = wrap(() => host.openChannel(String(name)));
    return register(id, 'channel', { cb: onMessage, onClosed });
  }

  /** Sender to `target`: `<instance>/<name>`, own `<name>`, or `@app/<name>`. */
  connect(target) {
    return new Sender(wrap(() => host.connect(String(target))));
  }

  /** Removes a source (no-op if it is already gone). */
  remove(token) {
    if (!sources.delete(token.id)) return;
    try {
      wrap(() => host.remove(token.id));
    } catch (e) {
      log.debug(`remove(${token.id}) failed: ${e.message}`);
    }
  }

  /** Disables a source; it stays registered but produces no events. */
  disable(token) {
    wrap(() => host.disable(token.id));
  }

  /** Re-enables a disabled source. */
  enable(token) {
    wrap(() => host.enable(token.id));
  }

  /** Re-applies a registration (calloop update; a no-op for non-I/O sources). */
  update(token) {
    wrap(() => host.update(token.id));
  }

  /** Removes every source; the plugin ends after the current call. */
  removeAll() {
    for (const [id, s] of [...sources]) this.remove(new Token(id, s.kind));
  }

  /** Ends this plugin with `code` once the current call returns. */
  stop(code = 0) {
    host.stop(code | 0);
  }

  get log() {
    return log;
  }
}

const loop = new Loop();

// ------------------------------------------------------------ guest export

// Results without a varying payload are built once and shared: the
// generated bindings only read the returned list.
const TIMEOUT_DROP = Object.freeze({ tag: 'timeout', val: Drop });
const POST = Object.freeze({
  [Continue]: Object.freeze({ tag: 'post', val: Continue }),
  [Reregister]: Object.freeze({ tag: 'post', val: Reregister }),
  [Disable]: Object.freeze({ tag: 'post', val: Disable }),
  [Remove]: Object.freeze({ tag: 'post', val: Remove }),
});

// A timer callback's result as the WIT event-result (Drop: the timer's
// callback is forgotten).
function timerResult(id, r) {
  if (r === undefined || r === null || r === Drop || (r && r.tag === 'drop')) {
    sources.delete(id);
    return TIMEOUT_DROP;
  }
  if (r && (r.tag === 'to-instant' || r.tag === 'to-duration')) return { tag: 'timeout', val: r };
  throw new TypeError(`timer callback returned ${String(r)}; expected Drop, toDuration(ms) or toInstant(ns)`);
}

function postResult(r) {
  if (r === undefined || r === null) return Continue;
  if (POST_ACTIONS.has(r)) return r;
  throw new TypeError(`callback returned ${String(r)}; expected Continue, Reregister, Disable or Remove`);
}

function unhandled(kind) {
  return kind.tag === 'timer' ? TIMEOUT_DROP : POST[Remove];
}

let failed = false;

// An exception escaping a callback ends the plugin with exit code 1 (the
// equivalent of a Rust panic), after logging it.
function fail(where, e) {
  log.error(`uncaught exception in ${where}:`, e);
  failed = true;
  host.stop(1);
}

function runOne(ev) {
  const id = ev.source;
  const src = sources.get(id);
  const kind = ev.kind;
  if (!src || failed) return unhandled(kind); // removed earlier in this batch
  switch (kind.tag) {
    case 'timer':
      return timerResult(id, src.cb(kind.val));
    case 'idle':
      sources.delete(id); // one-shot
      src.cb();
      return POST[Continue];
    case 'ping':
      return post(id, postResult(src.cb()));
    case 'messages':
      return post(id, runBatch(id, src, kind.val));
    case 'closed':
      return post(id, src.onClosed ? postResult(src.onClosed()) : Remove);
    default:
      return unhandled(kind);
  }
}

// Runs a channel callback once per message of a packed batch. Remove
// (returned, or the callback removing its own source) ends the batch;
// Disable takes effect after it.
function runBatch(id, src, batch) {
  const { data, lengths } = batch;
  let result = Continue;
  let start = 0;
  for (let i = 0; i < lengths.length; i++) {
    const n = lengths[i];
    const action = postResult(src.cb(data.subarray(start, start + n)));
    start += n;
    if (action === Remove || !sources.has(id)) return Remove;
    if (action === Disable) result = Disable;
  }
  return result;
}

function post(id, action) {
  if (action === Remove) sources.delete(id);
  return POST[action];
}

let plugin = null;

/** Builds the `guest` export for a plugin module ({ init, shutdown? }). */
export function makeGuest(mod) {
  plugin = mod;
  if (typeof mod.init !== 'function') throw new Error('callop plugin module must export function init(loop, args)');
  return {
    init(args) {
      try {
        plugin.init(loop, args);
      } catch (e) {
        // result<_, string>: a thrown string becomes err(string).
        throw e instanceof Error ? e.message : String(e);
      }
    },
    dispatch(events) {
      const n = events.length;
      const results = new Array(n);
      for (let i = 0; i < n; i++) {
        const ev = events[i];
        let r;
        try {
          const kind = ev.kind;
          const src = sources.get(ev.source);
          if (kind.tag === 'timer' && src && !failed) {
            // The common case inline: a periodic timer's next instant.
            const t = src.cb(kind.val);
            r = t && t.tag === 'to-instant' ? { tag: 'timeout', val: t } : timerResult(ev.source, t);
          } else {
            r = runOne(ev);
          }
        } catch (e) {
          fail(`${ev.kind.tag} callback`, e);
          r = unhandled(ev.kind);
        }
        results[i] = r;
      }
      return results;
    },
    shutdown(deadline) {
      try {
        if (typeof plugin.shutdown === 'function') plugin.shutdown(loop, deadline);
        else loop.removeAll();
      } catch (e) {
        fail('shutdown', e);
      }
    },
  };
}

// ------------------------------------------------------------ state export

// The previous version's snapshot, from `restore` until `restored()` takes it.
let restoredBytes;

/// The previous version's snapshot (a Uint8Array) while the plugin's `init`
/// runs after a reload, or `undefined` (a first start, nothing handed over,
/// or already taken).
export function restored() {
  const b = restoredBytes;
  restoredBytes = undefined;
  return b;
}

/// The WIT `state` export (world plugin-with-state): a reload calls the old
/// version's `snapshot()` (the module's optional `snapshot()` returning a
/// Uint8Array, or nothing: the new version starts fresh) and hands the
/// bytes to the new version's `restore` before its `init` (the module's
/// optional `restore(bytes)` may throw to refuse them; the bytes are then
/// available to `init` through `restored()`).
export function makeState(mod) {
  return {
    snapshot() {
      try {
        if (typeof mod.snapshot !== 'function') return undefined;
        const b = mod.snapshot();
        if (b === undefined || b === null) return undefined;
        return b instanceof Uint8Array ? b : new TextEncoder().encode(String(b));
      } catch (e) {
        fail('snapshot', e);
        return undefined;
      }
    },
    restore(bytes) {
      try {
        if (typeof mod.restore === 'function') mod.restore(bytes);
      } catch (e) {
        // result<_, string>: a thrown string becomes err(string).
        throw e instanceof Error ? e.message : String(e);
      }
      restoredBytes = bytes;
    },
  };
}

export { loop };

// relay (JavaScript twin of plugins/relay): answers messages from the application.
//
// Args: --reply-to <target> (default @app/out), --prefix <text> (default empty),
// --after <n> --then <disable|remove|self-remove> (once n messages were relayed
// the callback returns Disable or Remove, or removes its own channel; the host
// tests use it on packed batches).
//
// Opens the channel `in` (addressed by the application as `<instance-name>/in`,
// e.g. `relay/in`) and answers every message with `prefix + message` on a
// sender to the reply target (connected lazily, on the first message). When
// the application drops its last sender to `relay/in` the channel reports
// closed; the relay then prints `relay: closed after N messages`, removes the
// channel and ends.

import { log, CallopError, Continue, Disable, Remove } from '../callop.js';

function parseArgs(args) {
  let replyTo = '@app/out';
  let prefix = '';
  let after = null;
  let then = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (name) => {
      if (i + 1 >= args.length) throw new Error(`${name} needs a value`);
      return args[++i];
    };
    if (arg === '--reply-to') replyTo = value('--reply-to');
    else if (arg === '--prefix') prefix = value('--prefix');
    else if (arg === '--after') after = Number.parseInt(value('--after'), 10);
    else if (arg === '--then') {
      then = value('--then');
      if (!['disable', 'remove', 'self-remove'].includes(then)) {
        throw new Error(`bad --then ${JSON.stringify(then)} (disable, remove or self-remove)`);
      }
    } else {
      throw new Error(
        `unknown argument ${JSON.stringify(arg)} (usage: [--reply-to @app/out] [--prefix TEXT] [--after N --then WHAT])`,
      );
    }
  }
  if ((after === null) !== (then === null)) throw new Error('--after and --then go together');
  return { replyTo, prefix: new TextEncoder().encode(prefix), after, then };
}

export function init(loop, args) {
  const { replyTo, prefix, after, then } = parseArgs(args);
  let sender = null;
  let relayed = 0;
  let token = null;

  function onMessage(bytes) {
    if (sender === null) {
      try {
        sender = loop.connect(replyTo);
      } catch (e) {
        if (!(e instanceof CallopError)) throw e;
        log.error(`relay: cannot reach ${replyTo}: ${e.message}`);
        return Continue;
      }
    }
    const reply = new Uint8Array(prefix.length + bytes.length);
    reply.set(prefix, 0);
    reply.set(bytes, prefix.length);
    try {
      sender.send(reply);
      relayed += 1;
    } catch (e) {
      if (!(e instanceof CallopError)) throw e;
      log.error(`relay: reply to ${replyTo} failed: ${e.message}`);
    }
    if (relayed === after) {
      if (then === 'disable') return Disable;
      if (then === 'remove') return Remove;
      loop.remove(token);
    }
    return Continue;
  }

  function onClosed() {
    console.log(`relay: closed after ${relayed} messages`);
    if (sender !== null) sender.close();
    sender = null;
    return Remove;
  }

  token = loop.openChannel('in', onMessage, onClosed);
}

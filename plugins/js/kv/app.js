// kv (JavaScript twin of plugins/kv-plugin): a plugin of the key-value
// example application (tests/kv-app), using its API (`example:kv`) beside
// the loop.
//
// Args: --count <n> (default 3), --key <key> (default `<instance>/tick`).
// Every 10 ms a timer sets the key to the tick number; after the last tick
// it notifies `wrote <n> ticks`, sends the key to its own channel `read` and
// drops itself. The channel callback reads the key back, notifies
// `read <key>=<value> (<m> of my keys)` and removes the channel; with no
// source left the plugin ends.
//
// Built for the world example:kv/kv-plugin (file WORLD): the application's
// imports are the modules 'example:kv/store@1.0.0' and
// 'example:kv/notify@1.0.0', beside callop's.

import { Drop, Remove, toInstant, msToNs, text } from '../callop.js';
import { get, set, keys } from 'example:kv/store@1.0.0';
import { notify } from 'example:kv/notify@1.0.0';

function parseArgs(args) {
  let count = 3;
  let key;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (name) => {
      if (i + 1 >= args.length) throw new Error(`${name} needs a value`);
      return args[++i];
    };
    if (arg === '--count') count = Number.parseInt(value('--count'), 10);
    else if (arg === '--key') key = value('--key');
    else throw new Error(`unknown argument ${JSON.stringify(arg)} (usage: [--count N] [--key KEY])`);
  }
  return { count: Math.max(count || 1, 1), key };
}

export function init(loop, args) {
  const a = parseArgs(args);
  const name = loop.instanceName;
  const key = a.key ?? `${name}/tick`;
  const every = 10; // ms
  const period = msToNs(every);
  let ticks = 0;

  loop.openChannel('read', (bytes) => {
    const k = text(bytes);
    const v = get(k);
    const mine = keys().filter((x) => x.startsWith(`${name}/`)).length;
    notify('info', `read ${k}=${v ?? '<unset>'} (${mine} of my keys)`);
    return Remove;
  });
  loop.insertTimer(every, (deadline) => {
    ticks += 1;
    set(key, String(ticks));
    if (ticks < a.count) return toInstant(deadline + period);
    notify('info', `wrote ${ticks} ticks`);
    const tx = loop.connect('read');
    tx.send(key);
    tx.close();
    return Drop;
  });
}

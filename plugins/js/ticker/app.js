// ticker (JavaScript twin of plugins/ticker): a repeating timer.
//
// Args: --every <duration> (default 100ms; units ns, us, ms, s) and
// --count <n> (default 5). Prints `tick 1` … `tick N` on stdout, one per
// period, then drops its timer; with no source left the plugin ends (exit 0).

import { Drop, toInstant, parseDuration, msToNs } from '../callop.js';

function parseArgs(args) {
  let every = 100; // ms
  let count = 5;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (name) => {
      if (i + 1 >= args.length) throw new Error(`${name} needs a value`);
      return args[++i];
    };
    if (arg === '--every') every = parseDuration(value('--every'));
    else if (arg === '--count') {
      const v = value('--count');
      if (!/^\d+$/.test(v)) throw new Error(`bad --count: ${JSON.stringify(v)}`);
      count = Number(v);
    } else throw new Error(`unknown argument ${JSON.stringify(arg)} (usage: --every 10ms --count 5)`);
  }
  return { every, count };
}

export function init(loop, args) {
  const { every, count } = parseArgs(args);
  const period = msToNs(every);
  let ticks = 0;
  if (count > 0) {
    loop.insertTimer(every, (deadline) => {
      ticks += 1;
      console.log(`tick ${ticks}`);
      // Drift-free period, relative to the deadline that fired.
      return ticks >= count ? Drop : toInstant(deadline + period);
    });
  }
}

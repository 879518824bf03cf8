// ticker (JavaScript twin of plugins/ticker): a repeating timer.
//
// Args: --every <duration> (default 100ms; units ns, us, ms, s) and
// --count <n> (default 5). Prints `tick 1` … `tick N` on stdout, one per
// period, then drops its timer; with no source left the plugin ends (exit 0).

import { Drop, toInstant, parseDuration, msToNs } from '../callop.js';

// Same messages as Rust's u64 parsing in plugins/ticker.
function parseCount(v) {
  if (v === '') throw new Error('bad --count: cannot parse integer from empty string');
  if (!/^\+?[0-9]+$/.test(v)) throw new Error('bad --count: invalid digit found in string');
  const n = BigInt(v);
  if (n >= 1n << 64n) throw new Error('bad --count: number too large to fit in target type');
  return n;
}

function parseArgs(args) {
  let every = 100; // ms
  let count = 5n;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (name) => {
      if (i + 1 >= args.length) throw new Error(`${name} needs a value`);
      return args[++i];
    };
    if (arg === '--every') every = parseDuration(value('--every'));
    else if (arg === '--count') count = parseCount(value('--count'));
    else throw new Error(`unknown argument ${JSON.stringify(arg)} (usage: --every 10ms --count 5)`);
  }
  return { every, count };
}

export function init(loop, args) {
  const { every, count } = parseArgs(args);
  const period = msToNs(every);
  let ticks = 0n;
  if (count > 0n) {
    loop.insertTimer(every, (deadline) => {
      ticks += 1n;
      console.log(`tick ${ticks}`);
      // Drift-free period, relative to the deadline that fired.
      return ticks >= count ? Drop : toInstant(deadline + period);
    });
  }
}

// hello: the smallest JavaScript plugin, exactly the README's example.
//
// Prints `hello 1` … `hello 3`, 250 ms apart, then drops its timer; with no
// source left the plugin ends (exit 0). Build it with
// `plugins/polyglot.sh js/hello` (-> target/polyglot/js-hello.wasm).

// plugins/js/hello/app.js
import { Drop, toDuration } from '../callop.js';

export function init(loop, args) {
  let n = 0;
  loop.insertTimer(250, (deadline) => {   // ms; deadline: BigInt ns
    console.log(`hello ${++n}`);
    return n === 3 ? Drop : toDuration(250);
  });
}

// The floor of a JavaScript plugin: one `dispatch` call into a
// componentize-js component, without the helper (plugins/js/callop.js). Its
// timer fires again at once (`to-duration 0`) until `--count N` events, then
// it is dropped; every answer is a prebuilt list. See `../event_cost.rs`.
//
//   componentize-js host/plugin-host/examples/empty-plugins/empty.js --wit wit \
//       -n plugin-with-state -d http fetch-event -o target/polyglot/js-empty.wasm

import * as host from 'callop:plugin/host-loop@0.3.0';

const AGAIN = [{ tag: 'timeout', val: { tag: 'to-duration', val: 0n } }];
const DROP = [{ tag: 'timeout', val: { tag: 'drop' } }];
let left = 0;

export const guest = {
  init(args) {
    left = Number(args[args.indexOf('--count') + 1]);
    host.addTimer(host.now());
  },
  dispatch(events) {
    left -= 1;
    return left > 0 ? AGAIN : DROP;
  },
  shutdown(deadline) {},
};

export const state = {
  snapshot() {
    return undefined;
  },
  restore(bytes) {},
};

// The pages' link to the workspace's realtime stream, through the shared client (../realtime.js:
// seq bookkeeping, resume after disconnect, resync, heartbeats, typing).
//
// Pages load their data fresh right after connecting, so they subscribe "live from now"
// (since: null) and wait until the server confirms the subscription: nothing that happens after
// the data was read can be missed, and no stale replay is applied over fresh data.
import { connect } from '../realtime.js';
import { ws } from './api.js';

/** handlers: onEvent({seq, type, data}), onResync() (may return a promise), onTyping(msg), onState(s). */
export async function connectLive(handlers) {
  let markReady;
  const ready = new Promise((resolve) => { markReady = resolve; });
  const client = connect({
    workspaceId: ws,
    since: null,
    onEvent: (event) => handlers.onEvent?.(event),
    onResync: () => handlers.onResync?.(),
    onTyping: (message) => handlers.onTyping?.(message),
    onState: (state) => {
      document.body.dataset.live = state;
      handlers.onState?.(state);
      if (state === 'live' || state === 'denied') markReady();
    },
  });
  await Promise.race([ready, new Promise((resolve) => setTimeout(resolve, 3000))]);
  return {
    typing: (conversationId, state = 'typing') => client.sendTyping(conversationId, state),
    close: () => client.close(),
  };
}

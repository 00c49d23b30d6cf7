// Kabar realtime client: one WebSocket to /v1/workspaces/{ws}/realtime that never misses an event.
//
//   import { connect } from '/static/realtime.js';
//   const live = connect({
//     workspaceId,
//     onEvent: ({ seq, type, data, created_at }) => { ... },   // strictly increasing seq, each once
//     onResync: async () => { await reloadEverything(); },     // the gap is older than retention
//     onTyping: (message) => { ... },                           // {conversation_id, user_id|contact_id, state}
//     onState: (state) => { ... },                              // connecting | live | offline | denied | closed
//   });
//   live.sendTyping(conversationId, 'typing' | 'paused');
//   live.close();
//
// - Keeps the last applied seq (localStorage, per workspace) and resubscribes with it after any
//   disconnect, so the server replays what was missed from its event log.
// - Applies events idempotently: anything at or below the last seq is ignored.
// - On `resync` it calls onResync (awaited) and buffers the events that arrive meanwhile, then
//   applies them in order: state loaded by the reload is never overwritten by older events.
// - Reconnects with exponential backoff and jitter; also right away when the browser goes back
//   online or the tab becomes visible. A socket silent for longer than `silenceMs` (the server
//   pings every 25 s) is treated as dead.
// - Authentication: the session cookie (same origin); pass `token` for other callers.

const DENIED = new Set([4401, 4403, 4404]);

export class RealtimeClient {
  constructor({
    workspaceId,
    url = null,
    token = null,
    since = undefined, // undefined: the stored seq (or live from now); null: live from now; N: after N
    onEvent = () => {},
    onResync = () => {},
    onTyping = () => {},
    onState = () => {},
    storage = safeStorage(),
    WebSocketImpl = globalThis.WebSocket,
    minBackoffMs = 500,
    maxBackoffMs = 15000,
    silenceMs = 60000,
  }) {
    if (!workspaceId) throw new Error('workspaceId is required');
    this.workspaceId = workspaceId;
    this.url = url || defaultUrl(workspaceId);
    this.token = token;
    this.handlers = { onEvent, onResync, onTyping, onState };
    this.storage = storage;
    this.WebSocketImpl = WebSocketImpl;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.silenceMs = silenceMs;
    this.key = `kabar.realtime.seq.${workspaceId}`;
    this.lastSeq = since === undefined ? readSeq(storage, this.key) : since;
    this.socket = null;
    this.state = 'idle';
    this.attempt = 0;
    this.started = false;
    this.stopped = false;
    this.reloading = null; // a Promise while onResync runs
    this.buffer = [];
    this.timers = { retry: null, silence: null };
    this._wake = () => this._reconnectSoon();
  }

  start() {
    if (this.started) return this;
    this.started = true;
    if (typeof window !== 'undefined' && window.addEventListener) {
      window.addEventListener('online', this._wake);
      document.addEventListener?.('visibilitychange', this._wake);
    }
    this._open();
    return this;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.silence);
    if (typeof window !== 'undefined' && window.removeEventListener) {
      window.removeEventListener('online', this._wake);
      document.removeEventListener?.('visibilitychange', this._wake);
    }
    if (this.socket) this.socket.close(1000, 'bye');
    this._setState('closed');
  }

  sendTyping(conversationId, state = 'typing') {
    this._send({ op: 'typing', conversation_id: conversationId, state });
  }

  typing(conversationId, state = 'typing') {
    this.sendTyping(conversationId, state);
  }

  // -- internals ------------------------------------------------------------------------------

  _open() {
    if (this.stopped) return;
    this._setState('connecting');
    const url = this.token ? `${this.url}?token=${encodeURIComponent(this.token)}` : this.url;
    const socket = new this.WebSocketImpl(url);
    this.socket = socket;
    socket.onopen = () => {
      this._send({ op: 'subscribe', since: this.lastSeq ?? null });
      this._alive();
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      this._alive();
      let msg;
      try {
        msg = JSON.parse(message.data);
      } catch {
        return;
      }
      this._handle(msg);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      clearTimeout(this.timers.silence);
      if (this.stopped) return;
      if (DENIED.has(event.code)) {
        this._setState('denied');
        return;
      }
      this._setState('offline');
      this._scheduleRetry();
    };
    socket.onerror = () => {}; // onclose follows and decides
  }

  _handle(msg) {
    switch (msg.op) {
      case 'event':
        if (this.reloading) this.buffer.push(msg);
        else this._apply(msg);
        break;
      case 'subscribed':
        if (this.lastSeq == null) this._remember(msg.since);
        this.attempt = 0;
        this._setState('live');
        break;
      case 'resync':
        this._resync(msg.last_seq);
        break;
      case 'typing':
        this._call('onTyping', msg);
        break;
      case 'ping':
        this._send({ op: 'pong' });
        break;
      case 'error':
        if (typeof console !== 'undefined') console.warn('realtime:', msg.detail || msg.title);
        break;
      default:
        break;
    }
  }

  _apply(msg) {
    if (this.lastSeq != null && msg.seq <= this.lastSeq) return; // seen already
    this._remember(msg.seq);
    this._call('onEvent', { seq: msg.seq, type: msg.type, data: msg.data, created_at: msg.created_at });
  }

  async _resync(lastSeq) {
    // Reload state as of (at least) lastSeq; the server streams what follows, which we hold
    // back until the reload is done.
    this._remember(lastSeq);
    if (this.reloading) return;
    this.buffer = [];
    this.reloading = Promise.resolve().then(() => this.handlers.onResync());
    try {
      await this.reloading;
    } catch (error) {
      if (typeof console !== 'undefined') console.error('realtime: reload failed', error);
    } finally {
      this.reloading = null;
      const held = this.buffer;
      this.buffer = [];
      held.forEach((msg) => this._apply(msg));
    }
  }

  _remember(seq) {
    if (seq == null) return;
    this.lastSeq = seq;
    try {
      this.storage?.setItem(this.key, String(seq));
    } catch {
      /* storage full or disabled: memory is enough for this page */
    }
  }

  _send(message) {
    const socket = this.socket;
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(message));
  }

  _alive() {
    clearTimeout(this.timers.silence);
    this.timers.silence = setTimeout(() => {
      if (this.socket) this.socket.close(4000, 'silent');
    }, this.silenceMs);
  }

  _scheduleRetry() {
    clearTimeout(this.timers.retry);
    const ceiling = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.timers.retry = setTimeout(() => this._open(), delay);
  }

  _reconnectSoon() {
    if (this.stopped || this.socket || this.state === 'denied') return;
    if (typeof document !== 'undefined' && document.visibilityState === 'hidden') return;
    clearTimeout(this.timers.retry);
    this.attempt = 0;
    this._open();
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this._call('onState', state);
  }

  _call(name, arg) {
    try {
      return this.handlers[name](arg);
    } catch (error) {
      if (typeof console !== 'undefined') console.error(`realtime: ${name} failed`, error);
      return undefined;
    }
  }
}

export function connect(options) {
  return new RealtimeClient(options).start();
}

function defaultUrl(workspaceId) {
  const secure = globalThis.location?.protocol === 'https:';
  const host = globalThis.location?.host || 'localhost';
  return `${secure ? 'wss' : 'ws'}://${host}/v1/workspaces/${encodeURIComponent(workspaceId)}/realtime`;
}

function readSeq(storage, key) {
  try {
    const raw = storage?.getItem(key);
    const seq = raw == null ? NaN : Number.parseInt(raw, 10);
    return Number.isFinite(seq) && seq >= 0 ? seq : null;
  } catch {
    return null;
  }
}

function safeStorage() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null;
  }
}

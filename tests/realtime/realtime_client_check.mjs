// Exercises static/realtime.js with a fake WebSocket (run by test_js_client.py under Node).
import assert from 'node:assert/strict';

const [, , modulePath] = process.argv;
const { connect } = await import(modulePath);

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.();
    });
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000) { this.readyState = 3; queueMicrotask(() => this.onclose?.({ code })); }
  deliver(msg) { this.onmessage?.({ data: JSON.stringify(msg) }); }
  drop(code = 1006) { this.readyState = 3; this.onclose?.({ code }); }
}

const store = new Map();
const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
const tick = () => new Promise((r) => setTimeout(r, 5));
const until = async (cond, what) => {
  for (let i = 0; i < 400 && !cond(); i++) await tick();
  assert.ok(cond(), what);
};
const ev = (seq) => ({ op: 'event', seq, type: 't', data: { seq }, created_at: 'x' });

const applied = [];
const states = [];
const typing = [];
let reloads = 0;
let finishReload;
const client = connect({
  workspaceId: 'w1', url: 'ws://test/rt', token: 'kst_x', storage, WebSocketImpl: FakeSocket,
  minBackoffMs: 5, maxBackoffMs: 20,
  onEvent: (e) => applied.push(e.seq),
  onState: (s) => states.push(s),
  onTyping: (m) => typing.push(m),
  onResync: () => { reloads += 1; return new Promise((r) => { finishReload = r; }); },
});
client.start(); // idempotent
await until(() => FakeSocket.all.length === 1 && FakeSocket.all[0].sent.length === 1, 'subscribed once');
let s = FakeSocket.all[0];
assert.equal(s.url, 'ws://test/rt?token=kst_x');
assert.deepEqual(s.sent[0], { op: 'subscribe', since: null });
s.deliver({ op: 'subscribed', since: 10, last_seq: 10 });
assert.equal(store.get('kabar.realtime.seq.w1'), '10');
[11, 12, 12, 11, 13].forEach((n) => s.deliver(ev(n)));
assert.deepEqual(applied, [11, 12, 13], 'duplicates and old events ignored');
assert.equal(store.get('kabar.realtime.seq.w1'), '13');

// Disconnect: reconnect with backoff and resume after the last seq.
s.drop();
await until(() => FakeSocket.all.length === 2 && FakeSocket.all[1].sent.length === 1, 'reconnected');
s = FakeSocket.all[1];
assert.deepEqual(s.sent[0], { op: 'subscribe', since: 13 });
s.deliver({ op: 'subscribed', since: 13, last_seq: 15 });
[14, 15].forEach((n) => s.deliver(ev(n)));
assert.deepEqual(applied, [11, 12, 13, 14, 15]);

// Resync: reload, holding back events until it is done, then apply them in order.
s.deliver({ op: 'resync', last_seq: 40 });
await until(() => reloads === 1, 'reload requested');
[41, 42].forEach((n) => s.deliver(ev(n)));
assert.deepEqual(applied, [11, 12, 13, 14, 15], 'held back during reload');
finishReload();
await until(() => applied.length === 7, 'applied after reload');
assert.deepEqual(applied.slice(5), [41, 42]);

// Typing both ways; pings answered.
s.deliver({ op: 'typing', conversation_id: 'c1', state: 'typing' });
assert.equal(typing[0].conversation_id, 'c1');
client.sendTyping('c2');
assert.deepEqual(s.sent.at(-1), { op: 'typing', conversation_id: 'c2', state: 'typing' });
s.deliver({ op: 'ping' });
assert.deepEqual(s.sent.at(-1), { op: 'pong' });

// A new page resumes from the stored seq.
const again = connect({ workspaceId: 'w1', url: 'ws://test/rt', storage, WebSocketImpl: FakeSocket, onEvent: () => {} });
await until(() => FakeSocket.all.length === 3 && FakeSocket.all[2].sent.length === 1, 'second client');
assert.deepEqual(FakeSocket.all[2].sent[0], { op: 'subscribe', since: 42 });
again.close();

// Refused credentials: no retry loop.
s.drop(4401);
await tick(); await tick();
assert.equal(states.at(-1), 'denied');
assert.equal(FakeSocket.all.length, 3);
client.close();
assert.equal(states.at(-1), 'closed');
console.log('realtime.js ok');

// The JSON dialect on /v1: subscribe with presence, publish for the chat, `send` for
// the WebRTC signals. The page talks to it through the same callbacks as rtc.js.

export const DIALECT = 'json';

// `on`: { welcome(me), joined(peer, metadata), left(peer), snapshot(), chat(from, text),
// signal(from, data), closed(code, reason), error(text) }.
export class Signalling {
  constructor({ room, name, token, on }) {
    this.room = room;
    this.name = name;
    this.on = on;
    this.next = 0;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // A browser cannot set headers: a token rides as a `bearer.<token>` subprotocol,
    // never in the URL.
    const protocols = token ? ['json', `bearer.${token}`] : ['json'];
    this.ws = new WebSocket(`${scheme}//${location.host}/v1`, protocols);
    this.ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.ws.onclose = (event) => on.closed(event.code, event.reason);
  }

  request(frame) {
    this.next += 1;
    this.ws.send(JSON.stringify({ ...frame, requestId: String(this.next) }));
  }

  receive(frame) {
    switch (frame.type) {
      case 'welcome':
        this.me = frame.peerId;
        this.on.welcome(frame.peerId);
        this.request({ type: 'subscribe', channel: this.room });
        break;
      case 'presence':
        if (frame.channel !== this.room) break;
        if (frame.snapshot) this.on.snapshot();
        for (const p of frame.joined) this.on.joined(p.peerId, p.metadata);
        for (const p of frame.left) this.on.left(p.peerId);
        break;
      case 'message':
        if (frame.channel === this.room && frame.data && typeof frame.data.text === 'string') {
          this.on.chat(frame.data.name ? `${frame.data.name} (${frame.from})` : frame.from, frame.data.text);
        }
        break;
      case 'direct':
        if (frame.data && frame.data.signal) this.on.signal(frame.from, frame.data.signal);
        break;
      case 'error':
        this.on.error(`${frame.code}: ${frame.message}`);
        break;
      case 'going_away':
        this.on.error('the server is shutting down');
        break;
      default:
        break;
    }
  }

  chat(text) {
    this.request({ type: 'publish', channel: this.room, data: { name: this.name, text } });
  }

  signal(to, data) {
    this.request({ type: 'send', to, data: { signal: data } });
  }

  close() {
    this.ws.onclose = null;
    this.ws.close(1000);
  }
}

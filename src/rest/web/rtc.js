// The rtc-signaller dialect on /: `/announce` joins the room with this tab's metadata,
// `/chat` passes through to the room, and `/to|<peer>|/signal|<me>|<json>` carries the
// WebRTC signals. Same callbacks as json.js.

export const DIALECT = 'rtc-signaller';

// JSON inside a pipe frame: a `|` would split it, so it is written as \u007c.
const pipeSafe = (value) => JSON.stringify(value).replace(/\|/g, '\\u007c');

// The id a token names (`sub`), which an announce must use.
function subject(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part)).sub;
  } catch {
    return undefined;
  }
}

function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

export class Signalling {
  constructor({ room, name, token, on }) {
    this.room = room;
    this.name = name;
    this.on = on;
    this.me = (token && subject(token)) || randomId();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const protocols = token ? ['rtc-signaller', `bearer.${token}`] : ['rtc-signaller'];
    this.ws = new WebSocket(`${scheme}//${location.host}/`, protocols);
    this.ws.onopen = () => {
      const announce = { id: this.me, room, name, browser: navigator.userAgent.includes('Headless') ? 'headless' : 'browser' };
      this.ws.send(`/announce|${this.me}|${pipeSafe(announce)}`);
      on.welcome(this.me);
      on.snapshot();
    };
    this.ws.onmessage = (event) => this.receive(String(event.data));
    this.ws.onclose = (event) => on.closed(event.code, event.reason);
  }

  receive(frame) {
    const parts = frame.split('|');
    const command = parts[0].toLowerCase();
    if (command === '/to') {
      // `/to|<me>|<wrapped frame>`: a frame for this tab only.
      this.receiveWrapped(parts.slice(2));
      return;
    }
    if (command === '/error') {
      const error = JSON.parse(parts.slice(1).join('|'));
      this.on.error(`${error.code}: ${error.message}`);
      return;
    }
    this.receiveWrapped(parts);
  }

  receiveWrapped(parts) {
    const [command, from] = [parts[0].toLowerCase(), parts[1]];
    const body = parts.slice(2).join('|');
    const json = () => { try { return JSON.parse(body); } catch { return undefined; } };
    switch (command) {
      case '/announce': {
        const { id, room, ...metadata } = json() || {};
        if (room === this.room && id && id !== this.me) this.on.joined(id, metadata);
        break;
      }
      case '/leave':
        this.on.left(from);
        break;
      case '/chat': {
        const chat = json();
        if (chat && typeof chat.text === 'string') this.on.chat(chat.name ? `${chat.name} (${from})` : from, chat.text);
        break;
      }
      case '/message': {
        // A JSON peer's publish to this room.
        const data = json();
        if (data && typeof data.text === 'string') this.on.chat(data.name ? `${data.name} (${from})` : from, data.text);
        break;
      }
      case '/signal':
        this.on.signal(from, json());
        break;
      default:
        break;
    }
  }

  chat(text) {
    this.ws.send(`/chat|${this.me}|${pipeSafe({ name: this.name, text })}`);
  }

  signal(to, data) {
    this.ws.send(`/to|${to}|/signal|${this.me}|${pipeSafe(data)}`);
  }

  close() {
    this.ws.onclose = null;
    this.ws.close(1000);
  }
}

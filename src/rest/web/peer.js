// One WebRTC data channel per other peer in the room. The signals (offer, answer, ICE
// candidates) travel through the server as direct messages; the channel's messages
// do not. No STUN or TURN: host candidates are enough between tabs of one machine.

export class Mesh {
  // `on`: { signal(to, data), opened(peer), message(peer, text), closed(peer) }.
  constructor(on) {
    this.on = on;
    this.links = new Map();
  }

  // A peer is in the room: the smaller id offers, so exactly one side does.
  meet(me, peer) {
    if (this.links.has(peer) || !(me < peer)) return;
    const link = this.link(peer);
    this.attach(peer, link, link.pc.createDataChannel('demo'));
    link.pc.createOffer()
      .then((offer) => link.pc.setLocalDescription(offer))
      .then(() => this.on.signal(peer, { kind: 'offer', sdp: link.pc.localDescription.sdp }))
      .catch((e) => console.error('offer failed', e));
  }

  async handle(from, data) {
    if (!data || typeof data.kind !== 'string') return;
    const link = this.links.get(from) || this.link(from);
    const pc = link.pc;
    try {
      if (data.kind === 'offer') {
        await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
        await this.flush(link);
        await pc.setLocalDescription(await pc.createAnswer());
        this.on.signal(from, { kind: 'answer', sdp: pc.localDescription.sdp });
      } else if (data.kind === 'answer') {
        await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
        await this.flush(link);
      } else if (data.kind === 'candidate') {
        if (pc.remoteDescription) await pc.addIceCandidate(data.candidate);
        else link.pending.push(data.candidate);
      }
    } catch (e) {
      console.error(`signal ${data.kind} from ${from} failed`, e);
    }
  }

  link(peer) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const link = { pc, channel: null, pending: [] };
    pc.onicecandidate = (event) => {
      if (event.candidate) this.on.signal(peer, { kind: 'candidate', candidate: event.candidate.toJSON() });
    };
    pc.ondatachannel = (event) => this.attach(peer, link, event.channel);
    this.links.set(peer, link);
    return link;
  }

  attach(peer, link, channel) {
    link.channel = channel;
    channel.onopen = () => this.on.opened(peer);
    channel.onmessage = (event) => this.on.message(peer, String(event.data));
    channel.onclose = () => this.on.closed(peer);
  }

  async flush(link) {
    for (const candidate of link.pending.splice(0)) await link.pc.addIceCandidate(candidate);
  }

  // Sends to every open channel; returns how many.
  send(text) {
    let sent = 0;
    for (const { channel } of this.links.values()) {
      if (channel && channel.readyState === 'open') {
        channel.send(text);
        sent += 1;
      }
    }
    return sent;
  }

  drop(peer) {
    const link = this.links.get(peer);
    if (!link) return;
    this.links.delete(peer);
    link.pc.close();
  }

  dropAll() {
    for (const peer of [...this.links.keys()]) this.drop(peer);
  }
}

// One session in a room: signaling + media + the model of the other peers.
// It knows nothing about the DOM; the UI listens to its events.
//
// Events:
//   'state'       (state, text)   connection state: connecting | connected | reconnecting | disconnected | failed
//   'local'       (localView)     this peer's own media changed
//   'peer'        (peerView)      a remote peer appeared or its media/name changed
//   'peerremoved' (peerId)
//   'audiotrack'  (consumerId, track) / 'audiotrackremoved' (consumerId)
//   'speaker'     (peerId | null) the active speaker
//   'peerjoined' / 'peerleft' (peerView)  someone came or went after we joined (sound cues)
//   'error'       (message)       something a person should know, the session goes on
//   'ended'       (message)       the session is over (not by leave()); media is torn down
//   'recovered'   ({kind, ms})    back after a lost signaling connection: kind 'resume' (the
//                                 same session, media untouched) or 'rejoin' (a fresh join)
import { Emitter } from './emitter.js';
import {
  CLOSE_LIMIT,
  CLOSE_MEDIA_LOST,
  CLOSE_REMOVED,
  CLOSE_REPLACED,
  CLOSE_SHUTDOWN,
  FATAL_CODES,
  Signaling,
  SignalingError,
} from './signaling.js';
import { MediaSession, SCTP_CAPABILITIES } from './media.js';
import { describeMediaError, getCamera, getMicrophone, getScreen } from './devices.js';
import { admissionUrl, signalingUrl } from './params.js';

export const STATE_TEXT = {
  idle: 'not connected',
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  disconnected: 'disconnected',
  failed: 'failed',
};

// Reconnection (docs/protocol.md, "Reconnection and session resume").
/** Backoff with full jitter: attempt n waits random(0, min(cap, initial * 2^n)). */
export const RECONNECT_INITIAL_MS = 250;
export const RECONNECT_CAP_MS = 4000;
/** The server's signaling.peer_grace_period (default 10 s): after it, resume is pointless. */
export const PEER_GRACE_PERIOD_MS = 10_000;
/** One socket's open, and the resume reply, must come within these. */
const RECONNECT_OPEN_TIMEOUT_MS = 3000;
const RESUME_TIMEOUT_MS = 4000;
/** Fresh joins tried after resume is out, before giving up (Rejoin button). */
const REJOIN_ATTEMPTS = 5;
/** A transport ICE 'disconnected' this long (signaling up) gets an ICE restart. */
const ICE_RESTART_AFTER_MS = 2000;

function backoffDelay(attempt) {
  return Math.random() * Math.min(RECONNECT_CAP_MS, RECONNECT_INITIAL_MS * 2 ** attempt);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const AUDIO_CODEC_OPTIONS = { opusStereo: false, opusDtx: true, opusFec: true };
const VIDEO_CODEC_OPTIONS = { videoGoogleStartBitrate: 1000 };
// The webcam as three simulcast layers (mediasoup-demo's encodings): a quarter,
// half and full resolution, three temporal layers each. Only for a capture at
// least this wide: below it the lower layers would be too small to help.
const WEBCAM_SIMULCAST_ENCODINGS = [
  { scaleResolutionDownBy: 4, maxBitrate: 500000, scalabilityMode: 'L1T3' },
  { scaleResolutionDownBy: 2, maxBitrate: 1000000, scalabilityMode: 'L1T3' },
  { scaleResolutionDownBy: 1, maxBitrate: 5000000, scalabilityMode: 'L1T3' },
];
const SIMULCAST_MIN_WIDTH = 640;

export function browserInfo() {
  const ua = navigator.userAgent;
  const match =
    ua.match(/(Edg|OPR|Firefox|Chrome|CriOS|FxiOS)\/([\d.]+)/) ?? ua.match(/Version\/([\d.]+).*(Safari)/);
  if (!match) return { flag: 'browser', name: 'browser', version: '' };
  if (match[2] === 'Safari') return { flag: 'browser', name: 'Safari', version: match[1] };
  const names = { Edg: 'Edge', OPR: 'Opera', CriOS: 'Chrome', FxiOS: 'Firefox' };
  const name = /HeadlessChrome/.test(ua) ? 'HeadlessChrome' : (names[match[1]] ?? match[1]);
  return { flag: 'browser', name, version: match[2] };
}

/** What the UI shows of a remote peer, derived from its consumers. */
function describePeer(peer) {
  const entries = [...peer.consumers.values()];
  const mics = entries.filter((e) => e.kind === 'audio' && e.source !== 'screen');
  const camera = entries.find((e) => e.kind === 'video' && e.source !== 'screen');
  const screens = entries.filter((e) => e.kind === 'video' && e.source === 'screen');
  return {
    id: peer.id,
    displayName: peer.displayName,
    micMuted: mics.length === 0 || mics.every((e) => e.producerPaused),
    camOff: !camera || camera.producerPaused,
    camera: camera ? { consumerId: camera.consumer.id, track: camera.consumer.track } : null,
    screens: screens.map((e) => ({ consumerId: e.consumer.id, track: e.consumer.track, paused: e.producerPaused })),
  };
}

export class RoomClient extends Emitter {
  /** consumerId -> the spatial layer last asked for (setConsumerWidth). */
  #preferredLayers = new Map();

  /**
   * @param {object} options
   * @param {'video'|'voice'} options.mode
   * @param {object} [options.debug] window.sfuDebug, kept up to date
   */
  constructor({
    roomId,
    peerId,
    displayName,
    mode,
    handler = null,
    forceTcp = false,
    relayOnly = false,
    accessToken = '',
    debug = null,
  }) {
    super();
    this.accessToken = accessToken;
    this.forceTcp = forceTcp;
    this.relayOnly = relayOnly;
    this.roomId = roomId;
    this.peerId = peerId;
    this.displayName = displayName;
    this.mode = mode;
    this.handler = handler;
    this.debug = debug;
    this.signaling = null;
    this.media = null;
    /** Remote peers: id -> {id, displayName, device, consumers: Map<consumerId, entry>} */
    this.peers = new Map();
    /** consumerId -> peerId */
    this.consumerPeer = new Map();
    this.local = { mic: null, webcam: null, screen: null, deafened: false };
    this.activeSpeaker = null;
    this.joined = false;
    this.closed = false; // leave() or the session ended
    // A hidden tab receives no video: its consumers pause until it shows again.
    this.onVisibilityChange = () => this.#applyVisibility();
    document.addEventListener('visibilitychange', this.onVisibilityChange);
    this.signalingLost = false;
    this.transportStates = { send: 'new', recv: 'new' };
    this.finalState = null;
    this.state = 'idle';
    this.busy = new Set();
    this.sessionToken = null;
    this.shutdownReason = '';
    /** The running recovery after a lost signaling connection: {kind, since} or null. */
    this.recovery = null;
    /** The last one that succeeded: {kind: 'resume'|'rejoin', ms}, and how many so far. */
    this.lastRecovery = null;
    this.recoveries = 0;
    this.iceRestartTimers = new Map(); // direction -> timeout
    this.iceRestarting = new Set(); // transport ids
    /** The chat's DataProducer (label 'chat'), or null when the server has no data channels. */
    this.chatProducer = null;
    /** Devices chosen at join (used again when a fresh join must capture anew). */
    this.devices = { micDeviceId: '', camDeviceId: '' };
  }

  // ---------------------------------------------------------------- joining

  /**
   * Captures the chosen devices, connects, creates both transports, joins and
   * produces. A missing or denied device does not stop the join: it goes on
   * without it and says so ('error' event). Anything else rejects, with the
   * session torn down.
   */
  async join({ micDeviceId = '', camDeviceId = '', withMic = true, withCamera = this.mode === 'video' } = {}) {
    this.#updateState('connecting');
    let micTrack = null;
    let camTrack = null;
    const problems = [];
    this.devices = { micDeviceId, camDeviceId };
    try {
      // The browser must be supported before anything else is worth doing.
      this.media = null;
      this.signaling = new Signaling(signalingUrl(this.roomId, this.peerId, this.accessToken), {
        admissionUrl: this.accessToken ? admissionUrl(this.roomId, this.peerId, this.accessToken) : null,
      });
      this.#wireSignaling();
      const media = this.#newMedia();

      if (withMic) {
        try {
          micTrack = await getMicrophone(micDeviceId);
        } catch (error) {
          problems.push({ what: 'microphone', error });
        }
      }
      if (withCamera) {
        try {
          camTrack = await getCamera(camDeviceId);
        } catch (error) {
          problems.push({ what: 'camera', error });
        }
      }
      this.#checkOpen();

      await this.signaling.connect({ attempts: 3 });
      this.#checkOpen();
      await this.#joinRoom();

      if (micTrack) {
        if (media.canProduce('audio')) {
          this.local.mic = await this.#produce(micTrack, 'mic');
          micTrack = null;
        } else {
          problems.push({ what: 'microphone', error: new Error('the server and this browser share no audio codec') });
        }
      }
      if (camTrack) {
        if (media.canProduce('video')) {
          this.local.webcam = await this.#produce(camTrack, 'webcam');
          camTrack = null;
        } else {
          problems.push({ what: 'camera', error: new Error('the server and this browser share no video codec') });
        }
      }
      // After the media producers, as mediasoup-demo does: a data channel's m-line
      // first made a later refused produce fail its renegotiation in mediasoup-client.
      await this.#openChat(media);
      this.#emitLocal();
      this.#updateState();
      if (problems.length > 0) this.emit('error', this.#describeJoinProblems(problems));
    } catch (error) {
      micTrack?.stop();
      camTrack?.stop();
      if (this.closed) {
        // leave() while joining: nothing to report.
        const aborted = new Error('left before the join finished');
        aborted.name = 'AbortError';
        throw aborted;
      }
      const lastClose = this.signaling?.lastClose;
      this.#teardown();
      this.closed = true; // this RoomClient is done: a new one joins again
      this.#updateState('failed');
      const message =
        lastClose && lastClose.code >= 4000 ? describeClose(lastClose.code, lastClose.reason, this.shutdownReason) : describeJoinError(error);
      throw new Error(message, { cause: error });
    }
  }

  /** A new MediaSession (Device and, later, transports) on the signaling. */
  #newMedia() {
    const media = new MediaSession(this.signaling, { handlerName: this.handler });
    this.media = media;
    this.transportStates = { send: 'new', recv: 'new' };
    media.on('transportstate', (direction, state) => {
      if (this.media === media) this.#onTransportState(direction, state);
    });
    this.#syncDebug();
    return media;
  }

  /** On an open socket: load the Device, create both transports, `join`. */
  async #joinRoom() {
    const media = this.media;
    await media.load();
    await media.createTransports({ forceTcp: this.forceTcp, relayOnly: this.relayOnly });
    this.#syncDebug();
    this.#checkOpen();

    const { peers, sessionToken } = await this.signaling.request('join', {
      displayName: this.displayName,
      device: browserInfo(),
      rtpCapabilities: media.device.recvRtpCapabilities ?? media.device.rtpCapabilities,
      sctpCapabilities: SCTP_CAPABILITIES,
    });
    this.#checkOpen();
    this.joined = true;
    // For `resume` after the signaling connection drops.
    this.sessionToken = sessionToken ?? null;
    for (const info of peers ?? []) this.#upsertPeer(info);
  }

  /**
   * The chat's data channel: label 'chat', ordered, text messages (as
   * mediasoup-demo's, so the two chat with each other). Without it (a server
   * without data channels, or a token without canPublishData) the room works
   * and the chat says why it cannot send.
   */
  async #openChat(media) {
    this.chatProducer = null;
    if (!media.canSendData) {
      this.emit('chatstate', { canSend: false, reason: 'The server offers no data channels: chat is off.' });
      return;
    }
    try {
      const producer = await media.produceData({ ordered: true, label: 'chat', priority: 'medium', appData: { info: 'chat' } });
      producer.on('transportclose', () => {
        if (this.chatProducer === producer) this.chatProducer = null;
      });
      this.chatProducer = producer;
      // The channel opens once the SCTP association is up (after DTLS).
      if (producer.readyState === 'open') this.emit('chatstate', { canSend: true, reason: '' });
      else {
        this.emit('chatstate', { canSend: false, reason: 'Connecting the chat…' });
        producer.on('open', () => {
          if (this.chatProducer === producer) this.emit('chatstate', { canSend: true, reason: '' });
        });
      }
    } catch (error) {
      const reason =
        error?.code === 403 ? 'You may not send chat messages in this room.' : `Chat is unavailable: ${error?.message ?? error}`;
      this.emit('chatstate', { canSend: false, reason });
    }
  }

  /** Sends `text` to everyone in the room; false if the chat cannot send. */
  sendChat(text) {
    const producer = this.chatProducer;
    if (!producer || producer.closed || producer.readyState !== 'open') return false;
    producer.send(text);
    this.emit('chat', { peerId: this.peerId, name: this.displayName, text, time: Date.now(), own: true });
    return true;
  }

  #checkOpen() {
    if (this.closed) {
      const error = new Error('left before the join finished');
      error.name = 'AbortError';
      throw error;
    }
  }

  #describeJoinProblems(problems) {
    // The same failure for both devices is said once.
    const same = problems.length === 2 && problems[0].error?.name === problems[1].error?.name;
    const lines = same
      ? [describeMediaError(problems[0].error, 'camera and microphone')]
      : problems.map(({ what, error }) => describeMediaError(error, what));
    const mic = Boolean(this.local.mic);
    const cam = Boolean(this.local.webcam);
    let outcome;
    if (!mic && !cam) {
      outcome = 'You joined receive-only: you can see and hear the others, they cannot see or hear you.';
    } else if (!mic) {
      outcome = 'You joined without a microphone: the others cannot hear you.';
    } else {
      outcome = 'You joined audio-only: the others can hear you but not see you.';
    }
    return `${[...new Set(lines)].join(' ')} ${outcome}`;
  }

  async #produce(track, source, { paused = false } = {}) {
    const options = {
      codecOptions: track.kind === 'audio' ? AUDIO_CODEC_OPTIONS : VIDEO_CODEC_OPTIONS,
      paused,
    };
    if (source === 'screen') track.contentHint = 'detail';
    if (source === 'webcam' && (track.getSettings().width ?? 0) >= SIMULCAST_MIN_WIDTH) {
      options.encodings = WEBCAM_SIMULCAST_ENCODINGS.map((encoding) => ({ ...encoding }));
    }
    try {
      const producer = await this.media.produce(track, { source }, options);
      producer.on('trackended', () => this.#onProducerTrackEnded(source, producer));
      producer.on('transportclose', () => this.#forgetProducer(producer));
      return producer;
    } catch (error) {
      track.stop();
      if (error instanceof SignalingError && error.code === 403) {
        // The access token does not allow it (canPublish, canPublishSources): say so, stay in.
        this.emit('error', `You may not publish here (${error.reason}). You can still see and hear the others.`);
        return null;
      }
      throw error;
    }
  }

  #forgetProducer(producer) {
    for (const key of ['mic', 'webcam', 'screen']) {
      if (this.local[key] === producer) this.local[key] = null;
    }
    this.#emitLocal();
  }

  #onProducerTrackEnded(source, producer) {
    if (this.closed) return;
    this.media?.closeProducer(producer);
    this.#forgetProducer(producer);
    if (source === 'mic') this.emit('error', 'Your microphone stopped (unplugged?). Press the microphone button to use it again.');
    if (source === 'webcam') this.emit('error', 'Your camera stopped (unplugged?). Press the camera button to use it again.');
  }

  // ------------------------------------------------------------- signaling

  #wireSignaling() {
    const signaling = this.signaling;
    signaling.on('request', (request, accept, reject) => {
      if (request.method === 'newConsumer') {
        this.#onNewConsumer(request.data, accept, reject);
      } else if (request.method === 'newDataConsumer') {
        this.#onNewDataConsumer(request.data, accept, reject);
      } else {
        reject(404, `unknown method ${request.method}`);
      }
    });
    signaling.on('notification', (notification) => this.#onNotification(notification));
    signaling.on('disconnected', ({ code, reason }) => this.#onSignalingDropped(code, reason));
  }

  async #onNewConsumer(data, accept, reject) {
    if (!this.media || this.closed) {
      reject(409, 'not ready');
      return;
    }
    const { peerId, producerId, id, kind, rtpParameters, appData, producerPaused } = data;
    let consumer;
    try {
      consumer = await this.media.consume({ id, producerId, kind, rtpParameters, appData, peerId });
    } catch (error) {
      console.error('consume failed', error);
      reject(500, String(error?.message ?? error));
      return;
    }
    if (this.closed) {
      consumer.close();
      reject(409, 'closed');
      return;
    }
    const source = appData?.source ?? (kind === 'audio' ? 'mic' : 'webcam');
    const peer = this.#ensurePeer(peerId);
    peer.consumers.set(consumer.id, { consumer, kind, source, producerPaused: Boolean(producerPaused) });
    this.consumerPeer.set(consumer.id, peerId);
    consumer.on('transportclose', () => this.#removeConsumer(consumer.id));
    consumer.on('trackended', () => this.#removeConsumer(consumer.id));
    accept();

    if (kind === 'audio') this.emit('audiotrack', consumer.id, consumer.track);
    this.emit('peer', describePeer(peer));

    // A voice channel shows no video, and a deafened peer hears nothing: keep
    // those consumers paused instead of resuming them.
    const keepPaused = this.#keepPaused(kind);
    try {
      if (keepPaused) await this.media.pauseConsumer(consumer);
      else await this.signaling.request('resumeConsumer', { consumerId: consumer.id });
    } catch (error) {
      if (!this.closed && !consumer.closed) console.warn('resume/pause of a new consumer failed', error);
    }
  }

  async #onNewDataConsumer(data, accept, reject) {
    if (!this.media || this.closed) {
      reject(409, 'not ready');
      return;
    }
    let dataConsumer;
    try {
      dataConsumer = await this.media.consumeData(data);
    } catch (error) {
      console.error('consumeData failed', error);
      reject(500, String(error?.message ?? error));
      return;
    }
    const peerId = data.peerId ?? null;
    dataConsumer.on('message', (message) => {
      if (dataConsumer.label !== 'chat' && dataConsumer.label !== 'bot') return;
      const text = typeof message === 'string' ? message : new TextDecoder().decode(message);
      const peer = peerId ? this.peers.get(peerId) : null;
      // No peer: the server's own messages (or a bot's).
      const name = peer?.displayName ?? (dataConsumer.label === 'bot' ? 'Bot' : peerId ? peerId : 'Room');
      this.emit('chat', { peerId, name, text, time: Date.now(), own: false });
    });
    accept();
  }

  #onNotification({ method, data }) {
    if (this.closed) return;
    switch (method) {
      case 'newPeer': {
        const peer = this.#upsertPeer(data);
        this.emit('peerjoined', describePeer(peer));
        break;
      }
      case 'peerClosed':
        this.#removePeer(data.peerId, { announce: true });
        break;
      case 'peerDisplayNameChanged': {
        const peer = this.peers.get(data.peerId);
        if (peer) {
          peer.displayName = data.displayName;
          this.emit('peer', describePeer(peer));
        }
        break;
      }
      case 'consumerClosed':
        this.#removeConsumer(data.consumerId);
        break;
      case 'dataConsumerClosed':
        this.media?.closeDataConsumer(data.dataConsumerId);
        break;
      case 'consumerPaused':
      case 'consumerResumed': {
        const peer = this.peers.get(this.consumerPeer.get(data.consumerId));
        const entry = peer?.consumers.get(data.consumerId);
        if (entry) {
          entry.producerPaused = method === 'consumerPaused';
          this.emit('peer', describePeer(peer));
        }
        break;
      }
      case 'activeSpeaker': {
        const speaker = data.peerId ?? null;
        if (speaker !== this.activeSpeaker) {
          this.activeSpeaker = speaker;
          this.emit('speaker', speaker);
        }
        break;
      }
      case 'transportClosed': {
        // The server gave up on one of our transports (ice-timeout, dtls-failed).
        const direction = data.transportId === this.media?.sendTransport?.id ? 'send' : 'recv';
        this.transportStates[direction] = 'failed';
        this.emit(
          'error',
          `The server closed your ${direction === 'send' ? 'outgoing' : 'incoming'} media connection (${data.reason}). Leave and join again to get it back.`,
        );
        this.#updateState();
        break;
      }
      case 'producerClosed': {
        const producer = this.media?.producers.get(data.producerId);
        if (producer) {
          producer.close();
          this.media.producers.delete(producer.id);
          this.#forgetProducer(producer);
          this.emit('error', `The server stopped one of your ${producer.kind} streams (${data.reason}).`);
        }
        break;
      }
      case 'serverShutdown':
        this.shutdownReason = data?.reason ?? '';
        break;
      case 'consumerLayersChanged':
        this.emit('consumerlayers', data.consumerId, data.spatialLayer);
        break;
      default:
        // consumerScore, producerScore, downlinkBwe: not shown.
        break;
    }
  }

  #ensurePeer(peerId) {
    let peer = this.peers.get(peerId);
    if (!peer) {
      // newConsumer can come before the join response or newPeer names the peer.
      peer = { id: peerId, displayName: null, device: null, consumers: new Map() };
      this.peers.set(peerId, peer);
    }
    return peer;
  }

  #upsertPeer({ id, displayName, device }) {
    const peer = this.#ensurePeer(id);
    peer.displayName = displayName ?? peer.displayName;
    peer.device = device ?? peer.device;
    this.emit('peer', describePeer(peer));
    return peer;
  }

  #removeConsumer(consumerId) {
    const peerId = this.consumerPeer.get(consumerId);
    this.consumerPeer.delete(consumerId);
    const peer = this.peers.get(peerId);
    const entry = peer?.consumers.get(consumerId);
    if (!entry) return;
    peer.consumers.delete(consumerId);
    this.media?.closeConsumer(consumerId);
    if (!entry.consumer.closed) entry.consumer.close();
    if (entry.kind === 'audio') this.emit('audiotrackremoved', consumerId);
    this.emit('peer', describePeer(peer));
  }

  #removePeer(peerId, { announce = false } = {}) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    const view = describePeer(peer);
    this.peers.delete(peerId);
    for (const [consumerId, entry] of peer.consumers) {
      this.consumerPeer.delete(consumerId);
      this.media?.closeConsumer(consumerId);
      if (!entry.consumer.closed) entry.consumer.close();
      if (entry.kind === 'audio') this.emit('audiotrackremoved', consumerId);
    }
    if (this.activeSpeaker === peerId) {
      this.activeSpeaker = null;
      this.emit('speaker', null);
    }
    this.emit('peerremoved', peerId);
    if (announce) this.emit('peerleft', view);
  }

  // ----------------------------------------------------- connection state

  #onTransportState(direction, state) {
    this.transportStates[direction] = state;
    if (state === 'connected' || state === 'completed') {
      clearTimeout(this.iceRestartTimers.get(direction));
      this.iceRestartTimers.delete(direction);
    } else if (state === 'disconnected') {
      this.onConnectionLost(`${direction} transport`);
      this.#scheduleIceRestart(direction, ICE_RESTART_AFTER_MS);
    } else if (state === 'failed') {
      const transport = direction === 'send' ? this.media?.sendTransport : this.media?.recvTransport;
      if (transport?.appData.everConnected) {
        // It worked before: the network changed or blipped. Try an ICE restart.
        this.#scheduleIceRestart(direction, 0);
      } else {
        this.emit(
          'error',
          `The ${direction === 'send' ? 'outgoing' : 'incoming'} media connection failed. The server's UDP ports may be blocked by a firewall, or its announced address may be wrong.`,
        );
      }
    }
    if (state === 'connected') {
      const transport = direction === 'send' ? this.media?.sendTransport : this.media?.recvTransport;
      if (transport) transport.appData.everConnected = true;
    }
    this.#updateState();
  }

  /**
   * Connection-loss hook: the protoo socket dropped (the recovery loop is
   * starting) or a transport's ICE went 'disconnected' (the browser keeps
   * checking and often recovers by itself; an ICE restart follows if not).
   */
  onConnectionLost(cause) {
    if (this.closed) return;
    console.warn(`connection lost: ${cause}`);
    this.#updateState();
  }

  /**
   * Called when a socket opened by the recovery loop is up: takes the session
   * over with `resume {sessionToken}` as the first request and reconciles with
   * the reply. Resolves to true when resumed; to 'rejoin' when the session is
   * gone (404, 403, 409, or a transport of ours missing) and only a fresh join helps;
   * to false on a transient failure (retry).
   */
  async attemptReconnect() {
    const before = new Set(this.consumerPeer.keys());
    let reply;
    try {
      reply = await this.signaling.request(
        'resume',
        { sessionToken: this.sessionToken },
        { timeout: RESUME_TIMEOUT_MS },
      );
    } catch (error) {
      // 404: the session expired; 403: wrong token. 409 ("resume must be the
      // first request"): the server no longer knows this peerId and took the
      // socket for a new peer, so there is no session either.
      if ([403, 404, 409].includes(error?.code)) {
        console.warn(`resume refused (${error.code}): joining afresh`, error.reason);
        return 'rejoin';
      }
      console.warn('resume failed', error);
      this.signaling?.abandon();
      return false;
    }
    if (this.closed) return false;
    return this.#reconcile(reply ?? {}, before) ? true : 'rejoin';
  }

  #onSignalingDropped(code, reason) {
    if (this.closed) return;
    const fatal = FATAL_CODES.has(code) || Boolean(this.shutdownReason);
    if (!this.joined && !this.recovery) return; // the first join fails and reports it
    if (fatal) {
      // After `serverShutdown` the socket may die without its 4001: say shutdown anyway.
      const shown = this.shutdownReason && !FATAL_CODES.has(code) ? CLOSE_SHUTDOWN : code;
      this.#endSession('disconnected', describeClose(shown, reason, this.shutdownReason));
      return;
    }
    if (this.recovery) return; // the running recovery sees its request fail and retries
    // 4002: the server removed us (media dead too long): no session to resume.
    this.#recover(code === CLOSE_MEDIA_LOST || !this.sessionToken ? 'rejoin' : 'resume', `signaling (${code})`);
  }

  /** Runs the recovery: resume within the grace period, else fresh joins; gives up with a Rejoin button. */
  #recover(kind, cause) {
    const run = { kind, since: performance.now() };
    this.recovery = run;
    this.signalingLost = true;
    this.onConnectionLost(cause);
    const loop = kind === 'resume' ? this.#resumeLoop(run) : this.#rejoinLoop(run);
    loop.catch((error) => {
      if (this.recovery !== run || this.closed) return;
      console.error('reconnection failed', error);
      this.#endSession('disconnected', `Could not reconnect: ${error?.message ?? error}. Rejoin to continue.`);
    });
  }

  #stale(run) {
    return this.closed || this.recovery !== run;
  }

  #recovered(run) {
    const ms = Math.round(performance.now() - run.since);
    this.recovery = null;
    this.signalingLost = false;
    this.lastRecovery = { kind: run.kind, ms };
    this.recoveries += 1;
    console.info(`reconnected (${run.kind}) after ${ms} ms`);
    this.#updateState();
    this.emit('recovered', { kind: run.kind, ms });
  }

  async #resumeLoop(run) {
    for (let attempt = 0; ; attempt++) {
      await sleep(backoffDelay(attempt));
      if (this.#stale(run)) return;
      if (performance.now() - run.since >= PEER_GRACE_PERIOD_MS) {
        console.warn('the grace period passed without a resume: joining afresh');
        break;
      }
      try {
        await this.signaling.connect({ timeout: RECONNECT_OPEN_TIMEOUT_MS });
      } catch (error) {
        if (error?.refused) {
          this.#endSession('disconnected', error.message);
          return;
        }
        continue;
      }
      if (this.#stale(run)) return;
      const outcome = await this.attemptReconnect();
      if (this.#stale(run)) return;
      if (outcome === true) {
        this.#recovered(run);
        return;
      }
      if (outcome === 'rejoin') break;
    }
    run.kind = 'rejoin';
    await this.#rejoinLoop(run);
  }

  /**
   * A fresh join: closes transports, producers and consumers, clears the
   * peers (and so the grid), joins again and publishes mic and camera as they
   * were (muted stays muted). A screen share is not restarted (the browser
   * needs a click for it).
   */
  async #rejoinLoop(run) {
    const wanted = {};
    for (const source of ['mic', 'webcam']) {
      const producer = this.local[source];
      const track = producer?.track;
      if (!producer) continue;
      wanted[source] = {
        // A clone outlives the producer (closing it stops its track).
        track: track && track.readyState === 'live' ? track.clone() : null,
        deviceId: track?.getSettings?.().deviceId || this.devices[source === 'mic' ? 'micDeviceId' : 'camDeviceId'],
        paused: producer.paused,
      };
      if (wanted[source].track) wanted[source].track.enabled = true;
    }
    const hadScreen = Boolean(this.local.screen);
    this.#resetMedia();
    this.#updateState();
    let lastError = null;
    try {
      for (let attempt = 0; attempt < REJOIN_ATTEMPTS; attempt++) {
        if (attempt > 0) await sleep(backoffDelay(attempt + 2));
        if (this.#stale(run)) return;
        try {
          const problems = await this.#rejoinOnce(wanted);
          if (this.#stale(run)) return;
          this.#recovered(run);
          if (hadScreen) problems.push('Screen sharing stopped when the connection was re-established: share again.');
          if (problems.length > 0) this.emit('error', problems.join(' '));
          return;
        } catch (error) {
          if (this.#stale(run)) return;
          lastError = error;
          console.warn(`fresh join ${attempt + 1}/${REJOIN_ATTEMPTS} failed`, error);
          const lastClose = this.signaling?.lastClose;
          this.#resetMedia();
          if (error?.refused) {
            this.#endSession('disconnected', error.message);
            return;
          }
          if (lastClose && (FATAL_CODES.has(lastClose.code) || this.shutdownReason)) {
            this.#endSession('disconnected', describeClose(lastClose.code, lastClose.reason, this.shutdownReason));
            return;
          }
        }
      }
      this.#endSession(
        'disconnected',
        `The connection to the server was lost and could not be re-established. ${describeJoinError(lastError)}`,
      );
    } finally {
      for (const entry of Object.values(wanted)) entry.track?.stop();
    }
  }

  /** One fresh join; returns the problems to report (devices that could not be published). */
  async #rejoinOnce(wanted) {
    const problems = [];
    const media = this.#newMedia();
    await this.signaling.connect({ timeout: RECONNECT_OPEN_TIMEOUT_MS });
    this.#checkOpen();
    await this.#joinRoom();
    for (const source of ['mic', 'webcam']) {
      const want = wanted[source];
      if (!want) continue;
      const what = source === 'mic' ? 'microphone' : 'camera';
      let track = want.track?.readyState === 'live' ? want.track.clone() : null;
      if (!track) {
        try {
          track = await (source === 'mic' ? getMicrophone(want.deviceId) : getCamera(want.deviceId));
        } catch (error) {
          problems.push(describeMediaError(error, what));
          continue;
        }
      }
      if (this.closed) {
        track.stop();
        this.#checkOpen();
      }
      if (!media.canProduce(track.kind)) {
        track.stop();
        continue;
      }
      this.local[source] = await this.#produce(track, source, { paused: want.paused });
    }
    await this.#openChat(media);
    this.#emitLocal();
    return problems;
  }

  #scheduleIceRestart(direction, delay) {
    if (this.iceRestartTimers.has(direction)) return;
    const timer = setTimeout(() => {
      this.iceRestartTimers.delete(direction);
      const state = this.transportStates[direction];
      if (this.closed || this.recovery || !this.signaling?.connected) return; // resume does it
      if (state !== 'disconnected' && state !== 'failed') return;
      const transport = direction === 'send' ? this.media?.sendTransport : this.media?.recvTransport;
      if (transport) this.#restartIce(transport);
    }, delay);
    this.iceRestartTimers.set(direction, timer);
  }

  /** `restartIce {transportId}` and the new ICE parameters into the transport. */
  async #restartIce(transport) {
    if (transport.closed || this.iceRestarting.has(transport.id)) return;
    this.iceRestarting.add(transport.id);
    try {
      const iceParameters = await this.signaling.request('restartIce', { transportId: transport.id });
      if (!transport.closed) await transport.restartIce({ iceParameters });
      console.info(`ICE restarted on the ${transport.appData.direction} transport`);
    } catch (error) {
      if (!this.closed && !transport.closed) console.warn('ICE restart failed', error);
    } finally {
      this.iceRestarting.delete(transport.id);
    }
  }

  /**
   * Brings the local model in line with a `resume` reply: forgets peers and
   * closes consumers the server no longer has (their peerClosed and
   * consumerClosed were missed), catches up on pause states, re-sends
   * pause/resume of our producers where the server missed it, and restarts
   * ICE where a transport is not connected. Returns false when one of our
   * transports is gone on the server (only a fresh join brings media back).
   */
  #reconcile({ peers = [], producers = [], consumers = [], transports = null }, consumersBefore) {
    const media = this.media;
    const serverTransports = new Map((transports ?? []).map((t) => [t.id, t]));
    const ours = [media?.sendTransport, media?.recvTransport].filter(Boolean);
    if (transports && ours.some((t) => !serverTransports.has(t.id))) {
      console.warn('a transport of ours is gone on the server: joining afresh');
      return false;
    }

    const listedPeers = new Set(peers.map((p) => p.id));
    for (const peerId of [...this.peers.keys()]) {
      if (!listedPeers.has(peerId)) this.#removePeer(peerId, { announce: true });
    }
    for (const info of peers) this.#upsertPeer(info);

    const serverConsumers = new Map(consumers.map((c) => [c.id, c]));
    for (const consumerId of consumersBefore) {
      if (!serverConsumers.has(consumerId)) this.#removeConsumer(consumerId);
    }
    const changed = new Set();
    for (const info of consumers) {
      const peer = this.peers.get(this.consumerPeer.get(info.id));
      const entry = peer?.consumers.get(info.id);
      if (!entry) continue;
      if (entry.producerPaused !== Boolean(info.producerPaused)) {
        entry.producerPaused = Boolean(info.producerPaused);
        changed.add(peer);
      }
      const keepPaused = this.#keepPaused(entry.kind);
      if (Boolean(info.paused) !== keepPaused) {
        this.signaling
          .request(keepPaused ? 'pauseConsumer' : 'resumeConsumer', { consumerId: info.id })
          .catch((error) => console.warn('consumer pause/resume after resume failed', error));
      }
    }
    for (const peer of changed) this.emit('peer', describePeer(peer));

    const serverProducers = new Map(producers.map((p) => [p.id, p]));
    for (const producer of [...(media?.producers.values() ?? [])]) {
      const info = serverProducers.get(producer.id);
      if (!info) {
        producer.close();
        media.producers.delete(producer.id);
        this.#forgetProducer(producer);
        this.emit('error', `The server stopped one of your ${producer.kind} streams while you were disconnected.`);
      } else if (Boolean(info.paused) !== producer.paused) {
        // A pause or resume sent while the socket was down.
        this.signaling
          .request(producer.paused ? 'pauseProducer' : 'resumeProducer', { producerId: producer.id })
          .catch((error) => console.warn('producer pause/resume after resume failed', error));
      }
    }
    this.#emitLocal();

    for (const transport of ours) {
      const local = transport.connectionState;
      const iceState = serverTransports.get(transport.id)?.iceState ?? 'connected';
      const serverOk = iceState === 'connected' || iceState === 'completed';
      const neverUsed = local === 'new' && iceState === 'new';
      if (local === 'disconnected' || local === 'failed' || (!serverOk && !neverUsed)) this.#restartIce(transport);
    }
    return true;
  }

  #updateState(forced = null) {
    let state = forced ?? this.finalState;
    if (!state) {
      const transports = Object.values(this.transportStates);
      if (this.signalingLost) state = 'reconnecting';
      else if (!this.joined) state = 'connecting';
      else if (transports.includes('failed')) state = 'failed';
      else if (transports.includes('disconnected')) state = 'reconnecting';
      else if (transports.some((s) => s === 'connecting' || s === 'checking')) state = 'connecting';
      else state = 'connected';
    }
    if (state !== this.state) {
      this.state = state;
      this.emit('state', state, STATE_TEXT[state]);
    }
  }

  // ------------------------------------------------------ local controls

  async #exclusive(name, fn) {
    if (this.busy.has(name) || this.closed || !this.joined) return;
    this.busy.add(name);
    try {
      await fn();
    } catch (error) {
      const what = { mic: 'the microphone', webcam: 'the camera', screen: 'screen sharing', deafen: 'deafen' }[name];
      // While reconnecting, a pause/resume the server missed is re-sent after `resume`.
      if (!this.closed && !this.signalingLost) this.emit('error', `Could not change ${what}: ${error?.message ?? error}`);
    } finally {
      this.busy.delete(name);
      this.#emitLocal();
    }
  }

  /**
   * A remote camera is shown `width` device pixels wide: ask for the simulcast
   * layer that fits it (a quarter, half or full 1280), once per change.
   */
  setConsumerWidth(consumerId, width) {
    const spatialLayer = width <= 400 ? 0 : width <= 800 ? 1 : 2;
    if (!this.signaling || this.#preferredLayers.get(consumerId) === spatialLayer) return;
    this.#preferredLayers.set(consumerId, spatialLayer);
    this.signaling
      .request('setConsumerPreferredLayers', { consumerId, spatialLayer, temporalLayer: 2 })
      .catch(() => this.#preferredLayers.delete(consumerId)); // a simple or closed consumer
  }

  toggleMic(deviceId = '') {
    return this.#toggleProducer('mic', () => getMicrophone(deviceId), 'microphone');
  }

  toggleCam(deviceId = '') {
    return this.#toggleProducer('webcam', () => getCamera(deviceId), 'camera');
  }

  /** Pause/resume the `name` producer; if there is none yet (none at join, or it
   * was unplugged), get the device now and produce. */
  #toggleProducer(name, getTrack, deviceLabel) {
    return this.#exclusive(name, async () => {
      const producer = this.local[name];
      if (producer) {
        if (producer.paused) await this.media.resumeProducer(producer);
        else await this.media.pauseProducer(producer);
        return;
      }
      let track;
      try {
        track = await getTrack();
      } catch (error) {
        this.emit('error', describeMediaError(error, deviceLabel));
        return;
      }
      if (this.closed) return track.stop();
      this.local[name] = await this.#produce(track, name);
    });
  }

  toggleScreen() {
    return this.#exclusive('screen', async () => {
      if (this.local.screen) {
        const producer = this.local.screen;
        this.local.screen = null;
        await this.media.closeProducer(producer);
        return;
      }
      let track;
      try {
        track = await getScreen();
      } catch (error) {
        // Cancelling the picker is a NotAllowedError too: say it quietly.
        this.emit('error', describeMediaError(error, 'screen'));
        return;
      }
      if (this.closed) return track.stop();
      this.local.screen = await this.#produce(track, 'screen');
    });
  }

  /** Voice channel: stop (or start again) hearing everyone. */
  toggleDeafen() {
    return this.#exclusive('deafen', async () => {
      const deafened = !this.local.deafened;
      this.local.deafened = deafened;
      this.#emitLocal();
      const audio = [...this.peers.values()].flatMap((peer) =>
        [...peer.consumers.values()].filter((e) => e.kind === 'audio').map((e) => e.consumer),
      );
      await Promise.all(
        audio.map((consumer) =>
          (deafened ? this.media.pauseConsumer(consumer) : this.media.resumeConsumer(consumer)).catch((error) => {
            if (!consumer.closed) console.warn('deafen: consumer pause/resume failed', error);
          }),
        ),
      );
    });
  }

  localView() {
    const { mic, webcam, screen, deafened } = this.local;
    return {
      id: this.peerId,
      displayName: this.displayName,
      micMuted: !mic || mic.paused,
      camOff: !webcam || webcam.paused,
      camera: webcam ? { track: webcam.track } : null,
      sharing: Boolean(screen),
      deafened,
      hasMic: Boolean(mic),
      hasCam: Boolean(webcam),
      busy: new Set(this.busy),
    };
  }

  #emitLocal() {
    this.emit('local', this.localView());
  }

  // --------------------------------------------------------------- leaving

  /** Leaves: closes producers, both transports and the protoo peer. */
  leave() {
    if (this.closed && !this.media && !this.signaling) return;
    this.closed = true;
    this.#teardown();
    this.finalState = 'disconnected';
    this.#updateState();
  }

  #endSession(state, message) {
    if (this.closed) return;
    this.closed = true;
    this.#teardown();
    this.finalState = state;
    this.#updateState();
    this.emit('ended', message);
  }

  /**
   * A consumer of this kind stays paused: video in a voice channel or a hidden
   * tab, audio while deafened.
   */
  #keepPaused(kind) {
    if (kind === 'video') return this.mode === 'voice' || document.visibilityState === 'hidden';
    return this.local.deafened;
  }

  #applyVisibility() {
    if (this.closed || !this.media) return;
    const keepPaused = this.#keepPaused('video');
    for (const peer of this.peers.values()) {
      for (const { consumer, kind } of peer.consumers.values()) {
        if (kind !== 'video' || consumer.closed || consumer.paused === keepPaused) continue;
        (keepPaused ? this.media.pauseConsumer(consumer) : this.media.resumeConsumer(consumer)).catch((error) => {
          if (!consumer.closed) console.warn('visibility: consumer pause/resume failed', error);
        });
      }
    }
  }

  #teardown() {
    document.removeEventListener('visibilitychange', this.onVisibilityChange);
    this.recovery = null;
    // The goodbye (close code 1000) first: #resetMedia would drop the socket
    // without one, and the server would keep the peer for a resume.
    this.signaling?.close();
    this.#resetMedia();
    this.signaling = null;
    this.#syncDebug();
  }

  /** Closes producers, consumers and transports, forgets the peers; the signaling object stays (its socket goes). */
  #resetMedia() {
    for (const peerId of [...this.peers.keys()]) this.#removePeer(peerId);
    for (const timer of this.iceRestartTimers.values()) clearTimeout(timer);
    this.iceRestartTimers.clear();
    this.media?.close();
    this.media = null;
    this.chatProducer = null;
    this.signaling?.abandon();
    this.local.mic = this.local.webcam = this.local.screen = null;
    this.joined = false;
    this.transportStates = { send: 'new', recv: 'new' };
    if (this.activeSpeaker !== null) {
      this.activeSpeaker = null;
      this.emit('speaker', null);
    }
    this.#syncDebug();
    this.#emitLocal();
  }

  #syncDebug() {
    const debug = this.debug;
    if (!debug) return;
    debug.peerId = this.peerId;
    debug.roomId = this.roomId;
    debug.mode = this.mode;
    debug.client = this;
    if (this.media) {
      debug.device = this.media.device;
      debug.sendTransport = this.media.sendTransport;
      debug.recvTransport = this.media.recvTransport;
      debug.producers = this.media.producers;
      debug.consumers = this.media.consumers;
    } else {
      debug.sendTransport = null;
      debug.recvTransport = null;
      debug.producers = new Map();
      debug.consumers = new Map();
    }
  }
}

function describeClose(code, reason, shutdownReason) {
  const why = reason ? ` (${reason})` : '';
  switch (code) {
    case CLOSE_REPLACED:
      return 'You joined this room again from another tab or device, so this one was disconnected.';
    case CLOSE_SHUTDOWN:
      if (/shutting down/i.test(shutdownReason || reason)) return 'The server is shutting down. Rejoin when it is back.';
      return `The server is shutting down${shutdownReason ? ` (${shutdownReason})` : why}. Rejoin when it is back.`;
    case CLOSE_MEDIA_LOST:
      return 'Your media connection was lost for too long, so the server removed you from the room. Rejoin to continue.';
    case CLOSE_REMOVED:
      return `You were removed from this room${why}.`;
    case CLOSE_LIMIT:
      return `The server or this room is at its limit${why}. Try again later.`;
    default:
      return `The connection to the server was lost${why}. Rejoin to continue.`;
  }
}

function describeJoinError(error) {
  if (error instanceof SignalingError) {
    if (error.reason === 'unreachable' || error.refused) return error.message;
    if (error.method === 'join' && error.code !== null) {
      return `The server did not let you join: ${error.reason}.`;
    }
    return error.message;
  }
  if (error?.name === 'UnsupportedError') {
    return `This browser is not supported (${error.message}). Try a current Chrome, Firefox or Safari, or add handler=Chrome111 to the address.`;
  }
  return `Could not join: ${error?.message ?? error}`;
}

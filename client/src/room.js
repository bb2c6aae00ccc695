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
import { Emitter } from './emitter.js';
import {
  CLOSE_LIMIT,
  CLOSE_MEDIA_LOST,
  CLOSE_REPLACED,
  CLOSE_SHUTDOWN,
  Signaling,
  SignalingError,
} from './signaling.js';
import { MediaSession } from './media.js';
import { describeMediaError, getCamera, getMicrophone, getScreen } from './devices.js';
import { signalingUrl } from './params.js';

export const STATE_TEXT = {
  idle: 'not connected',
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  disconnected: 'disconnected',
  failed: 'failed',
};

const AUDIO_CODEC_OPTIONS = { opusStereo: false, opusDtx: true, opusFec: true };
const VIDEO_CODEC_OPTIONS = { videoGoogleStartBitrate: 1000 };

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
  /**
   * @param {object} options
   * @param {'video'|'voice'} options.mode
   * @param {object} [options.debug] window.sfuDebug, kept up to date
   */
  constructor({ roomId, peerId, displayName, mode, handler = null, debug = null }) {
    super();
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
    this.signalingLost = false;
    this.transportStates = { send: 'new', recv: 'new' };
    this.finalState = null;
    this.state = 'idle';
    this.busy = new Set();
    this.sessionToken = null;
    this.shutdownReason = '';
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
    try {
      // The browser must be supported before anything else is worth doing.
      this.media = null;
      this.signaling = new Signaling(signalingUrl(this.roomId, this.peerId));
      const media = new MediaSession(this.signaling, { handlerName: this.handler });
      this.media = media;
      this.#syncDebug();

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

      this.#wireSignaling();
      await this.signaling.connect();
      this.#checkOpen();

      media.on('transportstate', (direction, state) => this.#onTransportState(direction, state));
      await media.load();
      await media.createTransports({ iceServers: [] });
      this.#syncDebug();
      this.#checkOpen();

      const { peers, sessionToken } = await this.signaling.request('join', {
        displayName: this.displayName,
        device: browserInfo(),
        rtpCapabilities: media.device.recvRtpCapabilities ?? media.device.rtpCapabilities,
        sctpCapabilities: null,
      });
      this.#checkOpen();
      this.joined = true;
      // For a future `resume` after a signaling blip (see attemptReconnect()).
      this.sessionToken = sessionToken ?? null;
      for (const info of peers ?? []) this.#upsertPeer(info);

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
      this.#updateState('failed');
      const message =
        lastClose && lastClose.code >= 4000 ? describeClose(lastClose.code, lastClose.reason, this.shutdownReason) : describeJoinError(error);
      throw new Error(message, { cause: error });
    }
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

  async #produce(track, source) {
    const options = {
      codecOptions: track.kind === 'audio' ? AUDIO_CODEC_OPTIONS : VIDEO_CODEC_OPTIONS,
    };
    if (source === 'screen') track.contentHint = 'detail';
    try {
      const producer = await this.media.produce(track, { source }, options);
      producer.on('trackended', () => this.#onProducerTrackEnded(source, producer));
      producer.on('transportclose', () => this.#forgetProducer(producer));
      return producer;
    } catch (error) {
      track.stop();
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
      } else {
        reject(404, `unknown method ${request.method}`);
      }
    });
    signaling.on('notification', (notification) => this.#onNotification(notification));
    signaling.on('disconnected', () => {
      this.signalingLost = true;
      this.onConnectionLost('signaling');
    });
    signaling.on('reopened', () => {
      this.signalingLost = false;
      this.attemptReconnect();
    });
    signaling.on('closed', ({ code, reason }) => {
      if (this.closed || !this.joined) return; // during join: join() reports it
      this.#endSession('disconnected', describeClose(code, reason, this.shutdownReason));
    });
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
    const keepPaused = (kind === 'video' && this.mode === 'voice') || (kind === 'audio' && this.local.deafened);
    try {
      if (keepPaused) await this.media.pauseConsumer(consumer);
      else await this.signaling.request('resumeConsumer', { consumerId: consumer.id });
    } catch (error) {
      if (!this.closed && !consumer.closed) console.warn('resume/pause of a new consumer failed', error);
    }
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
      default:
        // consumerScore, producerScore, downlinkBwe, consumerLayersChanged: not shown.
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
    if (state === 'disconnected') {
      this.onConnectionLost(`${direction} transport`);
    } else if (state === 'failed') {
      this.emit(
        'error',
        `The ${direction === 'send' ? 'outgoing' : 'incoming'} media connection failed. The server's UDP ports may be blocked by a firewall, or its announced address may be wrong.`,
      );
    }
    this.#updateState();
  }

  /**
   * Connection-loss hook. Called when the protoo socket drops ('disconnected':
   * protoo-client is already retrying the socket) or when a transport's ICE
   * goes 'disconnected' (the browser keeps checking and often recovers by
   * itself). It only shows "reconnecting…" today.
   *
   * Reconnection logic belongs here: e.g. a timer that, if a transport stays
   * disconnected, requests `restartIce {transportId}` and calls
   * transport.restartIce({iceParameters}) on it.
   */
  onConnectionLost(cause) {
    if (this.closed) return;
    console.warn(`connection lost: ${cause}`);
    this.#updateState();
  }

  /**
   * Called when protoo-client has opened a new socket after 'disconnected'.
   * The server keeps our peer, transports, producers and consumers for its
   * grace period (media keeps flowing), and a new socket is taken over by a
   * first request `resume {sessionToken}` (docs/protocol.md, "Reconnection
   * and session resume"): reconcile peers/producers/consumers with its reply,
   * restartIce where a transport is not connected, and on 404/403 join
   * afresh. That is not written yet, so today the session ends here with a
   * message (and the UI offers Rejoin) rather than pretending to be connected.
   * `this.sessionToken` (from the join reply) is kept for it.
   */
  attemptReconnect() {
    if (this.closed) return;
    this.#endSession('disconnected', 'The connection to the server was lost. Rejoin to continue.');
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
      if (!this.closed) this.emit('error', `Could not change ${what}: ${error?.message ?? error}`);
    } finally {
      this.busy.delete(name);
      this.#emitLocal();
    }
  }

  toggleMic(deviceId = '') {
    return this.#exclusive('mic', async () => {
      const producer = this.local.mic;
      if (producer) {
        if (producer.paused) await this.media.resumeProducer(producer);
        else await this.media.pauseProducer(producer);
        return;
      }
      // No microphone yet (none at join, or it was unplugged): try again now.
      let track;
      try {
        track = await getMicrophone(deviceId);
      } catch (error) {
        this.emit('error', describeMediaError(error, 'microphone'));
        return;
      }
      if (this.closed) return track.stop();
      this.local.mic = await this.#produce(track, 'mic');
    });
  }

  toggleCam(deviceId = '') {
    return this.#exclusive('webcam', async () => {
      const producer = this.local.webcam;
      if (producer) {
        if (producer.paused) await this.media.resumeProducer(producer);
        else await this.media.pauseProducer(producer);
        return;
      }
      let track;
      try {
        track = await getCamera(deviceId);
      } catch (error) {
        this.emit('error', describeMediaError(error, 'camera'));
        return;
      }
      if (this.closed) return track.stop();
      this.local.webcam = await this.#produce(track, 'webcam');
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

  #teardown() {
    for (const peerId of [...this.peers.keys()]) this.#removePeer(peerId);
    this.media?.close();
    this.signaling?.close();
    this.media = null;
    this.signaling = null;
    this.local.mic = this.local.webcam = this.local.screen = null;
    this.joined = false;
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
      return `The server is shutting down${shutdownReason ? ` (${shutdownReason})` : why}.`;
    case CLOSE_MEDIA_LOST:
      return 'Your media connection was lost for too long, so the server removed you from the room. Rejoin to continue.';
    case CLOSE_LIMIT:
      return `The server or this room is at its limit${why}. Try again later.`;
    default:
      return `The connection to the server was lost${why}. Rejoin to continue.`;
  }
}

function describeJoinError(error) {
  if (error instanceof SignalingError) {
    if (error.reason === 'unreachable') return error.message;
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

// mediasoup-client: the Device, one send and one receive WebRtcTransport,
// and the producers and consumers on them, driven over the signaling.
//
// Events:
//   'transportstate' (direction 'send'|'recv', connectionState)
import { Device } from 'mediasoup-client';
import { Emitter } from './emitter.js';

/**
 * A Device for this browser. mediasoup-client does not recognise every
 * user agent (headless Chromium among them): then fall back to the Chrome111
 * handler, the one for any current Chromium. `handlerName` forces one.
 */
export function createDevice(handlerName = null) {
  if (handlerName) return new Device({ handlerName });
  try {
    return new Device();
  } catch (error) {
    if (error?.name !== 'UnsupportedError') throw error;
    console.warn('mediasoup-client does not recognise this browser; using the Chrome111 handler');
    return new Device({ handlerName: 'Chrome111' });
  }
}

/**
 * What the server learns of our SCTP (mediasoup-demo's `sctpCapabilities`).
 * mediasoup-client 3.24 no longer has Device.sctpCapabilities; browsers take
 * 1024 streams each way, the number its older Devices reported.
 */
export const SCTP_CAPABILITIES = Object.freeze({ numStreams: Object.freeze({ OS: 1024, MIS: 1024 }) });

export class MediaSession extends Emitter {
  constructor(signaling, { handlerName = null } = {}) {
    super();
    this.signaling = signaling;
    this.device = createDevice(handlerName);
    this.sendTransport = null;
    this.recvTransport = null;
    /** @type {Map<string, import('mediasoup-client').types.Producer>} */
    this.producers = new Map();
    /** @type {Map<string, import('mediasoup-client').types.Consumer>} */
    this.consumers = new Map();
    /** @type {Map<string, import('mediasoup-client').types.DataProducer>} */
    this.dataProducers = new Map();
    /** @type {Map<string, import('mediasoup-client').types.DataConsumer>} */
    this.dataConsumers = new Map();
    this.closed = false;
  }

  /** appData objects of produce() calls that start paused (the 'produce' event gets the same object). */
  #startPaused = new WeakSet();

  async load() {
    const routerRtpCapabilities = await this.signaling.request('getRouterRtpCapabilities');
    await this.device.load({ routerRtpCapabilities });
  }

  /**
   * Both transports, before `join`, as mediasoup-demo does. The STUN/TURN
   * servers come from the server's reply; `relayOnly` keeps to TURN relays.
   */
  async createTransports({ forceTcp = false, relayOnly = false } = {}) {
    this.sendTransport = await this.#createTransport('send', forceTcp, relayOnly);
    this.recvTransport = await this.#createTransport('recv', forceTcp, relayOnly);
  }

  async #createTransport(direction, forceTcp, relayOnly) {
    const info = await this.signaling.request('createWebRtcTransport', {
      forceTcp,
      producing: direction === 'send',
      consuming: direction === 'recv',
      // Data channels (chat) ride SCTP on both transports, as mediasoup-demo's.
      sctpCapabilities: SCTP_CAPABILITIES,
    });
    const options = {
      id: info.id,
      iceParameters: info.iceParameters,
      iceCandidates: info.iceCandidates,
      dtlsParameters: info.dtlsParameters,
      sctpParameters: info.sctpParameters ?? undefined,
      iceServers: info.iceServers ?? [],
      iceTransportPolicy: relayOnly ? 'relay' : 'all',
      appData: { direction, sctp: Boolean(info.sctpParameters) },
    };
    const transport =
      direction === 'send' ? this.device.createSendTransport(options) : this.device.createRecvTransport(options);

    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.signaling
        .request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters })
        .then(() => callback())
        .catch(errback);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
        const paused = this.#startPaused.has(appData);
        this.signaling
          .request('produce', { transportId: transport.id, kind, rtpParameters, appData, paused })
          .then(({ id }) => callback({ id }))
          .catch(errback);
      });
      transport.on('producedata', ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
        this.signaling
          .request('produceData', { transportId: transport.id, sctpStreamParameters, label, protocol, appData })
          .then(({ id }) => callback({ id }))
          .catch(errback);
      });
    }
    transport.on('connectionstatechange', (state) => {
      this.emit('transportstate', direction, state);
    });
    return transport;
  }

  canProduce(kind) {
    return this.device.loaded && this.device.canProduce(kind);
  }

  /**
   * Sends `track`; appData.source is 'mic', 'webcam' or 'screen'. With
   * `paused` the producer starts paused on the server (`produce {paused}`)
   * and here: a muted microphone is published again muted, without a blip.
   */
  async produce(track, appData, { paused = false, ...options } = {}) {
    if (!this.sendTransport) throw new Error('no send transport');
    appData = { ...appData };
    if (paused) this.#startPaused.add(appData);
    try {
      const producer = await this.sendTransport.produce({ track, appData, stopTracks: true, ...options });
      if (paused) producer.pause(); // the server has it paused already
      this.producers.set(producer.id, producer);
      producer.observer.on('close', () => this.producers.delete(producer.id));
      return producer;
    } finally {
      this.#startPaused.delete(appData);
    }
  }

  /** Pauses sending (no renegotiation) and tells the server. */
  async pauseProducer(producer) {
    producer.pause();
    await this.signaling.request('pauseProducer', { producerId: producer.id });
  }

  async resumeProducer(producer) {
    producer.resume();
    await this.signaling.request('resumeProducer', { producerId: producer.id });
  }

  async closeProducer(producer) {
    if (producer.closed) return;
    producer.close();
    this.producers.delete(producer.id);
    await this.signaling.request('closeProducer', { producerId: producer.id }).catch((error) => {
      console.warn('closeProducer failed', error);
    });
  }

  /** Answers a server `newConsumer` request's data with a Consumer. */
  async consume({ id, producerId, kind, rtpParameters, appData, peerId }) {
    if (!this.recvTransport) throw new Error('no receive transport');
    const consumer = await this.recvTransport.consume({
      id,
      producerId,
      kind,
      rtpParameters,
      appData: { ...(appData ?? {}), peerId },
    });
    this.consumers.set(consumer.id, consumer);
    consumer.observer.on('close', () => this.consumers.delete(consumer.id));
    return consumer;
  }

  /** Whether the server gave the transports SCTP: data channels work. */
  get canSendData() {
    return Boolean(this.sendTransport?.appData.sctp);
  }

  /** A data channel to the server (a DataProducer). */
  async produceData(options) {
    if (!this.sendTransport) throw new Error('no send transport');
    const dataProducer = await this.sendTransport.produceData(options);
    this.dataProducers.set(dataProducer.id, dataProducer);
    dataProducer.observer.on('close', () => this.dataProducers.delete(dataProducer.id));
    return dataProducer;
  }

  /** Answers a server `newDataConsumer` request's data with a DataConsumer. */
  async consumeData({ id, dataProducerId, sctpStreamParameters, label, protocol, appData, peerId }) {
    if (!this.recvTransport) throw new Error('no receive transport');
    const dataConsumer = await this.recvTransport.consumeData({
      id,
      dataProducerId,
      sctpStreamParameters,
      label,
      protocol,
      appData: { ...(appData ?? {}), peerId },
    });
    this.dataConsumers.set(dataConsumer.id, dataConsumer);
    dataConsumer.observer.on('close', () => this.dataConsumers.delete(dataConsumer.id));
    return dataConsumer;
  }

  closeDataConsumer(dataConsumerId) {
    const dataConsumer = this.dataConsumers.get(dataConsumerId);
    if (!dataConsumer) return;
    dataConsumer.close();
    this.dataConsumers.delete(dataConsumerId);
  }

  async pauseConsumer(consumer) {
    consumer.pause();
    await this.signaling.request('pauseConsumer', { consumerId: consumer.id });
  }

  async resumeConsumer(consumer) {
    consumer.resume();
    await this.signaling.request('resumeConsumer', { consumerId: consumer.id });
  }

  closeConsumer(consumerId) {
    const consumer = this.consumers.get(consumerId);
    if (!consumer) return null;
    consumer.close();
    this.consumers.delete(consumerId);
    return consumer;
  }

  /** Closes producers (stopping their tracks), consumers and both transports. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const producer of this.producers.values()) producer.close();
    for (const consumer of this.consumers.values()) consumer.close();
    for (const dataProducer of this.dataProducers.values()) dataProducer.close();
    for (const dataConsumer of this.dataConsumers.values()) dataConsumer.close();
    this.producers.clear();
    this.consumers.clear();
    this.dataProducers.clear();
    this.dataConsumers.clear();
    this.sendTransport?.close();
    this.recvTransport?.close();
  }
}

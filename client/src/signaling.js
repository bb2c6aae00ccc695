// protoo signaling: one protoo Peer over a WebSocket to this page's origin.
//
// Events:
//   'request'      (request, accept, reject)  a server request (newConsumer)
//   'notification' (notification)            a server notification
//   'failed'       (attempt)                  a connection attempt failed (protoo retries)
//   'disconnected' ()                         the open socket dropped; protoo is retrying
//   'reopened'     ()                         the socket is open again after 'disconnected'
//   'closed'       ({code, reason})           gone for good: the server closed it with a
//                                            final code (4000 replaced, 4001 shutdown,
//                                            4002 media lost, 4029 limit), or retries ran out
import { Peer, WebSocketTransport } from 'protoo-client';
import { Emitter } from './emitter.js';

// Fail fast enough that "server unreachable" shows within a few seconds.
const RETRY = { retries: 2, factor: 2, minTimeout: 1000, maxTimeout: 2000 };

// WebSocket close codes after which reconnecting the same session is pointless
// (docs/protocol.md, "Fatal and transient failures").
export const CLOSE_REPLACED = 4000;
export const CLOSE_SHUTDOWN = 4001;
export const CLOSE_MEDIA_LOST = 4002;
export const CLOSE_LIMIT = 4029;
const FINAL_CODES = new Set([CLOSE_REPLACED, CLOSE_SHUTDOWN, CLOSE_MEDIA_LOST, CLOSE_LIMIT]);

export class SignalingError extends Error {
  constructor(message, { code = null, method = null, reason = null } = {}) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
    this.method = method;
    this.reason = reason;
  }
}

export class Signaling extends Emitter {
  constructor(url) {
    super();
    this.url = url;
    this.peer = null;
    this.connected = false;
    this.closed = false;
    this.wasConnected = false;
    /** The last WebSocket close: {code, reason} (protoo-client does not pass it on). */
    this.lastClose = null;
  }

  // protoo-client keeps its WebSocket in transport._ws and does not report
  // close codes; listen on each socket it opens to learn them.
  #socket() {
    return this.peer?._transport?._ws ?? null;
  }

  #watchSocket() {
    const ws = this.#socket();
    if (!ws?.addEventListener) return;
    ws.addEventListener('close', (event) => {
      this.lastClose = { code: event.code, reason: event.reason };
    });
  }

  #finish() {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    this.peer?.close();
    this.emit('closed', this.lastClose ?? { code: null, reason: '' });
  }

  /** Opens the WebSocket; resolves on 'open', rejects when the server cannot be reached. */
  connect() {
    return new Promise((resolve, reject) => {
      const transport = new WebSocketTransport(this.url, { retry: RETRY });
      const peer = new Peer(transport);
      this.peer = peer;

      peer.on('open', () => {
        this.connected = true;
        this.#watchSocket();
        if (this.wasConnected) {
          this.emit('reopened');
        } else {
          this.wasConnected = true;
          resolve();
        }
      });
      peer.on('failed', (attempt) => {
        this.emit('failed', attempt);
      });
      // protoo emits these from the socket's onclose, before our own close
      // listener has run: look at the close code a tick later.
      peer.on('disconnected', () => {
        this.connected = false;
        setTimeout(() => {
          if (this.closed) return;
          if (FINAL_CODES.has(this.lastClose?.code)) this.#finish();
          else this.emit('disconnected', this.lastClose);
        }, 0);
      });
      peer.on('close', () => {
        this.connected = false;
        if (!this.wasConnected) {
          this.closed = true;
          reject(
            new SignalingError(
              `Cannot reach the server at ${new URL(this.url).host}. Check that it is running and that this address is right, then try again.`,
              { reason: 'unreachable' },
            ),
          );
          return;
        }
        setTimeout(() => this.#finish(), 0);
      });
      peer.on('request', (request, accept, reject2) => {
        this.emit('request', request, accept, reject2);
      });
      peer.on('notification', (notification) => {
        this.emit('notification', notification);
      });
    });
  }

  /** A request; a protoo error response becomes a SignalingError with the server's errorReason. */
  async request(method, data = undefined) {
    if (!this.peer || this.closed) {
      throw new SignalingError(`Not connected to the server (${method}).`, { method });
    }
    try {
      return await this.peer.request(method, data);
    } catch (error) {
      if (typeof error.code === 'number') {
        throw new SignalingError(`The server refused "${method}": ${error.message} (error ${error.code})`, {
          code: error.code,
          method,
          reason: error.message,
        });
      }
      throw new SignalingError(`"${method}" failed: ${error.message}`, { method, reason: error.message });
    }
  }

  /** Our own close (leave): no 'closed' event. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    // Say goodbye with code 1000: protoo-client's close() sends no code, and
    // the server keeps a peer whose socket closed without one for a resume.
    try {
      this.#socket()?.close(1000, 'leave');
    } catch {
      // already closing
    }
    this.peer?.close();
  }
}

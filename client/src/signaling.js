// protoo signaling: a protoo Peer over one WebSocket at a time to this page's
// origin. The Signaling object outlives its sockets: `connect()` opens a new
// one (after a drop, to resume the session), and the 'request' and
// 'notification' listeners stay attached across them.
//
// protoo-client's WebSocketTransport retries by itself (and reconnects on its
// own after a drop, whatever its retry options say); RoomClient runs its own
// backoff and must send `resume` as the first request of each new socket, so
// each socket here is a single attempt (SocketTransport below).
//
// Events:
//   'request'      (request, accept, reject)  a server request (newConsumer)
//   'notification' (notification)            a server notification
//   'disconnected' ({code, reason})          the open socket closed, not by us (code 1006
//                                            when the connection died without a close frame)
import { Peer } from 'protoo-client';
import Message from 'protoo-client/lib/Message.js';
import { Emitter } from './emitter.js';

// WebSocket close codes after which reconnecting the same session is pointless
// (docs/protocol.md, "Fatal and transient failures").
export const CLOSE_REPLACED = 4000;
export const CLOSE_SHUTDOWN = 4001;
export const CLOSE_MEDIA_LOST = 4002;
/** Removed by an admin (RoomService RemoveParticipant or DeleteRoom), or the room is gone. */
export const CLOSE_REMOVED = 4003;
export const CLOSE_LIMIT = 4029;
/** Fatal: stop retrying and tell the user. (4002 is transient: join again.) */
export const FATAL_CODES = new Set([CLOSE_REPLACED, CLOSE_SHUTDOWN, CLOSE_REMOVED, CLOSE_LIMIT]);
/** Our goodbye: the server closes the peer at once. */
const CLOSE_LEAVE = 1000;
/**
 * Dropping a socket we gave up on (an open or a request that took too long):
 * not a goodbye (1000/1001/1005), so the server keeps the session for a resume.
 */
const CLOSE_ABANDONED = 4100;

const CONNECT_TIMEOUT_MS = 4000;
const WS_SUBPROTOCOL = 'protoo';

/** HTTP statuses of a refused upgrade after which retrying is pointless (docs/auth.md). */
const REFUSED_STATUSES = new Set([401, 403]);

// What a person is told for each refusal reason of the server (sfu/auth).
const REFUSAL_TEXT = {
  expired: 'This link has expired. Ask for a new one.',
  not_yet_valid: 'This link is not valid yet. Try again later.',
  no_token: 'This room needs an invitation link (one with an access token).',
  bad_signature: 'This link is not valid (it may have been changed). Ask for a new one.',
  unknown_key: 'This link was not issued by this server. Ask for a new one.',
  malformed_token: 'This link is not valid (it may have been cut short). Ask for a new one.',
  no_room_join: 'This link does not allow joining rooms.',
  wrong_room: 'This link is for another room.',
  wrong_identity: 'This link is for someone else.',
};

/** The person-readable message for a refusal body {error, reason, message}. */
export function describeRefusal(status, body) {
  const known = REFUSAL_TEXT[body?.reason];
  if (known) return known;
  const detail = typeof body?.message === 'string' ? ` (${body.message})` : '';
  return status === 401
    ? `This link is not valid${detail}. Ask for a new one.`
    : `You may not join this room${detail}.`;
}

export class SignalingError extends Error {
  constructor(message, { code = null, method = null, reason = null } = {}) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
    this.method = method;
    // 'refused': the server refused our access token (401/403): do not retry.
    this.reason = reason;
  }

  get refused() {
    return this.reason === 'refused';
  }
}

/**
 * A protoo-client transport for exactly one WebSocket: no retries. It emits
 * what protoo's Peer listens to ('open', 'close', 'message'); 'close' carries
 * the close event's {code, reason} and whether the socket had opened.
 */
class SocketTransport extends Emitter {
  constructor(url) {
    super();
    this._closed = false;
    this.opened = false;
    this.ws = new WebSocket(url, WS_SUBPROTOCOL);
    this.ws.onopen = () => {
      if (this._closed) return;
      this.opened = true;
      this.emit('open');
    };
    this.ws.onclose = (event) => {
      if (this._closed) return;
      this._closed = true;
      this.emit('close', { code: event.code, reason: event.reason, opened: this.opened, byUs: false });
    };
    this.ws.onerror = () => {}; // a 'close' follows
    this.ws.onmessage = (event) => {
      if (this._closed) return;
      const message = Message.parse(event.data);
      if (message) this.emit('message', message);
    };
  }

  get closed() {
    return this._closed;
  }

  /** protoo's Peer.close() calls this without a code: then it is an abandoned socket, not a leave. */
  close(code = CLOSE_ABANDONED, reason = '') {
    if (this._closed) return;
    this._closed = true;
    const { ws } = this;
    ws.onopen = ws.onclose = ws.onmessage = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    this.emit('close', { code, reason, opened: this.opened, byUs: true });
  }

  async send(message) {
    if (this._closed) throw new Error('transport closed');
    this.ws.send(JSON.stringify(message));
  }
}

export class Signaling extends Emitter {
  /** `admissionUrl`: where to learn why a tokened WebSocket was refused (params.admissionUrl). */
  constructor(url, { admissionUrl = null } = {}) {
    super();
    this.url = url;
    this.admissionUrl = admissionUrl;
    /** The SignalingError of a 401/403 refusal, once seen: no socket is tried again. */
    this.refusal = null;
    this.peer = null;
    this.transport = null;
    this.connected = false;
    /** Our own close (leave): no more sockets. */
    this.closed = false;
    /** The last WebSocket close not by us: {code, reason}. */
    this.lastClose = null;
    /** WebSockets opened so far (for tests and debugging). */
    this.sockets = 0;
  }

  /**
   * Opens a new WebSocket (dropping the current one, if any): one attempt per
   * socket, `attempts` sockets with a short backoff. Resolves on 'open';
   * rejects with a SignalingError when the server cannot be reached.
   */
  async connect({ attempts = 1, timeout = CONNECT_TIMEOUT_MS } = {}) {
    let lastError = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * 500 * 2 ** attempt));
      try {
        await this.#open(timeout);
        return;
      } catch (error) {
        lastError = error;
        if (this.closed || error.refused) break;
      }
    }
    throw lastError;
  }

  /**
   * Why a socket that never opened was refused: a SignalingError with reason
   * 'refused' for a 401/403 from /admission, else null (unreachable, busy...).
   */
  async #refusal() {
    if (!this.admissionUrl) return null;
    let response;
    let body = null;
    try {
      response = await fetch(this.admissionUrl, { cache: 'no-store' });
      body = await response.json();
    } catch {
      return null;
    }
    if (!REFUSED_STATUSES.has(response.status)) return null;
    return new SignalingError(describeRefusal(response.status, body), { code: response.status, reason: 'refused' });
  }

  #open(timeout) {
    this.abandon();
    if (this.closed) return Promise.reject(new SignalingError('Signaling closed.', { reason: 'closed' }));
    if (this.refusal) return Promise.reject(this.refusal);
    return new Promise((resolve, reject) => {
      const transport = new SocketTransport(this.url);
      const peer = new Peer(transport);
      this.transport = transport;
      this.peer = peer;
      this.sockets += 1;
      const current = () => this.peer === peer && !this.closed;
      const unreachable = (why) =>
        new SignalingError(
          `Cannot reach the server at ${new URL(this.url).host}${why}. Check that it is running and that this address is right, then try again.`,
          { reason: 'unreachable' },
        );
      const timer = setTimeout(() => {
        if (transport.opened) return;
        peer.close(); // 'close' below rejects
      }, timeout);

      transport.on('open', () => {
        clearTimeout(timer);
        if (!current()) return;
        this.connected = true;
        resolve();
      });
      transport.on('close', ({ code, reason, opened, byUs }) => {
        clearTimeout(timer);
        // Fail the requests still waiting on this socket at once.
        peer.close();
        if (!opened) {
          if (byUs) {
            reject(unreachable(' (no answer)'));
            return;
          }
          this.#refusal().then((refusal) => {
            if (refusal) this.refusal = refusal;
            reject(refusal ?? unreachable(''));
          });
          return;
        }
        if (!current()) return;
        this.connected = false;
        if (byUs) return;
        this.lastClose = { code, reason };
        this.emit('disconnected', { code, reason });
      });
      peer.on('request', (request, accept, rejectRequest) => {
        if (current()) this.emit('request', request, accept, rejectRequest);
        else rejectRequest(409, 'stale connection');
      });
      peer.on('notification', (notification) => {
        if (current()) this.emit('notification', notification);
      });
    });
  }

  /** Drops the current socket without a goodbye: the server keeps the session (grace period). */
  abandon() {
    const peer = this.peer;
    this.peer = null;
    this.transport = null;
    this.connected = false;
    peer?.close();
  }

  /**
   * A request on the current socket; a protoo error response becomes a
   * SignalingError with the server's errorReason. `timeout` (ms) bounds the
   * wait (protoo's own is over 20 s).
   */
  async request(method, data = undefined, { timeout = 0 } = {}) {
    const peer = this.peer;
    if (!peer || !this.connected || this.closed) {
      throw new SignalingError(`Not connected to the server (${method}).`, { method, reason: 'not connected' });
    }
    let timer = null;
    try {
      const pending = peer.request(method, data);
      if (!timeout) return await pending;
      pending.catch(() => {});
      return await Promise.race([
        pending,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('request timeout')), timeout);
        }),
      ]);
    } catch (error) {
      if (typeof error.code === 'number') {
        throw new SignalingError(`The server refused "${method}": ${error.message} (error ${error.code})`, {
          code: error.code,
          method,
          reason: error.message,
        });
      }
      throw new SignalingError(`"${method}" failed: ${error.message}`, { method, reason: error.message });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Our own close (leave): a goodbye (code 1000), and no more events or sockets. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    const { peer, transport } = this;
    this.peer = null;
    this.transport = null;
    transport?.close(CLOSE_LEAVE, 'leave');
    peer?.close();
  }
}

// URL parameters: what a shared link or a test harness can set.
//
//   roomId       the room to join (generated and written into the URL if absent)
//   peerId       this tab's peer id (random if absent; never written into the URL)
//   displayName  pre-filled name
//   mode         "video" (default) or "voice"
//   handler      force a mediasoup-client handler, e.g. "Chrome111"
//   autojoin=1   join at once with the defaults, no clicks
//   forceTcp=1   ask the server for ICE over TCP only (where UDP is blocked)
//   relay=1      use only TURN relay candidates (iceTransportPolicy "relay")
//   access_token a LiveKit access token (docs/auth.md): passed on to the server;
//                its `sub` is the peerId and its `name` the pre-filled name

// The server accepts 1-128 characters of these for roomId and peerId.
const ID_PATTERN = /^[A-Za-z0-9_.:@+-]{1,128}$/;
const HANDLERS = ['Chrome111', 'Chrome74', 'Firefox120', 'Safari12'];

export function randomId(length = 8) {
  const alphabet = 'abcdefghijkmnopqrstuvwxyz23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

export function readParams(loc = window.location) {
  const query = new URLSearchParams(loc.search);
  let roomId = query.get('roomId') ?? '';
  let roomIdGenerated = false;
  if (!ID_PATTERN.test(roomId)) {
    roomId = randomId(8);
    roomIdGenerated = true;
    query.set('roomId', roomId);
    window.history.replaceState(null, '', `${loc.pathname}?${query}${loc.hash}`);
  }
  const accessToken = query.get('access_token') ?? '';
  const tokenClaims = accessToken ? readTokenClaims(accessToken) : {};
  const peerIdParam = query.get('peerId') ?? tokenClaims.sub ?? '';
  const peerId = ID_PATTERN.test(peerIdParam) ? peerIdParam : randomId(10);
  const mode = query.get('mode') === 'voice' ? 'voice' : 'video';
  const handlerParam = query.get('handler') ?? '';
  const handler = HANDLERS.includes(handlerParam) ? handlerParam : null;
  const flag = (name) => ['1', 'true', 'yes'].includes(query.get(name) ?? '');
  const autojoin = flag('autojoin');
  return {
    roomId,
    roomIdGenerated,
    peerId,
    displayName: (query.get('displayName') ?? tokenClaims.name ?? '').trim().slice(0, 64),
    accessToken,
    mode,
    modeGiven: query.has('mode'),
    handler,
    autojoin,
    forceTcp: flag('forceTcp'),
    relayOnly: flag('relay'),
  };
}

/**
 * `sub` and `name` of a JWT's payload, unverified (the server verifies it):
 * only to pre-fill this page. {} when it cannot be read.
 */
export function readTokenClaims(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
    const text = (value) => (typeof value === 'string' ? value : undefined);
    return { sub: text(claims.sub), name: text(claims.name) };
  } catch {
    return {};
  }
}

/** The link to share: this page with only the room in it (never the token: it is personal). */
export function roomLink(roomId, loc = window.location) {
  return `${loc.origin}${loc.pathname}?roomId=${encodeURIComponent(roomId)}`;
}

function signalingQuery(roomId, peerId, accessToken) {
  const query = new URLSearchParams({ roomId, peerId });
  if (accessToken) query.set('access_token', accessToken);
  return query;
}

/** The protoo WebSocket URL on this page's origin. */
export function signalingUrl(roomId, peerId, accessToken = '', loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${loc.host}/?${signalingQuery(roomId, peerId, accessToken)}`;
}

/**
 * Where to ask why the WebSocket was refused: a browser cannot read the
 * upgrade's HTTP status, so /admission answers the same check with the
 * same 401/403 JSON body (docs/auth.md).
 */
export function admissionUrl(roomId, peerId, accessToken, loc = window.location) {
  return `${loc.origin}/admission?${signalingQuery(roomId, peerId, accessToken)}`;
}

export function initials(name) {
  const words = String(name ?? '').trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  const letters = words.length === 1 ? [[...words[0]][0]] : [[...words[0]][0], [...words[words.length - 1]][0]];
  return letters.join('').toUpperCase();
}

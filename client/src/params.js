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
  const peerIdParam = query.get('peerId') ?? '';
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
    displayName: (query.get('displayName') ?? '').trim().slice(0, 64),
    mode,
    modeGiven: query.has('mode'),
    handler,
    autojoin,
    forceTcp: flag('forceTcp'),
    relayOnly: flag('relay'),
  };
}

/** The link to share: this page with only the room in it. */
export function roomLink(roomId, loc = window.location) {
  return `${loc.origin}${loc.pathname}?roomId=${encodeURIComponent(roomId)}`;
}

/** The protoo WebSocket URL on this page's origin. */
export function signalingUrl(roomId, peerId, loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws';
  const query = new URLSearchParams({ roomId, peerId });
  return `${scheme}://${loc.host}/?${query}`;
}

export function initials(name) {
  const words = String(name ?? '').trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  const letters = words.length === 1 ? [[...words[0]][0]] : [[...words[0]][0], [...words[words.length - 1]][0]];
  return letters.join('').toUpperCase();
}

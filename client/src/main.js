// The browser client: join screen -> room (video grid or voice channel).
import { readParams, randomId } from './params.js';
import { RoomClient, STATE_TEXT } from './room.js';
import { $ } from './ui/dom.js';
import { JoinScreen } from './ui/join.js';
import { VideoGrid } from './ui/videoGrid.js';
import { VoiceChannel } from './ui/voiceChannel.js';
import { AudioSink } from './ui/audioSink.js';
import { Controls } from './ui/controls.js';
import { clearError, setConnectionState, showError } from './ui/status.js';
import { playCue, unlockAudio } from './ui/sounds.js';

const params = readParams();

/** Test/debug handle, kept up to date by RoomClient. */
const debug = {
  peerId: params.peerId,
  roomId: params.roomId,
  mode: params.mode,
  device: null,
  sendTransport: null,
  recvTransport: null,
  producers: new Map(),
  consumers: new Map(),
};
window.sfuDebug = debug;

const roomSection = $('#room');
const roomTitle = $('#room-title');
const statePill = $('#connection-state');
const soundBanner = $('#sound-banner');
const grid = new VideoGrid($('#tiles'));
const voice = new VoiceChannel($('#members'));
const audio = new AudioSink($('#audio-sink'), () => {
  soundBanner.hidden = false;
});
const controls = new Controls({
  onMic: () => client?.toggleMic(lastValues?.micDeviceId),
  onCam: () => client?.toggleCam(lastValues?.camDeviceId),
  onScreen: () => client?.toggleScreen(),
  onDeafen: () => client?.toggleDeafen(),
  onLeave: () => leaveRoom(),
});
const joinScreen = new JoinScreen({ params, onJoin: (values) => enterRoom(values) });

/** @type {RoomClient | null} */
let client = null;
let lastValues = null;
let mode = params.mode;

$('#enable-sound').addEventListener('click', () => {
  unlockAudio();
  audio.resumeAll();
  soundBanner.hidden = true;
});

function updateTitle() {
  const count = mode === 'video' ? grid.tiles.size : voice.count;
  $('.room-name', roomTitle).textContent = params.roomId;
  $('.room-count', roomTitle).textContent = client ? `${count} in ${mode === 'voice' ? 'channel' : 'room'}` : '';
}

function showRoom() {
  roomSection.dataset.mode = mode;
  roomSection.hidden = false;
  statePill.hidden = false;
  $('#tiles').hidden = mode !== 'video';
  $('#voice-panel').hidden = mode !== 'voice';
  $('#voice-channel-name').textContent = params.roomId;
  controls.setMode(mode);
  document.title = `${params.roomId} · ${mode === 'voice' ? 'voice channel' : 'video room'}`;
}

function hideRoom() {
  roomSection.hidden = true;
  statePill.hidden = true;
  soundBanner.hidden = true;
  grid.clear();
  voice.clear();
  audio.clear();
  setConnectionState('idle', STATE_TEXT.idle);
  document.title = 'Join a room';
  updateTitle();
}

function wire(session) {
  session.on('state', (state, text) => setConnectionState(state, text));
  session.on('local', (view) => {
    controls.update(view);
    if (mode === 'video') grid.setLocal(view);
    else voice.setLocal(view);
    updateTitle();
  });
  session.on('peer', (view) => {
    if (mode === 'video') grid.upsertPeer(view);
    else voice.upsertPeer(view);
    updateTitle();
  });
  session.on('peerremoved', (peerId) => {
    grid.removePeer(peerId);
    voice.removePeer(peerId);
    updateTitle();
  });
  session.on('audiotrack', (consumerId, track) => audio.add(consumerId, track));
  session.on('audiotrackremoved', (consumerId) => audio.remove(consumerId));
  session.on('speaker', (peerId) => {
    grid.setSpeaker(peerId);
    voice.setSpeaker(peerId);
  });
  session.on('peerjoined', () => {
    if (mode === 'voice') playCue('join');
  });
  session.on('peerleft', () => {
    if (mode === 'voice') playCue('leave');
  });
  session.on('error', (message) => showError(message));
  session.on('ended', (message) => {
    audio.clear();
    showError(message, {
      actions: [{ label: 'Rejoin', onClick: () => rejoin() }],
    });
  });
}

async function enterRoom(values) {
  unlockAudio();
  clearError();
  if (client) leaveRoom({ showJoin: false });
  lastValues = values;
  mode = values.mode;
  debug.mode = mode;
  joinScreen.setBusy(true);
  joinScreen.hide();

  const session = new RoomClient({
    roomId: params.roomId,
    peerId: params.peerId,
    displayName: values.displayName,
    mode,
    handler: params.handler,
    forceTcp: params.forceTcp,
    relayOnly: params.relayOnly,
    accessToken: params.accessToken,
    debug,
  });
  client = session;
  wire(session);
  showRoom();
  setConnectionState('connecting', STATE_TEXT.connecting);
  const local = session.localView();
  controls.update(local);
  if (mode === 'video') grid.setLocal(local);
  else voice.setLocal(local);
  updateTitle();

  try {
    await session.join({ micDeviceId: values.micDeviceId, camDeviceId: values.camDeviceId });
    if (mode === 'voice' && client === session) playCue('join');
  } catch (error) {
    if (error?.name === 'AbortError' || client !== session) return;
    console.error(error);
    client = null;
    session.removeAllListeners();
    hideRoom();
    joinScreen.show();
    // A refused access token (401/403) will be refused again: no retry offered.
    const actions = error.cause?.refused ? [] : [{ label: 'Try again', onClick: () => rejoin() }];
    showError(error.message, { actions });
  }
}

function rejoin() {
  if (!lastValues) return;
  enterRoom(lastValues);
}

function leaveRoom({ showJoin = true } = {}) {
  const session = client;
  client = null;
  if (session) {
    session.leave();
    session.removeAllListeners();
  }
  clearError();
  hideRoom();
  if (showJoin) joinScreen.show();
}

window.addEventListener('pagehide', () => client?.leave());

// Start: join at once (autojoin=1) or show the join screen.
if (params.autojoin) {
  enterRoom({
    displayName: params.displayName || `Guest ${randomId(4)}`,
    mode: params.mode,
    camDeviceId: '',
    micDeviceId: '',
  });
} else {
  joinScreen.show();
  $('#display-name').focus();
}

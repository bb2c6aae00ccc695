// The call controls: #toggle-mic, #toggle-cam, #toggle-screen, #toggle-deafen, #leave.
// Each has a fixed aria-label; aria-pressed="true" means: mic muted, camera
// off, screen shared, deafened. The visible label is part of the aria-label.
import { $, setPressed } from './dom.js';
import { icons } from './icons.js';

export class Controls {
  /** @param {{onMic, onCam, onScreen, onDeafen, onLeave}} handlers */
  constructor(handlers) {
    this.mic = $('#toggle-mic');
    this.cam = $('#toggle-cam');
    this.screen = $('#toggle-screen');
    this.deafen = $('#toggle-deafen');
    this.leave = $('#leave');
    this.banner = $('#sharing-banner');
    this.screenSupported = Boolean(navigator.mediaDevices?.getDisplayMedia);

    this.mic.addEventListener('click', () => handlers.onMic());
    this.cam.addEventListener('click', () => handlers.onCam());
    this.screen.addEventListener('click', () => handlers.onScreen());
    this.deafen.addEventListener('click', () => handlers.onDeafen());
    this.leave.addEventListener('click', () => handlers.onLeave());
    $('#stop-sharing').addEventListener('click', () => handlers.onScreen());
    setContent(this.leave, icons.leave, 'Leave');
  }

  setMode(mode) {
    const video = mode === 'video';
    this.cam.hidden = !video;
    this.screen.hidden = !video || !this.screenSupported;
    this.deafen.hidden = video;
  }

  update(view) {
    setPressed(this.mic, view.micMuted);
    setContent(this.mic, view.micMuted ? icons.micOff : icons.mic, 'Mute');
    this.mic.title = view.hasMic ? (view.micMuted ? 'Unmute microphone' : 'Mute microphone') : 'Turn on microphone';
    this.mic.setAttribute('aria-busy', String(view.busy.has('mic')));

    setPressed(this.cam, view.camOff);
    setContent(this.cam, view.camOff ? icons.camOff : icons.cam, 'Camera');
    this.cam.title = view.camOff ? 'Turn camera on' : 'Turn camera off';
    this.cam.setAttribute('aria-busy', String(view.busy.has('webcam')));

    setPressed(this.screen, view.sharing);
    setContent(this.screen, icons.screen, 'Share');
    this.screen.title = view.sharing ? 'Stop sharing your screen' : 'Share your screen';
    this.banner.hidden = !view.sharing;

    setPressed(this.deafen, view.deafened);
    setContent(this.deafen, view.deafened ? icons.headphonesOff : icons.headphones, 'Deafen');
    this.deafen.title = view.deafened ? 'Undeafen: hear the others again' : 'Deafen: stop hearing the others';
  }
}

function setContent(button, icon, label) {
  const key = `${icon}|${label}`;
  if (button.dataset.key === key) return;
  button.dataset.key = key;
  button.innerHTML = `${icon}<span class="ctl-label"></span>`;
  button.querySelector('.ctl-label').textContent = label;
}

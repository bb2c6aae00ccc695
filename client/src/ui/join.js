// The join screen: name, video room or voice channel, camera and microphone,
// the room link, Join.
import { $, h } from './dom.js';
import { icons } from './icons.js';
import { describeMediaError, getCamera, listDevices, probePermissions } from '../devices.js';
import { initials, roomLink } from '../params.js';
import { showError } from './status.js';

const NAME_KEY = 'sfu.displayName';

export class JoinScreen {
  /** @param {{params: object, onJoin: (values: object) => void}} options */
  constructor({ params, onJoin }) {
    this.params = params;
    this.onJoin = onJoin;
    this.section = $('#join-screen');
    this.form = $('#join-form');
    this.nameInput = $('#display-name');
    this.cameraSelect = $('#camera');
    this.micSelect = $('#microphone');
    this.cameraField = $('#camera-field');
    this.linkInput = $('#room-link');
    this.copyButton = $('#copy-link');
    this.copyStatus = $('#copy-status');
    this.joinButton = $('#join-button');
    this.preview = $('#preview');
    this.previewBox = $('#preview-box');
    this.previewTrack = null;
    this.previewToken = 0;
    this.devicesLoaded = false;
    this.active = false;

    $('#join-room-name').textContent = params.roomId;
    this.linkInput.value = roomLink(params.roomId);
    this.nameInput.value = params.displayName || safeStorage('get') || '';
    const mode = params.mode;
    for (const radio of this.form.elements.mode) radio.checked = radio.value === mode;
    this.#applyMode();
    this.#updatePreviewInitials();

    this.copyButton.innerHTML = `${icons.copy}<span>Copy</span>`;
    this.copyButton.addEventListener('click', () => this.#copyLink());
    this.linkInput.addEventListener('focus', () => this.linkInput.select());
    this.form.addEventListener('change', (event) => {
      if (event.target.name === 'mode') {
        this.#applyMode();
        this.startPreview();
      } else if (event.target === this.cameraSelect) {
        this.startPreview();
      }
    });
    this.nameInput.addEventListener('input', () => this.#updatePreviewInitials());
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (this.joinButton.disabled) return;
      const values = this.values();
      if (!values.displayName) {
        this.nameInput.focus();
        showError('Enter a display name so the others know who you are.');
        return;
      }
      safeStorage('set', values.displayName);
      this.onJoin(values);
    });
    navigator.mediaDevices?.addEventListener?.('devicechange', () => {
      if (this.devicesLoaded) this.#fillDevices().catch(() => {});
    });
  }

  get mode() {
    return this.form.elements.mode.value === 'voice' ? 'voice' : 'video';
  }

  values() {
    return {
      displayName: this.nameInput.value.trim().slice(0, 64),
      mode: this.mode,
      camDeviceId: this.cameraSelect.value,
      micDeviceId: this.micSelect.value,
    };
  }

  show() {
    this.active = true;
    this.section.hidden = false;
    this.setBusy(false);
    if (!this.devicesLoaded && !this.loadingDevices) {
      this.loadingDevices = this.loadDevices().catch((error) => console.warn('device probe failed', error));
    } else {
      this.startPreview();
    }
  }

  hide() {
    this.active = false;
    this.section.hidden = true;
    this.stopPreview();
  }

  setBusy(busy) {
    this.joinButton.disabled = busy;
    this.joinButton.setAttribute('aria-busy', String(busy));
    this.joinButton.querySelector('.label').textContent = busy ? 'Joining…' : 'Join';
  }

  /** Permission probe, then the device lists (labels need the permission). */
  async loadDevices() {
    const { error } = await probePermissions({ video: this.mode === 'video' });
    if (error && (error.name === 'NotAllowedError' || error.name === 'SecurityError')) {
      showError(
        `${describeMediaError(error, 'camera and microphone')} You can still join to see and hear the others.`,
      );
    }
    await this.#fillDevices();
    this.devicesLoaded = true;
    if (this.active) this.startPreview();
  }

  async #fillDevices() {
    let lists = { cameras: [], microphones: [] };
    try {
      lists = await listDevices();
    } catch (error) {
      console.warn('enumerateDevices failed', error);
    }
    fillSelect(this.cameraSelect, lists.cameras, 'camera');
    fillSelect(this.micSelect, lists.microphones, 'microphone');
  }

  #applyMode() {
    const video = this.mode === 'video';
    this.cameraField.hidden = !video;
    this.cameraSelect.disabled = !video;
    this.previewBox.hidden = !video;
    this.form.dataset.mode = this.mode;
  }

  #updatePreviewInitials() {
    $('#preview-initials').textContent = initials(this.nameInput.value || '?');
  }

  async startPreview() {
    this.stopPreview();
    if (!this.active || this.mode !== 'video' || !this.devicesLoaded) return;
    const token = ++this.previewToken;
    try {
      const track = await getCamera(this.cameraSelect.value);
      if (token !== this.previewToken || !this.active || this.mode !== 'video') {
        track.stop();
        return;
      }
      this.previewTrack = track;
      this.preview.srcObject = new MediaStream([track]);
      this.preview.play().catch(() => {});
      this.previewBox.classList.add('live');
    } catch (error) {
      this.previewBox.classList.remove('live');
      console.info('no camera preview', error?.name);
    }
  }

  stopPreview() {
    this.previewToken++;
    this.previewTrack?.stop();
    this.previewTrack = null;
    this.preview.srcObject = null;
    this.previewBox.classList.remove('live');
  }

  async #copyLink() {
    const link = this.linkInput.value;
    let copied = false;
    try {
      await navigator.clipboard.writeText(link);
      copied = true;
    } catch {
      this.linkInput.select();
      try {
        copied = document.execCommand('copy');
      } catch {
        copied = false;
      }
    }
    this.copyStatus.textContent = copied ? 'Link copied' : 'Select the link and copy it';
    this.copyButton.innerHTML = `${copied ? icons.check : icons.copy}<span>${copied ? 'Copied' : 'Copy'}</span>`;
    clearTimeout(this.copyTimer);
    this.copyTimer = setTimeout(() => {
      this.copyStatus.textContent = '';
      this.copyButton.innerHTML = `${icons.copy}<span>Copy</span>`;
    }, 2000);
  }
}

function fillSelect(select, devices, what) {
  const previous = select.value;
  const options = [h('option', { value: '' }, `Default ${what}`)];
  devices.forEach((device, i) => {
    options.push(h('option', { value: device.deviceId }, device.label || `${capitalize(what)} ${i + 1}`));
  });
  if (devices.length === 0) {
    options[0].textContent = `No ${what} found`;
  }
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function safeStorage(op, value) {
  try {
    if (op === 'get') return localStorage.getItem(NAME_KEY);
    localStorage.setItem(NAME_KEY, value);
  } catch {
    // Storage blocked: the name is simply not remembered.
  }
  return null;
}


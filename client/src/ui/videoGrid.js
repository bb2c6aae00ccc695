// The video room: a grid of tiles, one per peer (the local one first and
// mirrored), plus one `.tile.screen` per remote screen share.
//
//   .tile[data-peer-id]            video (while a camera consumer exists), .avatar,
//                                  .tile-name, .mic-icon[data-muted], .cam-icon[data-off]
//   .tile.local                    this peer
//   .tile.screen[data-peer-id][data-consumer-id]
//   .speaking                      while that peer is the active speaker
import { h, hueFor } from './dom.js';
import { icons } from './icons.js';
import { initials } from '../params.js';

function displayNameOf(view) {
  return view.displayName || 'Guest';
}

export class VideoGrid {
  constructor(container) {
    this.container = container;
    this.tiles = new Map(); // peerId -> camera tile
    this.screens = new Map(); // consumerId -> screen tile
    this.speaker = null;
    this.localId = null;
    // Called with (consumerId, width in device pixels) when a remote camera's
    // <video> changes size: the room asks for the simulcast layer that fits.
    this.onVideoSize = null;
    this.resizes = new ResizeObserver((entries) => {
      for (const { target, contentRect } of entries) {
        const consumerId = target.dataset.consumerId;
        if (consumerId && this.onVideoSize) {
          this.onVideoSize(consumerId, Math.round(contentRect.width * (window.devicePixelRatio || 1)));
        }
      }
    });
  }

  /** Shows which simulcast layer a remote camera is received at (null: none). */
  setConsumerLayer(consumerId, spatialLayer) {
    const video = this.container.querySelector(`video[data-consumer-id="${CSS.escape(consumerId)}"]`);
    if (video) {
      video.dataset.spatialLayer = spatialLayer ?? '';
      video.title = spatialLayer == null ? 'no layer received' : `layer ${spatialLayer + 1} of the camera`;
    }
  }

  // ---- tiles of peers

  #createTile(peerId, local) {
    const tile = h(
      'div',
      {
        class: `tile${local ? ' local' : ''}`,
        'data-peer-id': peerId,
        role: 'group',
      },
      h('div', { class: 'avatar', 'aria-hidden': 'true' }),
      h(
        'div',
        { class: 'tile-footer' },
        h('span', { class: 'mic-icon', role: 'img' }),
        h('span', { class: 'tile-name' }),
        h('span', { class: 'cam-icon', role: 'img' }),
      ),
    );
    tile.classList.toggle('speaking', this.speaker === peerId);
    return tile;
  }

  #fill(tile, { name, micMuted, camOff, track, consumerId }) {
    const nameEl = tile.querySelector('.tile-name');
    if (nameEl.textContent !== name) nameEl.textContent = name;
    tile.setAttribute('aria-label', name);
    const avatar = tile.querySelector('.avatar');
    avatar.textContent = initials(name.replace(/ \(you\)$/, ''));
    avatar.style.setProperty('--avatar-hue', hueFor(tile.dataset.peerId));

    const mic = tile.querySelector('.mic-icon');
    if (mic.dataset.muted !== String(micMuted)) {
      mic.dataset.muted = String(micMuted);
      mic.innerHTML = micMuted ? icons.micOff : icons.mic;
      mic.setAttribute('aria-label', micMuted ? 'Microphone muted' : 'Microphone on');
    }
    const cam = tile.querySelector('.cam-icon');
    if (cam.dataset.off !== String(camOff)) {
      cam.dataset.off = String(camOff);
      cam.innerHTML = camOff ? icons.camOff : icons.cam;
      cam.setAttribute('aria-label', camOff ? 'Camera off' : 'Camera on');
    }

    // The <video> lives exactly as long as there is a camera track.
    let video = tile.querySelector('video');
    if (!track) {
      if (video) {
        this.resizes.unobserve(video);
        video.srcObject = null;
        video.remove();
      }
    } else {
      const key = consumerId ?? track.id;
      if (!video) {
        video = h('video', { autoplay: true, playsinline: true, muted: true });
        video.muted = true;
        tile.prepend(video);
      }
      if (video.dataset.trackKey !== key) {
        video.dataset.trackKey = key;
        if (consumerId) {
          video.dataset.consumerId = consumerId;
          this.resizes.observe(video);
        }
        video.srcObject = new MediaStream([track]);
        video.play().catch(() => {});
      }
      video.hidden = camOff;
    }
    tile.classList.toggle('cam-off', camOff || !track);
  }

  setLocal(view) {
    this.localId = view.id;
    let tile = this.tiles.get(view.id);
    if (!tile) {
      tile = this.#createTile(view.id, true);
      this.tiles.set(view.id, tile);
      this.container.prepend(tile);
      this.#layout();
    }
    this.#fill(tile, {
      name: `${displayNameOf(view)} (you)`,
      micMuted: view.micMuted,
      camOff: view.camOff,
      track: view.camera?.track ?? null,
      consumerId: null,
    });
  }

  upsertPeer(view) {
    let tile = this.tiles.get(view.id);
    if (!tile) {
      tile = this.#createTile(view.id, false);
      this.tiles.set(view.id, tile);
      // Peers before screen shares, which go last.
      const firstScreen = this.container.querySelector('.tile.screen');
      this.container.insertBefore(tile, firstScreen);
    }
    this.#fill(tile, {
      name: displayNameOf(view),
      micMuted: view.micMuted,
      camOff: view.camOff,
      track: view.camera?.track ?? null,
      consumerId: view.camera?.consumerId ?? null,
    });
    this.#syncScreens(view);
    this.#layout();
  }

  removePeer(peerId) {
    this.tiles.get(peerId)?.remove();
    this.tiles.delete(peerId);
    for (const [consumerId, tile] of this.screens) {
      if (tile.dataset.peerId === peerId) this.#removeScreen(consumerId);
    }
    this.#layout();
  }

  // ---- screen shares

  #syncScreens(view) {
    const current = new Set(view.screens.map((s) => s.consumerId));
    for (const [consumerId, tile] of this.screens) {
      if (tile.dataset.peerId === view.id && !current.has(consumerId)) this.#removeScreen(consumerId);
    }
    for (const screen of view.screens) {
      let tile = this.screens.get(screen.consumerId);
      const label = `${displayNameOf(view)}'s screen`;
      if (!tile) {
        const video = h('video', {
          autoplay: true,
          playsinline: true,
          muted: true,
          'data-consumer-id': screen.consumerId,
        });
        video.muted = true;
        video.srcObject = new MediaStream([screen.track]);
        tile = h(
          'div',
          {
            class: 'tile screen',
            'data-peer-id': view.id,
            'data-consumer-id': screen.consumerId,
            role: 'group',
          },
          video,
          h(
            'div',
            { class: 'tile-footer' },
            h('span', { class: 'screen-icon', html: icons.screen }),
            h('span', { class: 'tile-name' }),
          ),
        );
        this.container.append(tile);
        this.screens.set(screen.consumerId, tile);
        video.play().catch(() => {});
      }
      tile.querySelector('.tile-name').textContent = label;
      tile.setAttribute('aria-label', label);
      tile.querySelector('video').hidden = screen.paused;
      tile.classList.toggle('paused', screen.paused);
    }
  }

  #removeScreen(consumerId) {
    const tile = this.screens.get(consumerId);
    if (!tile) return;
    const video = tile.querySelector('video');
    if (video) video.srcObject = null;
    tile.remove();
    this.screens.delete(consumerId);
  }

  // ---- speaking, layout

  setSpeaker(peerId) {
    this.speaker = peerId;
    for (const [id, tile] of this.tiles) tile.classList.toggle('speaking', id === peerId);
  }

  #layout() {
    const count = this.tiles.size + this.screens.size;
    const cols = count <= 1 ? 1 : count <= 4 ? 2 : count <= 9 ? 3 : 4;
    const phoneCols = count <= 2 ? 1 : 2;
    this.container.style.setProperty('--cols', cols);
    this.container.style.setProperty('--cols-phone', phoneCols);
    this.container.style.setProperty('--rows', Math.ceil(count / cols));
    this.container.dataset.count = String(count);
  }

  clear() {
    for (const tile of this.container.querySelectorAll('video')) tile.srcObject = null;
    this.container.replaceChildren();
    this.tiles.clear();
    this.screens.clear();
    this.speaker = null;
    this.#layout();
  }
}

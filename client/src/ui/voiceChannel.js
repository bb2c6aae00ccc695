// The voice channel: a Discord-style member list.
//
//   #members > .member[data-peer-id][data-muted]   (.local for this peer, .speaking)
//       .avatar (initials), .member-name, .member-status (muted / deafened icons)
import { h, hueFor } from './dom.js';
import { icons } from './icons.js';
import { initials } from '../params.js';

export class VoiceChannel {
  constructor(list) {
    this.list = list;
    this.members = new Map();
    this.speaker = null;
  }

  #member(peerId, local) {
    let item = this.members.get(peerId);
    if (item) return item;
    item = h(
      'li',
      { class: `member${local ? ' local' : ''}`, 'data-peer-id': peerId },
      h('span', { class: 'avatar', 'aria-hidden': 'true', style: { '--avatar-hue': hueFor(peerId) } }),
      h('span', { class: 'member-name' }),
      h('span', { class: 'member-status' }),
    );
    item.querySelector('.avatar').style.setProperty('--avatar-hue', hueFor(peerId));
    item.classList.toggle('speaking', this.speaker === peerId);
    this.members.set(peerId, item);
    if (local) this.list.prepend(item);
    else this.list.append(item);
    return item;
  }

  #fill(item, { name, micMuted, deafened = false, local = false }) {
    item.querySelector('.avatar').textContent = initials(name);
    const nameEl = item.querySelector('.member-name');
    nameEl.replaceChildren(name, local ? h('span', { class: 'you' }, ' (you)') : '');
    item.dataset.muted = String(micMuted);
    if (local) item.dataset.deafened = String(deafened);
    const status = item.querySelector('.member-status');
    const key = `${micMuted}/${deafened}`;
    if (status.dataset.key !== key) {
      status.dataset.key = key;
      status.replaceChildren();
      if (micMuted) {
        status.append(h('span', { class: 'status-icon', role: 'img', 'aria-label': 'Muted', html: icons.micOff }));
      }
      if (deafened) {
        status.append(
          h('span', { class: 'status-icon', role: 'img', 'aria-label': 'Deafened', html: icons.headphonesOff }),
        );
      }
    }
    const state = [micMuted ? 'muted' : null, deafened ? 'deafened' : null].filter(Boolean).join(', ');
    item.setAttribute('aria-label', state ? `${name}${local ? ' (you)' : ''}, ${state}` : `${name}${local ? ' (you)' : ''}`);
  }

  setLocal(view) {
    this.#fill(this.#member(view.id, true), {
      name: view.displayName || 'Guest',
      micMuted: view.micMuted,
      deafened: view.deafened,
      local: true,
    });
  }

  upsertPeer(view) {
    this.#fill(this.#member(view.id, false), { name: view.displayName || 'Guest', micMuted: view.micMuted });
  }

  removePeer(peerId) {
    this.members.get(peerId)?.remove();
    this.members.delete(peerId);
  }

  setSpeaker(peerId) {
    this.speaker = peerId;
    for (const [id, item] of this.members) item.classList.toggle('speaking', id === peerId);
  }

  get count() {
    return this.members.size;
  }

  clear() {
    this.list.replaceChildren();
    this.members.clear();
    this.speaker = null;
  }
}

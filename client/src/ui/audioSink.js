// Remote audio: one hidden <audio autoplay> per audio consumer.
import { h } from './dom.js';

export class AudioSink {
  /** @param {HTMLElement} container  @param {() => void} onBlocked  autoplay was refused */
  constructor(container, onBlocked) {
    this.container = container;
    this.onBlocked = onBlocked;
    this.elements = new Map();
  }

  add(consumerId, track) {
    this.remove(consumerId);
    const audio = h('audio', { autoplay: true, 'data-consumer-id': consumerId });
    audio.srcObject = new MediaStream([track]);
    this.container.append(audio);
    this.elements.set(consumerId, audio);
    this.#play(audio);
  }

  #play(audio) {
    audio.play().catch((error) => {
      if (error?.name === 'NotAllowedError') this.onBlocked();
    });
  }

  /** After a click: play whatever autoplay refused. */
  resumeAll() {
    for (const audio of this.elements.values()) if (audio.paused) this.#play(audio);
  }

  remove(consumerId) {
    const audio = this.elements.get(consumerId);
    if (!audio) return;
    audio.srcObject = null;
    audio.remove();
    this.elements.delete(consumerId);
  }

  clear() {
    for (const id of [...this.elements.keys()]) this.remove(id);
  }
}

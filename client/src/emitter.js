// A minimal event emitter for the app's own objects (the libraries bring
// their own). Listener errors are logged, never thrown into the emitter.
export class Emitter {
  #listeners = new Map();

  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  emit(event, ...args) {
    for (const fn of [...(this.#listeners.get(event) ?? [])]) {
      try {
        fn(...args);
      } catch (error) {
        console.error(`listener for "${event}" failed`, error);
      }
    }
  }

  removeAllListeners() {
    this.#listeners.clear();
  }
}

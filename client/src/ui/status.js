// The #error region (role="alert": empty and hidden when there is no error)
// and the #connection-state pill.
import { $, h } from './dom.js';
import { icons } from './icons.js';

/**
 * Shows `message` in #error. `actions`: [{label, onClick}] buttons a person
 * can use to act on it (Rejoin, Join without camera, ...).
 */
export function showError(message, { actions = [] } = {}) {
  const region = $('#error');
  region.replaceChildren(
    h('p', { class: 'error-message' }, message),
    h(
      'div',
      { class: 'error-actions' },
      actions.map(({ label, onClick }) =>
        h('button', { type: 'button', class: 'button small', 'aria-label': label, onclick: onClick }, label),
      ),
      h('button', {
        type: 'button',
        class: 'icon-button dismiss',
        'aria-label': 'Dismiss message',
        html: icons.close,
        onclick: clearError,
      }),
    ),
  );
  region.hidden = false;
}

export function clearError() {
  const region = $('#error');
  region.replaceChildren();
  region.hidden = true;
}

export function setConnectionState(state, text) {
  const pill = $('#connection-state');
  pill.dataset.state = state;
  $('.state-text', pill).textContent = text;
}

// The chat panel (#chat-panel) and its button (#toggle-chat, with an unread
// badge while the panel is closed). Messages show the sender's name and time;
// join and leave lines come between them. User text goes in as text only.
import { $, h, hueFor, setPressed } from './dom.js';
import { icons } from './icons.js';

const MAX_LINES = 500; // older lines are dropped: a long meeting keeps the page light

export class ChatPanel {
  /** @param {{onSend: (text: string) => boolean}} handlers */
  constructor({ onSend }) {
    this.panel = $('#chat-panel');
    this.list = $('#chat-messages');
    this.status = $('#chat-status');
    this.form = $('#chat-form');
    this.input = $('#chat-input');
    this.send = $('#chat-send');
    this.toggle = $('#toggle-chat');
    this.unread = 0;
    this.toggle.innerHTML = `${icons.chat}<span class="ctl-label">Chat</span><span class="badge" hidden></span>`;
    this.badge = $('.badge', this.toggle);
    this.toggle.addEventListener('click', () => this.setOpen(this.panel.hidden));
    $('#close-chat').addEventListener('click', () => this.setOpen(false));
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      if (onSend(text)) this.input.value = '';
    });
  }

  get open() {
    return !this.panel.hidden;
  }

  setOpen(open) {
    this.panel.hidden = !open;
    setPressed(this.toggle, open);
    this.toggle.title = open ? 'Close chat' : 'Open chat';
    if (open) {
      this.#setUnread(0);
      this.input.focus();
      this.list.scrollTop = this.list.scrollHeight;
    }
  }

  /** Whether messages can be sent now, and if not, why (shown above the input). */
  setState({ canSend, reason }) {
    this.input.disabled = !canSend;
    this.send.disabled = !canSend;
    this.status.hidden = canSend || !reason;
    this.status.textContent = canSend ? '' : reason;
  }

  addMessage({ name, text, time, own }) {
    const shownName = own ? 'You' : name || 'Someone';
    const stamp = new Date(time);
    this.#append(
      h(
        'li',
        { class: own ? 'chat-line own' : 'chat-line', 'data-kind': 'message' },
        h(
          'div',
          { class: 'chat-meta' },
          h('span', { class: 'chat-name', style: { color: `hsl(${hueFor(name)} 70% 72%)` } }, shownName),
          h('time', { datetime: stamp.toISOString() }, stamp.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
        ),
        h('p', { class: 'chat-text' }, text),
      ),
    );
    if (!own && !this.open) this.#setUnread(this.unread + 1);
  }

  /** A line between messages: "Ada joined", "Ada left". */
  addNotice(text) {
    this.#append(h('li', { class: 'chat-line notice', 'data-kind': 'notice' }, text));
  }

  clear() {
    this.list.replaceChildren();
    this.#setUnread(0);
    this.setState({ canSend: false, reason: '' });
    this.setOpen(false);
  }

  #append(line) {
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(line);
    while (this.list.children.length > MAX_LINES) this.list.firstElementChild.remove();
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  #setUnread(count) {
    this.unread = count;
    this.badge.hidden = count === 0;
    this.badge.textContent = count > 99 ? '99+' : String(count);
    this.toggle.setAttribute('aria-label', count ? `Chat, ${count} unread` : 'Chat');
  }
}

// Short join/leave cues, made with a WebAudio oscillator (no audio files).
let context = null;

/** Create the AudioContext inside a user gesture (e.g. the Join click) so it may play. */
export function unlockAudio() {
  if (!context && !userActivated()) return;
  try {
    context ??= new AudioContext();
    if (context.state === 'suspended') context.resume().catch(() => {});
  } catch {
    context = null;
  }
}

/** kind: 'join' (rising two notes) or 'leave' (falling). */
export function playCue(kind) {
  // Without a user gesture on the page the browser refuses to start audio.
  if (!context && !userActivated()) return;
  try {
    context ??= new AudioContext();
    if (context.state === 'suspended') context.resume().catch(() => {});
    const notes = kind === 'join' ? [523.25, 783.99] : [659.25, 440];
    const start = context.currentTime + 0.01;
    notes.forEach((frequency, i) => {
      const t = start + i * 0.11;
      const osc = context.createOscillator();
      const gain = context.createGain();
      osc.type = 'sine';
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0, t);
      gain.gain.linearRampToValueAtTime(0.12, t + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.16);
      osc.connect(gain).connect(context.destination);
      osc.start(t);
      osc.stop(t + 0.18);
    });
  } catch {
    // No WebAudio: stay silent.
  }
}

function userActivated() {
  return navigator.userActivation ? navigator.userActivation.hasBeenActive : true;
}

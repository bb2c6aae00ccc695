// Cameras and microphones: permission probe, device lists, capture, and
// messages a person can act on when capture fails.

export const CAMERA_CONSTRAINTS = {
  width: { ideal: 1280, max: 1280 },
  height: { ideal: 720, max: 720 },
  frameRate: { ideal: 30, max: 30 },
};

export const MIC_CONSTRAINTS = {
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
};

export function mediaSupported() {
  return Boolean(navigator.mediaDevices?.getUserMedia);
}

/**
 * Asks for permission once so that enumerateDevices() returns labels.
 * Returns the error of the attempt (or null); never throws.
 */
export async function probePermissions({ video = true } = {}) {
  if (!mediaSupported()) return { error: unsupportedError() };
  const attempts = video ? [{ audio: true, video: true }, { audio: true }, { video: true }] : [{ audio: true }];
  let firstError = null;
  for (const constraints of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      stream.getTracks().forEach((track) => track.stop());
      return { error: null, partial: firstError };
    } catch (error) {
      firstError ??= error;
      // Denied is denied: asking for less will not help.
      if (error.name === 'NotAllowedError' || error.name === 'SecurityError') break;
    }
  }
  return { error: firstError };
}

export async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return { cameras: [], microphones: [] };
  const devices = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind) => devices.filter((d) => d.kind === kind && d.deviceId);
  return { cameras: pick('videoinput'), microphones: pick('audioinput') };
}

function withDevice(base, deviceId) {
  return deviceId ? { ...base, deviceId: { exact: deviceId } } : { ...base };
}

async function capture(kind, deviceId) {
  if (!mediaSupported()) throw unsupportedError();
  const base = kind === 'audio' ? MIC_CONSTRAINTS : CAMERA_CONSTRAINTS;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: withDevice(base, deviceId) });
    return stream.getTracks()[0];
  } catch (error) {
    // The chosen device went away: take the default one instead.
    if (deviceId && (error.name === 'OverconstrainedError' || error.name === 'NotFoundError')) {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { ...base } });
      return stream.getTracks()[0];
    }
    throw error;
  }
}

export const getMicrophone = (deviceId) => capture('audio', deviceId);
export const getCamera = (deviceId) => capture('video', deviceId);

export async function getScreen() {
  if (!navigator.mediaDevices?.getDisplayMedia) {
    const error = new Error('Screen sharing is not supported by this browser.');
    error.name = 'NotSupportedError';
    throw error;
  }
  const stream = await navigator.mediaDevices.getDisplayMedia({
    video: { frameRate: { ideal: 15, max: 30 } },
    audio: false,
  });
  return stream.getVideoTracks()[0];
}

function unsupportedError() {
  const error = new Error(
    'This browser cannot capture a camera or microphone here. Use a current browser, over https or on localhost.',
  );
  error.name = 'NotSupportedError';
  return error;
}

/** What to tell a person when capturing `what` ('camera' | 'microphone' | 'screen') failed. */
export function describeMediaError(error, what) {
  const name = error?.name ?? 'Error';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      if (what === 'screen') return 'Screen sharing was cancelled or blocked.';
      return `Permission to use your ${what} was denied. Allow it in the browser's site settings (the icon left of the address bar), then try again.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what.replace(' and ', ' or ')} was found. Plug one in, or continue without it.`;
    case 'NotReadableError':
    case 'AbortError':
      return `Your ${what} could not be started: another app may be using it. Close that app and try again.`;
    case 'NotSupportedError':
      return error.message;
    default:
      return `Could not use your ${what}: ${error?.message || name}`;
  }
}

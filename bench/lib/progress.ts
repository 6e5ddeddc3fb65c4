/** One progress line on stderr: rewritten in place on a terminal, plain lines otherwise. */

const tty = process.stderr.isTTY === true;
let active = false;
let started = Date.now();

export function resetClock(): void {
  started = Date.now();
}

function stamp(): string {
  const s = Math.round((Date.now() - started) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function progress(text: string): void {
  const line = `[bench ${stamp()}] ${text}`;
  if (tty) {
    process.stderr.write(`\r\x1b[K${line}`);
    active = true;
  } else {
    process.stderr.write(`${line}\n`);
  }
}

/** Ends the progress line so normal output starts on a fresh line. */
export function progressDone(): void {
  if (tty && active) process.stderr.write('\r\x1b[K');
  active = false;
}

/** A message that stays (warnings, notes). */
export function note(text: string): void {
  progressDone();
  process.stderr.write(`[bench] ${text}\n`);
}

'use strict'

// The one follower of a Haraka log: every complete new line, once, with the moment it was
// seen. For what only the log shows: Haraka's own failed connects, crash markers, and tests of
// the log text itself.

/**
 * Calls onLine(line, ms) for each complete line the log gets after `from`, checked every
 * `everyMs`; `ms` is performance.now() - t0 when the line was seen. poll() checks at once;
 * stop() ends the polling after a last check.
 * @param {{log: () => string, logLength: () => number}} haraka
 * @param {(line: string, ms: number) => void} onLine
 * @param {{from?: number, t0?: number, everyMs?: number}} [opts]
 */
function followLog(haraka, onLine, { from = haraka.logLength(), t0 = performance.now(), everyMs = 10 } = {}) {
  let offset = from
  const poll = () => {
    const text = haraka.log()
    const end = text.lastIndexOf('\n') + 1
    if (end <= offset) return
    const chunk = text.slice(offset, end)
    offset = end
    const ms = performance.now() - t0
    for (const line of chunk.split('\n')) if (line) onLine(line, ms)
  }
  const timer = setInterval(poll, everyMs)
  return {
    poll,
    stop() {
      clearInterval(timer)
      poll()
    },
  }
}

/** The lines matching `re` that a followLog sees, with when each appeared. */
function collectLines(haraka, re, opts) {
  const lines = []
  const follower = followLog(
    haraka,
    (line, ms) => {
      const match = re.exec(line)
      if (match) lines.push({ ms, line, match })
    },
    opts,
  )
  return {
    lines,
    stop() {
      follower.stop()
      return lines
    },
  }
}

module.exports = { followLog, collectLines }

// One probe of one MX address, as delivery would reach it: a race of one with success
// `greeting` (TCP, then the server's first reply line), bounded by a timeout. After a
// welcoming greeting the probe waits for its last line (`220 `), sends QUIT and closes: no
// other command is ever sent, and nothing before the greeting is complete.

import net from 'node:net'

import { GreetingWatch, parseReplyLine } from './greeting'
import { raceConnect, type RaceResult, type RaceTarget, welcomes } from './race'

/** How long a probe waits for the rest of a multi-line greeting, and for the QUIT reply. */
const CLOSE_GRACE_MS = 2000

const noop = (): void => {}

/** A socket that emits each line it reads as 'line' (line end included), as Haraka's does. */
function lineSocket(target: RaceTarget): net.Socket {
  const socket = net.connect({
    host: target.address,
    port: target.port,
    ...(target.bind ? { localAddress: target.bind } : {}),
  })
  socket.setEncoding('latin1')
  let buffered = ''
  socket.on('data', (chunk: string) => {
    buffered += chunk
    // A hostile server sending no line end cannot grow the buffer without bound.
    if (buffered.length > 4096 && !buffered.includes('\n')) buffered = buffered.slice(-4096)
    let end: number
    while ((end = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, end + 1)
      buffered = buffered.slice(end + 1)
      socket.emit('line', line)
    }
  })
  return socket
}

/** QUIT once the greeting's last line is in (at most CLOSE_GRACE_MS), then close. */
function quitAfterGreeting(socket: net.Socket, watch: GreetingWatch): void {
  socket.on('error', noop)
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
  const quit = (): void => {
    socket.end('QUIT\r\n')
    socket.resume() // read the reply and the close, to nobody
  }
  if (watch.complete) return quit()
  watch.stop()
  // The greeting is paused at its first line: read on until its last.
  const onLine = (raw: unknown): void => {
    const reply = parseReplyLine(String(raw))
    if (!reply.final) return
    socket.removeListener('line', onLine)
    if (welcomes(reply)) quit()
    else socket.destroy()
  }
  socket.on('line', onLine)
  socket.resume()
}

/**
 * Probes `target`: its race record says connected, failed (with the error, or the refusing
 * greeting) or timed out. The socket is closed whatever happened.
 */
export async function probeGreeting(target: RaceTarget, timeoutMs: number): Promise<RaceResult<net.Socket>> {
  const watches = new Map<net.Socket, GreetingWatch>()
  const result = await raceConnect([target], {
    attemptDelayMs: timeoutMs,
    groupDelayMs: timeoutMs,
    deadlineMs: timeoutMs,
    success: 'greeting',
    connect: (t) => {
      const socket = lineSocket(t)
      watches.set(socket, new GreetingWatch(socket))
      return socket
    },
  })
  const socket = result.winner?.socket
  if (socket) {
    const watch = watches.get(socket) as GreetingWatch
    // Connected but silent until the deadline: nothing was said, so nothing is sent.
    if (result.attempts[0]?.greeting === undefined) {
      socket.on('error', noop)
      socket.destroy()
    } else quitAfterGreeting(socket, watch)
  }
  return result
}

// The greeting of a raced SMTP connection, read off the 'line' events of a socket made the way
// Haraka makes its own (its line processor splits the stream into lines). The first line is
// reported to the race (GREETING_EVENT) and the socket paused there; every line seen is kept,
// so the line processor's output reaches Haraka intact once it owns the socket: Haraka's own
// listeners are attached, the kept lines replayed in order, then the socket resumed.

import type { EventEmitter } from 'node:events'

import { GREETING_EVENT, type GreetingReply, welcomes } from './race'

/** Longest reply text kept in a record: enough for any real banner, bounded for a hostile one. */
const MAX_LINE = 200

/** Haraka's own reply pattern (outbound/hmail.js smtp_regexp): a code, then a space or a dash. */
const REPLY = /^([2345]\d\d)([ -])/

export interface ReplyLine extends GreetingReply {
  /** The last line of its reply (`220 `, not `220-`); a line that is no reply counts as last. */
  final: boolean
}

/** A server's line as data: its code when it is an SMTP reply, the text printable and bounded. */
export function parseReplyLine(raw: string): ReplyLine {
  const bare = String(raw).replace(/\r?\n$/, '')
  // eslint-disable-next-line no-control-regex
  const printable = bare.replace(/[\u0000-\u001f\u007f]/g, '?')
  const line = printable.length > MAX_LINE ? `${printable.slice(0, MAX_LINE)}…` : printable
  const m = REPLY.exec(bare)
  return m ? { code: Number(m[1]), line, final: m[2] === ' ' } : { line, final: true }
}

export interface LineSocket extends EventEmitter {
  pause(): void
}

export class GreetingWatch {
  /** Every line the socket emitted while watched, as emitted (line end included). */
  readonly lines: string[] = []
  private readonly socket: LineSocket
  private watching = true
  private welcomed = false

  constructor(socket: LineSocket) {
    this.socket = socket
    socket.on('line', this.onLine)
  }

  /** The greeting is complete and welcoming: its final line (`220 `) has been seen. */
  get complete(): boolean {
    return this.welcomed
  }

  /** Stops keeping lines. */
  stop(): void {
    if (!this.watching) return
    this.watching = false
    this.socket.removeListener('line', this.onLine)
  }

  /** Emits the kept lines again, in order: for listeners attached after they first came. */
  replay(): void {
    this.stop()
    for (const line of this.lines.splice(0)) this.socket.emit('line', line)
  }

  private readonly onLine = (raw: unknown): void => {
    const line = String(raw)
    this.lines.push(line)
    const reply = parseReplyLine(line)
    this.welcomed = reply.final && welcomes(reply)
    if (this.lines.length > 1) return
    // Lines already in the same chunk still come (the line processor loops over its buffer);
    // nothing more is read until Haraka owns the socket.
    this.socket.pause()
    this.socket.emit(GREETING_EVENT, {
      ...(reply.code !== undefined ? { code: reply.code } : {}),
      line: reply.line,
    })
  }
}

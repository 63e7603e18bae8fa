// A filter between a client socket and the SMTP client reading it (Haraka reads replies from
// the socket's 'line' events), in the way of Postfix's smtp_reply_filter: each complete reply
// is offered to `decide` with the stage it answers, and is passed on as it came or as the
// lines `decide` returns. The stage follows the commands written to the socket; after a 354
// everything written is message data, and the next reply is the one to the final dot.

import type { EventEmitter } from 'node:events'

import type { ServerReply, SessionStage } from './sender-policy'

type Write = (...args: never[]) => boolean

/** A socket with `write` (checked when the filter is installed). */
export type FilterableSocket = EventEmitter & { write?: Write }

/** Returns the raw lines to pass on instead, or undefined to pass the reply as it came. */
export type ReplyDecider = (reply: ServerReply, rawLines: readonly string[]) => readonly string[] | undefined

const COMMANDS: Record<string, SessionStage> = {
  EHLO: 'EHLO',
  HELO: 'HELO',
  LHLO: 'LHLO',
  STARTTLS: 'STARTTLS',
  AUTH: 'AUTH',
  MAIL: 'MAIL',
  RCPT: 'RCPT',
  DATA: 'DATA',
  RSET: 'RSET',
  QUIT: 'QUIT',
}

const REPLY_LINE = /^(\d{3})([ -])/
const COMMAND_VERB = /^([A-Za-z]+)/

/** `RCPT TO:<user@example.com> NOTIFY=…` → `user@example.com`. */
function recipientOf(command: string): string | undefined {
  const m = /^RCPT\s+TO:\s*<([^>]*)>/i.exec(command)
  return m ? m[1] : undefined
}

const FILTERED = Symbol.for('haraka-plugin-happy-eyeballs.reply-filter')

/** Every reply is offered to the decider. */
const EVERY_REPLY = (): boolean => true

/**
 * Installs the filter on `socket` once. A decider that throws passes the reply unchanged: the
 * filter can only ever hand the client what the server said, or the decider's rewrite of it.
 * `offered(code)` says which replies the decider sees (all by default); the others pass as
 * they came, without being parsed further.
 */
export function filterReplies(
  socket: FilterableSocket,
  decide: ReplyDecider,
  onError?: (err: unknown) => void,
  offered: (code: number) => boolean = EVERY_REPLY,
): boolean {
  const marked = socket as FilterableSocket & { [FILTERED]?: boolean }
  const write = socket.write
  if (marked[FILTERED] || typeof write !== 'function') return false
  marked[FILTERED] = true

  let stage: SessionStage = 'greeting'
  let recipient: string | undefined
  let inData = false
  let pending: string[] = []

  // Every event and write of the session passes through these two: whatever is not a
  // command or a reply line goes on as it came, its arguments untouched (no copies).
  socket.write = function (this: FilterableSocket, chunk?: unknown): boolean {
    if (!inData && (typeof chunk === 'string' || Buffer.isBuffer(chunk))) {
      const text = String(chunk)
      const verb = COMMAND_VERB.exec(text)?.[1]?.toUpperCase()
      const next = verb ? COMMANDS[verb] : undefined
      if (next) {
        stage = next
        recipient = next === 'RCPT' ? recipientOf(text) : undefined
      }
    }
    // eslint-disable-next-line prefer-rest-params
    return Reflect.apply(write, this, arguments) as boolean
  } as Write

  const emit = socket.emit
  socket.emit = function (this: FilterableSocket, event: string | symbol, line?: unknown): boolean {
    // eslint-disable-next-line prefer-rest-params
    if (event !== 'line') return Reflect.apply(emit, this, arguments) as boolean
    const raw = String(line)
    const m = REPLY_LINE.exec(raw)
    // Not a reply line: the client's own error path decides, as without the filter.
    if (!m) {
      const held = pending
      pending = []
      for (const l of held) emit.call(this, 'line', l)
      // eslint-disable-next-line prefer-rest-params
      return Reflect.apply(emit, this, arguments) as boolean
    }
    if (m[2] === '-') {
      pending.push(raw)
      return true
    }
    const code = Number(m[1])
    const answered = stage
    if (stage === 'DATA' && code === 354) {
      inData = true
      stage = 'end of DATA'
    } else inData = false
    // Most replies of a session (2xx, 3xx) are nothing to decide: passed on as they came.
    const decides = offered(code)
    if (!decides && !pending.length) {
      // eslint-disable-next-line prefer-rest-params
      return Reflect.apply(emit, this, arguments) as boolean
    }
    pending.push(raw)
    const rawLines = pending
    pending = []
    let out: readonly string[] = rawLines
    if (decides) {
      const reply: ServerReply = {
        stage: answered,
        code,
        lines: rawLines.map((l) => l.replace(/\r?\n$/, '')),
        ...(recipient ? { recipient } : {}),
      }
      try {
        out = decide(reply, rawLines) ?? rawLines
      } catch (err) {
        onError?.(err)
      }
    }
    let result = false
    for (const line of out) result = emit.call(this, 'line', line) || result
    return result
  } as EventEmitter['emit']
  return true
}

// Staggered connection attempts, RFC 8305 §5 (the shape of Node's lib/net.js
// internalConnectMultiple, but earlier attempts keep running): the next address starts when
// the current attempt fails or after the Connection Attempt Delay. What wins is `success`:
// the TCP connect, or the server's greeting (the first reply line, `220-` included), where a
// refusing greeting or a close before it is a failure like a connect error, and a connected
// but silent attempt keeps racing. Every other attempt is released or destroyed.

import type { EventEmitter } from 'node:events'

import type { Family } from './classify'
import { type ErrorFacts, errorFacts } from './errors'

export interface RaceTarget {
  address: string
  family: Family
  exchange: string
  preference: number
  port: number
  bind?: string
}

export interface RaceSocket extends EventEmitter {
  destroy(): void
}

/** What wins an attempt: its TCP connect, or the server's greeting. */
export type RaceSuccess = 'connect' | 'greeting'

/**
 * The event a socket emits with the server's first reply line (success `greeting`), after
 * 'connect'. A close before it is a failure.
 */
export const GREETING_EVENT = 'greeting'

/** The server's first reply line, as a socket reports it with GREETING_EVENT. */
export interface GreetingReply {
  /** The reply code, when the line is an SMTP reply (`220`, `421`). */
  code?: number
  /** The line without its line end, printable. */
  line: string
}

/**
 * Whether a greeting lets the session go on: a 2xx reply, as Haraka itself reads the greeting
 * (RFC 5321 gives only 220; a multi-line `220-` counts at its first line).
 */
export const welcomes = (reply: GreetingReply): boolean =>
  reply.code !== undefined && reply.code >= 200 && reply.code < 300

/** An attempt's error when its greeting refused: `greeting 421 4.7.0 try later`. */
export const greetingError = (reply: GreetingReply): string =>
  reply.code === undefined ? `greeting not SMTP: ${reply.line}` : `greeting ${reply.line}`

/** The error of an attempt the server closed before its greeting. */
export const CLOSED_BEFORE_GREETING = 'connection closed before the greeting'

export type AttemptOutcome = 'pending' | 'connected' | 'failed' | 'cancelled' | 'timed out'

export interface AttemptRecord {
  target: RaceTarget
  /** ms after the race started. */
  startMs: number
  endMs?: number
  outcome: AttemptOutcome
  /** What went wrong, as the operator reads it: `connect ECONNREFUSED`, `no answer in 250 ms`. */
  error?: string
  /** The error's code when it had one (`ECONNREFUSED`, `EINVAL`); a timeout has none. */
  code?: string
  /** Success `greeting`: ms after the race started when TCP connected. */
  connectMs?: number
  /** Success `greeting`: the server's first reply line, and its code when it had one. */
  greeting?: string
  replyCode?: number
  /**
   * With RaceOptions.attemptDelayFor: the Connection Attempt Delay after this attempt's start,
   * before the next address of its group starts unless this one fails first.
   */
  delayMs?: number
}

export interface RaceOptions<S extends RaceSocket> {
  attemptDelayMs: number
  /**
   * A per-target Connection Attempt Delay (learnt from connect times, RFC 8305 §5): the delay
   * after an attempt's start is its target's. Absent: attemptDelayMs for every target.
   */
  attemptDelayFor?(target: RaceTarget): number
  /** A lower-preference MX group starts after this long, or when the current group failed. */
  groupDelayMs: number
  deadlineMs: number
  connect(target: RaceTarget): S
  /**
   * What wins an attempt (default `connect`). With `greeting`, if no attempt greets by the
   * deadline the one that connected first wins all the same: a slow greeter fares as it
   * would without the race.
   */
  success?: RaceSuccess
  /** Ends a loser gracefully (QUIT after a complete greeting); else it is destroyed. */
  release?(socket: S): void
  /**
   * RFC 8305 §6: the order of the not-yet-started targets after targets were added to a
   * running race. Default: by MX preference, keeping the order they came in.
   */
  sortPending?(pending: readonly RaceTarget[]): RaceTarget[]
  now?: () => number
}

export interface RaceResult<S extends RaceSocket> {
  winner?: { index: number; target: RaceTarget; socket: S }
  attempts: AttemptRecord[]
  elapsedMs: number
  /** Targets the race never started (it had a winner first, or reached its deadline). */
  untried: RaceTarget[]
}

/** A race that can still learn targets: what a resolution still under way feeds. */
export interface RunningRace<S extends RaceSocket> {
  /** Settles when the race has a winner, reaches its deadline, or is closed with nothing left. */
  readonly result: Promise<RaceResult<S>>
  /**
   * RFC 8305 §6: targets learned after the start join the not-yet-started part, sorted by
   * `sortPending`. An address already in the race, or a race already over, ignores them.
   */
  add(targets: readonly RaceTarget[]): void
  /** No more targets will come: the race ends once nothing is left to try or wait for. */
  close(): void
}

const noop = (): void => {}

/** One race: its attempts, the sockets still trying, and where the schedule stands. */
interface RaceContext<S extends RaceSocket> {
  targets: RaceTarget[]
  opts: RaceOptions<S>
  now: () => number
  t0: number
  attempts: AttemptRecord[]
  live: Map<number, S>
  /** Removes an attempt's greeting-race listeners from its socket. */
  unlisten: Map<number, () => void>
  /** Index of the next target to start. */
  next: number
  /** now() when the latest attempt started, and when its MX preference group started. */
  lastStartAt: number
  /** The attempt delay after the latest start: that attempt's target's. */
  lastDelayMs: number
  groupStartAt: number
  /** An attempt failed after the latest one started: the next one is due at once. */
  failedSinceStart: boolean
  /** Targets may still be added: running out of targets does not end the race. */
  open: boolean
  deadlineAt: number
  timer?: NodeJS.Timeout
  /** now()-time the timer is armed for. */
  timerAt?: number
  done: boolean
  resolve(result: RaceResult<S>): void
}

const since = (ctx: RaceContext<RaceSocket>): number => Math.round(ctx.now() - ctx.t0)

/**
 * now()-time at which the next target is due (RFC 8305 §5), or undefined when none is left.
 * Inside a group: a failure starts it at once, else the attempt delay after the latest
 * start. A lower-preference group: at once when nothing of the current group is still
 * trying, else once both the attempt delay and the group delay have passed. A target added
 * late that is more preferred than the latest start is treated as one of its group.
 */
function nextDueAt(ctx: RaceContext<RaceSocket>): number | undefined {
  const { targets, next, opts } = ctx
  if (next >= targets.length) return undefined
  if (next === 0) return ctx.t0
  const current = targets[next - 1].preference
  // A learnt delay waits for the TCP connect; once the latest attempt has connected (success
  // `greeting`), its path works and it gets the whole configured delay to greet.
  const delay =
    ctx.attempts[next - 1]?.connectMs !== undefined
      ? Math.max(ctx.lastDelayMs, opts.attemptDelayMs)
      : ctx.lastDelayMs
  if (targets[next].preference <= current) {
    return ctx.failedSinceStart ? ctx.now() : ctx.lastStartAt + delay
  }
  const groupLive = [...ctx.live.keys()].some((i) => targets[i].preference === current)
  if (!groupLive) return ctx.now()
  return Math.max(ctx.lastStartAt + delay, ctx.groupStartAt + opts.groupDelayMs)
}

/**
 * The one place the race moves on: after every transition it starts whatever is due, ends
 * the race when nothing is left to wait for, and arms the single timer for the next due
 * start or the deadline, whichever comes first.
 */
function advance<S extends RaceSocket>(ctx: RaceContext<S>): void {
  if (ctx.done) return
  if (ctx.now() >= ctx.deadlineAt) return timeOut(ctx)
  let due = nextDueAt(ctx)
  while (due !== undefined && due <= ctx.now()) {
    startAttempt(ctx)
    if (ctx.done) return
    due = nextDueAt(ctx)
  }
  if (due === undefined && ctx.live.size === 0 && !ctx.open) return finish(ctx)
  const wakeAt = Math.min(due ?? Infinity, ctx.deadlineAt)
  // Already armed for that moment: kept, not made again.
  if (ctx.timer && ctx.timerAt === wakeAt) return
  clearTimeout(ctx.timer)
  ctx.timerAt = wakeAt
  // Whole milliseconds: Node keeps a timer list per distinct duration, so a fractional one
  // makes (and drops) a list of its own for every race.
  ctx.timer = setTimeout(
    () => {
      ctx.timer = undefined
      advance(ctx)
    },
    Math.ceil(Math.max(0, wakeAt - ctx.now())),
  )
}

/** The delay after an attempt to `target` starts; a bad or failing learnt value gives the fixed one. */
function attemptDelay(opts: RaceOptions<RaceSocket>, target: RaceTarget): number {
  let d: number | undefined
  try {
    d = opts.attemptDelayFor?.(target)
  } catch {
    d = undefined
  }
  return d !== undefined && Number.isFinite(d) && d >= 0 ? d : opts.attemptDelayMs
}

function startAttempt<S extends RaceSocket>(ctx: RaceContext<S>): void {
  const i = ctx.next++
  const target = ctx.targets[i]
  const startedAt = ctx.now()
  if (i === 0 || ctx.targets[i - 1].preference !== target.preference) ctx.groupStartAt = startedAt
  ctx.lastStartAt = startedAt
  ctx.failedSinceStart = false
  const record: AttemptRecord = { target, startMs: since(ctx), outcome: 'pending' }
  ctx.lastDelayMs = attemptDelay(ctx.opts, target)
  if (ctx.opts.attemptDelayFor) record.delayMs = ctx.lastDelayMs
  ctx.attempts.push(record)

  let socket: S
  try {
    socket = ctx.opts.connect(target)
  } catch (err) {
    settleFailure(ctx, i, errorFacts(err))
    return
  }
  ctx.live.set(i, socket)
  const greeting = ctx.opts.success === 'greeting'
  socket.once('connect', () => {
    // A completion after the race ended, or of an attempt already settled, is stale.
    if (ctx.done || record.outcome !== 'pending') return
    // The deadline wins a tie: a connect on the deadline's own millisecond is too late.
    if (ctx.now() >= ctx.deadlineAt) return timeOut(ctx)
    if (greeting) {
      // Connected, not yet won: the schedule goes on until the server speaks.
      record.connectMs = since(ctx)
      // The latest attempt's learnt delay gives way to the configured one: re-arm the timer.
      if (i === ctx.next - 1 && ctx.lastDelayMs < ctx.opts.attemptDelayMs) advance(ctx)
      return
    }
    record.outcome = 'connected'
    record.endMs = since(ctx)
    finish(ctx, i)
  })
  socket.once('error', (err: unknown) => {
    socket.on('error', noop)
    socket.destroy()
    if (ctx.done || record.outcome !== 'pending') return
    dropAttempt(ctx, i)
    settleFailure(ctx, i, errorFacts(err))
    advance(ctx)
  })
  if (greeting) listenForGreeting(ctx, i, socket)
}

/** Success `greeting`: the first reply line wins or fails the attempt; a close before it fails it. */
function listenForGreeting<S extends RaceSocket>(ctx: RaceContext<S>, i: number, socket: S): void {
  const record = ctx.attempts[i]
  const fail = (error: ErrorFacts): void => {
    dropAttempt(ctx, i)
    socket.on('error', noop)
    socket.destroy()
    settleFailure(ctx, i, error)
    advance(ctx)
  }
  const onGreeting = (reply: GreetingReply): void => {
    if (ctx.done || record.outcome !== 'pending') return
    if (ctx.now() >= ctx.deadlineAt) return timeOut(ctx)
    record.connectMs ??= since(ctx)
    record.greeting = reply.line
    if (reply.code !== undefined) record.replyCode = reply.code
    if (!welcomes(reply)) return fail({ text: greetingError(reply) })
    record.outcome = 'connected'
    record.endMs = since(ctx)
    finish(ctx, i)
  }
  const onClose = (): void => {
    if (ctx.done || record.outcome !== 'pending') return
    fail({ text: CLOSED_BEFORE_GREETING })
  }
  socket.once(GREETING_EVENT, onGreeting)
  socket.once('close', onClose)
  ctx.unlisten.set(i, () => {
    socket.removeListener(GREETING_EVENT, onGreeting)
    socket.removeListener('close', onClose)
  })
}

/** Takes a settled attempt out of the race: no longer live, its race listeners gone. */
function dropAttempt(ctx: RaceContext<RaceSocket>, i: number): void {
  ctx.live.delete(i)
  ctx.unlisten.get(i)?.()
  ctx.unlisten.delete(i)
}

/** Records a failed attempt; the caller advances the race. */
function settleFailure(ctx: RaceContext<RaceSocket>, i: number, error: ErrorFacts): void {
  const record = ctx.attempts[i]
  record.outcome = 'failed'
  record.error = error.text
  if (error.code) record.code = error.code
  record.endMs = since(ctx)
  ctx.failedSinceStart = true
}

function timeOut<S extends RaceSocket>(ctx: RaceContext<S>): void {
  // Success `greeting`: nothing greeted in time, so the earliest connected attempt is handed
  // over anyway, as a client without a race would have waited on it.
  let fallback: number | undefined
  if (ctx.opts.success === 'greeting') {
    for (const i of ctx.live.keys()) {
      const at = ctx.attempts[i].connectMs
      if (at === undefined) continue
      const best = fallback === undefined ? undefined : ctx.attempts[fallback].connectMs
      if (best === undefined || at < best || (at === best && i < (fallback as number))) fallback = i
    }
  }
  for (const i of ctx.live.keys()) {
    const record = ctx.attempts[i]
    // A connected loser was slow, not dead: finish marks it cancelled.
    if (record.connectMs !== undefined) continue
    record.outcome = 'timed out'
    record.error = `no answer in ${since(ctx) - record.startMs} ms`
  }
  if (fallback !== undefined) {
    const record = ctx.attempts[fallback]
    record.outcome = 'connected'
    record.endMs = record.connectMs
  }
  finish(ctx, fallback)
}

/** Ends the race: every live socket but the winner's is released or destroyed. */
function finish<S extends RaceSocket>(ctx: RaceContext<S>, winner?: number): void {
  ctx.done = true
  clearTimeout(ctx.timer)
  ctx.timer = undefined
  for (const off of ctx.unlisten.values()) off()
  ctx.unlisten.clear()
  for (const [i, socket] of ctx.live) {
    if (i === winner) continue
    const record = ctx.attempts[i]
    if (record.outcome === 'pending') record.outcome = 'cancelled'
    record.endMs = since(ctx)
    socket.removeAllListeners('connect')
    socket.on('error', noop) // a late error from a loser must not throw
    if (ctx.opts.release) ctx.opts.release(socket)
    else socket.destroy()
  }
  const socket = winner === undefined ? undefined : ctx.live.get(winner)
  ctx.live.clear()
  ctx.resolve({
    winner:
      winner === undefined || !socket ? undefined : { index: winner, target: ctx.targets[winner], socket },
    attempts: ctx.attempts,
    elapsedMs: since(ctx),
    untried: ctx.targets.slice(ctx.next),
  })
}

const byPreference = (pending: readonly RaceTarget[]): RaceTarget[] =>
  pending.slice().sort((a, b) => a.preference - b.preference)

const sameTarget = (a: RaceTarget, b: RaceTarget): boolean => a.address === b.address && a.port === b.port

/** §6: new targets into the not-yet-started part, which is sorted again. */
function addTargets(ctx: RaceContext<RaceSocket>, added: readonly RaceTarget[]): void {
  if (ctx.done || !ctx.open) return
  const fresh = added.filter(
    (t, i) => !ctx.targets.some((o) => sameTarget(o, t)) && added.findIndex((o) => sameTarget(o, t)) === i,
  )
  if (!fresh.length) return
  const pending = [...ctx.targets.slice(ctx.next), ...fresh]
  const sorted = (ctx.opts.sortPending ?? byPreference)(pending)
  // A sort that loses or invents targets is not trusted: the default order is kept instead.
  const complete = sorted.length === pending.length && pending.every((t) => sorted.includes(t))
  ctx.targets.splice(ctx.next, Infinity, ...(complete ? sorted : byPreference(pending)))
}

/**
 * Starts a race that can still learn targets (`add`) until `close`: the first attempt
 * starts at once, the rest as RFC 8305 §5 schedules them.
 */
export function startRace<S extends RaceSocket>(
  targets: readonly RaceTarget[],
  opts: RaceOptions<S>,
): RunningRace<S> {
  const now = opts.now ?? (() => performance.now())
  const t0 = now()
  let resolve: (result: RaceResult<S>) => void = noop
  const result = new Promise<RaceResult<S>>((r) => (resolve = r))
  const ctx: RaceContext<S> = {
    targets: targets.slice(),
    opts,
    now,
    t0,
    attempts: [],
    live: new Map(),
    unlisten: new Map(),
    next: 0,
    lastStartAt: t0,
    lastDelayMs: opts.attemptDelayMs,
    groupStartAt: t0,
    failedSinceStart: false,
    open: true,
    deadlineAt: t0 + opts.deadlineMs,
    done: false,
    resolve,
  }
  advance(ctx)
  return {
    result,
    add(added) {
      addTargets(ctx, added)
      advance(ctx)
    },
    close() {
      if (!ctx.open) return
      ctx.open = false
      advance(ctx)
    },
  }
}

/** A race over a list known in full. */
export function raceConnect<S extends RaceSocket>(
  targets: RaceTarget[],
  opts: RaceOptions<S>,
): Promise<RaceResult<S>> {
  if (!targets.length) return Promise.resolve({ attempts: [], elapsedMs: 0, untried: [] })
  const race = startRace(targets, opts)
  race.close()
  return race.result
}

const showTarget = (t: RaceTarget): string =>
  t.family === 'ipv6' ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`

/** `+0ms [2001:db8::1]:25 cancelled; +250ms 192.0.2.1:25 connected in 3 ms` */
export function describeTimeline(result: { attempts: AttemptRecord[] }): string {
  return result.attempts
    .map((a) => {
      const took = a.endMs === undefined ? '' : ` after ${a.endMs - a.startMs} ms`
      const what =
        a.outcome === 'failed' || a.outcome === 'timed out' ? `${a.outcome} (${a.error})` : a.outcome
      // Handed over at the deadline without a greeting (success `greeting`).
      const silent =
        a.outcome === 'connected' && a.connectMs !== undefined && a.greeting === undefined
          ? ', no greeting by the deadline'
          : ''
      return `+${a.startMs}ms ${showTarget(a.target)} ${what}${took}${silent}`
    })
    .join('; ')
}

/** Every address with why it did not connect: the text of a 4.4.1 deferral. */
export function describeFailures(result: { attempts: AttemptRecord[] }, untried: RaceTarget[] = []): string {
  const lines = result.attempts.map((a) => `${a.target.address}: ${a.error ?? a.outcome}`)
  for (const t of untried) lines.push(`${t.address}: not tried before the deadline`)
  return lines.join('; ')
}

// Staggered connection attempts, RFC 8305 §5 (the shape of Node's lib/net.js
// internalConnectMultiple, but earlier attempts keep running): the next address starts when
// the current attempt fails or after the Connection Attempt Delay; the first TCP connect
// wins and every other attempt is destroyed.

import type { EventEmitter } from 'node:events'

import type { Family } from './classify'

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

export type AttemptOutcome = 'pending' | 'connected' | 'failed' | 'cancelled' | 'timed out'

export interface AttemptRecord {
  target: RaceTarget
  /** ms after the race started. */
  startMs: number
  endMs?: number
  outcome: AttemptOutcome
  error?: string
}

export interface RaceOptions<S extends RaceSocket> {
  attemptDelayMs: number
  /** A lower-preference MX group starts after this long, or when the current group failed. */
  groupDelayMs: number
  deadlineMs: number
  connect(target: RaceTarget): S
  now?: () => number
}

export interface RaceResult<S extends RaceSocket> {
  winner?: { index: number; target: RaceTarget; socket: S }
  attempts: AttemptRecord[]
  elapsedMs: number
}

/** `connect ECONNREFUSED`, `bind EINVAL`: what the operator needs from a socket error. */
export function describeSocketError(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; syscall?: unknown; message?: unknown }
    if (e.code) return e.syscall ? `${String(e.syscall)} ${String(e.code)}` : String(e.code)
    if (e.message) return String(e.message)
  }
  return String(err)
}

const noop = (): void => {}

export function raceConnect<S extends RaceSocket>(
  targets: RaceTarget[],
  opts: RaceOptions<S>,
): Promise<RaceResult<S>> {
  const now = opts.now ?? (() => performance.now())
  const t0 = now()
  const since = (): number => Math.round(now() - t0)
  if (!targets.length) return Promise.resolve({ attempts: [], elapsedMs: 0 })

  return new Promise((resolve) => {
    const attempts: AttemptRecord[] = []
    const live = new Map<number, S>()
    let next = 0
    let groupStartedAt = t0
    let done = false
    let stepTimer: NodeJS.Timeout | undefined

    const finish = (winner?: number): void => {
      done = true
      clearTimeout(stepTimer)
      clearTimeout(deadlineTimer)
      for (const [i, socket] of live) {
        if (i === winner) continue
        const rec = attempts[i]
        rec.outcome = rec.outcome === 'pending' ? 'cancelled' : rec.outcome
        rec.endMs = since()
        socket.removeAllListeners('connect')
        socket.on('error', noop) // a late error from a destroyed loser must not throw
        socket.destroy()
      }
      const socket = winner === undefined ? undefined : live.get(winner)
      live.clear()
      resolve({
        winner:
          winner === undefined || !socket ? undefined : { index: winner, target: targets[winner], socket },
        attempts,
        elapsedMs: since(),
      })
    }

    const groupIsLive = (preference: number): boolean =>
      [...live.keys()].some((i) => targets[i].preference === preference)

    const scheduleNext = (): void => {
      clearTimeout(stepTimer)
      if (done || next >= targets.length) return
      const sameGroup = targets[next].preference === targets[next - 1].preference
      const delay = sameGroup
        ? opts.attemptDelayMs
        : Math.max(opts.attemptDelayMs, groupStartedAt + opts.groupDelayMs - now())
      stepTimer = setTimeout(start, delay)
    }

    const onFailure = (i: number, error: string): void => {
      if (done) return
      const rec = attempts[i]
      rec.outcome = 'failed'
      rec.error = error
      rec.endMs = since()
      live.delete(i)
      if (next >= targets.length) {
        if (live.size === 0) finish()
        return
      }
      // A failed attempt starts the next one at once, inside the group; the next group
      // only once nothing of the current group is still trying.
      const current = targets[next - 1].preference
      if (targets[next].preference === current || !groupIsLive(current)) start()
    }

    function start(): void {
      clearTimeout(stepTimer)
      if (done || next >= targets.length) return
      const i = next++
      const target = targets[i]
      if (i === 0 || targets[i - 1].preference !== target.preference) groupStartedAt = now()
      attempts.push({ target, startMs: since(), outcome: 'pending' })

      let socket: S
      try {
        socket = opts.connect(target)
      } catch (err) {
        onFailure(i, describeSocketError(err))
        return
      }
      live.set(i, socket)
      socket.once('connect', () => {
        if (done) return
        attempts[i].outcome = 'connected'
        attempts[i].endMs = since()
        finish(i)
      })
      socket.once('error', (err: unknown) => {
        socket.on('error', noop)
        socket.destroy()
        onFailure(i, describeSocketError(err))
      })
      scheduleNext()
    }

    const deadlineTimer = setTimeout(() => {
      for (const i of live.keys()) {
        const rec = attempts[i]
        rec.outcome = 'timed out'
        rec.error = `no answer in ${since() - rec.startMs} ms`
      }
      finish()
    }, opts.deadlineMs)
    start()
  })
}

const showTarget = (t: RaceTarget): string =>
  t.family === 'ipv6' ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`

/** `+0ms [2001:db8::1]:25 cancelled; +250ms 192.0.2.1:25 connected in 3 ms` */
export function describeTimeline(result: RaceResult<RaceSocket>): string {
  return result.attempts
    .map((a) => {
      const took = a.endMs === undefined ? '' : ` after ${a.endMs - a.startMs} ms`
      const what =
        a.outcome === 'failed' || a.outcome === 'timed out' ? `${a.outcome} (${a.error})` : a.outcome
      return `+${a.startMs}ms ${showTarget(a.target)} ${what}${took}`
    })
    .join('; ')
}

/** Every address with why it did not connect: the text of a 4.4.1 deferral. */
export function describeFailures(result: RaceResult<RaceSocket>, untried: RaceTarget[] = []): string {
  const lines = result.attempts.map((a) => `${a.target.address}: ${a.error ?? a.outcome}`)
  for (const t of untried) lines.push(`${t.address}: not tried before the deadline`)
  return lines.join('; ')
}

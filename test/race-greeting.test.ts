// The race with success = greeting, on fake sockets and a fake clock: a socket connects, then
// reports the server's first reply line (GREETING_EVENT), or closes, or errors.

import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'

import FakeTimers, { type Clock } from '@sinonjs/fake-timers'
import fc from 'fast-check'

import {
  type RaceOptions,
  type RaceResult,
  type RaceSocket,
  type RaceTarget,
  raceConnect,
  describeTimeline,
  describeFailures,
  GREETING_EVENT,
} from '../lib/race'

function target(address: string, preference = 10): RaceTarget {
  return {
    address,
    family: address.includes(':') ? 'ipv6' : 'ipv4',
    exchange: 'mx.test',
    preference,
    port: 25,
  }
}

class FakeSocket extends EventEmitter implements RaceSocket {
  destroyed = false
  released = false
  timers: ReturnType<typeof setTimeout>[] = []
  constructor(readonly target: RaceTarget) {
    super()
  }
  destroy(): void {
    this.destroyed = true
    for (const t of this.timers) clearTimeout(t)
  }
}

/** What a fake socket does, and when. */
type ScriptStep =
  | { at: number; event: 'connect' | 'close' }
  | { at: number; event: 'greeting'; code?: number; line: string }
  | { at: number; event: 'error'; code: string }

describe('raceConnect to the greeting, with a fake clock', function () {
  let clock: Clock
  let sockets: Map<string, FakeSocket>

  // script: address → [{ at, event: 'connect' | 'greeting' | 'close' | 'error', line?, code? }]
  let script: Record<string, ScriptStep[]>
  const connect = (t: RaceTarget): FakeSocket => {
    const s = new FakeSocket(t)
    sockets.set(t.address, s)
    for (const step of script[t.address] ?? []) {
      s.timers.push(
        setTimeout(() => {
          if (step.event === 'greeting') s.emit(GREETING_EVENT, { code: step.code, line: step.line })
          else if (step.event === 'error')
            s.emit('error', Object.assign(new Error(step.code), { code: step.code, syscall: 'read' }))
          else s.emit(step.event)
        }, step.at),
      )
    }
    return s
  }
  const release = (s: FakeSocket): void => {
    s.released = true
    s.destroy()
  }

  const race = (targets: RaceTarget[], opts: Partial<RaceOptions<FakeSocket>> = {}) =>
    raceConnect(targets, {
      attemptDelayMs: 250,
      groupDelayMs: 2000,
      deadlineMs: 15000,
      connect,
      release,
      success: 'greeting',
      now: () => clock.now,
      ...opts,
    })

  const greets = (at: number, code = 220, line = `${code} mx.test ESMTP`): ScriptStep[] => [
    { at: 1, event: 'connect' },
    { at, event: 'greeting', code, line },
  ]

  beforeEach(function () {
    clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'] })
    sockets = new Map()
    script = {}
  })
  afterEach(function () {
    for (const s of sockets.values()) s.destroy()
    assert.equal(clock.countTimers(), 0, 'the race left a timer behind')
    clock.uninstall()
  })

  it('a TCP connect alone does not win: the 220 line does, and the record keeps both times', async function () {
    script = { '::1': greets(40) }
    const p = race([target('::1'), target('127.0.0.1')])
    await clock.tickAsync(39)
    assert.equal(sockets.size, 1)
    await clock.tickAsync(1)
    const r = await p
    assert.equal(r.winner!.target.address, '::1')
    const [a] = r.attempts
    assert.deepEqual(
      [a.outcome, a.connectMs, a.endMs, a.replyCode, a.greeting],
      ['connected', 1, 40, 220, '220 mx.test ESMTP'],
    )
    assert.match(describeTimeline(r), /^\+0ms \[::1\]:25 connected after 40 ms$/)
  })

  it('a 220- first line wins at once: the rest of a postscreen greeting is not waited for', async function () {
    script = { '::1': greets(5, 220, '220-mx.test postscreen') }
    const p = race([target('::1')])
    await clock.tickAsync(5)
    const r = await p
    assert.equal(r.winner!.index, 0)
    assert.equal(r.attempts[0].greeting, '220-mx.test postscreen')
  })

  it('a 421 greeting fails the attempt with the reply as its error and starts the next address at once', async function () {
    script = {
      '::1': greets(10, 421, '421 4.7.0 mx.test IPv6 not accepted'),
      '127.0.0.1': greets(5),
    }
    const p = race([target('::1'), target('127.0.0.1')])
    await clock.tickAsync(10)
    assert.equal(sockets.size, 2, 'the next address did not start at the refusal')
    assert.equal(sockets.get('::1')!.destroyed, true)
    assert.equal(sockets.get('::1')!.released, false, 'a refused attempt is closed, not sent QUIT')
    await clock.tickAsync(5)
    const r = await p
    assert.equal(r.winner!.target.address, '127.0.0.1')
    assert.equal(r.attempts[1].startMs, 10)
    const [v6] = r.attempts
    assert.deepEqual(
      [v6.outcome, v6.replyCode, v6.error],
      ['failed', 421, 'greeting 421 4.7.0 mx.test IPv6 not accepted'],
    )
    assert.match(
      describeTimeline(r),
      /\[::1\]:25 failed \(greeting 421 4\.7\.0 mx\.test IPv6 not accepted\) after 10 ms/,
    )
  })

  it('a close or a reset before the greeting fails the attempt and starts the next at once', async function () {
    script = {
      '::1': [
        { at: 1, event: 'connect' },
        { at: 3, event: 'close' },
      ],
      '::2': [
        { at: 1, event: 'connect' },
        { at: 2, event: 'error', code: 'ECONNRESET' },
      ],
      '127.0.0.1': greets(4),
    }
    const p = race([target('::1'), target('::2'), target('127.0.0.1')])
    await clock.tickAsync(9)
    const r = await p
    assert.deepEqual(
      r.attempts.map((a) => [a.startMs, a.outcome, a.error]),
      [
        [0, 'failed', 'connection closed before the greeting'],
        [3, 'failed', 'read ECONNRESET'],
        [5, 'connected', undefined],
      ],
    )
  })

  it('a connected but silent attempt lets the next start after the attempt delay and keeps racing', async function () {
    script = {
      '::1': greets(400),
      '127.0.0.1': greets(1000),
    }
    const p = race([target('::1'), target('127.0.0.1')])
    await clock.tickAsync(249)
    assert.equal(sockets.size, 1)
    await clock.tickAsync(1)
    assert.equal(sockets.size, 2)
    await clock.tickAsync(150)
    const r = await p
    assert.equal(r.winner!.target.address, '::1', 'the silent first attempt may still win')
    assert.equal(r.attempts[1].outcome, 'cancelled')
    assert.equal(sockets.get('127.0.0.1')!.released, true, 'a loser goes through release')
  })

  it('nothing greets by the deadline: the earliest connected attempt is handed over anyway', async function () {
    script = {
      '::1': [{ at: 1, event: 'connect' }],
      '::2': [], // never connects
      '127.0.0.1': [{ at: 1, event: 'connect' }],
    }
    const p = race([target('::1'), target('::2'), target('127.0.0.1')], { deadlineMs: 1000 })
    await clock.tickAsync(1000)
    const r = await p
    assert.equal(r.winner!.target.address, '::1')
    assert.deepEqual(
      r.attempts.map((a) => a.outcome),
      ['connected', 'timed out', 'cancelled'],
    )
    assert.equal(r.attempts[0].endMs, 1, 'a silent winner ends at its TCP connect')
    assert.equal(sockets.get('::1')!.destroyed, false)
    assert.equal(sockets.get('127.0.0.1')!.released, true)
    assert.match(describeTimeline(r), /\[::1\]:25 connected after 1 ms, no greeting by the deadline/)
  })

  it('nothing connected by the deadline: no winner, every address with its error', async function () {
    script = { '::1': greets(10, 554, '554 no service') }
    const p = race([target('::1'), target('127.0.0.1')], { deadlineMs: 500 })
    await clock.tickAsync(500)
    const r = await p
    assert.equal(r.winner, undefined)
    assert.equal(describeFailures(r), '::1: greeting 554 no service; 127.0.0.1: no answer in 490 ms')
  })

  it('a first line that is no SMTP reply fails the attempt', async function () {
    script = {
      '::1': [
        { at: 1, event: 'connect' },
        { at: 2, event: 'greeting', line: 'SSH-2.0-OpenSSH_9.6' },
      ],
    }
    const p = race([target('::1')])
    await clock.tickAsync(2)
    const r = await p
    assert.equal(r.attempts[0].error, 'greeting not SMTP: SSH-2.0-OpenSSH_9.6')
    assert.equal(r.attempts[0].replyCode, undefined)
  })

  it('a greeting on the deadline millisecond is too late; a late greeting or close after the race changes nothing', async function () {
    script = {
      '::1': [
        { at: 1, event: 'connect' },
        { at: 300, event: 'greeting', code: 220, line: '220 late' },
      ],
    }
    const p = race([target('::1')], { deadlineMs: 300 })
    await clock.tickAsync(300)
    const r = await p
    assert.equal(r.winner!.index, 0)
    assert.equal(r.attempts[0].greeting, undefined, 'won as a silent connection, not on the tied greeting')
    const before = JSON.stringify(r.attempts)
    sockets.get('::1')!.emit(GREETING_EVENT, { code: 421, line: '421 bye' })
    sockets.get('::1')!.emit('close')
    assert.equal(JSON.stringify(r.attempts), before)
    assert.equal(sockets.get('::1')!.listenerCount(GREETING_EVENT), 0, 'race listeners left on the winner')
    assert.equal(sockets.get('::1')!.listenerCount('close'), 0, 'race listeners left on the winner')
  })

  it('success connect keeps winning at the TCP connect, whatever the greeting', async function () {
    script = { '::1': greets(40, 421, '421 busy') }
    const p = race([target('::1')], { success: 'connect' })
    await clock.tickAsync(1)
    const r = await p
    assert.equal(r.winner!.index, 0)
    assert.deepEqual(Object.keys(r.attempts[0]).sort(), ['endMs', 'outcome', 'startMs', 'target'])
  })
})

describe('raceConnect to the greeting, randomized', function () {
  // Each address: connects or errors at some time; once connected, greets (220/220-/421/554),
  // closes, or stays silent, after some more time.
  const time = fc.integer({ min: 1, max: 3000 })
  const fate = fc.oneof(
    fc.record({ kind: fc.constant('error'), t: time }),
    fc.record({ kind: fc.constant('never') }),
    fc.record({
      kind: fc.constant('connect'),
      t: time,
      then: fc.oneof(
        fc.record({
          kind: fc.constantFrom('greet-220', 'greet-220-', 'greet-421', 'greet-554', 'close'),
          t: time,
        }),
        fc.record({ kind: fc.constant('silent') }),
      ),
    }),
  )
  const raceCase = fc.record({
    fates: fc.array(fate, { minLength: 1, maxLength: 8 }),
    attemptDelayMs: fc.integer({ min: 10, max: 2000 }),
    deadlineMs: fc.integer({ min: 100, max: 8000 }),
  })

  it('a winner greeted with 2xx first among those that greeted, else the earliest connected at the deadline; losers released; nothing left', async function () {
    await fc.assert(
      fc.asyncProperty(raceCase, async (rc) => {
        const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
        try {
          const targets = rc.fates.map((_, i) => target(`192.0.2.${i + 1}`))
          const sockets: FakeSocket[] = []
          const released = new Set<FakeSocket>()
          const events: Array<[number, string, number]> = [] // [i, kind, at]
          const connect = (t: RaceTarget): FakeSocket => {
            const i = targets.indexOf(t)
            const f = rc.fates[i]
            const s = new FakeSocket(t)
            sockets[i] = s
            const later = (ms: number, fn: () => void) => s.timers.push(setTimeout(fn, ms))
            if (f.kind === 'error')
              later(f.t, () => s.emit('error', Object.assign(new Error('x'), { code: 'ECONNREFUSED' })))
            if (f.kind === 'connect')
              later(f.t, () => {
                events.push([i, 'connect', clock.now])
                s.emit('connect')
                const g = f.then
                // A race that ended on this connect (the deadline's own millisecond) closed it.
                if (g.kind === 'silent' || s.destroyed) return
                later(g.t, () => {
                  events.push([i, g.kind, clock.now])
                  if (g.kind === 'close') return void s.emit('close')
                  const [code, sep] = (
                    {
                      'greet-220': [220, ' '],
                      'greet-220-': [220, '-'],
                      'greet-421': [421, ' '],
                      'greet-554': [554, ' '],
                    } as const
                  )[g.kind]
                  s.emit(GREETING_EVENT, { code, line: `${code}${sep}x` })
                })
              })
            return s
          }
          let result: RaceResult<FakeSocket> | undefined
          raceConnect(targets, {
            attemptDelayMs: rc.attemptDelayMs,
            groupDelayMs: 2000,
            deadlineMs: rc.deadlineMs,
            connect,
            release: (s: FakeSocket) => {
              released.add(s)
              s.destroy()
            },
            success: 'greeting',
            now: () => clock.now,
          }).then((r) => (result = r))
          for (let steps = 0; !result; steps++) {
            await null
            if (result) break
            assert.ok(steps < 1000 && clock.countTimers() > 0, 'the race neither finished nor waits')
            clock.next()
          }
          const { winner, attempts } = result
          const welcomed = events.filter(([, k, at]) => k.startsWith('greet-220') && at < rc.deadlineMs)
          const refused = events.filter(([, k]) => k === 'greet-421' || k === 'greet-554')
          if (winner) {
            const w = attempts[winner.index]
            assert.equal(sockets[winner.index].destroyed, false)
            if (w.greeting !== undefined) {
              // The first welcome wins; nothing greeted with 2xx before it.
              assert.equal(w.replyCode, 220)
              assert.equal(welcomed[0][0], winner.index)
            } else {
              // Handed over at the deadline: no welcome came in time, it was connected first.
              assert.ok(result.elapsedMs >= rc.deadlineMs)
              assert.equal(welcomed.filter(([, , at]) => at < rc.deadlineMs).length, 0)
              const connectedLive = attempts.filter(
                (a) => a.connectMs !== undefined && ['connected', 'cancelled'].includes(a.outcome),
              )
              for (const a of connectedLive) assert.ok(a.connectMs! >= w.connectMs!)
            }
          } else {
            assert.equal(welcomed.length, 0)
            for (const a of attempts) assert.ok(['failed', 'timed out'].includes(a.outcome), a.outcome)
          }
          for (const [i] of refused) {
            if (attempts[i] && attempts[i].greeting !== undefined) {
              assert.equal(attempts[i].outcome, 'failed')
              assert.match(attempts[i].error!, /^greeting (421|554) x$/)
            }
          }
          attempts.forEach((a, i) => {
            if (winner && i === winner.index) return
            assert.ok(sockets[i].destroyed, `attempt ${i} left open`)
            if (a.outcome === 'cancelled') assert.ok(released.has(sockets[i]), `loser ${i} not released`)
          })
          // Only the winner's socket may carry timers (its own script); the race has none.
          for (const s of sockets) if (s && s !== winner?.socket) assert.ok(s.destroyed)
          if (winner) winner.socket.destroy()
          assert.equal(clock.countTimers(), 0, 'a race timer left')
        } finally {
          clock.uninstall()
        }
      }),
      { numRuns: 2000 },
    )
  })
})

// What a race teaches across destinations: connect times, IPv6 egress evidence, and the
// per-target delay the next race uses; then that delay in a race on a fake clock.

import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'

import FakeTimers, { type Clock } from '@sinonjs/fake-timers'

import { ConnectTimes } from '../lib/connect-times'
import { EgressMemory } from '../lib/egress'
import { connectTimeOf, delayFor, learnFromRace, unanswered } from '../lib/learned'
import {
  type AttemptRecord,
  raceConnect,
  type RaceOptions,
  type RaceSocket,
  type RaceTarget,
} from '../lib/race'

const t = (address: string, exchange = 'mx.test'): RaceTarget => ({
  address,
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  exchange,
  preference: 10,
  port: 25,
})
const BOUNDS = { minMs: 100, maxMs: 250 }

type FakeSocket = EventEmitter & RaceSocket

/** A race on a fake clock whose sockets the test drives: when each attempt started, and its socket. */
function fakeRace(clock: Clock, targets: RaceTarget[], opts: Partial<RaceOptions<FakeSocket>> = {}) {
  const started: number[] = []
  const sockets: FakeSocket[] = []
  const result = raceConnect(targets, {
    attemptDelayMs: 250,
    groupDelayMs: 2000,
    deadlineMs: 5000,
    now: () => clock.now,
    connect: () => {
      started.push(clock.now)
      const s: FakeSocket = Object.assign(new EventEmitter(), { destroy: () => {} })
      sockets.push(s)
      return s
    },
    ...opts,
  })
  return { started, sockets, result }
}

describe('learned', () => {
  it('a connect time runs from the start to the TCP connect, greeting or not', () => {
    const greeted: AttemptRecord = {
      target: t('::1'),
      startMs: 100,
      connectMs: 104,
      endMs: 210,
      outcome: 'connected',
    }
    assert.equal(connectTimeOf(greeted), 4)
    assert.equal(connectTimeOf({ target: t('::1'), startMs: 0, endMs: 3, outcome: 'connected' }), 3)
    assert.equal(connectTimeOf({ target: t('::1'), startMs: 0, endMs: 3, outcome: 'failed' }), undefined)
  })

  it('unanswered: timed out, or cancelled after its whole delay without a connect; a refusal is an answer', () => {
    const a = (o: Partial<AttemptRecord>): AttemptRecord => ({
      target: t('::1'),
      startMs: 0,
      outcome: 'cancelled',
      ...o,
    })
    assert.equal(unanswered(a({ endMs: 100, delayMs: 100 }), 100, 250), true)
    assert.equal(unanswered(a({ endMs: 99, delayMs: 100 }), 99, 250), false)
    assert.equal(unanswered(a({ endMs: 240 }), 240, 250), false)
    assert.equal(unanswered(a({ outcome: 'timed out', endMs: 50 }), 50, 250), true)
    assert.equal(
      unanswered(a({ outcome: 'failed', error: 'connect ECONNREFUSED', endMs: 300 }), 300, 250),
      false,
    )
    assert.equal(unanswered(a({ endMs: 300, connectMs: 10 }), 300, 250), false)
  })

  it('a race feeds connect times and egress evidence; the next race of a new MX gets the learnt delay', () => {
    const connectTimes = new ConnectTimes({ ttlMs: 60_000, maxEntries: 100 })
    const egress = new EgressMemory({ destinations: 1, windowMs: 60_000, maxEntries: 100 })
    learnFromRace(
      { connectTimes, egress },
      {
        attempts: [
          { target: t('::1', 'a.test'), startMs: 0, endMs: 102, outcome: 'cancelled', delayMs: 100 },
          {
            target: t('127.0.0.1', 'a.test'),
            startMs: 100,
            connectMs: 102,
            endMs: 110,
            outcome: 'connected',
          },
        ],
        elapsedMs: 110,
        untried: [],
      },
      250,
    )
    assert.equal(connectTimes.read('a.test', 'ipv4')?.srttMs, 2)
    assert.equal(connectTimes.read('a.test', 'ipv6'), undefined)
    assert.equal(egress.read().ipv6Impaired, true)
    const delay = delayFor(connectTimes, BOUNDS)
    assert.equal(delay(t('127.0.0.2', 'new.test')), 100, "this host's IPv4 times: the minimum")
    assert.equal(delay(t('::2', 'new.test')), 250, 'no IPv6 times: the maximum')
  })

  it('in a race, the delay after an attempt is its own learnt one, and the record says which', async () => {
    const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
    try {
      const targets = [t('::1'), t('127.0.0.1'), t('::2'), t('127.0.0.2')]
      const delays = new Map([
        [targets[0], 120],
        [targets[1], 40],
        [targets[2], 250],
      ])
      const {
        started,
        sockets,
        result: p,
      } = fakeRace(clock, targets, {
        attemptDelayFor: (x) => delays.get(x) ?? 250,
      })
      await clock.tickAsync(150)
      sockets[1].emit('connect')
      const result = await p
      assert.deepEqual(started, [0, 120])
      assert.deepEqual(
        result.attempts.map((a) => a.delayMs),
        [120, 40],
      )
      assert.equal(result.winner?.index, 1)
      await clock.tickAsync(1000)
      assert.deepEqual(started, [0, 120], 'nothing starts after the race')
    } finally {
      clock.uninstall()
    }
  })

  it('success greeting: an attempt that connected within its learnt delay gets the whole configured delay to greet', async () => {
    const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
    try {
      const targets = [t('::1'), t('127.0.0.1'), t('::2')]
      const {
        started,
        sockets,
        result: p,
      } = fakeRace(clock, targets, {
        attemptDelayFor: () => 40,
        success: 'greeting',
      })
      // The first never answers: the second starts after the learnt 40 ms.
      await clock.tickAsync(45)
      assert.deepEqual(started, [0, 40])
      // The second connects at 50 ms and greets at 200 ms: the third waits for 40 + 250.
      await clock.tickAsync(5)
      sockets[1].emit('connect')
      await clock.tickAsync(150)
      assert.deepEqual(started, [0, 40], 'no third attempt while the connected one may still greet')
      sockets[1].emit('greeting', { code: 220, line: '220 mx.test ESMTP' })
      const result = await p
      assert.equal(result.winner?.index, 1)
      assert.deepEqual(
        result.attempts.map((a) => a.outcome),
        ['cancelled', 'connected'],
      )
    } finally {
      clock.uninstall()
    }
  })

  it('success greeting: a connected attempt that stays silent lets the next start at the configured delay', async () => {
    const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
    try {
      const {
        started,
        sockets,
        result: p,
      } = fakeRace(clock, [t('::1'), t('127.0.0.1')], {
        attemptDelayFor: () => 40,
        success: 'greeting',
      })
      await clock.tickAsync(10)
      sockets[0].emit('connect')
      await clock.tickAsync(245)
      assert.deepEqual(started, [0, 250])
      sockets[1].emit('connect')
      sockets[1].emit('greeting', { code: 220, line: '220 mx.test' })
      await p
    } finally {
      clock.uninstall()
    }
  })

  it('a per-target delay that throws or is no number falls back to the fixed delay; the race goes on', async () => {
    const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
    try {
      const targets = [t('::1'), t('127.0.0.1'), t('::2')]
      const {
        started,
        sockets,
        result: p,
      } = fakeRace(clock, targets, {
        attemptDelayFor: (x) => {
          if (x === targets[0]) throw new Error('broken store')
          return NaN
        },
      })
      await clock.tickAsync(501)
      sockets[2].emit('connect')
      const result = await p
      assert.deepEqual(started, [0, 250, 500])
      assert.deepEqual(
        result.attempts.map((a) => a.delayMs),
        [250, 250, 250],
      )
    } finally {
      clock.uninstall()
    }
  })

  it('without per-target delays the record carries none and the fixed delay applies', async () => {
    const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
    try {
      const { started, sockets, result: p } = fakeRace(clock, [t('::1'), t('127.0.0.1')])
      await clock.tickAsync(251)
      sockets[1].emit('connect')
      const result = await p
      assert.deepEqual(started, [0, 250])
      assert.equal(result.attempts[0].delayMs, undefined)
    } finally {
      clock.uninstall()
    }
  })
})

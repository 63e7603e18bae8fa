import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import net from 'node:net'

import FakeTimers, { type Clock } from '@sinonjs/fake-timers'

import {
  type RaceOptions,
  type RaceSocket,
  type RaceTarget,
  raceConnect,
  startRace,
  describeTimeline,
  describeFailures,
} from '../lib/race'
import { startBlackHole, freePort } from './support/harness'
import { zonelessLinkLocalConnect, assertZonelessLinkLocalStaysHere } from './support/link-local'

function target(address: string, preference = 10, port = 25): RaceTarget {
  return { address, family: address.includes(':') ? 'ipv6' : 'ipv4', exchange: 'mx.test', preference, port }
}

// A socket whose fate the test decides: connect, fail, or never answer.
class FakeSocket extends EventEmitter implements RaceSocket {
  destroyed = false
  constructor(readonly target: RaceTarget) {
    super()
  }
  destroy(): void {
    this.destroyed = true
  }
}

/** What a fake socket does, and when; or that connect() throws. */
type ScriptStep =
  { at: number; event: 'connect' } | { at: number; event: 'error'; code: string } | { throws: string }

describe('raceConnect with a fake clock', function () {
  let clock: Clock
  let sockets: FakeSocket[]
  let script: Record<string, ScriptStep>

  // script: address → { at: ms, event: 'connect' | 'error', code } (no entry: never answers)
  const connect = (t: RaceTarget): FakeSocket => {
    const step = script[t.address]
    if (step && 'throws' in step) throw new Error(step.throws)
    const s = new FakeSocket(t)
    sockets.push(s)
    if (step)
      setTimeout(() => {
        if (s.destroyed) return
        if (step.event === 'connect') s.emit('connect')
        else s.emit('error', Object.assign(new Error(step.code), { code: step.code, syscall: 'connect' }))
      }, step.at)
    return s
  }

  const race = (targets: RaceTarget[], opts: Partial<RaceOptions<FakeSocket>> = {}) =>
    raceConnect(targets, {
      attemptDelayMs: 250,
      groupDelayMs: 2000,
      deadlineMs: 15000,
      connect,
      now: () => clock.now,
      ...opts,
    })

  beforeEach(function () {
    clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'] })
    sockets = []
    script = {}
  })

  afterEach(function () {
    assert.equal(clock.countTimers(), 0, 'the race left a timer behind')
    clock.uninstall()
  })

  it('a first address that connects at once wins and no second attempt starts', async function () {
    script = { '2001:db8::1': { at: 5, event: 'connect' } }
    const p = race([target('2001:db8::1'), target('192.0.2.1')])
    await clock.tickAsync(5)
    const r = await p
    assert.equal(r.winner!.index, 0)
    assert.equal(sockets.length, 1)
    assert.equal(r.attempts.length, 1)
  })

  it('an address with no answer lets the next start after the attempt delay, and loses to it', async function () {
    script = { '192.0.2.1': { at: 3, event: 'connect' } }
    const p = race([target('2001:db8::1'), target('192.0.2.1')])
    await clock.tickAsync(249)
    assert.equal(sockets.length, 1, 'second attempt started before the attempt delay')
    await clock.tickAsync(1)
    assert.equal(sockets.length, 2)
    await clock.tickAsync(3)
    const r = await p
    assert.equal(r.winner!.target.address, '192.0.2.1')
    assert.equal(r.attempts[1].startMs, 250)
    assert.equal(r.attempts[0].outcome, 'cancelled')
    assert.equal(sockets[0].destroyed, true, 'the loser was not destroyed')
    assert.equal(sockets[1].destroyed, false, 'the winner was destroyed')
  })

  it('a fast failure starts the next address at once', async function () {
    script = {
      'fe80::1': { at: 1, event: 'error', code: 'EINVAL' },
      '192.0.2.1': { at: 2, event: 'connect' },
    }
    const p = race([target('fe80::1'), target('192.0.2.1')])
    await clock.tickAsync(3)
    const r = await p
    assert.equal(r.winner!.target.address, '192.0.2.1')
    assert.equal(r.attempts[1].startMs, 1)
    assert.equal(r.attempts[0].error, 'connect EINVAL')
  })

  it('an earlier attempt keeps running and may still win after the next one started', async function () {
    script = { '2001:db8::1': { at: 300, event: 'connect' } }
    const p = race([target('2001:db8::1'), target('192.0.2.1')])
    await clock.tickAsync(300)
    const r = await p
    assert.equal(r.winner!.index, 0)
    assert.equal(r.attempts[1].outcome, 'cancelled')
    assert.equal(sockets[1].destroyed, true)
  })

  it('a lower-preference group waits for the group delay while the current group is still trying', async function () {
    script = { '192.0.2.20': { at: 1, event: 'connect' } }
    const p = race([target('2001:db8::10', 10), target('192.0.2.20', 20)])
    await clock.tickAsync(1999)
    assert.equal(sockets.length, 1, 'the backup MX started before the group delay')
    await clock.tickAsync(2)
    const r = await p
    assert.equal(r.winner!.target.address, '192.0.2.20')
    assert.equal(r.attempts[1].startMs, 2000)
  })

  it('a lower-preference group starts at once when every address of the current group failed', async function () {
    script = {
      '2001:db8::10': { at: 4, event: 'error', code: 'ECONNREFUSED' },
      '192.0.2.20': { at: 1, event: 'connect' },
    }
    const p = race([target('2001:db8::10', 10), target('192.0.2.20', 20)])
    await clock.tickAsync(5)
    const r = await p
    assert.equal(r.attempts[1].startMs, 4)
    assert.equal(r.winner!.target.address, '192.0.2.20')
  })

  it('when nothing answers by the deadline every attempt is timed out and destroyed', async function () {
    const p = race([target('2001:db8::1'), target('192.0.2.1')], { deadlineMs: 1000 })
    await clock.tickAsync(1000)
    const r = await p
    assert.equal(r.winner, undefined)
    assert.deepEqual(
      r.attempts.map((a) => [a.outcome, a.error]),
      [
        ['timed out', 'no answer in 1000 ms'],
        ['timed out', 'no answer in 750 ms'],
      ],
    )
    assert.ok(sockets.every((s) => s.destroyed))
    assert.match(describeFailures(r), /2001:db8::1: no answer in 1000 ms; 192\.0\.2\.1: no answer in 750 ms/)
  })

  it('when every address fails the race ends before the deadline with each error', async function () {
    script = {
      'fe80::1': { at: 1, event: 'error', code: 'EINVAL' },
      '192.0.2.1': { at: 2, event: 'error', code: 'ECONNREFUSED' },
    }
    const p = race([target('fe80::1'), target('192.0.2.1')])
    await clock.tickAsync(3)
    const r = await p
    assert.equal(r.winner, undefined)
    assert.equal(describeFailures(r), 'fe80::1: connect EINVAL; 192.0.2.1: connect ECONNREFUSED')
  })

  it('a connect function that throws counts as a failed attempt', async function () {
    script = { 'fe80::1': { throws: 'boom' }, '192.0.2.1': { at: 1, event: 'connect' } }
    const p = race([target('fe80::1'), target('192.0.2.1')])
    await clock.tickAsync(2)
    const r = await p
    assert.equal(r.attempts[0].outcome, 'failed')
    assert.equal(r.attempts[0].error, 'boom')
    assert.equal(r.winner!.target.address, '192.0.2.1')
  })

  it('the timeline names each attempt, its start offset and outcome', async function () {
    script = { '192.0.2.1': { at: 3, event: 'connect' } }
    const p = race([target('2001:db8::1'), target('192.0.2.1')])
    await clock.tickAsync(253)
    assert.equal(
      describeTimeline(await p),
      '+0ms [2001:db8::1]:25 cancelled after 253 ms; +250ms 192.0.2.1:25 connected after 3 ms',
    )
  })
})

describe('startRace: targets added to a running race (RFC 8305 §6), with a fake clock', function () {
  let clock: Clock
  let sockets: FakeSocket[]
  let script: Record<string, ScriptStep>

  const connect = (t: RaceTarget): FakeSocket => {
    const s = new FakeSocket(t)
    sockets.push(s)
    const step = script[t.address]
    if (step && !('throws' in step))
      setTimeout(() => {
        if (s.destroyed) return
        if (step.event === 'connect') s.emit('connect')
        else s.emit('error', Object.assign(new Error(step.code), { code: step.code, syscall: 'connect' }))
      }, step.at)
    return s
  }
  const start = (targets: RaceTarget[], opts: Partial<RaceOptions<FakeSocket>> = {}) =>
    startRace(targets, {
      attemptDelayMs: 250,
      groupDelayMs: 2000,
      deadlineMs: 15000,
      connect,
      now: () => clock.now,
      ...opts,
    })
  const started = (): string[] => sockets.map((s) => s.target.address)

  beforeEach(function () {
    clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'] })
    sockets = []
    script = {}
  })

  afterEach(function () {
    assert.equal(clock.countTimers(), 0, 'the race left a timer behind')
    clock.uninstall()
  })

  it('an address added while the first attempt is silent starts one attempt delay after it', async function () {
    script = { '2001:db8::1': { at: 2, event: 'connect' } }
    const race = start([target('192.0.2.1')])
    await clock.tickAsync(100)
    race.add([target('2001:db8::1')])
    await clock.tickAsync(149)
    assert.deepEqual(started(), ['192.0.2.1'], 'the added address started before the attempt delay')
    await clock.tickAsync(1)
    assert.deepEqual(started(), ['192.0.2.1', '2001:db8::1'])
    await clock.tickAsync(2)
    race.close()
    const r = await race.result
    assert.equal(r.winner!.target.address, '2001:db8::1')
    assert.equal(r.attempts[1].startMs, 250)
    assert.deepEqual(r.untried, [])
  })

  it('arms its one timer in whole milliseconds, and keeps it when a transition leaves the due moment as it was', async function () {
    // A clock that moves a little on every read, as a real one does between transitions.
    let drift = 0
    const now = (): number => clock.now + (drift += 0.37)
    const delays: number[] = []
    const fakeSetTimeout = globalThis.setTimeout
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      delays.push(Number(ms))
      return fakeSetTimeout(fn, ms)
    }) as typeof setTimeout
    try {
      const race = start([target('192.0.2.1'), target('192.0.2.2')], { now })
      await clock.tickAsync(100)
      // Added behind the waiting one: the next start is still the same moment.
      race.add([target('192.0.2.3')])
      assert.equal(delays.length, 1, `re-armed for the same moment: ${delays.join(', ')}`)
      await clock.tickAsync(15000)
      race.close()
      const r = await race.result
      assert.deepEqual(
        r.attempts.map((a) => a.outcome),
        ['timed out', 'timed out', 'timed out'],
      )
    } finally {
      globalThis.setTimeout = fakeSetTimeout
    }
    assert.ok(delays.length >= 3, `timers armed: ${delays.join(', ')}`)
    for (const ms of delays) assert.ok(Number.isInteger(ms), `a timer of ${ms} ms`)
  })

  it('an added address goes before the not-yet-started ones of a lower preference', async function () {
    script = { '192.0.2.2': { at: 1, event: 'connect' } }
    const race = start([target('192.0.2.1', 10), target('192.0.2.20', 20)])
    race.add([target('192.0.2.2', 10)])
    await clock.tickAsync(251)
    const r = await race.result
    assert.deepEqual(started(), ['192.0.2.1', '192.0.2.2'])
    assert.equal(r.winner!.target.address, '192.0.2.2')
    assert.deepEqual(
      r.untried.map((t) => t.address),
      ['192.0.2.20'],
    )
  })

  it('sortPending decides the order of the not-yet-started part', async function () {
    const race = start([target('192.0.2.1'), target('192.0.2.2')], {
      sortPending: (pending) => pending.slice().sort((a, b) => b.address.localeCompare(a.address)),
    })
    race.add([target('192.0.2.3')])
    await clock.tickAsync(500)
    assert.deepEqual(started(), ['192.0.2.1', '192.0.2.3', '192.0.2.2'])
    race.close()
    await clock.tickAsync(15000)
    assert.equal((await race.result).winner, undefined)
  })

  it('a sort that loses a target is not trusted: the race keeps every target', async function () {
    const race = start([target('192.0.2.1'), target('192.0.2.2')], { sortPending: () => [] })
    race.add([target('192.0.2.3')])
    race.close()
    await clock.tickAsync(15000)
    assert.deepEqual(started(), ['192.0.2.1', '192.0.2.2', '192.0.2.3'])
    await race.result
  })

  it('an open race whose attempts all failed waits for more, and an added one starts at once', async function () {
    script = {
      '192.0.2.1': { at: 1, event: 'error', code: 'ECONNREFUSED' },
      '2001:db8::1': { at: 1, event: 'connect' },
    }
    const race = start([target('192.0.2.1')])
    let over = false
    void race.result.then(() => (over = true))
    await clock.tickAsync(1000)
    assert.equal(over, false, 'the race ended while targets could still come')
    race.add([target('2001:db8::1')])
    assert.deepEqual(started(), ['192.0.2.1', '2001:db8::1'])
    await clock.tickAsync(1)
    const r = await race.result
    assert.equal(r.winner!.target.address, '2001:db8::1')
    assert.equal(r.attempts[1].startMs, 1000)
  })

  it('closing a race with nothing left to try ends it with every failure', async function () {
    script = { '192.0.2.1': { at: 1, event: 'error', code: 'ECONNREFUSED' } }
    const race = start([target('192.0.2.1')])
    await clock.tickAsync(10)
    race.close()
    const r = await race.result
    assert.equal(r.winner, undefined)
    assert.equal(r.attempts[0].outcome, 'failed')
    assert.equal(r.elapsedMs, 10)
  })

  it('an open race still ends at its deadline', async function () {
    const race = start([target('192.0.2.1')], { deadlineMs: 1000 })
    await clock.tickAsync(1000)
    const r = await race.result
    assert.equal(r.attempts[0].outcome, 'timed out')
  })

  it('an address already in the race, or added after the race ended, is ignored', async function () {
    script = { '192.0.2.1': { at: 300, event: 'connect' } }
    const race = start([target('192.0.2.1'), target('192.0.2.2')])
    race.add([target('192.0.2.1'), target('192.0.2.2'), target('192.0.2.3'), target('192.0.2.3')])
    await clock.tickAsync(300)
    const r = await race.result
    assert.deepEqual(started(), ['192.0.2.1', '192.0.2.2'])
    assert.deepEqual(
      r.untried.map((t) => t.address),
      ['192.0.2.3'],
    )
    race.add([target('192.0.2.4')])
    race.close()
    assert.equal(sockets.length, 2)
  })

  it('a more preferred address added after a lower group started waits one attempt delay, not the group delay', async function () {
    const race = start([target('192.0.2.1', 10), target('192.0.2.20', 20)], { groupDelayMs: 300 })
    await clock.tickAsync(300)
    assert.deepEqual(started(), ['192.0.2.1', '192.0.2.20'])
    race.add([target('192.0.2.2', 10)])
    await clock.tickAsync(249)
    assert.equal(sockets.length, 2)
    await clock.tickAsync(1)
    assert.deepEqual(started(), ['192.0.2.1', '192.0.2.20', '192.0.2.2'])
    race.close()
    await clock.tickAsync(15000)
    await race.result
  })
})

describe('raceConnect with real sockets on loopback', function () {
  const opened: net.Socket[] = []
  const closers: Array<() => Promise<void>> = []

  const connect = (t: RaceTarget): net.Socket => {
    const s = net.connect({ host: t.address, port: t.port })
    opened.push(s)
    return s
  }
  const race = (targets: RaceTarget[], opts: Partial<RaceOptions<net.Socket>> = {}) =>
    raceConnect(targets, { attemptDelayMs: 250, groupDelayMs: 2000, deadlineMs: 5000, connect, ...opts })

  async function listener(host: string): Promise<number> {
    const server = net.createServer((s) => s.destroy())
    await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve))
    closers.push(() => new Promise((resolve) => server.close(() => resolve())))
    return (server.address() as net.AddressInfo).port
  }

  afterEach(async function () {
    for (const s of opened.splice(0)) s.destroy()
    for (const close of closers.splice(0)) await close()
  })

  it('a refused IPv6 address hands over to IPv4 at once', async function () {
    const port = await listener('127.0.0.1')
    const dead = await freePort('::1') // bound and released: nothing listens
    const r = await race([target('::1', 10, dead), target('127.0.0.1', 10, port)])
    assert.equal(r.attempts[0].error, 'connect ECONNREFUSED')
    assert.ok(r.attempts[1].startMs < 250, `next attempt waited ${r.attempts[1].startMs} ms`)
    assert.equal(r.winner!.target.address, '127.0.0.1')
  })

  // Node 20 (libuv < 1.47), or any Node on a host without a link-local interface: EINVAL at
  // once. Node 22+ where an interface has a link-local address: the SYN goes out of it and
  // the attempt waits, so IPv4 starts after one attempt delay (see test/support/link-local.js).
  const linkLocal = zonelessLinkLocalConnect()
  it(`a link-local address without a zone ${linkLocal.label}, and IPv4 wins (${linkLocal.reason})`, async function () {
    assertZonelessLinkLocalStaysHere(linkLocal)
    const port = await listener('127.0.0.1')
    const r = await race([target('fe80::d250:99ff:feda:9100', 10, port), target('127.0.0.1', 10, port)])
    if (linkLocal.fails) {
      assert.equal(r.attempts[0].error, 'connect EINVAL')
      assert.ok(r.attempts[1].startMs < 250, `next attempt waited ${r.attempts[1].startMs} ms`)
    } else {
      assert.equal(r.attempts[0].outcome, 'cancelled')
      assert.ok(r.attempts[1].startMs >= 250, `next attempt started after ${r.attempts[1].startMs} ms`)
    }
    assert.equal(r.winner!.target.address, '127.0.0.1')
  })

  it('a black-holed IPv6 address costs one attempt delay, and its socket is destroyed', async function () {
    const hole = await startBlackHole({ host: '::1' })
    closers.push(() => hole.close())
    const port = await listener('127.0.0.1')
    const r = await race([target('::1', 10, hole.port), target('127.0.0.1', 10, port)])
    assert.equal(r.winner!.target.address, '127.0.0.1')
    assert.equal(r.attempts[0].outcome, 'cancelled')
    assert.ok(r.attempts[1].startMs >= 250 && r.attempts[1].startMs < 1000)
    const loser = opened.find((s) => s !== r.winner!.socket)
    assert.equal(loser!.destroyed, true)
    r.winner!.socket.destroy()
  })
})

// Measured connect times and the attempt delay learnt from them (RFC 8305 §5, RFC 6298).

import assert from 'node:assert/strict'

import { ConnectTimes, learnedDelay, smooth } from '../lib/connect-times'

const BOUNDS = { minMs: 100, maxMs: 250 }

describe('connect times', () => {
  it('smooths as RFC 6298 does: the first sample sets SRTT and RTTVAR = R/2, later ones move by 1/8 and 1/4', () => {
    const first = smooth(undefined, 40)
    assert.deepEqual(first, { srttMs: 40, rttvarMs: 20, samples: 1 })
    const second = smooth(first, 80)
    assert.equal(second.srttMs, 45)
    assert.equal(second.rttvarMs, 25)
    assert.equal(second.samples, 2)
  })

  it('the delay is 2 × SRTT + 4 × RTTVAR, clamped to [min, max]; max when nothing is known', () => {
    assert.equal(learnedDelay(undefined, BOUNDS), 250)
    assert.equal(learnedDelay({ srttMs: 1, rttvarMs: 0.5, samples: 1, of: 'mx' }, BOUNDS), 100)
    assert.equal(learnedDelay({ srttMs: 40, rttvarMs: 10, samples: 5, of: 'mx' }, BOUNDS), 120)
    assert.equal(learnedDelay({ srttMs: 200, rttvarMs: 50, samples: 5, of: 'mx' }, BOUNDS), 250)
  })

  it('never under 10 ms, and a minimum over the maximum gives the maximum', () => {
    const fast = { srttMs: 0, rttvarMs: 0, samples: 3, of: 'host' as const }
    assert.equal(learnedDelay(fast, { minMs: 1, maxMs: 250 }), 10)
    assert.equal(learnedDelay(fast, { minMs: 500, maxMs: 250 }), 250)
  })

  it("reads the MX host's own times first, else this host's for the family, never the other family's", () => {
    const t = new ConnectTimes({ ttlMs: 60_000, maxEntries: 100 })
    t.record({ exchange: 'MX1.test.', family: 'ipv6', connectMs: 30 })
    assert.deepEqual(t.read('mx1.test', 'ipv6'), { srttMs: 30, rttvarMs: 15, samples: 1, of: 'mx' })
    assert.deepEqual(t.read('new.test', 'ipv6'), { srttMs: 30, rttvarMs: 15, samples: 1, of: 'host' })
    assert.equal(t.read('new.test', 'ipv4'), undefined)
    assert.equal(t.knows('mx1.test'), true)
    assert.equal(t.knows('new.test'), false)
  })

  it('forgets after the TTL (fake clock), takes no nonsense samples and stays bounded', () => {
    let now = 1_000_000
    const t = new ConnectTimes({ ttlMs: 1000, maxEntries: 10, perf: { now: () => now } })
    t.record({ exchange: 'mx.test', family: 'ipv4', connectMs: -1 })
    t.record({ exchange: 'mx.test', family: 'ipv4', connectMs: NaN })
    assert.equal(t.size, 0)
    t.record({ exchange: 'mx.test', family: 'ipv4', connectMs: 5 })
    now += 1001
    assert.equal(t.read('mx.test', 'ipv4'), undefined)
    for (let i = 0; i < 50; i++) t.record({ exchange: `mx${i}.test`, family: 'ipv4', connectMs: 5 })
    assert.equal(t.size, 10)
    assert.ok(new ConnectTimes({ ttlMs: 0, maxEntries: 10 }).read('mx.test', 'ipv4') === undefined)
  })
})

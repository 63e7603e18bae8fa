// This host's IPv6 egress across destinations, on a fake clock.

import assert from 'node:assert/strict'

import { describeEgress, EgressMemory, type EgressState, EVIDENCE_MAX } from '../lib/egress'

function memory(destinations = 3, windowMs = 600_000) {
  let now = 1_000_000
  const changes: EgressState[] = []
  const m = new EgressMemory({
    destinations,
    windowMs,
    maxEntries: 100,
    perf: { now: () => now },
    onChange: (s) => changes.push(s),
  })
  const at = () => now
  const advance = (ms: number) => (now += ms)
  /** A black-holed IPv6 and a working IPv4 at this MX host. */
  const blackHoled = (exchange: string) => {
    m.record({ exchange, family: 'ipv6', outcome: 'unanswered', at: at() })
    m.record({ exchange, family: 'ipv4', outcome: 'connected', at: at() })
  }
  return { m, changes, at, advance, blackHoled }
}

describe('egress', () => {
  it('IPv6 unanswered while IPv4 worked at the threshold of distinct MX hosts marks IPv6 egress impaired, once', () => {
    const { m, changes, at, blackHoled } = memory(3)
    blackHoled('mx1.a.test')
    blackHoled('MX1.a.test.')
    blackHoled('mx2.b.test')
    assert.equal(m.read(at()).ipv6Impaired, false, 'two distinct hosts are not three')
    blackHoled('mx3.c.test')
    const state = m.read(at())
    assert.equal(state.ipv6Impaired, true)
    assert.deepEqual(state.destinations.sort(), ['mx1.a.test', 'mx2.b.test', 'mx3.c.test'])
    blackHoled('mx4.d.test')
    assert.equal(changes.length, 1)
    assert.match(
      describeEgress(state),
      /IPv6 egress impaired: unanswered at .*mx3\.c\.test while IPv4 worked/,
    )
  })

  it('an unanswered IPv6 without IPv4 working at that host is no evidence (the host may be down)', () => {
    const { m, at } = memory(2)
    m.record({ exchange: 'mx1.test', family: 'ipv6', outcome: 'unanswered', at: at() })
    m.record({ exchange: 'mx2.test', family: 'ipv6', outcome: 'unanswered', at: at() })
    m.record({ exchange: 'mx3.test', family: 'ipv4', outcome: 'connected', at: at() })
    assert.equal(m.read(at()).ipv6Impaired, false)
  })

  it('the first IPv6 connect anywhere clears it, and the evidence with it', () => {
    const { m, changes, at, blackHoled } = memory(2)
    blackHoled('mx1.test')
    blackHoled('mx2.test')
    assert.equal(m.read(at()).ipv6Impaired, true)
    m.record({ exchange: 'other.test', family: 'ipv6', outcome: 'connected', at: at() })
    assert.equal(m.read(at()).ipv6Impaired, false)
    assert.deepEqual(
      changes.map((c) => c.ipv6Impaired),
      [true, false],
    )
    assert.match(describeEgress(changes[1]), /works again/)
    blackHoled('mx3.test')
    assert.equal(m.read(at()).ipv6Impaired, false, 'old evidence must not count again')
  })

  it('evidence older than the window no longer counts: the state clears itself on read', () => {
    const { m, changes, at, advance, blackHoled } = memory(2, 60_000)
    blackHoled('mx1.test')
    advance(30_000)
    blackHoled('mx2.test')
    assert.equal(m.read(at()).ipv6Impaired, true)
    advance(30_001)
    assert.equal(m.read(at()).ipv6Impaired, false)
    assert.equal(changes.length, 2)
  })

  it('0 destinations never marks it impaired', () => {
    const { m, at, blackHoled } = memory(0)
    for (const h of ['a', 'b', 'c', 'd']) blackHoled(h)
    assert.equal(m.read(at()).ipv6Impaired, false)
  })

  it('stays bounded: at most max_entries hosts are remembered, and never more than EVIDENCE_MAX', () => {
    const big = new EgressMemory({ destinations: 3, windowMs: 60_000, maxEntries: 100_000 })
    for (let i = 0; i < EVIDENCE_MAX + 100; i++) {
      big.record({ exchange: `mx${i}.test`, family: 'ipv6', outcome: 'unanswered', at: 0 })
      big.record({ exchange: `mx${i}.test`, family: 'ipv4', outcome: 'connected', at: 0 })
    }
    assert.equal(big.read(0).destinations.length, EVIDENCE_MAX)
    const m = new EgressMemory({ destinations: 5, windowMs: 60_000, maxEntries: 10 })
    for (let i = 0; i < 100; i++) {
      m.record({ exchange: `mx${i}.test`, family: 'ipv6', outcome: 'unanswered', at: 0 })
      m.record({ exchange: `mx${i}.test`, family: 'ipv4', outcome: 'connected', at: 0 })
    }
    assert.equal(m.read(0).destinations.length, 10)
  })
})

import assert from 'node:assert/strict'

import type { Candidate } from '../lib/order'
import { leadingPreference, raceStartAt } from '../lib/race-start'
import type { AddressLookup, AddressType } from '../lib/resolve'

const lookup = (
  exchange: string,
  preference: number,
  type: AddressType,
  answered?: string[],
): AddressLookup => ({
  exchange,
  preference,
  type,
  ...(answered ? { answer: { addresses: answered } } : {}),
})
const candidate = (exchange: string, preference: number, address: string): Candidate => ({
  exchange,
  preference,
  address,
  family: address.includes(':') ? 'ipv6' : 'ipv4',
})

const OPTS = { resolutionDelayMs: 50, leadingFamily: () => 'ipv6' as const }

describe('raceStartAt: when the race may begin before every lookup answered (RFC 8305 §3)', function () {
  it('an A answer that came first waits the resolution delay for the AAAA of its host', function () {
    const aaaa = lookup('mx.test', 10, 'AAAA')
    const a = lookup('mx.test', 10, 'A', ['192.0.2.1'])
    const at = raceStartAt(
      [aaaa, a],
      [candidate('mx.test', 10, '192.0.2.1')],
      (l) => (l === a ? 1000 : undefined),
      OPTS,
    )
    assert.equal(at, 1050)
  })

  it('an AAAA answer starts the race at once, the A still pending', function () {
    const aaaa = lookup('mx.test', 10, 'AAAA', ['2001:db8::1'])
    const a = lookup('mx.test', 10, 'A')
    assert.equal(
      raceStartAt([aaaa, a], [candidate('mx.test', 10, '2001:db8::1')], () => 1000, OPTS),
      1000,
    )
  })

  it('an A answer starts at once once the AAAA answered without an address', function () {
    const lookups = [lookup('mx.test', 10, 'AAAA', []), lookup('mx.test', 10, 'A', ['192.0.2.1'])]
    assert.equal(
      raceStartAt(lookups, [candidate('mx.test', 10, '192.0.2.1')], () => 1000, OPTS),
      1000,
    )
  })

  it('a group that leads with IPv4 (prefer, a family rule, the health cache) makes an AAAA answer wait for the A', function () {
    const aaaa = lookup('mx.test', 10, 'AAAA', ['2001:db8::1'])
    const lookups = [aaaa, lookup('mx.test', 10, 'A')]
    const asked: Array<[readonly string[], number]> = []
    const at = raceStartAt(lookups, [candidate('mx.test', 10, '2001:db8::1')], () => 7, {
      resolutionDelayMs: 50,
      leadingFamily: (exchanges, preference) => {
        asked.push([exchanges, preference])
        return 'ipv4'
      },
    })
    assert.equal(at, 57)
    assert.deepEqual(asked, [[['mx.test'], 10]])
  })

  it("a first address the health cache demotes waits for the group's other answers", function () {
    const lookups = [lookup('mx.test', 10, 'AAAA', ['2001:db8::1']), lookup('mx.test', 10, 'A')]
    const kept = [candidate('mx.test', 10, '2001:db8::1')]
    const demoted = (address: string): boolean => address === '2001:db8::1'
    assert.equal(
      raceStartAt(lookups, kept, () => 7, { ...OPTS, demoted }),
      57,
    )
    assert.equal(
      raceStartAt(lookups, kept, () => 7, { ...OPTS, demoted: () => false }),
      7,
    )
  })

  it('a more preferred MX still pending holds back an answered backup', function () {
    const lookups = [
      lookup('mx1.test', 10, 'AAAA'),
      lookup('mx1.test', 10, 'A'),
      lookup('mx2.test', 20, 'AAAA', ['2001:db8::2']),
      lookup('mx2.test', 20, 'A', ['192.0.2.2']),
    ]
    const kept = [candidate('mx2.test', 20, '2001:db8::2'), candidate('mx2.test', 20, '192.0.2.2')]
    assert.equal(leadingPreference(lookups, kept), 10)
    assert.equal(
      raceStartAt(lookups, kept, () => 0, OPTS),
      undefined,
    )
  })

  it('a backup MX still pending never holds back the answered preferred one', function () {
    const lookups = [
      lookup('mx1.test', 10, 'AAAA', []),
      lookup('mx1.test', 10, 'A', ['192.0.2.1']),
      lookup('mx2.test', 20, 'AAAA'),
      lookup('mx2.test', 20, 'A'),
    ]
    assert.equal(
      raceStartAt(lookups, [candidate('mx1.test', 10, '192.0.2.1')], () => 3, OPTS),
      3,
    )
  })

  it('a preferred MX that answered nothing usable gives the lead to the next group', function () {
    const lookups = [
      lookup('mx1.test', 10, 'AAAA', []),
      lookup('mx1.test', 10, 'A', []),
      lookup('mx2.test', 20, 'AAAA', ['2001:db8::2']),
      lookup('mx2.test', 20, 'A'),
    ]
    const kept = [candidate('mx2.test', 20, '2001:db8::2')]
    assert.equal(leadingPreference(lookups, kept), 20)
    assert.equal(
      raceStartAt(lookups, kept, () => 4, OPTS),
      4,
    )
  })

  it('nothing usable and nothing pending: no start, the complete resolution decides', function () {
    const lookups = [lookup('mx.test', 10, 'AAAA', []), lookup('mx.test', 10, 'A', [])]
    assert.equal(leadingPreference(lookups, []), undefined)
    assert.equal(
      raceStartAt(lookups, [], () => 0, OPTS),
      undefined,
    )
  })
})

// Candidate addresses are documentation addresses: ordering never looks at ranges.

import assert from 'node:assert/strict'
import fc from 'fast-check'

import type { Family } from '../lib/classify'
import { type HealthView, HealthCache } from '../lib/health'
import {
  type Candidate,
  interleaveFamilies,
  orderCandidates,
  type OrderOptions,
  capKeepingFamilies,
  seededRandom,
} from '../lib/order'

const seeded = seededRandom

const family = (address: string): Family => (address.includes(':') ? 'ipv6' : 'ipv4')
const cand = (address: string, exchange: string, preference: number): Candidate => ({
  address,
  family: family(address),
  exchange,
  preference,
})

const v6 = (n: number): string => `2001:db8::${n.toString(16)}`
const v4 = (n: number): string => `192.0.2.${n}`

// Deterministic random sources for the shuffle of equal-preference hosts.
const keepOrder = () => 0.999999 // Fisher-Yates with j = i: no swap
const alwaysZero = () => 0 // Fisher-Yates with j = 0: a rotation

const opts = (extra: Partial<OrderOptions> = {}): OrderOptions => ({
  prefer: 'ipv6',
  firstFamilyCount: 1,
  maxAddresses: 64,
  random: keepOrder,
  ...extra,
})

const addresses = (list: Candidate[]): string[] => list.map((c) => c.address)
const hostsInOrder = (list: Candidate[]): string[] => [...new Set(list.map((c) => c.exchange))]

// A HealthView from plain sets: failed and slow addresses, failed and slow `exchange family` pairs.
function fakeHealth({
  addresses: failedAddresses = [],
  families = [],
  slow = [],
  slowFamilies = [],
}: {
  addresses?: string[]
  families?: string[]
  slow?: string[]
  slowFamilies?: string[]
} = {}): Required<HealthView> {
  return {
    addressFailed: (a) => failedAddresses.includes(a),
    familyFailed: (h, f) => families.includes(`${h} ${f}`),
    addressSlow: (a) => slow.includes(a),
    familySlow: (h, f) => slowFamilies.includes(`${h} ${f}`),
  }
}

describe('order', () => {
  describe('one MX host per preference', () => {
    it('draws no random number, and a healthy group keeps the interleaved order', () => {
      let draws = 0
      const counted = (): number => {
        draws++
        return 0
      }
      const list = [
        cand(v4(1), 'mx.example', 10),
        cand(v6(1), 'mx.example', 10),
        cand(v6(2), 'mx.example', 10),
      ]
      const health = new HealthCache({ ttlMs: 60_000, maxEntries: 100 })
      const out = orderCandidates(list, opts({ random: counted, health }))
      assert.deepEqual(
        out.map((c) => c.address),
        [v6(1), v4(1), v6(2)],
      )
      assert.equal(draws, 0)
    })
  })

  describe('interleaveFamilies (RFC 8305 §4)', () => {
    const A = ['a1', 'a2', 'a3']
    const B = ['b1', 'b2', 'b3']

    it('first_family_count 1 alternates, starting with the first family', () => {
      assert.deepEqual(interleaveFamilies(A, B, 1), ['a1', 'b1', 'a2', 'b2', 'a3', 'b3'])
    })

    it('first_family_count 2 puts two of the first family before the first of the second', () => {
      assert.deepEqual(interleaveFamilies(A, B, 2), ['a1', 'a2', 'b1', 'a3', 'b2', 'b3'])
    })

    it('first_family_count 3 puts three of the first family first', () => {
      assert.deepEqual(interleaveFamilies(['a1', 'a2', 'a3', 'a4'], B, 3), [
        'a1',
        'a2',
        'a3',
        'b1',
        'a4',
        'b2',
        'b3',
      ])
    })

    it('first_family_count larger than the first family puts all of it first, then the second', () => {
      assert.deepEqual(interleaveFamilies(A, B, 10), ['a1', 'a2', 'a3', 'b1', 'b2', 'b3'])
    })

    it('an empty first family gives the second family in its order', () => {
      assert.deepEqual(interleaveFamilies([], B, 1), B)
      assert.deepEqual(interleaveFamilies([], B, 3), B)
    })

    it('an empty second family gives the first family in its order', () => {
      assert.deepEqual(interleaveFamilies(A, [], 1), A)
      assert.deepEqual(interleaveFamilies(A, [], 2), A)
    })

    it('two empty families give an empty list', () => {
      assert.deepEqual(interleaveFamilies([], [], 1), [])
    })

    it('a longer second family continues alone once the first runs out', () => {
      assert.deepEqual(interleaveFamilies(['a1'], B, 1), ['a1', 'b1', 'b2', 'b3'])
    })

    it('a longer first family continues alone once the second runs out', () => {
      assert.deepEqual(interleaveFamilies(['a1', 'a2', 'a3', 'a4'], ['b1'], 1), [
        'a1',
        'b1',
        'a2',
        'a3',
        'a4',
      ])
    })

    it('keeps every item exactly once and does not change its inputs', () => {
      fc.assert(
        fc.property(
          fc.array(fc.integer(), { maxLength: 12 }),
          fc.array(fc.integer(), { maxLength: 12 }),
          fc.integer({ min: 1, max: 16 }),
          (a, b, n) => {
            const first = a.map((x) => `a${x}`)
            const second = b.map((x) => `b${x}`)
            const before = [first.slice(), second.slice()]
            const out = interleaveFamilies(first, second, n)
            assert.deepEqual([first, second], before)
            assert.deepEqual(out.slice().sort(), [...first, ...second].sort())
            // Each family keeps its own relative order.
            assert.deepEqual(
              out.filter((x) => x.startsWith('a')),
              first,
            )
            assert.deepEqual(
              out.filter((x) => x.startsWith('b')),
              second,
            )
          },
        ),
        { numRuns: 200 },
      )
    })
  })

  describe('orderCandidates', () => {
    it('orders MX preference groups ascending, whatever the input order', () => {
      const input = [
        cand(v6(30), 'mx30.example', 30),
        cand(v4(10), 'mx10.example', 10),
        cand(v4(20), 'mx20.example', 20),
        cand(v6(10), 'mx10.example', 10),
        cand(v6(20), 'mx20.example', 20),
        cand(v4(30), 'mx30.example', 30),
      ]
      const out = orderCandidates(input, opts())
      assert.deepEqual(
        out.map((c) => c.preference),
        [10, 10, 20, 20, 30, 30],
      )
      assert.deepEqual(addresses(out), [v6(10), v4(10), v6(20), v4(20), v6(30), v4(30)])
    })

    it('preference 0 comes before any other preference', () => {
      const out = orderCandidates([cand(v4(1), 'b.example', 5), cand(v4(2), 'a.example', 0)], opts())
      assert.deepEqual(addresses(out), [v4(2), v4(1)])
    })

    it('with prefer ipv6 (the default) a group starts with IPv6 and alternates families', () => {
      const input = [
        cand(v4(1), 'mx.example', 10),
        cand(v4(2), 'mx.example', 10),
        cand(v6(1), 'mx.example', 10),
        cand(v6(2), 'mx.example', 10),
      ]
      assert.deepEqual(addresses(orderCandidates(input, opts())), [v6(1), v4(1), v6(2), v4(2)])
    })

    it('with prefer ipv4 a group starts with IPv4 and alternates families', () => {
      const input = [
        cand(v6(1), 'mx.example', 10),
        cand(v6(2), 'mx.example', 10),
        cand(v4(1), 'mx.example', 10),
        cand(v4(2), 'mx.example', 10),
      ]
      assert.deepEqual(addresses(orderCandidates(input, opts({ prefer: 'ipv4' }))), [
        v4(1),
        v6(1),
        v4(2),
        v6(2),
      ])
    })

    it('first_family_count 2 puts two preferred-family addresses first in every group', () => {
      const input = [
        ...[1, 2, 3].map((n) => cand(v6(n), 'mx1.example', 10)),
        ...[1, 2].map((n) => cand(v4(n), 'mx1.example', 10)),
        ...[4, 5, 6].map((n) => cand(v6(n), 'mx2.example', 20)),
        cand(v4(4), 'mx2.example', 20),
      ]
      assert.deepEqual(addresses(orderCandidates(input, opts({ firstFamilyCount: 2 }))), [
        v6(1),
        v6(2),
        v4(1),
        v6(3),
        v4(2),
        v6(4),
        v6(5),
        v4(4),
        v6(6),
      ])
    })

    it('a group with only one family keeps that family in its order', () => {
      const input = [cand(v4(1), 'mx.example', 10), cand(v4(2), 'mx.example', 10)]
      assert.deepEqual(addresses(orderCandidates(input, opts())), [v4(1), v4(2)])
    })

    it('an empty candidate list gives an empty order', () => {
      assert.deepEqual(orderCandidates([], opts()), [])
    })

    it('does not change the candidate list it is given', () => {
      const input = [cand(v4(1), 'b.example', 20), cand(v6(1), 'a.example', 10), cand(v4(1), 'a.example', 10)]
      const copy = structuredClone(input)
      orderCandidates(input, opts({ random: alwaysZero }))
      assert.deepEqual(input, copy)
    })

    describe('equal-preference hosts are shuffled only within their group', () => {
      const input = [
        ...['a', 'b', 'c'].flatMap((h, i) => [
          cand(v6(i + 1), `mx-${h}.example`, 10),
          cand(v4(i + 1), `mx-${h}.example`, 10),
        ]),
        ...['d', 'e'].flatMap((h, i) => [
          cand(v6(i + 11), `mx-${h}.example`, 20),
          cand(v4(i + 11), `mx-${h}.example`, 20),
        ]),
      ]
      const group10 = (list: Candidate[]): Candidate[] => list.filter((c) => c.preference === 10)

      it('two different random sources give two different host orders in a group', () => {
        const one = orderCandidates(input, opts({ random: keepOrder }))
        const two = orderCandidates(input, opts({ random: alwaysZero }))
        assert.deepEqual(hostsInOrder(group10(one)), ['mx-a.example', 'mx-b.example', 'mx-c.example'])
        assert.deepEqual(hostsInOrder(group10(two)), ['mx-b.example', 'mx-c.example', 'mx-a.example'])
      })

      it('no random source moves an address to another group', () => {
        for (const random of [keepOrder, alwaysZero, seeded(1), seeded(2), seeded(3)]) {
          const out = orderCandidates(input, opts({ random }))
          assert.deepEqual(
            out.map((c) => c.preference),
            [10, 10, 10, 10, 10, 10, 20, 20, 20, 20],
          )
          assert.deepEqual(addresses(out).sort(), addresses(input).sort())
        }
      })

      it('in a shuffled group each family follows the shuffled host order, families still alternating', () => {
        const out = orderCandidates(input, opts({ random: alwaysZero }))
        assert.deepEqual(addresses(group10(out)), [v6(2), v4(2), v6(3), v4(3), v6(1), v4(1)])
      })

      it('every order of three equal-preference hosts occurs', () => {
        const random = seeded(42)
        const seen = new Set()
        for (let i = 0; i < 200; i++) {
          seen.add(hostsInOrder(group10(orderCandidates(input, opts({ random })))).join(' '))
        }
        assert.equal(seen.size, 6, [...seen].join('\n'))
      })

      it('without a random source the order is still grouped by preference', () => {
        const out = orderCandidates(input, { prefer: 'ipv6', firstFamilyCount: 1, maxAddresses: 64 })
        assert.deepEqual(
          out.map((c) => c.preference),
          [10, 10, 10, 10, 10, 10, 20, 20, 20, 20],
        )
      })
    })

    describe('duplicates', () => {
      it('an address under two hosts is kept once, under the host with the lowest preference', () => {
        const input = [
          cand(v6(1), 'backup.example', 20),
          cand(v4(1), 'backup.example', 20),
          cand(v6(1), 'primary.example', 10),
        ]
        const out = orderCandidates(input, opts())
        assert.deepEqual(
          out.map((c) => [c.address, c.exchange, c.preference]),
          [
            [v6(1), 'primary.example', 10],
            [v4(1), 'backup.example', 20],
          ],
        )
      })

      it('an address listed twice by one host is kept once', () => {
        const input = [
          cand(v4(1), 'mx.example', 10),
          cand(v4(1), 'mx.example', 10),
          cand(v6(1), 'mx.example', 10),
        ]
        assert.deepEqual(addresses(orderCandidates(input, opts())), [v6(1), v4(1)])
      })

      it('an address under two hosts of equal preference is kept once, under the first host given', () => {
        const input = [cand(v4(1), 'mx1.example', 10), cand(v4(1), 'mx2.example', 10)]
        const out = orderCandidates(input, opts({ random: alwaysZero }))
        assert.equal(out.length, 1)
        assert.equal(out[0].exchange, 'mx1.example')
      })
    })

    describe('the cap on addresses', () => {
      it('20 IPv6 and 1 IPv4 capped at 4 keep 3 IPv6 and the IPv4', () => {
        const input = [
          ...Array.from({ length: 20 }, (_, i) => cand(v6(i + 1), 'mx1.example', 10)),
          cand(v4(1), 'mx2.example', 20),
        ]
        const out = orderCandidates(input, opts({ maxAddresses: 4 }))
        assert.deepEqual(addresses(out), [v6(1), v6(2), v6(3), v4(1)])
      })

      it('20 IPv4 and 1 IPv6 capped at 4 keep 3 IPv4 and the IPv6', () => {
        const input = [
          ...Array.from({ length: 20 }, (_, i) => cand(v4(i + 1), 'mx1.example', 10)),
          cand(v6(1), 'mx2.example', 20),
        ]
        const out = orderCandidates(input, opts({ maxAddresses: 4 }))
        assert.deepEqual(addresses(out), [v4(1), v4(2), v4(3), v6(1)])
      })

      it('the cap keeps the first addresses of the order when both families are already in', () => {
        const input = Array.from({ length: 10 }, (_, i) => cand(i % 2 ? v4(i) : v6(i), 'mx.example', 10))
        const out = orderCandidates(input, opts({ maxAddresses: 3 }))
        assert.deepEqual(addresses(out), [v6(0), v4(1), v6(2)])
      })

      it('a single-family list is cut at the cap', () => {
        const input = Array.from({ length: 10 }, (_, i) => cand(v6(i + 1), 'mx.example', 10))
        assert.equal(orderCandidates(input, opts({ maxAddresses: 4 })).length, 4)
      })

      it('a cap below 2 is raised to 2, so both families stay', () => {
        const input = [
          cand(v6(1), 'mx.example', 10),
          cand(v6(2), 'mx.example', 10),
          cand(v4(1), 'mx.example', 20),
        ]
        assert.deepEqual(addresses(orderCandidates(input, opts({ maxAddresses: 1 }))), [v6(1), v4(1)])
      })

      it('capKeepingFamilies returns a list within the cap unchanged', () => {
        const list = [cand(v6(1), 'mx.example', 10), cand(v4(1), 'mx.example', 10)]
        assert.deepEqual(capKeepingFamilies(list, 2), list)
        assert.deepEqual(capKeepingFamilies(list, 5), list)
      })

      it('capKeepingFamilies replaces the last kept address of the other family with the first missing one', () => {
        const list = [
          ...Array.from({ length: 20 }, (_, i) => cand(v6(i + 1), 'mx.example', 10)),
          cand(v4(1), 'mx.example', 10),
          cand(v4(2), 'mx.example', 10),
        ]
        assert.deepEqual(addresses(capKeepingFamilies(list, 4)), [v6(1), v6(2), v6(3), v4(1)])
      })
    })

    describe('health demotion', () => {
      const input = [
        cand(v6(1), 'mx1.example', 10),
        cand(v6(2), 'mx1.example', 10),
        cand(v4(1), 'mx1.example', 10),
        cand(v4(2), 'mx1.example', 10),
        cand(v6(3), 'mx2.example', 20),
        cand(v4(3), 'mx2.example', 20),
      ]

      it('without failures the order is the plain RFC 8305 order', () => {
        const out = orderCandidates(input, opts({ health: fakeHealth() }))
        assert.deepEqual(addresses(out), [v6(1), v4(1), v6(2), v4(2), v6(3), v4(3)])
      })

      it('a recently failed address goes to the back of its own group, not into the next group', () => {
        const out = orderCandidates(input, opts({ health: fakeHealth({ addresses: [v6(1)] }) }))
        assert.deepEqual(addresses(out), [v4(1), v6(2), v4(2), v6(1), v6(3), v4(3)])
      })

      it('a recently failed address is never dropped', () => {
        const all = addresses(input)
        const out = orderCandidates(input, opts({ health: fakeHealth({ addresses: all }) }))
        assert.deepEqual(addresses(out), [v6(1), v4(1), v6(2), v4(2), v6(3), v4(3)])
      })

      it('several failed addresses keep their relative order at the back of their group', () => {
        const out = orderCandidates(input, opts({ health: fakeHealth({ addresses: [v4(1), v6(1)] }) }))
        assert.deepEqual(addresses(out), [v6(2), v4(2), v6(1), v4(1), v6(3), v4(3)])
      })

      it('a slow address goes behind the healthy ones of its group but before the failed ones', () => {
        const health = fakeHealth({ addresses: [v4(1)], slow: [v6(1)] })
        const out = orderCandidates(input, opts({ health }))
        assert.deepEqual(addresses(out), [v6(2), v4(2), v6(1), v4(1), v6(3), v4(3)])
      })

      it('a family that was slow for every host of a group gives the lead to the other family', () => {
        const group = [
          cand(v6(1), 'mx1.example', 10),
          cand(v4(1), 'mx1.example', 10),
          cand(v6(2), 'mx2.example', 10),
          cand(v4(2), 'mx2.example', 10),
        ]
        const health = fakeHealth({ slowFamilies: ['mx1.example ipv6', 'mx2.example ipv6'] })
        assert.deepEqual(addresses(orderCandidates(group, opts({ health }))), [v4(1), v6(1), v4(2), v6(2)])
      })

      it('a family that failed for every host of a group makes that group lead with the other family', () => {
        const group = [
          cand(v6(1), 'mx1.example', 10),
          cand(v4(1), 'mx1.example', 10),
          cand(v6(2), 'mx2.example', 10),
          cand(v4(2), 'mx2.example', 10),
        ]
        const health = fakeHealth({ families: ['mx1.example ipv6', 'mx2.example ipv6'] })
        const out = orderCandidates(group, opts({ health }))
        assert.deepEqual(addresses(out), [v4(1), v6(1), v4(2), v6(2)])
      })

      it('a family that failed for only some hosts of a group leaves the preferred family leading', () => {
        const group = [
          cand(v6(1), 'mx1.example', 10),
          cand(v4(1), 'mx1.example', 10),
          cand(v6(2), 'mx2.example', 10),
          cand(v4(2), 'mx2.example', 10),
        ]
        const health = fakeHealth({ families: ['mx1.example ipv6'] })
        assert.deepEqual(addresses(orderCandidates(group, opts({ health }))), [v6(1), v4(1), v6(2), v4(2)])
      })

      it('a family failure for the hosts of one group does not change the lead of another group', () => {
        const health = fakeHealth({ families: ['mx1.example ipv6'] })
        const out = orderCandidates(input, opts({ health }))
        assert.deepEqual(addresses(out), [v4(1), v6(1), v4(2), v6(2), v6(3), v4(3)])
      })

      it('with both families failed for every host, the preferred family still leads', () => {
        const health = fakeHealth({
          families: ['mx1.example ipv6', 'mx1.example ipv4', 'mx2.example ipv6', 'mx2.example ipv4'],
        })
        assert.deepEqual(addresses(orderCandidates(input, opts({ health }))), [
          v6(1),
          v4(1),
          v6(2),
          v4(2),
          v6(3),
          v4(3),
        ])
        assert.deepEqual(addresses(orderCandidates(input, opts({ health, prefer: 'ipv4' }))), [
          v4(1),
          v6(1),
          v4(2),
          v6(2),
          v4(3),
          v6(3),
        ])
      })

      it('with prefer ipv4 and IPv4 failed for every host, IPv6 leads', () => {
        const health = fakeHealth({ families: ['mx1.example ipv4', 'mx2.example ipv4'] })
        assert.deepEqual(addresses(orderCandidates(input, opts({ health, prefer: 'ipv4' }))), [
          v6(1),
          v4(1),
          v6(2),
          v4(2),
          v6(3),
          v4(3),
        ])
      })

      it('a failed preferred family with no other family in the group keeps its order', () => {
        const group = [cand(v6(1), 'mx1.example', 10), cand(v6(2), 'mx1.example', 10)]
        const health = fakeHealth({ families: ['mx1.example ipv6'] })
        assert.deepEqual(addresses(orderCandidates(group, opts({ health }))), [v6(1), v6(2)])
      })

      it('a real HealthCache demotes the address and family it saw fail', () => {
        const t = 0
        const health = new HealthCache({ ttlMs: 60000, maxEntries: 100, perf: { now: () => t } })
        health.record(v6(1), 'ipv6', 'mx1.example', { ok: false, error: 'ETIMEDOUT', latencyMs: 250, at: 0 })
        health.record(v6(2), 'ipv6', 'mx1.example', { ok: false, error: 'ENETUNREACH', latencyMs: 1, at: 0 })
        const out = orderCandidates(input, opts({ health }))
        assert.deepEqual(addresses(out), [v4(1), v4(2), v6(1), v6(2), v6(3), v4(3)])
      })
    })

    describe('properties over arbitrary candidate lists', () => {
      const candidateArb = fc.record({
        n: fc.integer({ min: 1, max: 12 }),
        v: fc.boolean(),
        host: fc.constantFrom('mx1.example', 'mx2.example', 'mx3.example', 'mx4.example'),
        preference: fc.constantFrom(0, 5, 10, 20),
      })
      const toCandidates = (
        items: Array<{ n: number; v: boolean; host: string; preference: number }>,
      ): Candidate[] => items.map((i) => cand(i.v ? v6(i.n) : v4(i.n), i.host, i.preference))

      it('the order is grouped by preference, unique, capped, keeps both families, and every address comes from the input at its lowest preference', () => {
        fc.assert(
          fc.property(
            fc.array(candidateArb, { maxLength: 40 }),
            fc.integer({ min: 0, max: 20 }),
            fc.constantFrom('ipv4', 'ipv6'),
            fc.integer({ min: 1, max: 4 }),
            fc.integer(),
            (items, max, prefer, firstFamilyCount, seed) => {
              const input = toCandidates(items)
              const out = orderCandidates(input, {
                prefer,
                firstFamilyCount,
                maxAddresses: max,
                random: seeded(seed),
              })
              const prefs = out.map((c) => c.preference)
              assert.deepEqual(
                prefs,
                prefs.slice().sort((a, b) => a - b),
              )
              assert.equal(new Set(addresses(out)).size, out.length)
              assert.ok(out.length <= Math.max(2, max))
              const unique = new Set(addresses(input)).size
              assert.equal(out.length, Math.min(unique, Math.max(2, max)))
              for (const f of ['ipv4', 'ipv6']) {
                if (input.some((c) => c.family === f))
                  assert.ok(
                    out.some((c) => c.family === f),
                    f,
                  )
              }
              for (const c of out) {
                const best = Math.min(
                  ...input.filter((i) => i.address === c.address).map((i) => i.preference),
                )
                assert.equal(c.preference, best)
                assert.ok(input.some((i) => i.address === c.address && i.exchange === c.exchange))
              }
            },
          ),
          { numRuns: 300 },
        )
      })
    })
  })
})

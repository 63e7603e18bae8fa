import assert from 'node:assert/strict'

import {
  leadingFamilyOf,
  planAddresses,
  describePlan,
  describeKept,
  describeFiltered,
  type Plan,
  type PlanOptions,
} from '../lib/plan'
import { type Cidr, type FilterPolicy, parseCidr, DEFAULT_POLICY, type RangeName } from '../lib/classify'
import type { HealthView } from '../lib/health'
import type { MxHost } from '../lib/resolve'

const cidr = (text: string): Cidr => parseCidr(text) ?? assert.fail(`test CIDR ${text} parses`)

// The documentation ranges are re-permitted here so that every address in these tests is a
// documentation address (or a special one that must stay filtered).
const DOCS_ALLOWED: FilterPolicy = {
  allow: ['192.0.2.0/24', '198.51.100.0/24', '2001:db8::/32'].map(cidr),
  blockCidrs: [],
  blockRanges: new Set<RangeName>(),
}

const keepOrder = () => 0.999999

const opts = (extra: Partial<PlanOptions> = {}): PlanOptions => ({
  policy: DOCS_ALLOWED,
  prefer: 'ipv6',
  firstFamilyCount: 1,
  maxAddresses: 16,
  random: keepOrder,
  ...extra,
})

const host = (exchange: string, preference: number, addresses: string[], errors: string[] = []): MxHost => ({
  exchange,
  preference,
  addresses,
  errors,
})

const kept = (plan: Plan): Array<[string, string, string, number]> =>
  plan.kept.map((c) => [c.exchange, c.address, c.family, c.preference])

describe('plan', () => {
  describe('planAddresses', () => {
    const hosts = [
      host('mx2.example.com', 20, ['2001:db8::2', '198.51.100.2', '::ffff:127.0.0.1'], ['A ETIMEOUT']),
      host('mx1.example.com', 10, ['2001:db8::1', 'FE80::1%eth0', '192.0.2.1', '10.0.0.1', '0.0.0.0']),
    ]

    it('keeps the routable addresses, ordered by preference then family', () => {
      const plan = planAddresses('example.com', hosts, opts())
      assert.equal(plan.domain, 'example.com')
      assert.deepEqual(kept(plan), [
        ['mx1.example.com', '2001:db8::1', 'ipv6', 10],
        ['mx1.example.com', '192.0.2.1', 'ipv4', 10],
        ['mx2.example.com', '2001:db8::2', 'ipv6', 20],
        ['mx2.example.com', '198.51.100.2', 'ipv4', 20],
      ])
    })

    it('records each filtered address with its MX host, its normalized text and the reason', () => {
      const plan = planAddresses('example.com', hosts, opts())
      assert.deepEqual(plan.filtered, [
        { exchange: 'mx2.example.com', address: '::ffff:127.0.0.1', reason: 'loopback, IPv4-mapped' },
        { exchange: 'mx1.example.com', address: 'fe80::1', reason: 'link-local' },
        { exchange: 'mx1.example.com', address: '10.0.0.1', reason: 'private' },
        { exchange: 'mx1.example.com', address: '0.0.0.0', reason: 'unspecified' },
      ])
    })

    it('keeps per-host DNS errors, prefixed with the MX host', () => {
      const plan = planAddresses('example.com', hosts, opts())
      assert.deepEqual(plan.dnsErrors, ['mx2.example.com A ETIMEOUT'])
    })

    it('with the default policy the documentation addresses are filtered too', () => {
      const plan = planAddresses('example.com', hosts, opts({ policy: DEFAULT_POLICY }))
      assert.deepEqual(plan.kept, [])
      assert.equal(plan.filtered.length, 8)
      assert.deepEqual(
        plan.filtered.filter((f) => f.reason === 'documentation').map((f) => f.address),
        ['2001:db8::2', '198.51.100.2', '2001:db8::1', '192.0.2.1'],
      )
    })

    it('an IPv4-mapped address is planned as the IPv4 it carries', () => {
      const plan = planAddresses('example.com', [host('mx.example.com', 10, ['::ffff:192.0.2.7'])], opts())
      assert.deepEqual(kept(plan), [['mx.example.com', '192.0.2.7', 'ipv4', 10]])
    })

    it('two notations of one address are planned once, in canonical text', () => {
      const plan = planAddresses(
        'example.com',
        [host('mx.example.com', 10, ['2001:DB8:0:0::1', '2001:db8::1', '[2001:db8::1]'])],
        opts(),
      )
      assert.deepEqual(kept(plan), [['mx.example.com', '2001:db8::1', 'ipv6', 10]])
    })

    it('text that is no address is filtered under its own text', () => {
      const plan = planAddresses('example.com', [host('mx.example.com', 10, ['1.2.3', 'not-an-ip'])], opts())
      assert.deepEqual(plan.filtered, [
        { exchange: 'mx.example.com', address: '1.2.3', reason: 'not an IP address' },
        { exchange: 'mx.example.com', address: 'not-an-ip', reason: 'not an IP address' },
      ])
    })

    it('a block entry filters an otherwise kept address and names itself as the reason', () => {
      const policy = { ...DOCS_ALLOWED, blockCidrs: [cidr('192.0.2.0/24')] }
      const plan = planAddresses('example.com', hosts, opts({ policy }))
      assert.deepEqual(plan.filtered[2], {
        exchange: 'mx1.example.com',
        address: '192.0.2.1',
        reason: 'blocked by 192.0.2.0/24',
      })
      assert.ok(!plan.kept.some((c) => c.address === '192.0.2.1'))
    })

    it('passes prefer, the cap, the random source and health on to the ordering', () => {
      const many = [host('mx1.example.com', 10, ['2001:db8::1', '2001:db8::2', '2001:db8::3', '192.0.2.1'])]
      const health: HealthView = { addressFailed: (a) => a === '192.0.2.1', familyFailed: () => false }
      const plan = planAddresses('example.com', many, opts({ prefer: 'ipv4', maxAddresses: 2, health }))
      // prefer ipv4 leads with 192.0.2.1, health sends it to the back, the cap keeps both families.
      assert.deepEqual(
        plan.kept.map((c) => c.address),
        ['2001:db8::1', '192.0.2.1'],
      )
    })

    it('no hosts give an empty plan', () => {
      assert.deepEqual(planAddresses('example.com', [], opts()), {
        domain: 'example.com',
        kept: [],
        filtered: [],
        dnsErrors: [],
      })
    })

    it('a host without addresses contributes only its DNS errors', () => {
      const plan = planAddresses(
        'example.com',
        [host('mx.example.com', 10, [], ['AAAA ESERVFAIL', 'A ETIMEOUT'])],
        opts(),
      )
      assert.deepEqual(plan.kept, [])
      assert.deepEqual(plan.dnsErrors, ['mx.example.com AAAA ESERVFAIL', 'mx.example.com A ETIMEOUT'])
    })
  })

  describe('describePlan', () => {
    const hosts = [
      host('mx1.example.com', 10, ['2001:db8::1', '192.0.2.1', 'fe80::1', '127.0.0.1']),
      host('mx2.example.com', 20, ['198.51.100.2', '::'], ['AAAA ESERVFAIL']),
    ]
    const plan = planAddresses('example.com', hosts, opts())

    it('is one line with the kept order, each filtered address with its reason, and the DNS errors', () => {
      assert.equal(
        describePlan(plan),
        'plan for example.com: try mx1.example.com [2001:db8::1], mx1.example.com 192.0.2.1, ' +
          'mx2.example.com 198.51.100.2; filtered fe80::1 of mx1.example.com: link-local; ' +
          '127.0.0.1 of mx1.example.com: loopback; :: of mx2.example.com: unspecified; ' +
          'dns errors mx2.example.com AAAA ESERVFAIL',
      )
      assert.doesNotMatch(describePlan(plan), /\n/)
    })

    it('mentions every filtered address and its reason', () => {
      const line = describePlan(plan)
      for (const f of plan.filtered)
        assert.ok(line.includes(`${f.address} of ${f.exchange}: ${f.reason}`), f.address)
    })

    it('lists the kept addresses in the order they will be tried, IPv6 in brackets', () => {
      assert.equal(
        describeKept(plan),
        'mx1.example.com [2001:db8::1], mx1.example.com 192.0.2.1, mx2.example.com 198.51.100.2',
      )
    })

    it('describeFiltered joins the filtered addresses with semicolons', () => {
      assert.equal(
        describeFiltered(plan),
        'fe80::1 of mx1.example.com: link-local; 127.0.0.1 of mx1.example.com: loopback; ' +
          ':: of mx2.example.com: unspecified',
      )
    })

    it('says "try none" when every address was filtered', () => {
      const none = planAddresses('example.com', [host('mx.example.com', 10, ['fe80::1'])], opts())
      assert.equal(
        describePlan(none),
        'plan for example.com: try none; filtered fe80::1 of mx.example.com: link-local',
      )
    })

    it('leaves out the filtered and dns errors parts when there are none', () => {
      const clean = planAddresses('example.com', [host('mx.example.com', 10, ['192.0.2.1'])], opts())
      assert.equal(describePlan(clean), 'plan for example.com: try mx.example.com 192.0.2.1')
      assert.equal(describeFiltered(clean), '')
    })
  })
})

describe('leadingFamilyOf: the family worth a Resolution Delay', () => {
  const NO_RULES = { ipv4Only: [], ipv6Only: [], preferIpv4: [], preferIpv6: [] }
  const refusing = {
    ipv6Refused: (x: string) => (x === 'mx.test' ? { refusal: '550 5.7.25', until: 1 } : undefined),
  }

  it('is prefer when nothing says otherwise', () => {
    assert.equal(leadingFamilyOf('d.test', ['mx.test'], 10, opts()), 'ipv6')
    assert.equal(leadingFamilyOf('d.test', ['mx.test'], 10, opts({ prefer: 'ipv4' })), 'ipv4')
  })

  it('follows a family rule, a sender-policy refusal and the health of the family', () => {
    const rule = { ...NO_RULES, preferIpv4: ['mx.test'] }
    assert.equal(leadingFamilyOf('d.test', ['mx.test'], 10, opts({ family: rule })), 'ipv4')
    const only = { ...NO_RULES, ipv6Only: ['d.test'] }
    assert.equal(leadingFamilyOf('d.test', ['mx.test'], 10, opts({ prefer: 'ipv4', family: only })), 'ipv6')
    assert.equal(leadingFamilyOf('d.test', ['mx.test'], 10, opts({ senderPolicy: refusing })), 'ipv4')
    const health: HealthView = { addressFailed: () => false, familyFailed: (_x, f) => f === 'ipv6' }
    assert.equal(leadingFamilyOf('d.test', ['mx.test'], 10, opts({ health })), 'ipv4')
  })
})

describe('planAddresses while the A of a host is pending', () => {
  const refusing = {
    ipv6Refused: (x: string) => (x === 'mx.test' ? { refusal: '550 5.7.25', until: 1 } : undefined),
  }

  it('keeps out the IPv6 of a host refused over IPv6 until its IPv4 is known', () => {
    const hosts = [host('mx.test', 10, ['2001:db8::1'])]
    const waiting = planAddresses(
      'd.test',
      hosts,
      opts({ senderPolicy: refusing, ipv4Pending: new Set(['mx.test']) }),
    )
    assert.deepEqual(waiting.kept, [])
    assert.match(waiting.filtered[0].reason, /^IPv6 refused by policy/)
    // No A after all: its IPv6 is all it has, and is kept, as before.
    const known = planAddresses('d.test', hosts, opts({ senderPolicy: refusing }))
    assert.deepEqual(
      known.kept.map((c) => c.address),
      ['2001:db8::1'],
    )
  })
})

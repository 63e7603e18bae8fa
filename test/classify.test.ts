// Addresses here are test data only: strings that are classified, never connected to. Special
// ranges use documentation or range-example addresses; the few global ones (needed to show
// what passes) are the well-known public resolvers.

import assert from 'node:assert/strict'

import {
  ADDRESS_CACHE_MAX,
  addressCacheSize,
  classifyAddress,
  clearAddressCache,
  type Cidr,
  type FilterPolicy,
  normalizeAddressText,
  parseCidr,
  RANGE_NAMES,
  RANGE_ALIASES,
  rangeNamed,
  DEFAULT_POLICY,
  type RangeName,
} from '../lib/classify'
import ipaddr from 'ipaddr.js'

import { classify, type ClassificationView } from './support/classification'

const GLOBAL_V4 = '8.8.8.8'
const GLOBAL_V6 = '2001:4860:4860::8888'

// A block entry with '.' or ':' is a CIDR, any other a range name.
type BlockEntry = RangeName | `${string}.${string}` | `${string}:${string}`

function policy({ allow = [], block = [] }: { allow?: string[]; block?: BlockEntry[] } = {}): FilterPolicy {
  const cidr = (t: string): Cidr => {
    const c = parseCidr(t)
    assert.ok(c, `test policy CIDR ${t} parses`)
    return c
  }
  const blockCidrs: Cidr[] = []
  const blockRanges = new Set<RangeName>()
  for (const b of block) {
    if (b.includes('.') || b.includes(':')) blockCidrs.push(cidr(b))
    else blockRanges.add(b as RangeName)
  }
  return { allow: allow.map(cidr), blockCidrs, blockRanges }
}

function filtered(text: string, pol?: FilterPolicy): ClassificationView {
  const c = classify(text, pol)
  assert.equal(c.routable, false, `${text} should be filtered, got ${JSON.stringify(c)}`)
  return c
}

function routable(text: string, pol?: FilterPolicy): ClassificationView {
  const c = classify(text, pol)
  assert.equal(c.routable, true, `${text} should be routable, got ${JSON.stringify(c)}`)
  return c
}

/** One range of ipaddr.js: network and prefix length. */
type IpaddrRange = [ipaddr.IPv4 | ipaddr.IPv6, number]
type IpaddrTable = Record<string, IpaddrRange | IpaddrRange[]>

// ipaddr.js keeps its range tables on the class prototypes, which its types do not declare.
const specialRanges = (ip: typeof ipaddr.IPv4 | typeof ipaddr.IPv6): IpaddrTable =>
  (ip.prototype as unknown as { SpecialRanges: IpaddrTable }).SpecialRanges

describe('classify', () => {
  describe('every named special range is filtered with its name as the reason', () => {
    // [address, reason]: every range of SPECIAL_RANGES, the IPv4-only ones also in their
    // IPv4-mapped and NAT64 forms.
    const table = [
      ['0.0.0.0', 'unspecified'],
      ['0.1.2.3', 'unspecified'],
      ['::', 'unspecified'],
      ['127.0.0.1', 'loopback'],
      ['127.255.255.254', 'loopback'],
      ['::1', 'loopback'],
      ['::ffff:127.0.0.1', 'loopback, IPv4-mapped'],
      ['64:ff9b::7f00:1', 'loopback, via NAT64'],
      ['255.255.255.255', 'broadcast'],
      ['::ffff:255.255.255.255', 'broadcast, IPv4-mapped'],
      ['64:ff9b::ffff:ffff', 'broadcast, via NAT64'],
      ['10.0.0.1', 'private'],
      ['10.255.255.255', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.254', 'private'],
      ['192.168.0.1', 'private'],
      ['::ffff:10.1.2.3', 'private, IPv4-mapped'],
      ['::ffff:172.16.5.4', 'private, IPv4-mapped'],
      ['::ffff:192.168.1.1', 'private, IPv4-mapped'],
      ['64:ff9b::a00:1', 'private, via NAT64'],
      ['100.64.0.1', 'cgn'],
      ['100.127.255.254', 'cgn'],
      ['::ffff:100.64.0.1', 'cgn, IPv4-mapped'],
      ['64:ff9b::6440:1', 'cgn, via NAT64'],
      ['169.254.0.1', 'link-local'],
      ['fe80::1', 'link-local'],
      ['febf:ffff::1', 'link-local'],
      ['::ffff:169.254.1.1', 'link-local, IPv4-mapped'],
      ['192.0.2.1', 'documentation'],
      ['198.51.100.1', 'documentation'],
      ['203.0.113.1', 'documentation'],
      ['2001:db8::1', 'documentation'],
      ['3fff::1', 'documentation'],
      ['3fff:fff:ffff::1', 'documentation'],
      ['::ffff:192.0.2.1', 'documentation, IPv4-mapped'],
      ['64:ff9b::c000:221', 'documentation, via NAT64'],
      ['198.18.0.1', 'benchmarking'],
      ['198.19.255.254', 'benchmarking'],
      ['2001:2::1', 'benchmarking'],
      ['192.88.99.1', '6to4'],
      ['2002::1', '6to4'],
      ['2002:c000:201::1', '6to4'],
      ['192.0.0.1', 'ietf-protocol'],
      ['192.0.0.8', 'ietf-protocol'],
      ['224.0.0.1', 'multicast'],
      ['239.255.255.255', 'multicast'],
      ['ff02::1', 'multicast'],
      ['ff0e::101', 'multicast'],
      ['::ffff:224.0.0.251', 'multicast, IPv4-mapped'],
      ['240.0.0.1', 'reserved'],
      ['254.255.255.255', 'reserved'],
      ['4000::1', 'reserved'],
      ['5f00::1', 'reserved'],
      ['e000::1', 'reserved'],
      ['::ffff:0:192.0.2.1', 'ipv4-translated'],
      ['::ffff:0:c000:201', 'ipv4-translated'],
      ['::2', 'ipv4-compatible'],
      ['::c000:201', 'ipv4-compatible'],
      ['64:ff9b:1::1', 'nat64-local'],
      ['100::1', 'discard'],
      ['2001::1', 'teredo'],
      ['2001:0:4136:e378::1', 'teredo'],
      ['2001:10::1', 'orchid'],
      ['2001:20::1', 'orchid'],
      ['fc00::1', 'unique-local'],
      ['fd12:3456:789a::1', 'unique-local'],
      ['fec0::1', 'site-local'],
      ['192.31.196.1', 'as112'],
      ['192.175.48.1', 'as112'],
      ['2001:4:112::1', 'as112'],
      ['2620:4f:8000::1', 'as112'],
      ['192.52.193.1', 'amt'],
      ['2001:3::1', 'amt'],
      ['2001:30::1', 'drone-remote-id'],
      ['2001:1::1', 'reserved'],
      ['2001:1ff::1', 'reserved'],
    ]
    for (const [address, reason] of table) {
      it(`${address} is filtered as ${reason}`, () => {
        const c = filtered(address)
        assert.equal(c.reason, reason)
        assert.equal(c.input, address)
      })
    }
  })

  describe('global unicast passes', () => {
    const table = [
      [GLOBAL_V4, GLOBAL_V4, 'ipv4'],
      ['8.8.4.4', '8.8.4.4', 'ipv4'],
      [GLOBAL_V6, GLOBAL_V6, 'ipv6'],
      ['2001:4860:4860:0:0:0:0:8888', GLOBAL_V6, 'ipv6'],
      ['2001:4860:4860:0000:0000:0000:0000:8888', GLOBAL_V6, 'ipv6'],
    ]
    for (const [input, address, family] of table) {
      it(`${input} is routable ${family}, to be connected to as ${address}`, () => {
        const c = routable(input)
        assert.equal(c.address, address)
        assert.equal(c.family, family)
        assert.equal(c.allowedBy, undefined)
      })
    }

    it('the default policy argument is DEFAULT_POLICY, which permits nothing special', () => {
      assert.deepEqual(classify('10.0.0.1'), classify('10.0.0.1', DEFAULT_POLICY))
      assert.deepEqual(DEFAULT_POLICY.allow, [])
      assert.deepEqual(DEFAULT_POLICY.blockCidrs, [])
      assert.equal(DEFAULT_POLICY.blockRanges.size, 0)
    })
  })

  describe('any notation of an address classifies the same', () => {
    it('a link-local address with zero groups spelled out (fe80:0:0::1) is link-local', () => {
      const c = filtered('fe80:0:0::1')
      assert.equal(c.reason, 'link-local')
    })

    it('an upper-case link-local address with a zone id (FE80::1%eth0) is link-local, input lower-cased without the zone', () => {
      const c = filtered('FE80::1%eth0')
      assert.equal(c.reason, 'link-local')
      assert.equal(c.input, 'fe80::1')
    })

    it('a bracketed link-local address ([fe80::1]) is link-local, input without brackets', () => {
      const c = filtered('[fe80::1]')
      assert.equal(c.reason, 'link-local')
      assert.equal(c.input, 'fe80::1')
    })

    it('an IPv4-mapped loopback is judged as loopback, not IPv6 unicast', () => {
      for (const text of ['::ffff:127.0.0.1', '0:0:0:0:0:ffff:7f00:1', '::ffff:7f00:2', '::FFFF:127.0.0.2']) {
        const c = filtered(text)
        assert.equal(c.reason, 'loopback, IPv4-mapped', text)
      }
    })

    it('a bracketed IPv4-mapped loopback is still loopback', () => {
      assert.equal(filtered('[::ffff:127.0.0.1]').reason, 'loopback, IPv4-mapped')
    })

    it('the NAT64 form of a documentation IPv4 (64:ff9b::c000:221 = 192.0.2.33) is filtered as documentation via NAT64', () => {
      assert.equal(filtered('64:ff9b::c000:221').reason, 'documentation, via NAT64')
      assert.equal(filtered('64:ff9b::192.0.2.33').reason, 'documentation, via NAT64')
    })

    it('the NAT64 form of a global IPv4 (64:ff9b::808:808) is routable and kept as IPv6', () => {
      const c = routable('64:ff9b::808:808')
      assert.equal(c.family, 'ipv6')
      assert.equal(c.address, '64:ff9b::808:808')
    })

    it('a NAT64 address in dotted or upper-case notation is connected to in its canonical IPv6 text', () => {
      for (const text of ['64:ff9b::8.8.8.8', '64:FF9B::808:808', '0064:ff9b:0:0:0:0:0808:0808']) {
        const c = routable(text)
        assert.equal(c.family, 'ipv6', text)
        assert.equal(c.address, '64:ff9b::808:808', text)
      }
    })

    it('an IPv4-mapped global address is routable as the IPv4 it carries', () => {
      const c = routable('::ffff:8.8.8.8')
      assert.equal(c.family, 'ipv4')
      assert.equal(c.address, '8.8.8.8')
      assert.equal(c.input, '::ffff:8.8.8.8')
    })

    it('an IPv4-mapped global address in hex notation is routable as the same IPv4', () => {
      const c = routable('::ffff:808:808')
      assert.equal(c.family, 'ipv4')
      assert.equal(c.address, '8.8.8.8')
    })

    it('an upper-case global IPv6 address is routable and connected to in lower case', () => {
      const c = routable('2001:4860:4860::8888'.toUpperCase())
      assert.equal(c.address, GLOBAL_V6)
      assert.equal(c.input, GLOBAL_V6)
    })

    it('upper-case special addresses keep their range (2001:DB8::1 is documentation, FC00::1 unique-local)', () => {
      assert.equal(filtered('2001:DB8::1').reason, 'documentation')
      assert.equal(filtered('FC00::1').reason, 'unique-local')
      assert.equal(filtered('FF02::1').reason, 'multicast')
    })

    it('surrounding white space is ignored', () => {
      const c = routable(' 8.8.8.8 ')
      assert.equal(c.address, '8.8.8.8')
      assert.equal(filtered('\t2001:db8::1\n').reason, 'documentation')
    })

    // ipaddr.js parses `::a.b.c.d` as `::ffff:a.b.c.d`, while the same 128 bits written in
    // hex are in ::/96 (IPv4-compatible), which the module filters. c-ares prints an AAAA
    // answer in ::/96 in the dotted form, so the dotted form is what a DNS answer looks like.
    it('an IPv4-compatible address (::/96) is filtered as ipv4-compatible in every notation', () => {
      for (const text of ['::808:808', '0:0:0:0:0:0:808:808', '0:0:0:0:0:0:8.8.8.8', '::8.8.8.8']) {
        const c = classify(text)
        assert.deepEqual(
          { routable: c.routable, reason: c.reason },
          { routable: false, reason: 'ipv4-compatible' },
          `${text} classified as ${JSON.stringify(c)}`,
        )
      }
    })
  })

  describe('unspecified addresses are never connected to', () => {
    it('0.0.0.0 is unspecified', () => assert.equal(filtered('0.0.0.0').reason, 'unspecified'))
    it(':: is unspecified', () => assert.equal(filtered('::').reason, 'unspecified'))
    it('0:0:0:0:0:0:0:0 is unspecified', () =>
      assert.equal(filtered('0:0:0:0:0:0:0:0').reason, 'unspecified'))
    it('0.1.2.3 (this network, 0.0.0.0/8) is unspecified', () =>
      assert.equal(filtered('0.1.2.3').reason, 'unspecified'))
    it('::ffff:0.0.0.0 is unspecified, IPv4-mapped', () =>
      assert.equal(filtered('::ffff:0.0.0.0').reason, 'unspecified, IPv4-mapped'))
    it('64:ff9b:: (NAT64 of 0.0.0.0) is unspecified via NAT64', () =>
      assert.equal(filtered('64:ff9b::').reason, 'unspecified, via NAT64'))

    const allowEverything = policy({
      allow: ['0.0.0.0/0', '::/0', '0.0.0.0/8', '0.0.0.0', '::', '::ffff:0:0/96'],
    })
    for (const text of ['0.0.0.0', '::', '::ffff:0.0.0.0', '0.1.2.3', '[::]', '0:0::0']) {
      it(`allow can never re-permit ${text}, even with allow 0.0.0.0/0 and ::/0`, () => {
        const c = filtered(text, allowEverything)
        assert.match(c.reason!, /^unspecified/)
        assert.equal(c.allowedBy, undefined)
      })
    }
  })

  describe('text that is no IP address', () => {
    const table = [
      'not-an-ip',
      '1.2.3',
      '',
      '   ',
      '256.1.1.1',
      '1.2.3.4.5',
      '010.0.0.1',
      '2001:db8::1::1',
      '2001:db8::g',
      '[2001:db8::1]:25',
      '192.0.2.1:25',
      'mx.example.com',
      '::ffff:1.2.3',
      '[fe80::1',
    ]
    for (const text of table) {
      it(`${JSON.stringify(text)} is filtered as not an IP address, the input kept as given`, () => {
        const c = filtered(text)
        assert.equal(c.reason, 'not an IP address')
        assert.equal(c.input, text)
      })
    }

    it('non-string input is not an IP address and does not throw', () => {
      for (const v of [undefined, null, 42, {}, []]) {
        // Not what the type allows: what a caller outside TypeScript could still hand over.
        const c = classify(v as string)
        assert.equal(c.routable, false)
        assert.equal(c.reason, 'not an IP address')
      }
    })

    it('1.2.3 is not valid even with an allow list that covers everything', () => {
      const c = filtered('1.2.3', policy({ allow: ['0.0.0.0/0', '::/0'] }))
      assert.equal(c.reason, 'not an IP address')
    })
  })

  describe('normalizeAddressText', () => {
    const table = [
      ['FE80::1%eth0', 'fe80::1'],
      ['[fe80::1]', 'fe80::1'],
      ['[FE80::1%25eth0]', 'fe80::1'],
      [' 192.0.2.1 ', '192.0.2.1'],
      ['2001:DB8::1', '2001:db8::1'],
      ['1.2.3', ''],
      ['not-an-ip', ''],
      ['', ''],
    ]
    for (const [text, out] of table) {
      it(`${JSON.stringify(text)} normalizes to ${JSON.stringify(out)}`, () => {
        assert.equal(normalizeAddressText(text), out)
      })
    }
  })

  describe('allow re-permits special ranges', () => {
    const table = [
      ['10.1.2.3', '10.0.0.0/8', '10.1.2.3', 'ipv4'],
      ['192.168.7.8', '192.168.0.0/16', '192.168.7.8', 'ipv4'],
      ['127.0.0.2', '127.0.0.0/8', '127.0.0.2', 'ipv4'],
      ['::1', '::1', '::1', 'ipv6'],
      ['::1', '::1/128', '::1', 'ipv6'],
      ['::ffff:127.0.0.2', '127.0.0.0/8', '127.0.0.2', 'ipv4'],
      ['::ffff:127.0.0.2', '::ffff:127.0.0.0/104', '127.0.0.2', 'ipv4'],
      ['fd00:1::25', 'fd00:1::/64', 'fd00:1::25', 'ipv6'],
      ['FD00:1::25', 'fd00::/8', 'fd00:1::25', 'ipv6'],
      ['100.64.1.1', '100.64.0.0/10', '100.64.1.1', 'ipv4'],
      ['fe80::1%eth0', 'fe80::/10', 'fe80::1', 'ipv6'],
    ]
    for (const [input, allow, address, family] of table) {
      it(`allow ${allow} re-permits ${input}, connected to as ${family} ${address}, reporting allowedBy`, () => {
        const c = routable(input, policy({ allow: [allow] }))
        assert.equal(c.address, address)
        assert.equal(c.family, family)
        assert.equal(c.allowedBy, allow.toLowerCase())
      })
    }

    it('an allow entry that does not cover the address re-permits nothing', () => {
      const c = filtered('10.2.0.1', policy({ allow: ['10.1.0.0/16', 'fd00::/8'] }))
      assert.equal(c.reason, 'private')
    })

    it('an IPv4 allow entry does not re-permit an IPv6 special address and vice versa', () => {
      assert.equal(filtered('fd00::1', policy({ allow: ['10.0.0.0/8'] })).reason, 'unique-local')
      assert.equal(filtered('10.0.0.1', policy({ allow: ['fd00::/8'] })).reason, 'private')
    })

    it('the first matching allow entry is reported as allowedBy', () => {
      const c = routable('10.1.2.3', policy({ allow: ['fd00::/8', '10.1.0.0/16', '10.0.0.0/8'] }))
      assert.equal(c.allowedBy, '10.1.0.0/16')
    })

    it('a global address passes without allowedBy even when an allow entry covers it', () => {
      const c = routable(GLOBAL_V4, policy({ allow: ['8.8.8.0/24'] }))
      assert.equal(c.allowedBy, undefined)
    })
  })

  describe('block drops addresses, and wins over allow', () => {
    it('a block CIDR drops a global IPv4 address', () => {
      assert.equal(filtered(GLOBAL_V4, policy({ block: ['8.8.8.0/24'] })).reason, 'blocked by 8.8.8.0/24')
    })

    it('a block CIDR drops a global IPv6 address', () => {
      const c = filtered(GLOBAL_V6, policy({ block: ['2001:4860::/32'] }))
      assert.equal(c.reason, 'blocked by 2001:4860::/32')
    })

    it('an IPv4 block CIDR drops the IPv4-mapped and NAT64 forms of a covered address', () => {
      const pol = policy({ block: ['8.8.8.0/24'] })
      assert.equal(filtered('::ffff:8.8.8.8', pol).reason, 'blocked by 8.8.8.0/24, IPv4-mapped')
      assert.equal(filtered('64:ff9b::808:808', pol).reason, 'blocked by 8.8.8.0/24, via NAT64')
    })

    it('the form name nat64 drops a routable NAT64 address, and nothing else', () => {
      const pol = policy({ block: ['nat64'] })
      assert.equal(filtered('64:ff9b::808:808', pol).reason, 'blocked by nat64, via NAT64')
      routable(GLOBAL_V4, pol)
      routable(GLOBAL_V6, pol)
      routable('::ffff:8.8.8.8', pol)
    })

    it('the form name nat64 also drops an allowed address of the local-use NAT64 prefix', () => {
      const c = filtered('64:ff9b:1::1', policy({ allow: ['64:ff9b:1::/48'], block: ['nat64'] }))
      assert.equal(c.reason, 'blocked by nat64')
    })

    it('the form name ipv4-mapped drops a routable IPv4-mapped address, not the IPv4 itself', () => {
      const pol = policy({ block: ['ipv4-mapped'] })
      assert.equal(filtered('::ffff:8.8.8.8', pol).reason, 'blocked by ipv4-mapped, IPv4-mapped')
      routable(GLOBAL_V4, pol)
      routable('64:ff9b::808:808', pol)
    })

    it('the range name of an address is tried before its form name', () => {
      const c = filtered(
        '::ffff:10.0.0.1',
        policy({ allow: ['10.0.0.0/8'], block: ['ipv4-mapped', 'private'] }),
      )
      assert.equal(c.reason, 'blocked by private, IPv4-mapped')
    })

    it('a block CIDR wins over an allow entry for the same address', () => {
      const c = filtered('10.1.2.3', policy({ allow: ['10.0.0.0/8'], block: ['10.1.0.0/16'] }))
      assert.equal(c.reason, 'blocked by 10.1.0.0/16')
    })

    it('a block range name of the module (private) wins over an allow entry', () => {
      const c = filtered('10.1.2.3', policy({ allow: ['10.0.0.0/8'], block: ['private'] }))
      assert.equal(c.reason, 'blocked by private')
    })

    it('an IPv6 block range name (unique-local) wins over an allow entry', () => {
      const c = filtered('fd00::1', policy({ allow: ['fd00::/8'], block: ['unique-local'] }))
      assert.equal(c.reason, 'blocked by unique-local')
    })

    it('a block range name leaves addresses outside the range alone', () => {
      const pol = policy({ block: ['link-local', 'teredo'] })
      routable(GLOBAL_V4, pol)
      routable(GLOBAL_V6, pol)
      assert.equal(filtered('169.254.1.1', pol).reason, 'blocked by link-local')
      assert.equal(filtered('2001::1', pol).reason, 'blocked by teredo')
    })

    it('block does not change the reason for the unspecified addresses', () => {
      const c = filtered('0.0.0.0', policy({ block: ['0.0.0.0/8', 'unspecified'] }))
      assert.equal(c.reason, 'unspecified')
    })
  })

  describe('parseCidr', () => {
    const accepted: Array<[string, string, number]> = [
      ['10.0.0.0/8', '10.0.0.0/8', 8],
      ['192.0.2.0/24', '192.0.2.0/24', 24],
      ['192.0.2.1/32', '192.0.2.1/32', 32],
      ['0.0.0.0/0', '0.0.0.0/0', 0],
      ['2001:db8::/32', '2001:db8::/32', 32],
      ['2001:DB8::/32', '2001:db8::/32', 32],
      ['::/0', '::/0', 0],
      ['::1/128', '::1/128', 128],
      // a mapped CIDR names IPv4 addresses: it becomes the IPv4 range it maps
      ['::ffff:10.0.0.0/104', '::ffff:10.0.0.0/104', 8],
      [' 10.0.0.0/8 ', '10.0.0.0/8', 8],
      ['192.0.2.7', '192.0.2.7', 32],
      ['2001:db8::7', '2001:db8::7', 128],
    ]
    for (const [text, canonical, bits] of accepted) {
      it(`accepts ${JSON.stringify(text)} as ${canonical} with prefix length ${bits}`, () => {
        const c = parseCidr(text)
        assert.ok(c)
        assert.equal(c.text, canonical)
        assert.equal(c.range[1], bits)
      })
    }

    const rejected = [
      '10.0.0.0/33',
      '192.0.2.0/99',
      '::/129',
      '2001:db8::/200',
      'abc/8',
      '10.0.0.0/x',
      '10.0.0.0/',
      '10.0.0.0/-1',
      '10.0.0.0/ 8',
      '10.0.0.0/8/8',
      '10.0.0.0/1000',
      '1.2.3/8',
      '1.2.3',
      '[::1]/128',
      '',
      '/8',
      'private',
    ]
    for (const text of rejected) {
      it(`rejects ${JSON.stringify(text)}`, () => {
        assert.equal(parseCidr(text), null)
      })
    }

    it('a parsed CIDR matches the addresses it covers and no others', () => {
      const pol = policy({ allow: ['10.1.0.0/16'] })
      assert.equal(routable('10.1.255.255', pol).allowedBy, '10.1.0.0/16')
      assert.equal(filtered('10.2.0.0', pol).reason, 'private')
    })
  })

  describe('range names: ours in kebab case, ipaddr.js names as aliases', () => {
    const ours = [
      'unspecified',
      'loopback',
      'broadcast',
      'private',
      'cgn',
      'link-local',
      'documentation',
      'benchmarking',
      '6to4',
      'ietf-protocol',
      'multicast',
      'reserved',
      'ipv4-translated',
      'ipv4-compatible',
      'nat64-local',
      'discard',
      'teredo',
      'orchid',
      'unique-local',
      'site-local',
      'as112',
      'amt',
      'drone-remote-id',
      'ipv4-mapped',
      'nat64',
    ]
    it("RANGE_NAMES holds exactly the module's names", () => {
      assert.deepEqual([...RANGE_NAMES].sort(), [...ours].sort())
    })

    it('every name of ours is kebab case, and rangeNamed takes it as itself', () => {
      for (const name of RANGE_NAMES) {
        assert.match(name, /^[a-z0-9]+(-[a-z0-9]+)*$/)
        assert.equal(rangeNamed(name), name)
      }
    })

    // [ipaddr.js name, ours]
    const aliases = [
      ['linkLocal', 'link-local'],
      ['carrierGradeNat', 'cgn'],
      ['uniqueLocal', 'unique-local'],
      ['deprecatedSiteLocal', 'site-local'],
      ['ipv4Mapped', 'ipv4-mapped'],
      ['rfc6145', 'ipv4-translated'],
      ['rfc6052', 'nat64'],
      ['as112v6', 'as112'],
      ['deprecatedOrchid', 'orchid'],
      ['orchid2', 'orchid'],
      ['droneRemoteIdProtocolEntityTags', 'drone-remote-id'],
      ['segmentRouting', 'reserved'],
    ]
    for (const [alias, name] of aliases) {
      it(`the ipaddr.js name ${alias} is read as ${name}`, () => assert.equal(rangeNamed(alias), name))
    }

    it('RANGE_ALIASES holds exactly those aliases', () => {
      assert.deepEqual([...RANGE_ALIASES].sort(), [...aliases].sort())
    })

    // ipaddr.js's tables, read the way its own range() reads them.
    const ipaddrTables = [specialRanges(ipaddr.IPv4), specialRanges(ipaddr.IPv6)]
    const ipaddrRanges = ipaddrTables.flatMap((table) =>
      Object.entries(table).flatMap(([name, ranges]) =>
        (Array.isArray(ranges[0]) ? (ranges as IpaddrRange[]) : [ranges as IpaddrRange]).map((range) => ({
          name,
          range,
        })),
      ),
    )

    it('every ipaddr.js range name is ours or an alias; unicast is neither', () => {
      assert.ok(ipaddrRanges.length >= 30, `read ${ipaddrRanges.length} ipaddr.js ranges`)
      for (const { name } of ipaddrRanges) {
        if (name === 'unicast') continue
        assert.ok(rangeNamed(name), `ipaddr.js range ${name} has no name of ours`)
      }
      assert.equal(rangeNamed('unicast'), undefined)
    })

    /** First, last and one middle address of an ipaddr.js range, as text. */
    function samples([network, bits]: IpaddrRange): string[] {
      const bytes = network.toByteArray()
      const at = (fill: number): number[] =>
        bytes.map((b, i) => {
          const hostBits = Math.min(8, Math.max(0, (i + 1) * 8 - bits))
          const mask = (1 << hostBits) - 1
          return (b & ~mask) | (fill & mask)
        })
      const make = (octets: number[]): ipaddr.IPv4 | ipaddr.IPv6 =>
        octets.length === 4 ? new ipaddr.IPv4(octets) : ipaddr.fromByteArray(octets)
      return [at(0), at(0x5a), at(0xff)].map((o) => make(o).toString())
    }

    it('no reason ever shows an ipaddr.js name: its special ranges are filtered under names of ours', () => {
      for (const entry of ipaddrRanges) {
        for (const address of samples(entry.range)) {
          const c = classify(address)
          if (c.routable) continue // an IPv4-mapped or NAT64 spelling of a global address
          const name = c.reason.replace(/, (IPv4-mapped|via NAT64)$/, '')
          assert.ok(
            (RANGE_NAMES as ReadonlySet<string>).has(name),
            `${address} (ipaddr.js ${entry.name}): ${c.reason}`,
          )
        }
      }
    })

    it('blocking by an ipaddr.js alias drops every address ipaddr.js puts in that range, allowed or not', () => {
      const allowAll = ['0.0.0.0/0', '::/0']
      let checked = 0
      for (const entry of ipaddrRanges) {
        const name = RANGE_ALIASES.get(entry.name)
        if (!name) continue
        for (const address of samples(entry.range)) {
          if (ipaddr.parse(address).range() !== entry.name) continue // a more specific range of ipaddr.js
          const c = classify(address, policy({ allow: allowAll, block: [name] }))
          if (c.reason?.startsWith('unspecified')) continue // never permitted, so never blocked either
          assert.equal(c.routable, false, `${address} (${entry.name}) routable despite block ${name}`)
          assert.match(c.reason, new RegExp(`^blocked by ${name}(, |$)`), `${address} (${entry.name})`)
          checked++
        }
      }
      assert.ok(checked >= 25, `checked ${checked} addresses`)
    })

    it('an address ipaddr.js calls special and the module does not know is filtered as reserved', () => {
      // A newer ipaddr.js may add ranges: they are still filtered, under a name of ours.
      const table = specialRanges(ipaddr.IPv4)
      assert.equal(classify('8.8.8.8').routable, true)
      table.someNewRange = [[ipaddr.parse('8.8.8.0'), 24]]
      // What an address is never changes in a running process; this test changes it.
      clearAddressCache()
      try {
        assert.equal(filtered('8.8.8.8').reason, 'reserved')
        assert.equal(routable('8.8.4.4').address, '8.8.4.4')
      } finally {
        delete table.someNewRange
        clearAddressCache()
      }
      assert.equal(classify('8.8.8.8').routable, true)
    })
  })

  describe('an address text classified again', () => {
    it('is judged by the policy of each call, not by the one it was first classified under', () => {
      assert.equal(filtered('10.1.2.3').reason, 'private')
      assert.equal(routable('10.1.2.3', policy({ allow: ['10.0.0.0/8'] })).allowedBy, '10.0.0.0/8')
      assert.equal(
        filtered('10.1.2.3', policy({ allow: ['10.0.0.0/8'], block: ['10.1.0.0/16'] })).reason,
        'blocked by 10.1.0.0/16',
      )
      assert.equal(filtered('10.1.2.3').reason, 'private')
      assert.equal(
        filtered('::ffff:10.1.2.3', policy({ block: ['ipv4-mapped'] })).reason,
        'blocked by ipv4-mapped, IPv4-mapped',
      )
      assert.equal(filtered('::ffff:10.1.2.3').reason, 'private, IPv4-mapped')
    })

    it('comes back as a new object each time, so a caller changing one changes no other', () => {
      const first = classifyAddress(GLOBAL_V6)
      const second = classifyAddress(GLOBAL_V6)
      assert.notEqual(first, second)
      assert.deepEqual(first, second)
    })

    it('is remembered for at most ADDRESS_CACHE_MAX distinct texts, and classifies the same when forgotten', () => {
      clearAddressCache()
      for (let i = 0; i < ADDRESS_CACHE_MAX + 100; i++)
        classifyAddress(`2001:4860:${(i >> 8).toString(16)}::${(i & 255).toString(16)}`)
      assert.equal(addressCacheSize(), ADDRESS_CACHE_MAX)
      // Forgotten or not, every text still classifies the same.
      assert.equal(routable('2001:4860:0::0').address, '2001:4860::')
      assert.equal(filtered('not-an-address').reason, 'not an IP address')
      clearAddressCache()
    })
  })
})

// Generated-input properties of the planner, the classifier and the race engine. Every
// property runs at least 10,000 cases. A failure message carries fast-check's seed and
// path; replay one with FC_SEED=<seed> FC_PATH=<path> npx mocha test/properties.test.ts.
//
// Addresses here are data for the classifier and the planner: nothing is connected to.
// The race engine runs on fake sockets under a fake clock.

import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'

import fc from 'fast-check'
import FakeTimers from '@sinonjs/fake-timers'

import { DEFAULT_POLICY, type Family, type FilterPolicy, parseCidr } from '../lib/classify'
import { parseSettings, type Settings } from '../lib/config'
import { type HealthView, HealthCache } from '../lib/health'
import { type Candidate, orderCandidates, seededRandom } from '../lib/order'
import { planAddresses } from '../lib/plan'
import { type RaceResult, type RaceSocket, type RaceTarget, raceConnect, startRace } from '../lib/race'
import type { DnsClient, MxHost } from '../lib/resolve'
import { routeDomain, entriesOf } from '../lib/route'
import { describeDelivery } from '../lib/delivery'

import { classify as classifyAddress, type ClassificationView } from './support/classification'

const NUM_RUNS = 10000

/** What an arbitrary generates. */
type ValueOf<A> = A extends fc.Arbitrary<infer T> ? T : never

/** fc.assert with the run count, an optional replay seed/path from the environment, and verbose output. */
async function check<Ts>(property: fc.IRawProperty<Ts>, numRuns = NUM_RUNS): Promise<void> {
  const params: fc.Parameters<Ts> = { numRuns, verbose: 1 }
  if (process.env.FC_SEED) params.seed = Number(process.env.FC_SEED)
  if (process.env.FC_PATH) params.path = process.env.FC_PATH
  try {
    await fc.assert(property, params)
  } catch (caught) {
    const err = caught as Error
    // fast-check puts "{ seed: N, path: "…" }" in its message; keep that guarantee explicit.
    if (!/seed: -?\d+/.test(String(err.message)) || !/path: "/.test(String(err.message))) {
      err.message = `(seed and path missing from fast-check's report)\n${err.message}`
    }
    throw err
  }
}

// ---------------------------------------------------------------------------------------
// Addresses as BigInt values, parsed and printed here without ipaddr.js or lib/classify.

const V4_MAX = (1n << 32n) - 1n
const V6_MAX = (1n << 128n) - 1n

function v4Text(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.')
}

function v6Groups(n: bigint): number[] {
  const groups: number[] = []
  for (let i = 7; i >= 0; i--) groups.push(Number((n >> BigInt(i * 16)) & 0xffffn))
  return groups
}

/** RFC 5952 §4: lower case, no leading zeros, the longest run (first on a tie) of 2+ zero groups as `::`. */
function v6Canonical(n: bigint): string {
  const g = v6Groups(n)
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (best < 0) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}

function parseV4(text: string): bigint | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
  if (!m) return null
  const parts = m.slice(1).map(Number)
  if (parts.some((p) => p > 255)) return null
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n)
}

function parseV6(text: string): bigint | null {
  let t = text.toLowerCase()
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(t)
  if (dotted) {
    const v4 = parseV4(dotted[2])
    if (v4 === null) return null
    t = `${dotted[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  const halves = t.split('::')
  if (halves.length > 2) return null
  const part = (s: string): string[] => (s === '' ? [] : s.split(':'))
  const head = part(halves[0])
  const tail = halves.length === 2 ? part(halves[1]) : []
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill('0'), ...tail]
  if (groups.some((x) => !/^[0-9a-f]{1,4}$/.test(x))) return null
  return groups.reduce((acc, x) => (acc << 16n) | BigInt(parseInt(x, 16)), 0n)
}

type Kind = 'v4' | 'v6'

/** An address as this file computes with it. */
interface Known {
  kind: Kind
  value: bigint
}

/** A CIDR as this file computes with it: the first and last address it holds. */
interface TextCidr {
  text: string
  kind: Kind
  prefix: number
  first: bigint
  last: bigint
}

/** { kind, value } for a plain address text (no brackets or zone), or null. */
function parseAddress(text: string): Known | null {
  if (text.includes(':')) {
    const v = parseV6(text)
    return v === null ? null : { kind: 'v6', value: v }
  }
  const v = parseV4(text)
  return v === null ? null : { kind: 'v4', value: v }
}

function parseCidrText(text: string): TextCidr | null {
  const [addr, len] = String(text).split('/')
  const a = parseAddress(addr)
  if (!a) return null
  const bits = a.kind === 'v4' ? 32 : 128
  const prefix = len === undefined ? bits : Number(len)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) return null
  const hostBits = BigInt(bits - prefix)
  const first = (a.value >> hostBits) << hostBits
  return { text, kind: a.kind, prefix, first, last: first | ((1n << hostBits) - 1n) }
}

const inCidr = (cidr: TextCidr, kind: Kind, value: bigint): boolean =>
  cidr.kind === kind && value >= cidr.first && value <= cidr.last

// ---------------------------------------------------------------------------------------
// Special-purpose ranges, written from the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (RFC 6890 and updates) and the RFCs they cite. An MX address must be ordinary
// global unicast: every entry here is filtered, named as the plugin reports it. The
// registry's few "globally reachable" anycast service blocks (PCP/TURN anycast, AS112, AMT,
// DRIP) are service addresses, never mail exchangers, so they are filtered too.

const MAPPED = 'ipv4-mapped' // ::ffff:0:0/96, RFC 4291 §2.5.5.2: judged as the IPv4 it carries
const NAT64 = 'nat64' // 64:ff9b::/96, RFC 6052: judged as the embedded IPv4, kept as IPv6

// [CIDR, name, reference]
const SPECIAL_V4: Array<[string, string, string]> = [
  ['0.0.0.0/8', 'unspecified', 'RFC 791 §3.2 "this network"'],
  ['10.0.0.0/8', 'private', 'RFC 1918'],
  ['100.64.0.0/10', 'cgn', 'RFC 6598 shared address space'],
  ['127.0.0.0/8', 'loopback', 'RFC 1122 §3.2.1.3'],
  ['169.254.0.0/16', 'link-local', 'RFC 3927'],
  ['172.16.0.0/12', 'private', 'RFC 1918'],
  ['192.0.0.0/24', 'ietf-protocol', 'RFC 6890 §2.2.2'],
  ['192.0.0.0/29', 'ietf-protocol', 'RFC 7335 IPv4 service continuity'],
  ['192.0.0.8/32', 'ietf-protocol', 'RFC 7600 IPv4 dummy address'],
  ['192.0.0.9/32', 'ietf-protocol', 'RFC 7723 PCP anycast'],
  ['192.0.0.10/32', 'ietf-protocol', 'RFC 8155 TURN anycast'],
  ['192.0.0.170/31', 'ietf-protocol', 'RFC 8880 NAT64/DNS64 discovery'],
  ['192.0.2.0/24', 'documentation', 'RFC 5737 TEST-NET-1'],
  ['192.31.196.0/24', 'as112', 'RFC 7535 AS112-v4'],
  ['192.52.193.0/24', 'amt', 'RFC 7450'],
  ['192.88.99.0/24', '6to4', 'RFC 7526 deprecated 6to4 relay anycast'],
  ['192.168.0.0/16', 'private', 'RFC 1918'],
  ['192.175.48.0/24', 'as112', 'RFC 7534 direct delegation AS112'],
  ['198.18.0.0/15', 'benchmarking', 'RFC 2544'],
  ['198.51.100.0/24', 'documentation', 'RFC 5737 TEST-NET-2'],
  ['203.0.113.0/24', 'documentation', 'RFC 5737 TEST-NET-3'],
  ['224.0.0.0/4', 'multicast', 'RFC 5771'],
  ['240.0.0.0/4', 'reserved', 'RFC 1112 §4'],
  ['255.255.255.255/32', 'broadcast', 'RFC 919, RFC 8190'],
]

const SPECIAL_V6: Array<[string, string, string]> = [
  ['::/128', 'unspecified', 'RFC 4291 §2.5.2'],
  ['::1/128', 'loopback', 'RFC 4291 §2.5.3'],
  ['::/96', 'ipv4-compatible', 'RFC 4291 §2.5.5.1, deprecated'],
  ['::ffff:0:0/96', MAPPED, 'RFC 4291 §2.5.5.2'],
  ['::ffff:0:0:0/96', 'ipv4-translated', 'RFC 2765 §2.1'],
  ['64:ff9b::/96', NAT64, 'RFC 6052'],
  ['64:ff9b:1::/48', 'nat64-local', 'RFC 8215'],
  ['100::/64', 'discard', 'RFC 6666'],
  ['100:0:0:1::/64', 'reserved', 'RFC 9780 dummy prefix'],
  ['2001::/23', 'reserved', 'RFC 2928 IETF protocol assignments'],
  ['2001::/32', 'teredo', 'RFC 4380'],
  ['2001:1::1/128', 'reserved', 'RFC 7723 PCP anycast'],
  ['2001:1::2/128', 'reserved', 'RFC 8155 TURN anycast'],
  ['2001:1::3/128', 'reserved', 'RFC 9665 DNS-SD SRP anycast'],
  ['2001:2::/48', 'benchmarking', 'RFC 5180'],
  ['2001:3::/32', 'amt', 'RFC 7450'],
  ['2001:4:112::/48', 'as112', 'RFC 7535'],
  ['2001:10::/28', 'orchid', 'RFC 4843, deprecated'],
  ['2001:20::/28', 'orchid', 'RFC 7343 ORCHIDv2'],
  ['2001:30::/28', 'drone-remote-id', 'RFC 9374 DRIP'],
  ['2001:db8::/32', 'documentation', 'RFC 3849'],
  ['2002::/16', '6to4', 'RFC 3056'],
  ['2620:4f:8000::/48', 'as112', 'RFC 7534'],
  ['3fff::/20', 'documentation', 'RFC 9637'],
  ['5f00::/16', 'reserved', 'RFC 9602 SRv6 SIDs'],
  ['fc00::/7', 'unique-local', 'RFC 4193'],
  ['fe80::/10', 'link-local', 'RFC 4291 §2.5.6'],
  ['fec0::/10', 'site-local', 'RFC 3879, deprecated'],
  ['ff00::/8', 'multicast', 'RFC 4291 §2.7'],
]

// RFC 4291 §2.4 / IANA IPv6 address space: only 2000::/3 is global unicast; the rest is
// reserved or unassigned unless a more specific entry above names it.
const tableCidr = (text: string): TextCidr => parseCidrText(text) ?? assert.fail(`table CIDR ${text} parses`)
const GLOBAL_UNICAST_V6 = tableCidr('2000::/3')

const TABLE = [...SPECIAL_V4, ...SPECIAL_V6].map(([cidr, name, ref]) => ({
  ...tableCidr(cidr),
  name,
  ref,
}))

/** The most specific table entry holding the address, or undefined. */
type TableEntry = (typeof TABLE)[number]

function tableEntry(kind: Kind, value: bigint): TableEntry | undefined {
  let best: TableEntry | undefined
  for (const e of TABLE) if (inCidr(e, kind, value) && (!best || e.prefix > best.prefix)) best = e
  return best
}

/**
 * What the tables say about one address: { judgedKind, judgedValue, name (undefined: global
 * unicast), via ('' | ', IPv4-mapped' | ', via NAT64') }.
 */
interface Oracle {
  judgedKind: Kind
  judgedValue: bigint
  name: string | undefined
  via: string
  mapped: boolean
}

function oracle(kind: Kind, value: bigint): Oracle {
  const e = tableEntry(kind, value)
  if (e?.name === MAPPED || e?.name === NAT64) {
    const v4 = value & V4_MAX
    const inner = tableEntry('v4', v4)
    return {
      judgedKind: 'v4',
      judgedValue: v4,
      name: inner?.name,
      via: e.name === MAPPED ? ', IPv4-mapped' : ', via NAT64',
      mapped: e.name === MAPPED,
    }
  }
  let name = e?.name
  if (!name && kind === 'v6' && !inCidr(GLOBAL_UNICAST_V6, kind, value)) name = 'reserved'
  return { judgedKind: kind, judgedValue: value, name, via: '', mapped: false }
}

/** What the classifier should hand back as `address` for a routable input. */
function canonicalOf(kind: Kind, value: bigint): string {
  if (kind === 'v4') return v4Text(value)
  if (oracle(kind, value).mapped) return v4Text(value & V4_MAX)
  return v6Canonical(value)
}

// ---------------------------------------------------------------------------------------
// Notations: every way the same address may be written in a DNS answer or a config file.

function v6Notations(value: bigint): string[] {
  const g = v6Groups(value)
  const c = v6Canonical(value)
  const dottedTail = `${g
    .slice(0, 6)
    .map((x) => x.toString(16))
    .join(':')}:${v4Text(value & V4_MAX)}`
  return [
    c,
    g.map((x) => x.toString(16).padStart(4, '0')).join(':'),
    c.toUpperCase(),
    g.map((x) => x.toString(16)).join(':'),
    dottedTail,
    `[${c}]`,
    `${c}%eth0`,
    `[${c}%eth0]`,
    `  ${c.toUpperCase()}  `,
  ]
}

function v4Notations(value: bigint): string[] {
  const t = v4Text(value)
  const hex = `${(value >> 16n).toString(16)}:${(value & 0xffffn).toString(16)}`
  return [
    t,
    `[${t}]`,
    ` ${t} `,
    `::ffff:${t}`,
    `::FFFF:${hex.toUpperCase()}`,
    `0:0:0:0:0:ffff:${hex}`,
    `0000:0000:0000:0000:0000:ffff:${t}`,
    `[::ffff:${t}]`,
  ]
}

/** The kind and value a notation of a v4 value stands for (the mapped ones are IPv6). */
const v4NotationIsMapped = (i: number): boolean => i >= 3

const GARBAGE = [
  '',
  ' ',
  'not-an-ip',
  'mx.example',
  '1.2.3',
  '1.2.3.4.5',
  '256.1.1.1',
  '127.000.000.001',
  '01.2.3.4',
  '::ffff:999.1.1.1',
  '1:2:3:4:5:6:7:8:9',
  ':::1',
  '[::1',
  '::1]',
  'fe80::g',
  '0x7f000001',
  '2130706433',
  '127.1',
  'localhost',
  '%eth0',
  '[]',
  '1.2.3.4/24',
  'null',
]

// ---------------------------------------------------------------------------------------
// Generators.

const rangeInside = (entry: TextCidr): fc.Arbitrary<bigint> =>
  fc.bigInt({ min: entry.first, max: entry.last })

const v4Value = fc.oneof(
  { weight: 3, arbitrary: fc.bigInt({ min: 0n, max: V4_MAX }) },
  { weight: 3, arbitrary: fc.constantFrom(...TABLE.filter((e) => e.kind === 'v4')).chain(rangeInside) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0x7f000000n, max: 0x7f00000fn }) },
)
const v6Value = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.bigInt({ min: GLOBAL_UNICAST_V6.first, max: GLOBAL_UNICAST_V6.last }),
  },
  { weight: 3, arbitrary: fc.constantFrom(...TABLE.filter((e) => e.kind === 'v6')).chain(rangeInside) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: V6_MAX }) },
)

/** Every spelling of one address, with the address each spelling stands for. */
/** One address text of a case, and the address it stands for (undefined: garbage). */
interface Spelling {
  text: string
  known: Known | undefined
}

function spellings(kind: Kind, value: bigint): Spelling[] {
  if (kind === 'v6') return v6Notations(value).map((text) => ({ text, known: { kind, value } }))
  const mapped: Known = { kind: 'v6', value: 0xffff00000000n | value }
  return v4Notations(value).map((text, i) => ({
    text,
    known: v4NotationIsMapped(i) ? mapped : { kind, value },
  }))
}

// A pool item: the spellings of a known address, or one garbage string.
const poolItem: fc.Arbitrary<Spelling[]> = fc.oneof(
  { weight: 5, arbitrary: v4Value.map((value) => spellings('v4', value)) },
  { weight: 5, arbitrary: v6Value.map((value) => spellings('v6', value)) },
  {
    weight: 1,
    arbitrary: fc
      .oneof(fc.constantFrom(...GARBAGE), fc.string({ maxLength: 12 }))
      .map((text): Spelling[] => [{ text, known: undefined }]),
  },
)

const ALLOW_CHOICES = [
  '127.0.0.0/8',
  '127.0.0.1/32',
  '127.0.0.1',
  '::1/128',
  '::ffff:127.0.0.0/104',
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10',
  'fc00::/7',
  'fd00::/8',
  '169.254.0.0/16',
  'fe80::/10',
  '64:ff9b::/96',
  '0.0.0.0/8',
  '0.0.0.0/0',
  '::/0',
  '::/128',
  '::/96',
  '2001:db8::/32',
  '192.0.2.0/24',
  '240.0.0.0/4',
  '10.0.0.0/33',
  'banana',
  '',
]
const BLOCK_CHOICES = [
  'private',
  'loopback',
  'link-local',
  'linkLocal',
  'uniqueLocal',
  'unique-local',
  'teredo',
  '6to4',
  'reserved',
  'documentation',
  'multicast',
  'unicast',
  'not-a-range',
  '8.0.0.0/8',
  '2000::/3',
  '2001:4860::/32',
  '0.0.0.0/0',
  '127.0.0.2/31',
  '::ffff:10.0.0.0/104',
  'fe80::/10',
]

const settingsArb = fc.record({
  prefer: fc.constantFrom('ipv6', 'ipv4'),
  firstFamilyCount: fc.integer({ min: 1, max: 16 }),
  maxAddresses: fc.oneof(fc.integer({ min: 2, max: 20 }), fc.integer({ min: 2, max: 256 })),
  allow: fc.array(fc.constantFrom(...ALLOW_CHOICES), { maxLength: 4 }),
  block: fc.array(fc.constantFrom(...BLOCK_CHOICES), { maxLength: 3 }),
})

function settingsOf(s: ValueOf<typeof settingsArb>): Settings {
  const { settings } = parseSettings({
    main: {
      prefer: s.prefer,
      first_family_count: String(s.firstFamilyCount),
      max_addresses: String(s.maxAddresses),
    },
    filter: { allow: s.allow, block: s.block },
  })
  assert.equal(settings.maxAddresses, s.maxAddresses)
  return settings
}

const preference = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0, 10, 20, 65535) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 65535 }) },
)

// Picks are packed integers (pool index, notation) so a 1,000-address case stays cheap.
const hostArb = (picks: fc.Arbitrary<number[]>) =>
  fc.record({ exchangeNo: fc.integer({ min: 0, max: 24 }), preference, picks })

const smallHosts = fc.array(hostArb(fc.array(fc.nat(), { maxLength: 4 })), { minLength: 1, maxLength: 20 })
const bigHosts = fc
  .tuple(
    fc.integer({ min: 1, max: 20 }),
    fc.integer({ min: 0, max: 1000 }).chain((n) => fc.array(fc.nat(), { minLength: n, maxLength: n })),
    fc.array(preference, { minLength: 20, maxLength: 20 }),
  )
  .map(([count, picks, prefs]) =>
    // 0..1000 addresses spread over 1..20 hosts
    Array.from({ length: count }, (_, i) => ({
      exchangeNo: i,
      preference: prefs[i],
      picks: picks.filter((_, j) => j % count === i),
    })),
  )

const healthArb = fc.option(
  fc.record({
    addressBits: fc.nat(),
    familyBits: fc.nat(),
  }),
  { freq: 3 },
)

const plannerCase = fc.record({
  pool: fc.array(poolItem, { minLength: 1, maxLength: 60 }),
  hosts: fc.oneof({ weight: 40, arbitrary: smallHosts }, { weight: 1, arbitrary: bigHosts }),
  settings: settingsArb,
  health: healthArb,
  seed: fc.integer(),
})

/** The case's MX hosts as planAddresses takes them, with what each address text stands for. */
type PlannerCase = ValueOf<typeof plannerCase>
/** An MX host of a case: what planAddresses takes, and what each address text stands for. */
type CaseHost = MxHost & { items: Spelling[] }

function materialize(c: Pick<PlannerCase, 'hosts' | 'pool'>): CaseHost[] {
  const hosts = c.hosts.map((h): CaseHost => {
    const items = h.picks.map((p) => {
      const item = c.pool[p % c.pool.length]
      return item[Math.floor(p / c.pool.length) % item.length]
    })
    return {
      exchange: `mx${h.exchangeNo}.example`,
      preference: h.preference,
      addresses: items.map((i) => i.text),
      items,
      errors: [],
    }
  })
  return hosts
}

/** A HealthView from bits: which canonical addresses and (host, family) pairs failed. */
function healthOf(h: PlannerCase['health'], hosts: CaseHost[]): HealthView | undefined {
  if (!h) return undefined
  const hash = (s: string): number => [...s].reduce((acc, ch) => (acc * 31 + ch.charCodeAt(0)) >>> 0, 7)
  const addrs = new Set<string>()
  const fams = new Set<string>()
  for (const host of hosts) {
    for (const f of ['ipv4', 'ipv6'])
      if ((h.familyBits >>> (hash(host.exchange + f) % 31)) & 1) fams.add(`${host.exchange} ${f}`)
    for (const item of host.items) {
      if (!item.known || !((h.addressBits >>> (hash(item.text) % 31)) & 1)) continue
      addrs.add(canonicalOf(item.known.kind, item.known.value))
    }
  }
  return {
    addressFailed: (a) => addrs.has(a),
    familyFailed: (ex, f) => fams.has(`${ex} ${f}`),
  }
}

function runPlan(c: PlannerCase, random = seededRandom(c.seed)) {
  const settings = settingsOf(c.settings)
  const hosts = materialize(c)
  const health = healthOf(c.health, hosts)
  const plan = planAddresses('example.test', hosts, {
    policy: settings.filter.policy,
    prefer: settings.prefer,
    firstFamilyCount: settings.firstFamilyCount,
    maxAddresses: settings.maxAddresses,
    random,
    ...(health ? { health } : {}),
  })
  return { settings, hosts, health, plan }
}

/**
 * The routable input as the classifier reads it, deduplicated: canonical address → its
 * lowest preference, family, and the hosts that carry it at that preference.
 */
interface RoutableEntry {
  preference: number
  family: Family
  hosts: Set<string>
}

function routableInput(hosts: CaseHost[], policy: FilterPolicy): Map<string, RoutableEntry> {
  const byAddress = new Map<string, RoutableEntry>()
  const seen = new Map<string, ClassificationView>()
  for (const h of hosts) {
    for (const item of h.items) {
      if (!seen.has(item.text)) seen.set(item.text, classifyAddress(item.text, policy))
      const c = seen.get(item.text)!
      if (item.known && c.routable) {
        assert.equal(
          c.address,
          canonicalOf(item.known.kind, item.known.value),
          `canonical form of ${JSON.stringify(item.text)}`,
        )
      }
      if (!c.routable) continue
      const prev = byAddress.get(c.address)
      if (!prev || h.preference < prev.preference) {
        byAddress.set(c.address, { preference: h.preference, family: c.family, hosts: new Set([h.exchange]) })
      } else if (h.preference === prev.preference) prev.hosts.add(h.exchange)
    }
  }
  return byAddress
}

/**
 * Whether a CIDR list covers an address as the classifier should judge it: an IPv4 address
 * by IPv4 CIDRs and by CIDRs written inside ::ffff:0:0/96 (the same IPv4 addresses), never
 * by a wider IPv6 CIDR such as ::/0, which says nothing about IPv4.
 */
function coveredBy(cidrs: string[], kind: Kind, value: bigint): boolean {
  return cidrs.some((text) => {
    const c = parseCidrText(text)
    if (!c) return false
    if (inCidr(c, kind, value)) return true
    const mappedForm = c.kind === 'v6' && c.prefix >= 96 && c.first >> 32n === 0xffffn
    return kind === 'v4' && mappedForm && inCidr(c, 'v6', 0xffff00000000n | value)
  })
}

// ---------------------------------------------------------------------------------------

describe('properties (fast-check, 10,000 cases each)', function () {
  this.timeout(120000)

  describe('planner over generated DNS answers', function () {
    it('never keeps an address the policy filters: unspecified never, loopback only under an allow CIDR', async function () {
      await check(
        fc.property(plannerCase, (c) => {
          const { settings, plan } = runPlan(c)
          const { policy } = settings.filter
          const allow = policy.allow.map((a) => a.text)
          const blockCidrs = policy.blockCidrs.map((b) => b.text)
          for (const k of plan.kept) {
            const again = classifyAddress(k.address, policy)
            assert.ok(again.routable, `kept ${k.address} reclassifies as ${JSON.stringify(again)}`)
            assert.equal(again.address, k.address)
            const a = parseAddress(k.address)
            assert.ok(a, `kept ${k.address} is not a plain address`)
            assert.equal(k.family, a.kind === 'v4' ? 'ipv4' : 'ipv6')
            const o = oracle(a.kind, a.value)
            assert.notEqual(o.name, 'unspecified', `kept ${k.address} reaches the local host`)
            // Where it is judged: the address itself, or for NAT64 also the IPv4 it carries.
            const forms: Array<[Kind, bigint]> = [[a.kind, a.value]]
            if (o.judgedKind !== a.kind) forms.push([o.judgedKind, o.judgedValue])
            const allowed = forms.some(([kind, value]) => coveredBy(allow, kind, value))
            if (o.name) {
              assert.ok(allowed, `kept ${k.address} (${o.name}${o.via}) without an allow CIDR: ${allow}`)
            }
            assert.ok(
              !coveredBy(blockCidrs, a.kind, a.value) && !coveredBy(blockCidrs, o.judgedKind, o.judgedValue),
              `kept ${k.address} inside a block CIDR ${blockCidrs}`,
            )
            assert.ok(
              !(o.name && (policy.blockRanges as ReadonlySet<string>).has(o.name)),
              `kept ${k.address} in blocked range ${o.name}`,
            )
          }
          for (const f of plan.filtered) assert.ok(f.reason, `filtered ${f.address} without a reason`)
        }),
      )
    })

    it('keeps at most max_addresses, and both families whenever both have a routable address', async function () {
      await check(
        fc.property(plannerCase, (c) => {
          const { settings, hosts, plan } = runPlan(c)
          const routable = routableInput(hosts, settings.filter.policy)
          assert.ok(
            plan.kept.length <= settings.maxAddresses,
            `${plan.kept.length} > ${settings.maxAddresses}`,
          )
          assert.equal(plan.kept.length, Math.min(routable.size, settings.maxAddresses))
          for (const family of ['ipv4', 'ipv6']) {
            const input = [...routable.values()].some((r) => r.family === family)
            const kept = plan.kept.some((k) => k.family === family)
            assert.equal(kept, input, `${family}: routable in input ${input}, kept ${kept}`)
          }
        }),
      )
    })

    it('groups come out by ascending preference and only shuffle inside a group (same addresses per preference)', async function () {
      await check(
        fc.property(plannerCase, (c) => {
          const { settings, hosts, plan } = runPlan(c)
          const routable = routableInput(hosts, settings.filter.policy)
          const prefs = plan.kept.map((k) => k.preference)
          for (let i = 1; i < prefs.length; i++) assert.ok(prefs[i - 1] <= prefs[i], `preferences ${prefs}`)
          const seen = new Set()
          for (const k of plan.kept) {
            assert.ok(!seen.has(k.address), `${k.address} kept twice`)
            seen.add(k.address)
            const r = routable.get(k.address)
            assert.ok(r, `kept ${k.address} is not in the routable input`)
            assert.equal(k.preference, r.preference, `${k.address} moved out of its preference group`)
            assert.ok(r.hosts.has(k.exchange), `${k.address} attributed to ${k.exchange}`)
          }
          const expected = new Map<number, Set<string>>()
          for (const [address, r] of routable) {
            if (!expected.has(r.preference)) expected.set(r.preference, new Set())
            expected.get(r.preference)!.add(address)
          }
          if (routable.size <= settings.maxAddresses) {
            const got = new Map<number, Set<string>>()
            for (const k of plan.kept) {
              if (!got.has(k.preference)) got.set(k.preference, new Set())
              got.get(k.preference)!.add(k.address)
            }
            assert.deepEqual(got, expected)
          } else {
            // The cap cuts from the back: every group below the last kept one is complete. An
            // address moved in at the end to keep its family (the only one of it) is not counted.
            const last = plan.kept[plan.kept.length - 1]
            const core =
              plan.kept.filter((k) => k.family === last.family).length === 1
                ? plan.kept.slice(0, -1)
                : plan.kept
            const top = Math.max(...core.map((k) => k.preference))
            const missing: string[] = []
            for (const [p, set] of expected)
              if (p < top) for (const a of set) if (!seen.has(a)) missing.push(a)
            assert.deepEqual(missing, [], `addresses of groups below ${top} dropped by the cap`)
          }
        }),
      )
    })

    it('inside a group: RFC 8305 family interleaving, and recently failed addresses last', async function () {
      await check(
        fc.property(plannerCase, (c) => {
          const { settings, hosts, health, plan } = runPlan(c)
          const routable = routableInput(hosts, settings.filter.policy)
          const groups = new Map<number, Candidate[]>()
          for (const k of plan.kept) {
            if (!groups.has(k.preference)) groups.set(k.preference, [])
            groups.get(k.preference)!.push(k)
          }
          if (health) {
            for (const g of groups.values()) {
              const failed = g.map((k) => health.addressFailed(k.address))
              const firstFailed = failed.indexOf(true)
              if (firstFailed >= 0) assert.ok(failed.slice(firstFailed).every(Boolean), `order ${failed}`)
            }
            return
          }
          if (routable.size > settings.maxAddresses) return
          for (const g of groups.values()) {
            const lead = settings.prefer
            const nLead = g.filter((k) => k.family === lead).length
            const nOther = g.length - nLead
            const want = Array(Math.min(settings.firstFamilyCount, nLead)).fill(lead)
            let l = want.length
            let o = 0
            while (l < nLead || o < nOther) {
              if (o < nOther) {
                want.push(lead === 'ipv6' ? 'ipv4' : 'ipv6')
                o++
              }
              if (l < nLead) {
                want.push(lead)
                l++
              }
            }
            assert.deepEqual(
              g.map((k) => k.family),
              want,
            )
          }
        }),
      )
    })

    it('identical input with the same random source gives an identical plan', async function () {
      await check(
        fc.property(plannerCase, (c) => {
          const a = runPlan(c).plan
          const b = runPlan(c).plan
          assert.deepEqual(b, a)
          // orderCandidates on its own, fed the same candidates twice
          const opts = { prefer: 'ipv6' as const, firstFamilyCount: 1, maxAddresses: 8 }
          const x = orderCandidates(a.kept, { ...opts, random: seededRandom(c.seed) })
          const y = orderCandidates(a.kept, { ...opts, random: seededRandom(c.seed) })
          assert.deepEqual(y, x)
        }),
      )
    })

    it('routeDomain never delivers an empty list, and its priorities strictly increase', async function () {
      const dnsError = (code: string): Error & { code: string } => Object.assign(new Error(code), { code })
      const answerArb = fc.oneof(
        { weight: 8, arbitrary: fc.constant('ok') },
        { weight: 1, arbitrary: fc.constantFrom('ENODATA', 'ENOTFOUND', 'ESERVFAIL', 'ETIMEOUT') },
      )
      const routeCase = fc.record({
        plan: plannerCase,
        mx: fc.oneof(
          { weight: 8, arbitrary: fc.constant('records') },
          { weight: 1, arbitrary: fc.constantFrom('ENODATA', 'ENOTFOUND', 'ESERVFAIL', 'empty', 'null-mx') },
        ),
        aaaa: fc.array(answerArb, { minLength: 25, maxLength: 25 }),
        a: fc.array(answerArb, { minLength: 25, maxLength: 25 }),
        nullToo: fc.boolean(),
        raceOff: fc.boolean(),
      })
      await check(
        fc.asyncProperty(routeCase, async (rc) => {
          const settings = settingsOf(rc.plan.settings)
          if (rc.raceOff) settings.race.enabled = false
          const hosts = materialize(rc.plan)
          // One name per host number; a repeated name is one host at its lowest preference.
          const byName = new Map<string, { preference: number; addresses: string[]; no: number }>()
          for (const h of hosts) {
            const prev = byName.get(h.exchange)
            byName.set(h.exchange, {
              preference: Math.min(prev?.preference ?? Infinity, h.preference),
              addresses: [...(prev?.addresses ?? []), ...h.addresses],
              no: Number(h.exchange.slice(2, h.exchange.indexOf('.'))),
            })
          }
          const lookups = (name: string, family: 4 | 6): Promise<string[]> => {
            const host =
              byName.get(name.toLowerCase()) ??
              (name === 'example.test' ? byName.get('mx0.example') : undefined)
            if (!host) return Promise.reject(dnsError('ENOTFOUND'))
            const fate = (family === 6 ? rc.aaaa : rc.a)[host.no]
            if (fate !== 'ok') return Promise.reject(dnsError(fate))
            const mine = host.addresses.filter((t) => t.includes(':') === (family === 6))
            return mine.length ? Promise.resolve(mine) : Promise.reject(dnsError('ENODATA'))
          }
          const dns: DnsClient = {
            resolveMx() {
              switch (rc.mx) {
                case 'records': {
                  const records = hosts.map((h) => ({
                    exchange: h.exchange.toUpperCase() + '.',
                    priority: h.preference,
                  }))
                  if (rc.nullToo) records.push({ exchange: '', priority: 0 })
                  return Promise.resolve(records)
                }
                case 'empty':
                  return Promise.resolve([])
                case 'null-mx':
                  return Promise.resolve([{ exchange: '', priority: 0 }])
                default:
                  return Promise.reject(dnsError(rc.mx))
              }
            },
            resolve6: (name: string) => lookups(name, 6),
            resolve4: (name: string) => lookups(name, 4),
          }
          const record = await routeDomain('Example.Test.', {
            settings,
            dns,
            health: new HealthCache({ ttlMs: 60000, maxEntries: 100 }),
            random: seededRandom(rc.plan.seed),
          })
          const route = record.decision
          const entries = route.action === 'deliver' ? entriesOf(route.targets) : []
          assert.ok(['deliver', 'null-mx', 'defer', 'bounce'].includes(route.action), route.action)
          if (route.action === 'deliver') {
            assert.ok(entries.length > 0, 'deliver with no entries')
            assert.ok(entries.length <= settings.maxAddresses)
            for (let i = 1; i < entries.length; i++) {
              assert.ok(entries[i - 1].priority < entries[i].priority, 'priorities not increasing')
            }
            for (const e of entries) {
              const again = classifyAddress(e.exchange, settings.filter.policy)
              assert.ok(again.routable && again.address === e.exchange, `entry ${e.exchange}`)
              assert.equal(e.port, settings.port)
            }
          } else if (route.action !== 'null-mx') {
            assert.ok(typeof route.reason === 'string' && route.reason.length > 0, 'no reason given')
            assert.equal(route.status.code, route.action === 'defer' ? 450 : 550)
          }
          // An MX answer with hosts whose lookups gave a routable address must deliver.
          if (rc.mx === 'records') {
            const anyRoutable = [...byName.values()].some((h) =>
              h.addresses.some(
                (t) =>
                  (t.includes(':') ? rc.aaaa : rc.a)[h.no] === 'ok' &&
                  classifyAddress(t, settings.filter.policy).routable,
              ),
            )
            assert.equal(
              route.action === 'deliver',
              anyRoutable,
              `${route.action}: ${describeDelivery(record)}`,
            )
          }
        }),
      )
    })
  })

  describe('classifier against the special-purpose registries', function () {
    // For every table entry: its first and last address, one inside, and the neighbours
    // just outside each end, in every notation.
    const where = fc.constantFrom('first', 'last', 'inside', 'before', 'after')
    const boundaryCase = fc.record({
      entry: fc.constantFrom(...TABLE),
      where,
      offset: fc.bigInt({ min: 0n, max: V6_MAX }),
      notation: fc.nat(),
    })

    function addressAt({
      entry,
      where: w,
      offset,
    }: {
      entry: TextCidr
      where: ValueOf<typeof where>
      offset: bigint
    }): bigint | undefined {
      const max = entry.kind === 'v4' ? V4_MAX : V6_MAX
      const size = entry.last - entry.first + 1n
      const value = {
        first: entry.first,
        last: entry.last,
        inside: entry.first + (offset % size),
        before: entry.first - 1n,
        after: entry.last + 1n,
      }[w]
      return value < 0n || value > max ? undefined : value
    }

    function expectation(kind: Kind, value: bigint): { routable: boolean; reason: string | undefined } {
      const o = oracle(kind, value)
      return { routable: !o.name, reason: o.name ? `${o.name}${o.via}` : undefined }
    }

    it('agrees on routable/filtered and the reason name inside and just outside every range, in every notation', async function () {
      await check(
        fc.property(boundaryCase, (bc) => {
          const value = addressAt(bc)
          if (value === undefined) return
          const kind = bc.entry.kind
          const texts = kind === 'v4' ? v4Notations(value) : v6Notations(value)
          const i = bc.notation % texts.length
          const meant: Known =
            kind === 'v4' && v4NotationIsMapped(i)
              ? { kind: 'v6', value: 0xffff00000000n | value }
              : { kind, value }
          const want = expectation(meant.kind, meant.value)
          const got = classifyAddress(texts[i], DEFAULT_POLICY)
          const where = `${texts[i]} (${bc.where} of ${bc.entry.text}, ${bc.entry.ref})`
          assert.equal(got.routable, want.routable, `${where}: ${JSON.stringify(got)}`)
          if (want.routable) {
            assert.equal(got.address, canonicalOf(meant.kind, meant.value), where)
            assert.equal(got.family, got.address!.includes(':') ? 'ipv6' : 'ipv4', where)
          } else assert.equal(got.reason, want.reason, where)
        }),
      )
    })

    it('judges IPv4-mapped and NAT64 spellings of an IPv4 address by that address', async function () {
      const v4Case = fc.record({
        entry: fc.constantFrom(...TABLE.filter((e) => e.kind === 'v4')),
        where,
        offset: fc.bigInt({ min: 0n, max: V4_MAX }),
        nat64Hex: fc.boolean(),
      })
      await check(
        fc.property(v4Case, (c) => {
          const v4 = addressAt({ ...c })
          if (v4 === undefined) return
          const plain = expectation('v4', v4)
          const hex = `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
          const mapped = classifyAddress(`::ffff:${hex}`)
          const nat64Text = c.nat64Hex ? `64:ff9b::${hex}` : `64:ff9b::${v4Text(v4)}`
          const nat64 = classifyAddress(nat64Text)
          assert.equal(mapped.routable, plain.routable)
          assert.equal(nat64.routable, plain.routable)
          if (plain.routable) {
            assert.equal(mapped.address, v4Text(v4))
            assert.equal(mapped.family, 'ipv4')
            assert.equal(nat64.address, v6Canonical((0x0064ff9b0000000000000000n << 32n) | v4))
            assert.equal(nat64.family, 'ipv6')
          } else {
            assert.equal(mapped.reason, `${plain.reason}, IPv4-mapped`)
            assert.equal(nat64.reason, `${plain.reason}, via NAT64`)
          }
        }),
      )
    })

    it('an allow CIDR re-permits exactly the addresses inside it, never an unspecified one', async function () {
      const allowCase = fc.record({
        entry: fc.constantFrom(...TABLE.filter((e) => e.name !== MAPPED && e.name !== NAT64)),
        where,
        offset: fc.bigInt({ min: 0n, max: V6_MAX }),
      })
      await check(
        fc.property(allowCase, (c) => {
          const value = addressAt(c)
          if (value === undefined) return
          const cidr = parseCidr(c.entry.text)
          assert.ok(cidr, c.entry.text)
          const policy: FilterPolicy = { allow: [cidr], blockCidrs: [], blockRanges: new Set() }
          const text = c.entry.kind === 'v4' ? v4Text(value) : v6Canonical(value)
          const got = classifyAddress(text, policy)
          const plain = expectation(c.entry.kind, value)
          const inside = inCidr(c.entry, c.entry.kind, value)
          const o = oracle(c.entry.kind, value)
          if (o.name === 'unspecified') {
            assert.equal(got.routable, false, `${text} allowed by ${c.entry.text}`)
          } else if (inside) {
            assert.equal(
              got.routable,
              true,
              `${text} not re-permitted by ${c.entry.text}: ${JSON.stringify(got)}`,
            )
            if (!plain.routable) assert.equal(got.allowedBy, cidr.text)
          } else {
            assert.equal(
              got.routable,
              plain.routable,
              `${text} outside ${c.entry.text}: ${JSON.stringify(got)}`,
            )
          }
        }),
      )
    })

    it('an IPv4 address and its IPv4-mapped spelling classify alike under any allow/block policy', async function () {
      const policyCase = fc.record({
        value: v4Value,
        settings: settingsArb,
        spelling: fc.constantFrom('::ffff:', '0:0:0:0:0:ffff:', '[::ffff:'),
      })
      await check(
        fc.property(policyCase, (c) => {
          const { policy } = settingsOf(c.settings).filter
          const t = v4Text(c.value)
          const mappedText = `${c.spelling}${t}${c.spelling.startsWith('[') ? ']' : ''}`
          const plain = classifyAddress(t, policy)
          const mapped = classifyAddress(mappedText, policy)
          const show = `${t}: ${JSON.stringify(plain)}; ${mappedText}: ${JSON.stringify(mapped)}; allow ${c.settings.allow}; block ${c.settings.block}`
          assert.equal(mapped.routable, plain.routable, show)
          if (plain.routable) assert.equal(mapped.address, plain.address, show)
        }),
      )
    })

    it('garbage is never routable', async function () {
      await check(
        fc.property(fc.oneof(fc.constantFrom(...GARBAGE), fc.string({ maxLength: 40 })), (text) => {
          const got = classifyAddress(text)
          const plain = text
            .trim()
            .replace(/^\[(.*)\]$/, '$1')
            .replace(/%.*$/, '')
          if (parseAddress(plain.toLowerCase())) return // a real address after all
          assert.equal(got.routable, false, JSON.stringify(text))
          assert.equal(got.reason, 'not an IP address')
        }),
      )
    })
  })

  describe('race engine under randomized faults, fake sockets and a fake clock', function () {
    class FakeSocket extends EventEmitter implements RaceSocket {
      destroyed = false
      timer: ReturnType<typeof setTimeout> | undefined = undefined
      constructor(readonly index: number) {
        super()
      }
      destroy(): void {
        this.destroyed = true
        // A destroyed socket never reports later: its scripted event is cancelled.
        if (this.timer !== undefined) clearTimeout(this.timer)
        this.timer = undefined
      }
    }

    // From 1 ms: Node runs a setTimeout of 0 after 1 ms, so a 0 would not mean "at once".
    const time = fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 1, max: 5000 }) },
      { weight: 1, arbitrary: fc.constantFrom(1, 10, 250, 500, 2000) },
    )
    /** What one address's connect does: connects or fails after t ms, never answers, or throws. */
    type Fate = { kind: 'connect' | 'error'; t: number } | { kind: 'never' } | { kind: 'throws' }
    const fate = fc.oneof(
      { weight: 3, arbitrary: time.map((t): Fate => ({ kind: 'connect', t })) },
      { weight: 3, arbitrary: time.map((t): Fate => ({ kind: 'error', t })) },
      { weight: 2, arbitrary: fc.constant<Fate>({ kind: 'never' }) },
      { weight: 1, arbitrary: fc.constant<Fate>({ kind: 'throws' }) },
    )
    const raceCase = fc.record({
      targets: fc.array(fc.record({ group: fc.integer({ min: 0, max: 3 }), fate }), {
        minLength: 1,
        maxLength: 12,
      }),
      attemptDelayMs: fc.oneof(fc.integer({ min: 10, max: 2000 }), fc.constantFrom(10, 250)),
      groupDelayMs: fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 30000 })),
      deadlineMs: fc.oneof(fc.integer({ min: 100, max: 8000 }), fc.integer({ min: 100, max: 60000 })),
      // Learnt per-target attempt delays (RaceOptions.attemptDelayFor), by position in the race.
      delays: fc.option(fc.array(fc.integer({ min: 10, max: 2000 }), { minLength: 12, maxLength: 12 }), {
        nil: undefined,
      }),
    })

    type RaceCase = ValueOf<typeof raceCase>
    type Spec = Array<RaceCase['targets'][number] & { i: number }>

    async function runRace(rc: RaceCase) {
      const spec: Spec = rc.targets
        .map((t, i) => ({ ...t, i }))
        .sort((a, b) => a.group - b.group || a.i - b.i)
      const targets = spec.map((s, i): RaceTarget => ({
        address: `192.0.2.${i + 1}`,
        family: 'ipv4',
        exchange: `mx${s.group}.test`,
        preference: (s.group + 1) * 10,
        port: 25,
      }))
      const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
      try {
        const sockets = new Map<number, FakeSocket>()
        const started: Array<{ i: number; at: number }> = []
        const connect = (target: RaceTarget): FakeSocket => {
          const i = targets.indexOf(target)
          started.push({ i, at: clock.now })
          const f = spec[i].fate
          if (f.kind === 'throws')
            throw Object.assign(new Error('bind EINVAL'), { code: 'EINVAL', syscall: 'bind' })
          const s = new FakeSocket(i)
          sockets.set(i, s)
          if (f.kind === 'connect') {
            s.timer = setTimeout(() => {
              s.timer = undefined
              s.emit('connect')
            }, f.t)
          } else if (f.kind === 'error') {
            s.timer = setTimeout(() => {
              s.timer = undefined
              s.emit(
                'error',
                Object.assign(new Error('refused'), { code: 'ECONNREFUSED', syscall: 'connect' }),
              )
            }, f.t)
          }
          return s
        }
        let result: RaceResult<FakeSocket> | undefined
        let failure: unknown
        const { delays } = rc
        raceConnect(targets, {
          attemptDelayMs: rc.attemptDelayMs,
          ...(delays ? { attemptDelayFor: (t: RaceTarget) => delays[targets.indexOf(t)] } : {}),
          groupDelayMs: rc.groupDelayMs,
          deadlineMs: rc.deadlineMs,
          connect,
          now: () => clock.now,
        }).then(
          (r) => (result = r),
          (e) => (failure = e),
        )
        for (let steps = 0; ; steps++) {
          await null
          if (result || failure) break
          assert.ok(clock.countTimers() > 0, 'the race neither finished nor has a timer pending')
          assert.ok(steps < 1000, 'the race runs away')
          clock.next()
        }
        if (!result) throw failure
        const timersLeft = clock.countTimers()
        return { targets, spec, sockets, started, result, timersLeft }
      } finally {
        clock.uninstall()
      }
    }

    it('one winner or a complete failure list; losers destroyed, winner not; no timer left; attempts in order', async function () {
      await check(
        fc.asyncProperty(raceCase, async (rc) => {
          const { targets, spec, sockets, started, result, timersLeft } = await runRace(rc)
          assert.equal(timersLeft, 0, 'timers left after the race')
          const { attempts, winner, elapsedMs } = result

          // Attempts start in list order, each once, never before its predecessor.
          assert.deepEqual(
            started.map((s) => s.i),
            targets.slice(0, started.length).map((_, i) => i),
          )
          assert.equal(attempts.length, started.length)
          attempts.forEach((a, i) => {
            assert.equal(a.target, targets[i])
            assert.equal(a.startMs, started[i].at)
            if (i) assert.ok(a.startMs >= attempts[i - 1].startMs)
            assert.notEqual(a.outcome, 'pending', `attempt ${i} left pending`)
          })

          const connected = attempts.map((a, i) => (a.outcome === 'connected' ? i : -1)).filter((i) => i >= 0)
          const connectAt = (i: number): number =>
            spec[i].fate.kind === 'connect' ? attempts[i].startMs + spec[i].fate.t : Infinity
          if (winner) {
            assert.deepEqual(connected, [winner.index])
            assert.equal(winner.target, targets[winner.index])
            assert.equal(winner.socket, sockets.get(winner.index))
            assert.equal(winner.socket.destroyed, false, 'the winner was destroyed')
            const w = connectAt(winner.index)
            assert.equal(attempts[winner.index].endMs, w)
            assert.ok(w < rc.deadlineMs, 'a winner after the deadline')
            // The first to connect among the started attempts (a tie goes to the earlier one).
            attempts.forEach((_, j) => {
              if (j === winner.index) return
              const at = connectAt(j)
              assert.ok(
                at > w || (at === w && j > winner.index),
                `attempt ${j} would have connected at ${at} < ${w}`,
              )
              assert.ok(['failed', 'cancelled'].includes(attempts[j].outcome), attempts[j].outcome)
            })
          } else {
            assert.deepEqual(connected, [])
            for (const a of attempts) assert.ok(['failed', 'timed out'].includes(a.outcome), a.outcome)
            // Untried targets only when the deadline passed.
            if (attempts.length < targets.length)
              assert.ok(elapsedMs >= rc.deadlineMs, `untried at ${elapsedMs}`)
            else if (elapsedMs < rc.deadlineMs) for (const a of attempts) assert.equal(a.outcome, 'failed')
            attempts.forEach((_, j) =>
              assert.ok(connectAt(j) >= elapsedMs, `attempt ${j} connects at ${connectAt(j)}`),
            )
          }
          for (const [i, s] of sockets)
            if (!winner || i !== winner.index) assert.ok(s.destroyed, `socket ${i} not destroyed`)

          // A late event from a loser must neither throw nor change the result.
          const before = JSON.stringify(attempts)
          for (const [i, s] of sockets) {
            if (winner && i === winner.index) continue
            s.emit('error', Object.assign(new Error('late'), { code: 'ECONNRESET' }))
            s.emit('connect')
          }
          assert.equal(JSON.stringify(attempts), before)
        }),
      )
    })

    /**
     * The RFC 8305 §5 schedule, restated as a discrete-event simulation over the scripted
     * fates: when each attempt must start. `ambiguous` marks cases where two events fall on
     * the same millisecond and the order the event loop runs them in decides the outcome.
     */
    function scheduledStarts(
      rc: RaceCase,
      spec: Spec,
      targets: RaceTarget[],
    ): { starts: number[]; ambiguous: boolean } {
      const n = targets.length
      const starts: number[] = []
      const live = new Set<number>()
      const ends: Array<{ at: number; i: number; kind: 'connect' | 'error' }> = []
      let now = 0
      let failedSinceStart = false
      let lastStart = 0
      let lastDelay = rc.attemptDelayMs
      let groupStart = 0
      let ambiguous = false
      // The delay after an attempt is its own target's (learnt), else the fixed one.
      const delayOf = (i: number): number => rc.delays?.[i] ?? rc.attemptDelayMs
      const due = () => {
        const next = starts.length
        if (next >= n) return Infinity
        if (next === 0) return 0
        const current = targets[next - 1].preference
        if (targets[next].preference === current) return failedSinceStart ? now : lastStart + lastDelay
        if (![...live].some((i) => targets[i].preference === current)) return now
        return Math.max(lastStart + lastDelay, groupStart + rc.groupDelayMs)
      }
      for (let guard = 0; guard < 10000; guard++) {
        while (due() <= now && now < rc.deadlineMs) {
          const i = starts.length
          if (i === 0 || targets[i - 1].preference !== targets[i].preference) groupStart = now
          lastStart = now
          lastDelay = delayOf(i)
          failedSinceStart = false
          starts.push(now)
          const fate = spec[i].fate
          if (fate.kind === 'throws') failedSinceStart = true
          else {
            live.add(i)
            if (fate.kind !== 'never') ends.push({ at: now + fate.t, i, kind: fate.kind })
          }
        }
        if (starts.length >= n && live.size === 0) break
        const pending = ends.filter((e) => live.has(e.i))
        const endAt = Math.min(...pending.map((e) => e.at))
        const dueAt = due()
        if (endAt === dueAt || endAt === rc.deadlineMs) ambiguous = true
        now = Math.min(endAt, dueAt, rc.deadlineMs)
        if (now >= rc.deadlineMs && endAt >= rc.deadlineMs) break
        if (now !== endAt) continue
        const at = pending.filter((e) => e.at === endAt)
        if (at.some((e) => e.kind === 'connect')) {
          if (at.some((e) => e.kind === 'error')) ambiguous = true
          break
        }
        // Each failure starts the next address at once: two on one millisecond start two.
        // One per turn of the loop, so the due starts run between them.
        live.delete(at[0].i)
        failedSinceStart = true
      }
      return { starts, ambiguous }
    }

    it('every attempt starts when the RFC 8305 schedule says: attempt delay, at once after a failure, group delay', async function () {
      await check(
        fc.asyncProperty(raceCase, async (rc) => {
          const { targets, spec, started } = await runRace(rc)
          const expected = scheduledStarts(rc, spec, targets)
          fc.pre(!expected.ambiguous)
          assert.deepEqual(
            started.map((s) => s.at),
            expected.starts,
            `attempt delay ${rc.attemptDelayMs} (learnt ${rc.delays?.join(',') ?? 'none'}), group delay ${rc.groupDelayMs}, deadline ${rc.deadlineMs}`,
          )
        }),
      )
    })

    // RFC 8305 §6: targets that arrive while the race runs (answers of late lookups).
    const fedCase = fc.record({
      targets: fc.array(
        fc.record({
          group: fc.integer({ min: 0, max: 3 }),
          fate,
          arriveAt: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 3, arbitrary: time }),
        }),
        { minLength: 1, maxLength: 10 },
      ),
      attemptDelayMs: fc.oneof(fc.integer({ min: 10, max: 2000 }), fc.constantFrom(10, 250)),
      groupDelayMs: fc.integer({ min: 0, max: 5000 }),
      deadlineMs: fc.integer({ min: 100, max: 20000 }),
    })
    type FedCase = ValueOf<typeof fedCase>
    type FedSpec = FedCase['targets']

    const fedTargets = (spec: FedSpec): RaceTarget[] =>
      spec.map((s, i) => ({
        address: `192.0.2.${i + 1}`,
        family: 'ipv4',
        exchange: `mx${s.group}.test`,
        preference: (s.group + 1) * 10,
        port: 25,
      }))

    /** The first arrivals start the race (arriveAt 0; the first target when none is). */
    const initialOf = (spec: FedSpec): number[] => {
      const at0 = spec.map((s, i) => (s.arriveAt === 0 ? i : -1)).filter((i) => i >= 0)
      return at0.length ? at0 : [0]
    }
    const byGroup = (spec: FedSpec, list: number[]): number[] =>
      list.slice().sort((a, b) => spec[a].group - spec[b].group)

    async function runFedRace(rc: FedCase) {
      const { targets: spec } = rc
      const targets = fedTargets(spec)
      const initial = initialOf(spec)
      const late = spec.map((_, i) => i).filter((i) => !initial.includes(i))
      const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'], now: 0 })
      try {
        const started: Array<{ i: number; at: number }> = []
        const connect = (target: RaceTarget): FakeSocket => {
          const i = targets.indexOf(target)
          started.push({ i, at: clock.now })
          const f = spec[i].fate
          if (f.kind === 'throws') throw Object.assign(new Error('bind EINVAL'), { code: 'EINVAL' })
          const s = new FakeSocket(i)
          if (f.kind !== 'never')
            s.timer = setTimeout(() => {
              s.timer = undefined
              if (f.kind === 'connect') s.emit('connect')
              else s.emit('error', Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))
            }, f.t)
          return s
        }
        let result: RaceResult<FakeSocket> | undefined
        const race = startRace(
          byGroup(
            spec,
            initial.map((i) => i),
          ).map((i) => targets[i]),
          {
            attemptDelayMs: rc.attemptDelayMs,
            groupDelayMs: rc.groupDelayMs,
            deadlineMs: rc.deadlineMs,
            connect,
            now: () => clock.now,
          },
        )
        void race.result.then((r) => (result = r))
        const lastArrival = Math.max(0, ...late.map((i) => spec[i].arriveAt))
        // One timer per arrival time, adding that time's targets in index order.
        const times = [...new Set(late.map((i) => spec[i].arriveAt))].sort((a, b) => a - b)
        const feeds = times.map((t) =>
          setTimeout(() => {
            race.add(late.filter((i) => spec[i].arriveAt === t).map((i) => targets[i]))
            if (t === lastArrival) race.close()
          }, t),
        )
        if (!times.length) race.close()
        for (let steps = 0; ; steps++) {
          await null
          if (result) break
          assert.ok(clock.countTimers() > 0, 'the race neither finished nor has a timer pending')
          assert.ok(steps < 2000, 'the race runs away')
          clock.next()
        }
        // Arrivals after the end are the test's own timers, not the race's.
        for (const f of feeds) clearTimeout(f)
        const timersLeft = clock.countTimers()
        return { targets, started, result, timersLeft, late }
      } finally {
        clock.uninstall()
      }
    }

    /**
     * The §5 schedule over a list that grows (§6): arrivals join the not-yet-started part,
     * which is kept in MX preference order (arrival order inside a group); a target more
     * preferred than the latest start counts as one of its group. `ambiguous`: two events on
     * one millisecond whose order the event loop decides.
     */
    function fedSchedule(rc: FedCase): { starts: Array<[number, number]>; ambiguous: boolean } {
      const { targets: spec } = rc
      const pref = (i: number): number => spec[i].group
      const initial = initialOf(spec)
      const arrivals = spec
        .map((s, i) => ({ i, at: s.arriveAt }))
        .filter((a) => !initial.includes(a.i))
        .sort((a, b) => a.at - b.at || a.i - b.i)
      const lastArrival = Math.max(0, ...arrivals.map((a) => a.at))
      const order = byGroup(spec, initial)
      const starts: Array<[number, number]> = []
      const live = new Set<number>()
      const ends: Array<{ at: number; i: number; kind: 'connect' | 'error' }> = []
      let now = 0
      let failedSinceStart = false
      let lastStart = 0
      let groupStart = 0
      let ambiguous = false
      const due = (): number => {
        const next = starts.length
        if (next >= order.length) return Infinity
        if (next === 0) return 0
        const current = pref(order[next - 1])
        if (pref(order[next]) <= current) return failedSinceStart ? now : lastStart + rc.attemptDelayMs
        if (![...live].some((i) => pref(i) === current)) return now
        return Math.max(lastStart + rc.attemptDelayMs, groupStart + rc.groupDelayMs)
      }
      for (let guard = 0; guard < 10000; guard++) {
        // Arrivals due now join first: their timer was armed before any race timer of this ms.
        const arriving = arrivals.filter((a) => a.at === now)
        if (arriving.length) {
          arrivals.splice(0, arriving.length)
          const pending = [...order.slice(starts.length), ...arriving.map((a) => a.i)]
          order.splice(starts.length, Infinity, ...pending.slice().sort((a, b) => pref(a) - pref(b)))
        }
        while (due() <= now && now < rc.deadlineMs) {
          const i = order[starts.length]
          if (!starts.length || pref(order[starts.length - 1]) !== pref(i)) groupStart = now
          lastStart = now
          failedSinceStart = false
          starts.push([i, now])
          const f = spec[i].fate
          if (f.kind === 'throws') failedSinceStart = true
          else {
            live.add(i)
            if (f.kind !== 'never') ends.push({ at: now + f.t, i, kind: f.kind })
          }
        }
        const closed = now >= lastArrival && !arrivals.length
        if (closed && starts.length >= order.length && live.size === 0) break
        const pending = ends.filter((e) => live.has(e.i))
        const endAt = Math.min(...pending.map((e) => e.at))
        const dueAt = due()
        const arriveAt = arrivals.length ? arrivals[0].at : Infinity
        const next = Math.min(endAt, dueAt, arriveAt, rc.deadlineMs)
        const events = [endAt, dueAt, arriveAt, rc.deadlineMs].filter((t) => t === next).length
        if (events > 1 && next !== Infinity) ambiguous = true
        now = next
        if (now >= rc.deadlineMs) break
        if (now !== endAt) continue
        const at = pending.filter((e) => e.at === endAt)
        if (at.some((e) => e.kind === 'connect')) {
          if (at.some((e) => e.kind === 'error')) ambiguous = true
          break
        }
        live.delete(at[0].i)
        failedSinceStart = true
      }
      return { starts, ambiguous }
    }

    it('targets added to a running race start when the RFC 8305 §5 schedule says, in §6 order', async function () {
      await check(
        fc.asyncProperty(fedCase, async (rc) => {
          const expected = fedSchedule(rc)
          fc.pre(!expected.ambiguous)
          const { started, timersLeft, result } = await runFedRace(rc)
          assert.equal(timersLeft, 0, 'timers left after the race')
          assert.deepEqual(
            started.map((s) => [s.i, s.at]),
            expected.starts,
            `attempt delay ${rc.attemptDelayMs}, group delay ${rc.groupDelayMs}, deadline ${rc.deadlineMs}`,
          )
          // Nothing is started twice; whatever was never started is reported untried.
          const ids = started.map((s) => s.i)
          assert.equal(new Set(ids).size, ids.length)
          const known = new Set([...ids, ...result.untried.map((t) => Number(t.address.split('.')[3]) - 1)])
          for (const i of ids) assert.ok(known.has(i))
        }),
      )
    })

    it('a connect that throws for the last address of a group, while the group still tries, keeps the group delay', async function () {
      // Group 10: one silent address, then one whose connect throws; group 20 connects at once.
      const spec: RaceCase['targets'] = [
        { group: 0, fate: { kind: 'never' } },
        { group: 0, fate: { kind: 'throws' } },
        { group: 1, fate: { kind: 'connect', t: 1 } },
      ]
      const { started, result } = await runRace({
        targets: spec,
        attemptDelayMs: 250,
        groupDelayMs: 2000,
        deadlineMs: 15000,
        delays: undefined,
      })
      assert.deepEqual(
        started.map((s) => s.at),
        [0, 250, 2000],
      )
      assert.equal(result.winner!.index, 2)
    })
  })
})

describe('properties: routes that race before every lookup answered (RFC 8305 §3, §6)', function () {
  this.timeout(600000)

  class ScriptedSocket extends EventEmitter implements RaceSocket {
    destroyed = false
    destroy(): void {
      this.destroyed = true
    }
  }

  // A lookup answers after `at` ms with addresses, fails with a code, or is never answered
  // (the resolver gives up after its 5 s timeout).
  const answer = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ at: fc.integer({ min: 1, max: 400 }), n: fc.integer({ min: 0, max: 2 }) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ at: fc.integer({ min: 1, max: 400 }), code: fc.constant('ESERVFAIL') }),
    },
    { weight: 1, arbitrary: fc.constant('never' as const) },
  )
  const routeCase = fc.record({
    hosts: fc.array(fc.record({ preference: fc.constantFrom(10, 20, 30), aaaa: answer, a: answer }), {
      minLength: 1,
      maxLength: 3,
    }),
    // Per address: connects after t ms, or never answers.
    connectAfter: fc.array(fc.option(fc.integer({ min: 1, max: 600 }), { nil: undefined }), {
      minLength: 12,
      maxLength: 12,
    }),
    resolutionDelayMs: fc.constantFrom(0, 50, 120),
    seed: fc.integer(),
  })

  it('the race starts with the leading MX group, records what answered and names what did not', async function () {
    await check(
      fc.asyncProperty(routeCase, async (rc) => {
        const exchanges = rc.hosts.map((_, i) => `mx${i}.route.test`)
        // Each lookup's addresses: distinct per host and family, in documentation ranges.
        type Script = (typeof rc.hosts)[number]['a']
        const addressesOf = (i: number, type: 'AAAA' | 'A', s: Script): string[] =>
          typeof s === 'object' && 'n' in s
            ? Array.from({ length: s.n }, (_, k) =>
                type === 'AAAA' ? `2001:db8::${i + 1}:${k + 1}` : `192.0.2.${i * 4 + k + 1}`,
              )
            : []
        const lookups = rc.hosts.flatMap((h, i) =>
          (['AAAA', 'A'] as const).map((type) => {
            const s = type === 'AAAA' ? h.aaaa : h.a
            return {
              exchange: exchanges[i],
              preference: h.preference,
              type,
              at: s === 'never' ? 5000 : s.at,
              addresses: addressesOf(i, type, s),
              code: s === 'never' ? 'ETIMEOUT' : 'code' in s ? s.code : undefined,
            }
          }),
        )
        const allAddresses = lookups.flatMap((l) => l.addresses)
        const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'performance'], now: 0 })
        try {
          const dns: DnsClient = {
            resolveMx: async () =>
              rc.hosts.map((h, i) => ({ exchange: exchanges[i], priority: h.preference })),
            resolve6: (name) => lookupOf(name, 'AAAA'),
            resolve4: (name) => lookupOf(name, 'A'),
          }
          function lookupOf(name: string, type: 'AAAA' | 'A'): Promise<string[]> {
            const l = lookups.find((x) => x.exchange === name && x.type === type)!
            return new Promise((resolve, reject) =>
              setTimeout(
                () =>
                  l.code ? reject(Object.assign(new Error(l.code), { code: l.code })) : resolve(l.addresses),
                l.at,
              ),
            )
          }
          const starts: Array<{ target: RaceTarget; at: number }> = []
          const racer = {
            connect(t: RaceTarget): ScriptedSocket {
              starts.push({ target: t, at: clock.now })
              const s = new ScriptedSocket()
              const after = rc.connectAfter[allAddresses.indexOf(t.address)]
              if (after !== undefined) setTimeout(() => s.destroyed || s.emit('connect'), after)
              return s
            },
            hold: () => {},
          }
          const settings = parseSettings({
            filter: { allow: ['192.0.2.0/24', '2001:db8::/32'] },
            race: { success: 'connect', deadline_ms: '3000' },
            dns: { resolution_delay_ms: String(rc.resolutionDelayMs) },
          }).settings
          let record: Awaited<ReturnType<typeof routeDomain>> | undefined
          let failure: unknown
          routeDomain('route.test', {
            settings,
            dns,
            health: new HealthCache({ ttlMs: 60_000, maxEntries: 100 }),
            racer,
            random: seededRandom(rc.seed),
          }).then(
            (r) => (record = r),
            (e) => (failure = e),
          )
          for (let steps = 0; !record && !failure; steps++) {
            assert.ok(steps < 500, 'the route never answers')
            await clock.tickAsync(0)
            if (record || failure) break
            assert.ok(clock.countTimers() > 0, 'no timer left and no answer')
            await clock.nextAsync()
          }
          if (failure) throw failure
          const r = record!
          const decidedAt = clock.now
          // An answer on the millisecond of the decision: the event loop's order decides whether
          // it counts; not judged here.
          fc.pre(!lookups.some((l) => l.at === decidedAt))

          // What the record says DNS answered is what had answered when it was decided.
          const pendingThen = lookups.filter((l) => l.at > decidedAt).map((l) => `${l.exchange} ${l.type}`)
          assert.deepEqual([...(r.pendingLookups ?? [])].sort(), r.race ? pendingThen.sort() : [])
          if (r.resolution.kind === 'hosts') {
            for (const h of r.resolution.hosts) {
              const answered = lookups.filter((l) => l.exchange === h.exchange && l.at <= decidedAt)
              assert.deepEqual(
                h.addresses,
                answered.flatMap((l) => l.addresses),
              )
            }
          }

          if (r.decision.action === 'deliver') {
            const addrs = r.decision.targets.map((t) => t.address)
            assert.ok(addrs.length > 0, 'an empty list')
            assert.equal(new Set(addrs).size, addrs.length, 'an address twice')
            if (r.decision.winner) assert.equal(r.decision.targets[0], r.decision.winner)
            for (const a of addrs) assert.ok(allAddresses.includes(a))
          }

          if (starts.length) {
            // The first attempt is of the group that led when it started: no host of a more
            // preferred group could still give an address then.
            const t0 = starts[0].at
            const open = lookups.filter((l) => l.at > t0 || (l.addresses.length > 0 && l.at <= t0))
            const lead = Math.min(...open.map((l) => l.preference))
            assert.equal(starts[0].target.preference, lead, `first attempt at ${t0} ms`)
            // It started no later than the resolution delay after its group's first answer, the
            // group's first usable answer, or the last answer of the more preferred groups.
            const groupFirst = Math.min(...lookups.filter((l) => l.preference === lead).map((l) => l.at))
            const usableBy = Math.min(
              ...lookups.filter((l) => l.preference === lead && l.addresses.length).map((l) => l.at),
            )
            const moreDone = Math.max(0, ...lookups.filter((l) => l.preference < lead).map((l) => l.at))
            assert.ok(
              t0 <= Math.max(usableBy, groupFirst + rc.resolutionDelayMs, moreDone),
              `started at ${t0}, usable at ${usableBy}, first answer at ${groupFirst}, more preferred done at ${moreDone}`,
            )
            // Every attempt is of an address that had answered by its start.
            for (const s of starts) {
              const l = lookups.find((x) => x.addresses.includes(s.target.address))!
              assert.ok(l.at <= s.at, `${s.target.address} tried at ${s.at} before its answer at ${l.at}`)
            }
          }
        } finally {
          clock.uninstall()
        }
      }),
    )
  })
})

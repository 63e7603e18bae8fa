'use strict'

// The soak run's fault layout: per domain its DNS behaviour and MX hosts, each address with
// the role of what answers there. A pure function of (domains, seed), with the plugin's own
// seeded random source, so a seed always gives the same layout.

const { seededRandom } = require('../../support')

// Bounces go to the sender, soak@dsn.soak.test, whose MX is a dedicated healthy sink: each
// bounce then yields exactly one DSN there (a second cross-check of the bounce count), and no
// DSN can itself bounce or defer. A null sender would make Haraka drop bounces silently
// ("double bounce"), leaving nothing to check them against.
const SENDER = 'soak@dsn.soak.test'
const DSN_DOMAIN = 'dsn.soak.test'
const NET = '127.77'
const POOLS = {
  healthy: Array.from({ length: 6 }, (_, i) => `${NET}.0.${10 + i}`),
  refused: Array.from({ length: 8 }, (_, i) => `${NET}.1.${1 + i}`),
  blackhole: [`${NET}.2.1`, `${NET}.2.2`, `${NET}.2.3`],
  busy: [`${NET}.3.1`, `${NET}.3.2`],
  silent: [`${NET}.4.1`, `${NET}.4.2`],
}
const DSN_SINK = `${NET}.0.250`
const HOLE6 = '::1'

/** Fault kinds; the first domains get one each, so a small run still covers them all. */
const FAULTS = [
  'nxdomain',
  'servfail',
  'slow-dns',
  'v6-blackhole',
  'v6-linklocal',
  'v4-refused',
  'v4-blackhole',
  'v4-silent',
  'v4-421',
]
const ROLE_TAG = {
  refused: 'v4-refused',
  blackhole: 'v4-blackhole',
  silent: 'v4-silent',
  busy: 'v4-421',
}

function weighted(rnd, table) {
  const total = table.reduce((s, [, w]) => s + w, 0)
  let x = rnd() * total
  for (const [value, w] of table) {
    x -= w
    if (x < 0) return value
  }
  return table[table.length - 1][0]
}

/**
 * The fault layout: per domain its DNS behaviour and MX hosts, each host with AAAA and A
 * addresses whose roles say what answers there. Pure function of (domains, seed).
 */
function makeLayout({ domains, seed }) {
  const rnd = seededRandom(seed)
  const pickFrom = (list) => list[Math.floor(rnd() * list.length)]
  const linkLocal = () =>
    `fe80::${Math.floor(rnd() * 0xffff).toString(16)}:${Math.floor(rnd() * 0xffff).toString(16)}`
  const list = []
  for (let d = 0; d < domains; d++) {
    const forced = d < FAULTS.length ? FAULTS[d] : null
    const name = `d${d}.soak.test`
    const dom = { name, dns: 'ok', hosts: [], tags: new Set() }
    // A domain forced to carry an address fault must resolve, or the fault is never met.
    const dnsTable = [
      ['nxdomain', forced ? 0 : 0.05],
      ['servfail', forced ? 0 : 0.05],
      ['slow', 0.15],
      ['ok', 0.75],
    ]
    dom.dns =
      forced === 'nxdomain' || forced === 'servfail' || forced === 'slow-dns'
        ? forced.replace('-dns', '')
        : weighted(rnd, dnsTable)
    if (dom.dns === 'nxdomain' || dom.dns === 'servfail') {
      dom.tags.add(dom.dns)
      list.push(dom)
      continue
    }
    if (dom.dns === 'slow') dom.tags.add('slow-dns')
    const hostCount = weighted(rnd, [
      [1, 0.6],
      [2, 0.4],
    ])
    for (let h = 0; h < hostCount; h++) {
      const host = { name: `mx${h + 1}.${name}`, preference: 10 * (h + 1), aaaa: [], a: [] }
      const v6 = weighted(rnd, [
        ['none', 0.4],
        ['blackhole', 0.35],
        ['linklocal', 0.15],
        ['both', 0.1],
      ])
      if (v6 === 'blackhole' || v6 === 'both') host.aaaa.push({ address: HOLE6, role: 'blackhole' })
      if (v6 === 'linklocal' || v6 === 'both') host.aaaa.push({ address: linkLocal(), role: 'linklocal' })
      const aCount = weighted(rnd, [
        [1, 0.65],
        [2, 0.35],
      ])
      for (let i = 0; i < aCount; i++) {
        const role = weighted(rnd, [
          ['healthy', 0.62],
          ['refused', 0.12],
          ['blackhole', 0.1],
          ['silent', 0.1],
          ['busy', 0.06],
        ])
        const address = pickFrom(POOLS[role])
        if (!host.a.some((x) => x.address === address)) host.a.push({ address, role })
      }
      dom.hosts.push(host)
    }
    // The forced fault goes on the first host so that it is met, not hidden behind a backup.
    const first = dom.hosts[0]
    if (forced === 'v6-blackhole' && !first.aaaa.some((x) => x.role === 'blackhole'))
      first.aaaa.unshift({ address: HOLE6, role: 'blackhole' })
    if (forced === 'v6-linklocal' && !first.aaaa.some((x) => x.role === 'linklocal'))
      first.aaaa.push({ address: linkLocal(), role: 'linklocal' })
    const forcedRole = Object.keys(ROLE_TAG).find((r) => ROLE_TAG[r] === forced)
    if (forcedRole) {
      first.a = first.a.filter((x) => x.role !== forcedRole)
      first.a.unshift({ address: pickFrom(POOLS[forcedRole]), role: forcedRole })
    }

    for (const host of dom.hosts) {
      for (const x of host.aaaa) dom.tags.add(x.role === 'blackhole' ? 'v6-blackhole' : 'v6-linklocal')
      for (const x of host.a) if (ROLE_TAG[x.role]) dom.tags.add(ROLE_TAG[x.role])
    }
    if (!dom.tags.size) dom.tags.add('clean')
    list.push(dom)
  }
  return list.map((d) => ({ ...d, tags: [...d.tags].sort() }))
}

/** The DNS fixture's zones for a layout, plus the sender's domain. */
function zonesOf(layout) {
  const zones = {
    [DSN_DOMAIN]: { mx: [{ preference: 10, exchange: `mx.${DSN_DOMAIN}` }] },
    [`mx.${DSN_DOMAIN}`]: { a: [DSN_SINK] },
  }
  for (const dom of layout) {
    if (dom.dns === 'nxdomain') continue // no zone: the fixture answers NXDOMAIN
    if (dom.dns === 'servfail') {
      zones[dom.name] = { rcode: 'SERVFAIL' }
      continue
    }
    const delay = dom.dns === 'slow' ? { delayMs: 200 } : {}
    zones[dom.name] = { mx: dom.hosts.map((h) => ({ preference: h.preference, exchange: h.name })), ...delay }
    for (const h of dom.hosts) {
      zones[h.name] = { aaaa: h.aaaa.map((x) => x.address), a: h.a.map((x) => x.address), ...delay }
    }
  }
  return zones
}

/** Every address the layout may use as an MX, whatever its role. */
const ALL_HOSTS = [...Object.values(POOLS).flat(), DSN_SINK, HOLE6]

const ROLE_OF = new Map([
  ...Object.entries(POOLS).flatMap(([role, list]) => list.map((a) => [a, role])),
  [DSN_SINK, 'healthy'],
])

/** A deferral or bounce text with the per-domain details replaced, so that equal reasons count together. */
module.exports = {
  SENDER,
  DSN_DOMAIN,
  POOLS,
  DSN_SINK,
  HOLE6,
  FAULTS,
  ROLE_TAG,
  ROLE_OF,
  ALL_HOSTS,
  makeLayout,
  zonesOf,
}

// Which families this host can send from: the interface view, destination scopes, [bind],
// the "neither: both" rule, the re-reading on a fake clock and a real namespace without IPv6.

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import type os from 'node:os'

import {
  describeHostFamilies,
  familiesToQuery,
  HostConnectivity,
  type InterfaceList,
  mayLimit,
  readHostFamilies,
  scopeOf,
  unusableReason,
} from '../lib/connectivity'

const info = (address: string, internal = false): os.NetworkInterfaceInfo =>
  ({
    address,
    netmask: address.includes(':') ? 'ffff:ffff:ffff:ffff::' : '255.255.255.0',
    family: address.includes(':') ? 'IPv6' : 'IPv4',
    mac: '00:00:00:00:00:00',
    internal,
    cidr: null,
    ...(address.includes(':') ? { scopeid: 0 } : {}),
  }) as os.NetworkInterfaceInfo

const LOOPBACK_ONLY: InterfaceList = { lo: [info('127.0.0.1', true), info('::1', true)] }
const V4_ONLY_LOOPBACK: InterfaceList = { lo: [info('127.0.0.1', true)] }
const V4_NAT: InterfaceList = {
  lo: [info('127.0.0.1', true), info('::1', true)],
  eth0: [info('192.168.1.10'), info('fe80::1'), info('fd00::10')],
}
const DUAL: InterfaceList = { ...V4_NAT, eth0: [info('192.168.1.10'), info('2001:4860:1::10')] }

describe('connectivity', () => {
  it('names source scopes: global, private (RFC 1918, CGN, ULA), loopback, link-local', () => {
    assert.equal(scopeOf('2001:4860::1'), 'global')
    assert.equal(scopeOf('8.8.8.8'), 'global')
    assert.equal(scopeOf('10.1.2.3'), 'private')
    assert.equal(scopeOf('100.64.0.1'), 'private')
    assert.equal(scopeOf('fd00::1'), 'private')
    assert.equal(scopeOf('::1'), 'loopback')
    assert.equal(scopeOf('127.0.0.2'), 'loopback')
    assert.equal(scopeOf('::ffff:127.0.0.1'), 'loopback')
    assert.equal(scopeOf('fe80::1%eth0'), 'link-local')
    assert.equal(scopeOf('banana'), undefined)
  })

  it('names a scope the same when asked again, whatever was asked in between', () => {
    const asked = ['::1', 'banana', '10.1.2.3', '::1', 'banana', '10.1.2.3']
    assert.deepEqual(
      asked.map((a) => scopeOf(a)),
      ['loopback', undefined, 'private', 'loopback', undefined, 'private'],
    )
    for (let i = 0; i < 5000; i++) scopeOf(`10.0.${i >> 8}.${i & 255}`)
    assert.equal(scopeOf('::1'), 'loopback')
    assert.equal(scopeOf('banana'), undefined)
  })

  it('a NAT host without global IPv6 reaches global IPv6 not at all, global IPv4 and loopback both', () => {
    const host = readHostFamilies(V4_NAT, {})
    assert.match(unusableReason(host, 'ipv6', '2001:4860::25') ?? '', /no IPv6 connectivity: no global IPv6/)
    assert.equal(unusableReason(host, 'ipv4', '8.8.4.4'), undefined)
    assert.equal(unusableReason(host, 'ipv6', '::1'), undefined)
    // A unique-local MX (allow[]ed) is reached from the unique-local source.
    assert.equal(unusableReason(host, 'ipv6', 'fd00::25'), undefined)
    assert.equal(unusableReason(readHostFamilies(DUAL, {}), 'ipv6', '2001:4860::25'), undefined)
  })

  it('only a host short of a global address of some family, or with a [bind], may limit anything', () => {
    assert.equal(mayLimit(readHostFamilies({ eth0: [info('8.8.8.25'), info('2001:4860:1::10')] }, {})), false)
    assert.equal(mayLimit(readHostFamilies(DUAL, {})), true, 'DUAL has only a private IPv4')
    assert.equal(
      mayLimit(readHostFamilies({ eth0: [info('8.8.8.25'), info('2001:4860:1::10')] }, { ipv4: '8.8.8.25' })),
      true,
    )
    assert.equal(mayLimit({ ...readHostFamilies({}, {}), unreadable: 'EPERM' }), false)
  })

  it('a loopback MX of a family needs a loopback address of that family', () => {
    const host = readHostFamilies(V4_ONLY_LOOPBACK, {})
    assert.match(unusableReason(host, 'ipv6', '::1') ?? '', /no IPv6 loopback/)
    assert.equal(unusableReason(host, 'ipv4', '127.0.0.1'), undefined)
  })

  it('neither family usable towards a destination: nothing is known, both are used', () => {
    const host = readHostFamilies(LOOPBACK_ONLY, {})
    assert.equal(unusableReason(host, 'ipv6', '2001:4860::25'), undefined)
    assert.equal(unusableReason(host, 'ipv4', '8.8.8.8'), undefined)
    const unreadable = { ...host, unreadable: 'EPERM' }
    assert.deepEqual(familiesToQuery(unreadable, () => false).families, ['ipv6', 'ipv4'])
  })

  it('a configured bind decides for its family: usable only while an interface holds it', () => {
    const present = readHostFamilies(DUAL, { ipv6: '2001:4860:1:0::10' })
    assert.deepEqual(present.ipv6.bind, { address: '2001:4860:1:0::10', present: true })
    assert.equal(unusableReason(present, 'ipv6', '2001:4860::25'), undefined)
    const absent = readHostFamilies(DUAL, { ipv6: '2001:4860:1::99' })
    assert.match(
      unusableReason(absent, 'ipv6', '2001:4860::25') ?? '',
      /bind address 2001:4860:1::99 is on no interface/,
    )
    assert.deepEqual(familiesToQuery(absent, () => true).families, ['ipv4'])
  })

  it('queries a family only when it can reach something the filter lets through', () => {
    const nat = readHostFamilies(V4_NAT, {})
    // fd00::10 reaches allow[]ed unique-local MX hosts: AAAA still asked.
    assert.deepEqual(familiesToQuery(nat, () => false).families, ['ipv6', 'ipv4'])
    const noV6: InterfaceList = { lo: [info('127.0.0.1', true), info('::1', true)], eth0: [info('10.0.0.5')] }
    const host = readHostFamilies(noV6, {})
    const plan = familiesToQuery(host, () => false)
    assert.deepEqual(plan.families, ['ipv4'])
    assert.deepEqual(plan.notQueried, [
      { family: 'ipv6', reason: 'no IPv6 connectivity: no global IPv6 address' },
    ])
    // ::1 counts once the filter permits loopback (tests, local relays).
    assert.deepEqual(familiesToQuery(host, (f) => f === 'ipv6').families, ['ipv6', 'ipv4'])
    // Nothing queryable at all: both, never neither.
    assert.deepEqual(familiesToQuery(readHostFamilies({}, {}), () => false).families, ['ipv6', 'ipv4'])
  })

  it('reads again after the check interval, and reports the first reading and each change once', () => {
    let now = 0
    let view: InterfaceList = LOOPBACK_ONLY
    let reads = 0
    const changes: string[] = []
    const c = new HostConnectivity({
      bind: {},
      checkEveryMs: 60_000,
      now: () => now,
      interfaces: () => (reads++, view),
      onChange: (h) => changes.push(describeHostFamilies(h)),
    })
    c.current()
    now = 59_999
    view = DUAL
    assert.deepEqual(c.current().ipv6.scopes, ['loopback'])
    now = 60_000
    assert.ok(c.current().ipv6.scopes.includes('global'))
    now = 120_000
    c.current()
    assert.equal(reads, 3)
    assert.deepEqual(changes, [
      'IPv4 loopback; IPv6 loopback',
      'IPv4 loopback, private; IPv6 loopback, global',
    ])
  })

  it('a view that throws reads as unknown: both families, nothing filtered', () => {
    const c = new HostConnectivity({
      bind: {},
      checkEveryMs: 1000,
      interfaces: () => {
        throw new Error('uv_interface_addresses EPERM')
      },
    })
    const host = c.current()
    assert.match(describeHostFamilies(host), /unreadable/)
    assert.equal(unusableReason(host, 'ipv6', '2001:4860::25'), undefined)
  })

  it("in a network namespace whose loopback has no ::1, the host's own view has no IPv6", function () {
    // A namespace of this test's own: os.networkInterfaces() read there by a real node.
    const ns = `he-conn-${process.pid}`
    execFileSync('ip', ['netns', 'add', ns])
    try {
      const script = 'process.stdout.write(JSON.stringify(require("os").networkInterfaces()))'
      const out = execFileSync('ip', [
        'netns',
        'exec',
        ns,
        'sh',
        '-c',
        `ip link set lo up && ip -6 addr del ::1/128 dev lo 2>/dev/null; exec "${process.execPath}" -e '${script}'`,
      ])
      const host = readHostFamilies(JSON.parse(String(out)) as InterfaceList, {})
      assert.deepEqual(host.ipv6.scopes, [])
      assert.deepEqual(host.ipv4.scopes, ['loopback'])
      const plan = familiesToQuery(host, () => true)
      assert.deepEqual(plan.families, ['ipv4'])
      assert.match(unusableReason(host, 'ipv6', '::1') ?? '', /no IPv6 loopback/)
    } finally {
      execFileSync('ip', ['netns', 'del', ns])
    }
  })
})

import assert from 'node:assert/strict'

import {
  type DnsClient,
  makeDnsClient,
  type MxHost,
  pendingLookups,
  type Resolution,
  type ResolutionProgress,
  resolveDestination,
  toAsciiDomain,
  validDomain,
} from '../lib/resolve'
import { type CnameDns, startCnameDns } from './support/cname-dns'
import { startDns, type TestDns } from './support/harness'

const code = (c: string): Error & { code: string } => Object.assign(new Error(c), { code: c })

/** Each record type: its answers, or the error code its lookup fails with. */
interface StubZone {
  mx?: Array<{ priority: number; exchange: string }> | string
  a?: string[] | string
  aaaa?: string[] | string
}

// An in-memory DnsClient: name → { mx, a, aaaa } where each is an array or an error code.
function stubDns(table: Record<string, StubZone>): DnsClient {
  const look =
    <K extends keyof StubZone>(kind: K) =>
    async (name: string): Promise<Exclude<StubZone[K], string | undefined>> => {
      const v = table[name]?.[kind]
      if (v === undefined) throw code(table[name] ? 'ENODATA' : 'ENOTFOUND')
      if (typeof v === 'string') throw code(v)
      return v as Exclude<StubZone[K], string | undefined>
    }
  return { resolveMx: look('mx'), resolve4: look('a'), resolve6: look('aaaa') }
}

// assert.equal(r.kind, …) does not narrow the type: these read one kind, and throw on another.
function ofKind<K extends Resolution['kind']>(r: Resolution, kind: K): Extract<Resolution, { kind: K }> {
  if (r.kind !== kind) throw new Error(`a ${r.kind} resolution, not ${kind}`)
  return r as Extract<Resolution, { kind: K }>
}
const hostsOf = (r: Resolution): MxHost[] => ofKind(r, 'hosts').hosts

describe('resolveDestination', function () {
  it('a failing AAAA lookup never hides the A answer, and is reported', async function () {
    const dns = stubDns({
      'd.test': { mx: [{ priority: 10, exchange: 'mx.d.test' }] },
      'mx.d.test': { aaaa: 'ETIMEOUT', a: ['127.0.0.1'] },
    })
    const r = await resolveDestination('d.test', dns)
    assert.equal(r.kind, 'hosts')
    assert.deepEqual(hostsOf(r)[0].addresses, ['127.0.0.1'])
    assert.deepEqual(hostsOf(r)[0].errors, ['AAAA ETIMEOUT'])
  })

  it('an MX exchange that is an IP literal is used as its own address', async function () {
    const dns = stubDns({ 'd.test': { mx: [{ priority: 10, exchange: '127.0.0.1' }] } })
    const r = await resolveDestination('d.test', dns)
    assert.deepEqual(hostsOf(r)[0].addresses, ['127.0.0.1'])
  })

  it('a host listed twice keeps its lowest preference, and hosts come out by preference', async function () {
    const dns = stubDns({
      'd.test': {
        mx: [
          { priority: 30, exchange: 'b.d.test' },
          { priority: 20, exchange: 'A.d.test.' },
          { priority: 10, exchange: 'a.d.test' },
        ],
      },
      'a.d.test': { a: ['127.0.0.1'] },
      'b.d.test': { a: ['127.0.0.2'] },
    })
    const r = await resolveDestination('d.test', dns)
    assert.deepEqual(
      hostsOf(r).map((h) => [h.exchange, h.preference]),
      [
        ['a.d.test', 10],
        ['b.d.test', 30],
      ],
    )
  })

  it('only the lowest-preference hosts up to maxHosts are looked up', async function () {
    const mx = Array.from({ length: 50 }, (_, i) => ({ priority: i, exchange: `h${i}.d.test` }))
    const table: Record<string, StubZone> = { 'd.test': { mx } }
    for (let i = 0; i < 50; i++) table[`h${i}.d.test`] = { a: [`127.0.0.${i + 1}`] }
    const r = await resolveDestination('d.test', stubDns(table), { maxHosts: 3 })
    assert.deepEqual(
      hostsOf(r).map((h) => h.exchange),
      ['h0.d.test', 'h1.d.test', 'h2.d.test'],
    )
  })

  it('a null MX next to real MX records is ignored (RFC 7505 says it must stand alone)', async function () {
    const dns = stubDns({
      'd.test': {
        mx: [
          { priority: 0, exchange: '' },
          { priority: 10, exchange: 'mx.d.test' },
        ],
      },
      'mx.d.test': { a: ['127.0.0.1'] },
    })
    const r = await resolveDestination('d.test', dns)
    assert.equal(r.kind, 'hosts')
    assert.equal(hostsOf(r).length, 1)
  })

  it('no MX and no address records at all is no domain to deliver to', async function () {
    const dns = stubDns({ 'd.test': {} })
    const r = await resolveDestination('d.test', dns)
    assert.equal(r.kind, 'no-domain')
  })

  it('a resolver that throws something other than a DNS error is an internal error, not a deferral', async function () {
    const notDns = (): never => {
      throw new TypeError('not a DNS problem')
    }
    const dns: DnsClient = { resolveMx: notDns, resolve4: notDns, resolve6: notDns }
    await assert.rejects(resolveDestination('d.test', dns), TypeError)
  })

  it('IDN domains become A-labels; junk is no domain', function () {
    assert.equal(toAsciiDomain('Bücher.Example.'), 'xn--bcher-kva.example')
    assert.equal(toAsciiDomain(''), '')
    assert.equal(toAsciiDomain('a'.repeat(254)), '')
  })

  it('an MX lookup that fails keeps the resolver code as data', async function () {
    const r = await resolveDestination('d.test', stubDns({ 'd.test': { mx: 'ETIMEOUT' } }))
    assert.equal(r.kind, 'temporary')
    assert.equal(ofKind(r, 'temporary').code, 'ETIMEOUT')
    assert.equal(ofKind(r, 'temporary').detail, 'MX lookup for d.test: ETIMEOUT')
  })

  it('an implicit MX whose AAAA and A fail alike keeps that code; two different codes keep none', async function () {
    const alike = await resolveDestination(
      'd.test',
      stubDns({ 'd.test': { aaaa: 'ETIMEOUT', a: 'ETIMEOUT' } }),
    )
    assert.equal(alike.kind, 'temporary')
    assert.equal(ofKind(alike, 'temporary').code, 'ETIMEOUT')
    const mixed = await resolveDestination(
      'd.test',
      stubDns({ 'd.test': { aaaa: 'ESERVFAIL', a: 'ETIMEOUT' } }),
    )
    assert.equal(mixed.kind, 'temporary')
    assert.equal('code' in mixed, false)
    assert.equal(ofKind(mixed, 'temporary').detail, 'd.test: AAAA ESERVFAIL, A ETIMEOUT')
  })
})

describe('validDomain', function () {
  it('gives the domain as it is looked up: A-label, lower case, no trailing dot', function () {
    assert.equal(validDomain('Bücher.Example.'), 'xn--bcher-kva.example')
    assert.equal(validDomain(' MX-1.example.org '), 'mx-1.example.org')
    assert.equal(validDomain('localhost'), 'localhost')
    assert.equal(validDomain(`${'a'.repeat(63)}.test`), `${'a'.repeat(63)}.test`)
  })

  it('rejects what is no host name: IP addresses, empty or over-long labels, other characters', function () {
    for (const bad of [
      '',
      '.',
      '127.0.0.1',
      '::1',
      'a..b.test',
      '.a.test',
      'exa mple.test',
      '-a.test',
      'a-.test',
      '_dmarc.example.org',
      'user@example.org',
      `${'a'.repeat(64)}.test`,
      `${'a.'.repeat(127)}ab`,
    ]) {
      assert.equal(validDomain(bad), undefined, bad)
    }
  })
})

describe('resolveDestination through CNAMEs, against a DNS server on loopback', function () {
  let server: CnameDns
  let dns: DnsClient

  before(async function () {
    server = await startCnameDns({
      'cnamed.test': { mx: [{ preference: 10, exchange: 'alias.cnamed.test' }] },
      'alias.cnamed.test': { cname: 'hop.cnamed.test' },
      'hop.cnamed.test': { cname: 'real.cnamed.test' },
      'real.cnamed.test': { aaaa: ['::1'], a: ['127.0.0.1'] },
      'alias-domain.test': { cname: 'cnamed.test' },
      'loop.test': { mx: [{ preference: 10, exchange: 'a.loop.test' }] },
      'a.loop.test': { cname: 'b.loop.test' },
      'b.loop.test': { cname: 'a.loop.test' },
    })
    dns = makeDnsClient([`127.0.0.1:${server.port}`], 500)
  })

  after(async function () {
    await server.close()
  })

  it("an MX host reached through a CNAME chain yields the chain's final addresses", async function () {
    const r = await resolveDestination('cnamed.test', dns)
    assert.equal(r.kind, 'hosts')
    assert.equal(hostsOf(r)[0].exchange, 'alias.cnamed.test')
    assert.deepEqual(hostsOf(r)[0].addresses, ['::1', '127.0.0.1'])
  })

  it('a domain that is itself a CNAME has the MX of its target', async function () {
    const r = await resolveDestination('alias-domain.test', dns)
    assert.equal(r.kind, 'hosts')
    assert.deepEqual(hostsOf(r)[0].addresses, ['::1', '127.0.0.1'])
  })

  it('an MX host whose CNAMEs loop has no address, and says so without hanging', async function () {
    const r = await resolveDestination('loop.test', dns)
    assert.equal(r.kind, 'hosts')
    assert.deepEqual(hostsOf(r)[0].addresses, [])
    // c-ares reports the looping chain as NODATA: the plan then defers with 4.4.4
    assert.deepEqual(hostsOf(r)[0].errors, [])
  })
})

describe('resolveDestination as answers come in, against the DNS fixture on loopback', function () {
  let server: TestDns
  let dns: DnsClient

  before(async function () {
    server = await startDns({
      'dropped.test': { mx: [{ preference: 10, exchange: 'mx.dropped.test' }] },
      'mx.dropped.test': { aaaa: ['2001:db8::1'], a: ['192.0.2.1'], dropTypes: ['AAAA'] },
      'late.test': { mx: [{ preference: 10, exchange: 'mx.late.test' }] },
      'mx.late.test': { aaaa: ['2001:db8::2'], a: ['192.0.2.2'], delayMs: { AAAA: 150 } },
      'failing.test': { mx: [{ preference: 10, exchange: 'mx.failing.test' }] },
      'mx.failing.test': { aaaa: ['2001:db8::3'], a: ['192.0.2.3'], rcode: { AAAA: 'SERVFAIL' } },
      'whole.test': { a: ['192.0.2.4'], rcode: 'SERVFAIL' },
    })
    dns = makeDnsClient([`127.0.0.1:${server.port}`], 300)
  })

  after(async function () {
    await server.close()
  })

  /** Each progress report as `exchange type: addresses` or `exchange type pending`. */
  function watch(): { seen: string[][]; onProgress: (p: ResolutionProgress) => void } {
    const seen: string[][] = []
    const onProgress = (p: ResolutionProgress): void => {
      seen.push(
        p.lookups.map((l) =>
          l.answer
            ? `${l.exchange} ${l.type}: ${l.answer.error ?? l.answer.addresses.join(' ')}`
            : `${l.exchange} ${l.type} pending`,
        ),
      )
    }
    return { seen, onProgress }
  }

  it('a dropped AAAA: the A answer is reported while the AAAA is pending, which then times out', async function () {
    const { seen, onProgress } = watch()
    const r = await resolveDestination('dropped.test', dns, { onProgress })
    assert.deepEqual(seen, [
      ['mx.dropped.test AAAA pending', 'mx.dropped.test A pending'],
      ['mx.dropped.test AAAA pending', 'mx.dropped.test A: 192.0.2.1'],
      ['mx.dropped.test AAAA: AAAA ETIMEOUT', 'mx.dropped.test A: 192.0.2.1'],
    ])
    assert.deepEqual(hostsOf(r), [
      { exchange: 'mx.dropped.test', preference: 10, addresses: ['192.0.2.1'], errors: ['AAAA ETIMEOUT'] },
    ])
  })

  it('a delayed AAAA arrives after the A, with its address', async function () {
    const { seen, onProgress } = watch()
    const r = await resolveDestination('late.test', dns, { onProgress })
    assert.deepEqual(seen[1], ['mx.late.test AAAA pending', 'mx.late.test A: 192.0.2.2'])
    assert.deepEqual(hostsOf(r)[0].addresses, ['2001:db8::2', '192.0.2.2'])
    assert.deepEqual(hostsOf(r)[0].errors, [])
  })

  it('a SERVFAIL for the AAAA alone keeps the A', async function () {
    const r = await resolveDestination('failing.test', dns)
    assert.deepEqual(hostsOf(r)[0].addresses, ['192.0.2.3'])
    assert.deepEqual(hostsOf(r)[0].errors, ['AAAA ESERVFAIL'])
  })

  it('a zone-wide rcode still fails every query of the name', async function () {
    const r = await resolveDestination('whole.test', dns)
    assert.equal(r.kind, 'temporary')
  })

  it('families leaves the other family unqueried', async function () {
    const before = server.queries().length
    const r = await resolveDestination('dropped.test', dns, { families: ['ipv4'] })
    assert.deepEqual(hostsOf(r)[0], {
      exchange: 'mx.dropped.test',
      preference: 10,
      addresses: ['192.0.2.1'],
      errors: [],
    })
    assert.deepEqual(server.queries().slice(before), [
      { name: 'dropped.test', type: 'MX' },
      { name: 'mx.dropped.test', type: 'A' },
    ])
  })

  it('pendingLookups names what has not answered', function () {
    assert.deepEqual(
      pendingLookups([
        { exchange: 'mx1.test', preference: 10, type: 'AAAA', answer: { addresses: [] } },
        { exchange: 'mx2.test', preference: 20, type: 'A' },
      ]),
      ['mx2.test A'],
    )
  })
})

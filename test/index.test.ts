import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import fixtures, { type DnsServer, type DnsZone } from 'haraka-test-fixtures'
import constants from 'haraka-constants'

import type { DnsClient } from '../lib/resolve'
import { startCnameDns } from './support/cname-dns'
import {
  type FakeHMail,
  type PluginHandle,
  answerText,
  makeHmail,
  makePlugin,
  mxEntries,
  mxEntry,
  stateOf,
} from './support/plugin'

type Next = Haraka.Next

/** happy_eyeballs.ini as Haraka's ini reader hands it over: sections of keys. */
type Ini = Record<string, Record<string, string | string[]>>

interface Routed {
  code: number | undefined
  value: unknown
  hmail: FakeHMail
  calls: number
}

const ZONES: Record<string, DnsZone> = {
  'seed.test': { mx: [{ preference: 10, exchange: 'mx.seed.test' }] },
  'mx.seed.test': { aaaa: ['fe80::d250:99ff:feda:9100'], a: ['127.0.0.1'] },
  'v6only.test': { mx: [{ preference: 10, exchange: 'mx.v6only.test' }] },
  'mx.v6only.test': { aaaa: ['fe80::1'] },
  'nullmx.test': { mx: [{ preference: 0, exchange: '.' }] },
  'servfail.test': { rcode: 'SERVFAIL' },
  'silent.test': { drop: true },
  'implicit.test': { aaaa: ['::1'], a: ['127.0.0.2'] },
  'two.test': {
    mx: [
      { preference: 20, exchange: 'backup.two.test' },
      { preference: 10, exchange: 'main.two.test' },
    ],
  },
  'main.two.test': { aaaa: ['::1'], a: ['127.0.0.10', '127.0.0.11'] },
  'backup.two.test': { a: ['127.0.0.20'] },
  'nohosts.test': { mx: [{ preference: 10, exchange: 'missing.nohosts.test' }] },
  'hostfail.test': { mx: [{ preference: 10, exchange: 'mx.hostfail.test' }] },
  'mx.hostfail.test': { rcode: 'SERVFAIL' },
}

describe('get_mx hook (route_mx) against a DNS server on loopback', function () {
  let dns: DnsServer
  let plugin: PluginHandle
  let ini: Ini
  let reload: () => void

  before(async function () {
    dns = await fixtures.dns.start(ZONES)
  })
  after(async function () {
    await dns.close()
  })

  function load(overrides: Ini = {}): void {
    ini = {
      dns: { servers: `127.0.0.1:${dns.port}`, timeout_ms: '300' },
      filter: { allow: ['127.0.0.0/8', '::1/128'] },
      ...overrides,
    }
    plugin = makePlugin({ register: false })
    plugin.config.get = (name, _type, cb) => {
      assert.equal(name, 'happy_eyeballs.ini')
      if (cb) reload = cb
      return ini
    }
    plugin.register()
  }

  function route(domain: string): Promise<Routed> {
    const hmail = makeHmail(domain)
    return new Promise((resolve) => {
      let calls = 0
      plugin.route_mx(
        (code, value) => {
          calls++
          setImmediate(() => resolve({ code, value, hmail, calls }))
        },
        hmail,
        domain,
      )
    })
  }

  beforeEach(function () {
    load()
  })

  it('registers get_mx at priority 50 so routing plugins answer first, deferred and bounce first of all', function () {
    const hooks: Array<[string, string, number | undefined]> = []
    const p = makePlugin({ register: false })
    p.config.get = () => ({})
    p.register_hook = (hook, method, priority) => hooks.push([hook, method, priority])
    p.register()
    assert.deepEqual(
      hooks.find(([h]) => h === 'get_mx'),
      ['get_mx', 'route_mx', 50],
    )
    assert.deepEqual(
      hooks.filter(([h, m]) => (h === 'deferred' || h === 'bounce') && m.startsWith('explain_')),
      [
        ['deferred', 'explain_deferral', -100],
        ['bounce', 'explain_bounce', -100],
      ],
    )
  })

  it("registers the counting hooks before the explanation, so they read Haraka's own error", function () {
    const hooks: Array<[string, string, number | undefined]> = []
    const p = makePlugin({ register: false })
    p.config.get = () => ({})
    p.register_hook = (hook, method, priority) => hooks.push([hook, method, priority])
    p.register()
    assert.deepEqual(
      hooks.filter(([, m]) => m.startsWith('count_')),
      [
        ['delivered', 'count_delivery', -100],
        ['deferred', 'count_deferral', -100],
        ['bounce', 'count_bounce', -100],
      ],
    )
    // Haraka runs hooks of one priority in the order they were registered.
    const at = (method: string) => hooks.findIndex(([, m]) => m === method)
    assert.ok(at('count_deferral') < at('explain_deferral'))
    assert.ok(at('count_bounce') < at('explain_bounce'))
  })

  it('the counting hooks call next once, without an argument, whatever Haraka passes', function () {
    const p = makePlugin({ register: false })
    const errors: string[] = []
    p.logerror = (msg) => errors.push(msg)
    const odd = [undefined, null, {}, { notes: null }, { notes: { happy_eyeballs: { decision: null } } }]
    // Haraka hands these hooks whatever it has: odd queue items and parameters on purpose.
    type CountHook = (this: PluginHandle, next: Next, hmail: unknown, params: unknown) => void
    const counts: Array<['count_delivery' | 'count_deferral' | 'count_bounce', unknown]> = [
      ['count_delivery', ['mx', '127.0.0.1']],
      ['count_delivery', null],
      ['count_deferral', { err: 'x' }],
      ['count_deferral', null],
      ['count_bounce', new Error('x')],
    ]
    for (const hmail of odd) {
      for (const [hook, params] of counts) {
        const calls: unknown[][] = []
        const run = p[hook] as CountHook
        assert.doesNotThrow(() => run.call(p, (...args) => calls.push(args), hmail, params))
        assert.deepEqual(calls, [[]], `${hook} with ${JSON.stringify(hmail)}`)
      }
    }
    // A record without a decision is logged as a counting error, never thrown.
    assert.ok(errors.length > 0 && errors.every((e) => /could not count/.test(e)), errors.join('\n'))
  })

  it('an MX with a link-local AAAA and a good A answers only the A, as an IP literal', async function () {
    const { code, value, hmail, calls } = await route('seed.test')
    assert.equal(calls, 1)
    assert.equal(code, constants.ok)
    assert.deepEqual(
      mxEntries(value).map((m) => [m.exchange, m.from_dns, m.port]),
      [['127.0.0.1', 'mx.seed.test', 25]],
    )
    assert.match(hmail.lines.join('\n'), /filtered fe80::d250:99ff:feda:9100 of mx\.seed\.test: link-local/)
  })

  it('a v6-only MX whose only address is link-local defers, naming the address and why', async function () {
    const { code, value, hmail } = await route('v6only.test')
    assert.equal(code, constants.denysoft)
    assert.match(answerText(value), /fe80::1 of mx\.v6only\.test: link-local/)
    // the deferred hook then carries the reason and 4.4.4 to the recipients
    const params: { delay: number; err: string } = {
      delay: 60,
      err: 'Temporary MX lookup error for v6only.test',
    }
    await new Promise<void>((resolve) => plugin.explain_deferral(() => resolve(), hmail, params))
    assert.equal(hmail.rcpt.dsn_status, '4.4.4')
    assert.match(params.err, /link-local/)
  })

  it('when Haraka runs out of planned addresses, "Tried all MXs" names each address from this message, not the cache', async function () {
    const { code, hmail } = await route('seed.test')
    assert.equal(code, constants.ok)
    // An outcome another message left in the health cache is not this message's story; with
    // no client pool to watch (these fixtures have none), what Haraka saw is not known.
    stateOf(plugin).health.record('127.0.0.1', 'ipv4', 'mx.seed.test', {
      ok: false,
      error: 'connection timed out',
      latencyMs: 30000,
      at: Date.now(),
    })
    const params: { delay: number; err: string } = { delay: 60, err: 'Tried all MXs' }
    await new Promise<void>((resolve) => plugin.explain_deferral(() => resolve(), hmail, params))
    assert.equal(params.err, 'every MX address of seed.test failed: 127.0.0.1: outcome not seen')
    assert.equal(hmail.rcpt.dsn_status, '4.4.1')
  })

  it('a deferral for another reason keeps its text', async function () {
    const { hmail } = await route('seed.test')
    const params: { delay: number; err: string } = { delay: 60, err: 'Upstream error: 421 busy' }
    await new Promise<void>((resolve) => plugin.explain_deferral(() => resolve(), hmail, params))
    assert.equal(params.err, 'Upstream error: 421 busy')
    assert.equal(hmail.rcpt.dsn_status, undefined)
  })

  it('all_filtered=bounce bounces instead, with 5.4.4', async function () {
    load({ ...ini, filter: { ...ini.filter, all_filtered: 'bounce' } })
    const { code, hmail } = await route('v6only.test')
    assert.equal(code, constants.deny)
    await new Promise<void>((resolve) => plugin.explain_bounce(() => resolve(), hmail, undefined))
    assert.equal(hmail.rcpt.dsn_status, '5.4.4')
  })

  it("a null MX answers Haraka's null-MX entry so Haraka bounces 5.1.10", async function () {
    const { code, value } = await route('nullmx.test')
    assert.equal(code, constants.ok)
    assert.equal(mxEntry(value).exchange, '')
    assert.equal(mxEntry(value).priority, 0)
  })

  it('NXDOMAIN bounces', async function () {
    const { code, value } = await route('nowhere.test')
    assert.equal(code, constants.deny)
    assert.match(answerText(value), /NXDOMAIN/)
  })

  it('SERVFAIL defers with 4.4.3, never bounces', async function () {
    const { code, hmail } = await route('servfail.test')
    assert.equal(code, constants.denysoft)
    await new Promise<void>((resolve) => plugin.explain_deferral(() => resolve(), hmail, {}))
    assert.equal(hmail.rcpt.dsn_status, '4.4.3')
  })

  it('a DNS server that never answers defers within the DNS timeout', async function () {
    const started = Date.now()
    const { code, value } = await route('silent.test')
    assert.equal(code, constants.denysoft)
    assert.match(answerText(value), /ETIMEOUT/)
    assert.ok(Date.now() - started < 5000)
  })

  it('a domain without MX is its own implicit MX (RFC 5321 §5.1), IPv6 first', async function () {
    const { code, value } = await route('implicit.test')
    assert.equal(code, constants.ok)
    assert.deepEqual(
      mxEntries(value).map((m) => [m.exchange, m.from_dns]),
      [
        ['::1', 'implicit.test'],
        ['127.0.0.2', 'implicit.test'],
      ],
    )
  })

  it('MX preference groups come out in order, families interleaved inside a group', async function () {
    const { value } = await route('two.test')
    assert.deepEqual(
      mxEntries(value).map((m) => m.exchange),
      ['::1', '127.0.0.10', '127.0.0.11', '127.0.0.20'],
    )
    const priorities = mxEntries(value).map((m) => m.priority)
    assert.deepEqual(
      priorities,
      [...priorities].sort((a, b) => a - b),
      'priorities must keep the order',
    )
    assert.equal(new Set(priorities).size, priorities.length, 'Haraka 3.0 would shuffle equal priorities')
  })

  it('prefer=ipv4 leads each group with IPv4', async function () {
    load({ ...ini, main: { prefer: 'ipv4' } })
    const { value } = await route('two.test')
    assert.deepEqual(
      mxEntries(value).map((m) => m.exchange),
      ['127.0.0.10', '::1', '127.0.0.11', '127.0.0.20'],
    )
  })

  it('per-family bind addresses go on each entry', async function () {
    load({ ...ini, bind: { ipv4: '127.0.0.1', ipv6: '::1' } })
    const { value } = await route('two.test')
    assert.deepEqual(
      mxEntries(value).map((m) => m.bind),
      ['::1', '127.0.0.1', '127.0.0.1', '127.0.0.1'],
    )
  })

  it('an MX host without address records defers with 4.4.4', async function () {
    const { code, value } = await route('nohosts.test')
    assert.equal(code, constants.denysoft)
    assert.match(answerText(value), /no address records/)
  })

  it('an MX host whose lookups fail defers as a DNS problem (4.4.3)', async function () {
    const { code, hmail } = await route('hostfail.test')
    assert.equal(code, constants.denysoft)
    await new Promise<void>((resolve) => plugin.explain_deferral(() => resolve(), hmail, {}))
    assert.equal(hmail.rcpt.dsn_status, '4.4.3')
  })

  it('enabled=false answers nothing, leaving the domain to Haraka', async function () {
    load({ ...ini, main: { enabled: 'false' } })
    const { code, value, calls } = await route('seed.test')
    assert.equal(calls, 1)
    assert.equal(code, undefined)
    assert.equal(value, undefined)
  })

  it('a config reload changes the next answer without a restart', async function () {
    ini = { ...ini, main: { prefer: 'ipv4' } }
    reload()
    const { value } = await route('implicit.test')
    assert.equal(mxEntries(value)[0].exchange, '127.0.0.2')
  })

  it('a bad config value is logged by name and the default used', function () {
    const warnings: string[] = []
    const p = makePlugin({ register: false })
    p.config.get = () => ({ main: { port: 'twenty-five' }, race: { attempt_delay_ms: '-5' } })
    p.logwarn = (msg) => warnings.push(msg)
    p.register()
    assert.ok(warnings.some((w) => /\[main\] port="twenty-five".*using 25/.test(w)))
    assert.ok(warnings.some((w) => /\[race\] attempt_delay_ms="-5".*using 250/.test(w)))
    assert.equal(stateOf(p).settings.port, 25)
  })

  it('an internal error answers CONT exactly once so Haraka delivers on its own', async function () {
    // Only the first lookup is reached: it throws where a resolver would answer.
    stateOf(plugin).dns = {
      resolveMx() {
        throw new Error('resolver exploded')
      },
    } as unknown as DnsClient
    const { code, calls, hmail } = await route('seed.test')
    assert.equal(calls, 1)
    assert.equal(code, undefined)
    assert.match(hmail.lines.join('\n'), /internal error.*resolver exploded/)
  })

  it("an MX host behind a CNAME is answered with the CNAME target's addresses", async function () {
    const cnameDns = await startCnameDns({
      'cnamed.test': { mx: [{ preference: 10, exchange: 'alias.cnamed.test' }] },
      'alias.cnamed.test': { cname: 'real.cnamed.test' },
      'real.cnamed.test': { aaaa: ['fe80::1'], a: ['127.0.0.1'] },
    })
    try {
      load({ ...ini, dns: { servers: `127.0.0.1:${cnameDns.port}`, timeout_ms: '300' } })
      const { code, value } = await route('cnamed.test')
      assert.equal(code, constants.ok)
      assert.deepEqual(
        mxEntries(value).map((m) => [m.exchange, m.from_dns]),
        [['127.0.0.1', 'alias.cnamed.test']],
      )
    } finally {
      await cnameDns.close()
    }
  })

  it('the shipped happy_eyeballs.ini loads through Haraka config with no problem reported', function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'he-config-'))
    try {
      fs.mkdirSync(path.join(dir, 'config'))
      fs.copyFileSync(
        path.join(__dirname, '..', 'config', 'happy_eyeballs.ini'),
        path.join(dir, 'config', 'happy_eyeballs.ini'),
      )
      fs.appendFileSync(
        path.join(dir, 'config', 'happy_eyeballs.ini'),
        '\n[filter]\nallow[]=10.1.2.0/24\nallow[]=fd00:1::/64\n',
      )
      const warnings: string[] = []
      const p = makePlugin({ register: false, configDir: dir })
      p.logwarn = (msg) => warnings.push(msg)
      p.register()
      assert.deepEqual(
        warnings.filter((w) => /happy_eyeballs\.ini/.test(w)),
        [],
      )
      assert.deepEqual(
        stateOf(p).settings.filter.policy.allow.map((c) => c.text),
        ['10.1.2.0/24', 'fd00:1::/64'],
      )
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

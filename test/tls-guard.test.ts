// A Haraka 3.0.x whose delivery step cannot be adapted: the get_mx hook leaves a message to
// Haraka (CONT) whenever TLS could depend on the MX host name, and plans as usual otherwise.

import assert from 'node:assert/strict'

import fixtures, { type DnsServer, type DnsZone } from 'haraka-test-fixtures'
import constants from 'haraka-constants'

import {
  type FakeHMail,
  type PluginHandle,
  makeHmail,
  makePlugin,
  mxEntries,
  stateOf,
} from './support/plugin'

/** The part of Haraka's outbound/tls the plugin reads. */
interface OutboundTls {
  cfg: { force_tls_hosts: string[] }
  get_tls_options: () => object
}

const ZONES: Record<string, DnsZone> = {
  'seed.test': { mx: [{ preference: 10, exchange: 'mx.seed.test' }] },
  'mx.seed.test': { a: ['127.0.0.1'] },
}

describe('get_mx on a Haraka 3.0.x that cannot be adapted for TLS names', function () {
  let dns: DnsServer
  let tls: OutboundTls
  let warnings: string[]

  before(async function () {
    dns = await fixtures.dns.start(ZONES)
  })
  after(async function () {
    await dns.close()
  })

  function plugin(): PluginHandle {
    warnings = []
    tls = { cfg: { force_tls_hosts: [] }, get_tls_options: () => ({}) }
    const p = makePlugin({ register: false })
    p.config.get = () => ({
      dns: { servers: `127.0.0.1:${dns.port}`, timeout_ms: '1000' },
      filter: { allow: ['127.0.0.1/32'] },
    })
    p.logwarn = (msg) => warnings.push(msg)
    // A 3.0.x-like outbound (a try_deliver_host step, get_tls_options without from_dns) whose
    // HMailItem lacks the other steps the adapter wraps; no client pool, so nothing connects.
    p.haraka_require = (name: string) => {
      if (name === 'outbound/hmail') return { prototype: { try_deliver_host() {} } }
      if (name === 'outbound/tls') return tls
      if (name === 'outbound/client_pool') return { get_client() {} }
      throw new Error(`no ${name} here`)
    }
    p.register()
    return p
  }

  function route(p: PluginHandle, hmail: FakeHMail): Promise<{ code: number | undefined; value: unknown }> {
    return new Promise((resolve) => {
      p.route_mx((code, value) => resolve({ code, value }), hmail, hmail.todo.domain)
    })
  }

  function fakeHmail(todo: Partial<Haraka.HMail['todo']> = {}): FakeHMail {
    return makeHmail('seed.test', { rcpt_to: [], notes: {}, ...todo })
  }

  it('warns once at start that the MX host name cannot be kept for TLS', function () {
    const p = plugin()
    assert.equal(stateOf(p).outbound.tlsNaming, 'unavailable')
    assert.equal(warnings.filter((w) => /cannot be kept for TLS/.test(w)).length, 1, warnings.join('\n'))
  })

  it('tls.ini force_tls_hosts set: the message is left to Haraka (CONT), with the reason logged', async function () {
    const p = plugin()
    tls.cfg.force_tls_hosts = ['mx.seed.test']
    const hmail = fakeHmail()
    const { code } = await route(p, hmail)
    assert.equal(code, undefined)
    assert.match(hmail.lines.join('\n'), /leaving seed\.test to Haraka: tls\.ini force_tls_hosts is set/)
  })

  it('TLS forced for the message (todo.force_tls): left to Haraka', async function () {
    const p = plugin()
    const { code } = await route(p, fakeHmail({ force_tls: true }))
    assert.equal(code, undefined)
  })

  it('nothing in tls.ini depends on the name: planned as usual', async function () {
    const p = plugin()
    const { code, value } = await route(p, fakeHmail())
    assert.equal(code, constants.ok)
    assert.deepEqual(
      mxEntries(value).map((m) => [m.exchange, m.from_dns]),
      [['127.0.0.1', 'mx.seed.test']],
    )
  })
})

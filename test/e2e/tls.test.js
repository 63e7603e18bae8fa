'use strict'

// TLS follows the MX host name, with and without the plugin, in real Haraka 3.3.4 and 3.0.3:
// tls.ini force_tls_hosts naming the MX host or the domain, a STARTTLS sink whose certificate
// (signed by a throwaway CA the Haraka process trusts) names the MX host or another host, and
// the server name the sink saw. Stock Haraka delivers to port 25 of the MX host, so the sink
// listens there (each run in its own network namespace).

const assert = require('node:assert/strict')

const fixtures = require('haraka-test-fixtures')

const {
  makeTestCa,
  startSink,
  startBlackHole,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
} = require('../../support')

const MX = 'mx.tls.test'
const OTHER = 'other.tls.test'
const ZONES = {
  'tls.test': { mx: [{ preference: 10, exchange: MX }] },
  [MX]: { a: ['127.0.0.1'] },
  'v6.tls.test': { mx: [{ preference: 10, exchange: 'mx.v6.tls.test' }] },
  'mx.v6.tls.test': { aaaa: ['::1'], a: ['127.0.0.1'] },
}
const PLUGIN_INI = '[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n'

// A local plugin forcing TLS for every message the way routing plugins do (hmail.todo.force_tls).
const FORCE_TLS_PLUGIN = `'use strict'
exports.hook_send_email = function (next, hmail) {
  hmail.todo.force_tls = true
  next()
}
`

/** Haraka's "secured" line after STARTTLS (hmail.js: loginfo('secured', {verified, cn, ...})). */
const SECURED_RE = /\[outbound\]\s+secured\b[^\n]*verified=(true|false)/

describe('TLS by MX host name', function () {
  this.timeout(60000)

  let dns = null
  let ca = null
  const cleanup = []

  before(async function () {
    try {
      const probe = await startSink({ host: '127.0.0.1', port: 25 })
      await probe.close()
    } catch (err) {
      throw new Error(`these tests need 127.0.0.1:25 free for the SMTP sink: ${err.message}`, { cause: err })
    }
    dns = await fixtures.dns.start(ZONES)
    ca = await makeTestCa([MX, OTHER, 'mx.v6.tls.test'])
  })
  after(async function () {
    if (dns) await dns.close()
  })
  afterEach(async function () {
    for (const stop of cleanup.splice(0).reverse()) await stop()
  })

  async function sink(certFor) {
    const s = await startSink({ host: '127.0.0.1', port: 25, starttls: true, tls: ca.leaf[certFor] })
    cleanup.push(() => s.close())
    return s
  }

  async function haraka(version, { plugin, forceTlsHosts, outbound = {}, forceByPlugin = false }) {
    const h = await startHaraka({
      version,
      dnsPort: dns.port,
      plugins: [...(forceByPlugin ? ['force_tls'] : []), ...(plugin ? ['happy-eyeballs'] : [])],
      pluginFiles: forceByPlugin ? { force_tls: FORCE_TLS_PLUGIN } : {},
      outbound: { enable_tls: true, local_mx_ok: true, connect_timeout: 10, ...outbound },
      caCert: ca.caCert,
      forceTlsHosts,
      files: plugin ? { 'happy_eyeballs.ini': PLUGIN_INI } : {},
    })
    cleanup.push(() => h.stop())
    return h
  }

  async function send(h, to) {
    const from = h.logLength()
    const info = await sendMail({ port: h.port, to })
    const outcome = await waitForOutcome(h, 45000, { from, uuid: queuedUuid(info) })
    return { outcome, log: h.log().slice(from) }
  }

  for (const version of ['3.3.4', '3.0.3']) {
    for (const plugin of [false, true]) {
      const who = `Haraka ${version} ${plugin ? 'with happy-eyeballs' : 'stock'}`

      describe(who, function () {
        it('(a) force_tls_hosts names the MX host, its certificate names it: delivered over verified TLS, SNI = MX host', async function () {
          const s = await sink(MX)
          const h = await haraka(version, { plugin, forceTlsHosts: [MX] })
          const { outcome, log } = await send(h, 'rcpt@tls.test')
          assert.equal(outcome.kind, 'delivered', outcome.line)
          const [msg] = await s.waitForMessages(1, 5000)
          assert.equal(msg.secure, true, 'not delivered over TLS')
          assert.equal(msg.servername, MX)
          assert.deepEqual(s.sni, [MX])
          assert.equal(SECURED_RE.exec(log)?.[1], 'true', `no verified TLS session in:\n${log}`)
          if (plugin) assert.match(log, /happy-eyeballs: plan for tls\.test: try mx\.tls\.test 127\.0\.0\.1/)
        })

        it('(b) force_tls_hosts names the MX host, the certificate names another host: deferred, never delivered', async function () {
          const s = await sink(OTHER)
          const h = await haraka(version, { plugin, forceTlsHosts: [MX] })
          const { outcome, log } = await send(h, 'rcpt@tls.test')
          assert.equal(outcome.kind, 'deferred', outcome.line)
          assert.equal(s.messages.length, 0, 'delivered although the certificate names another host')
          assert.deepEqual(s.sni, [MX], 'the MX host name was not the server name asked for')
          assert.doesNotMatch(log, /verified=true/)
          if (plugin) assert.match(log, /happy-eyeballs: plan for tls\.test: try mx\.tls\.test 127\.0\.0\.1/)
        })

        it('(c) force_tls_hosts names the domain, the certificate names the MX host: delivered over verified TLS, SNI = MX host', async function () {
          const s = await sink(MX)
          const h = await haraka(version, { plugin, forceTlsHosts: ['tls.test'] })
          const { outcome, log } = await send(h, 'rcpt@tls.test')
          assert.equal(outcome.kind, 'delivered', outcome.line)
          const [msg] = await s.waitForMessages(1, 5000)
          assert.equal(msg.secure, true, 'not delivered over TLS')
          assert.equal(msg.servername, MX)
          assert.equal(SECURED_RE.exec(log)?.[1], 'true', `no verified TLS session in:\n${log}`)
        })

        it('(a2) a plugin forces TLS for the message (todo.force_tls): delivered over verified TLS, SNI = MX host', async function () {
          // Haraka 3.0.x then looks the exchange up in DNS even when it is an IP literal.
          const s = await sink(MX)
          const h = await haraka(version, { plugin, forceByPlugin: true })
          const { outcome, log } = await send(h, 'rcpt@tls.test')
          assert.equal(outcome.kind, 'delivered', outcome.line)
          const [msg] = await s.waitForMessages(1, 5000)
          assert.equal(msg.secure, true, 'not delivered over TLS')
          assert.equal(msg.servername, MX)
          assert.equal(SECURED_RE.exec(log)?.[1], 'true', `no verified TLS session in:\n${log}`)
        })
      })
    }
  }

  describe('Haraka 3.0.3 with happy-eyeballs and outbound.ini ipv6_enabled=true', function () {
    it('(d) hands the raced socket over once per message and keeps the MX host as TLS name', async function () {
      // [::1]:25 is a black hole, 127.0.0.1:25 the sink: the race wins on IPv4 and Haraka
      // delivers on that socket although found_mx copied each entry per family.
      const hole = await startBlackHole({ host: '::1', port: 25 })
      cleanup.push(() => hole.close())
      const s = await sink('mx.v6.tls.test')
      const h = await haraka('3.0.3', {
        plugin: true,
        forceTlsHosts: ['mx.v6.tls.test'],
        outbound: { ipv6_enabled: true },
      })
      for (const n of [1, 2]) {
        const { outcome, log } = await send(h, `rcpt${n}@v6.tls.test`)
        assert.equal(outcome.kind, 'delivered', outcome.line)
        assert.match(log, /winner 127\.0\.0\.1/)
        const msgs = await s.waitForMessages(n, 5000)
        assert.equal(msgs[n - 1].secure, true)
        assert.equal(msgs[n - 1].servername, 'mx.v6.tls.test')
        assert.equal(s.connections, n, 'a second connection for one message')
      }
      assert.equal(SECURED_RE.exec(h.log())?.[1], 'true')
    })
  })
})

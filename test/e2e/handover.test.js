'use strict'

// The raced socket is the one Haraka delivers on, in real Haraka 3.3.4 and 3.0.3: with a
// per-message local address (notes.outbound_ip), with 3.0.x's per-family MX copies, and when
// Haraka never claims it (racing then turns itself off). When Haraka runs out of addresses,
// the deferral says what happened to each address for this very message.

const assert = require('node:assert/strict')
const net = require('node:net')

const {
  startSink,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  freePort,
  dnsSuite,
  loopbackOutbound,
} = require('../../support')

const PLUGIN_INI = '[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n'
// Sets the per-message local address the way Haraka documents it (todo.notes.outbound_ip).
const OUTBOUND_IP_PLUGIN = `'use strict'
exports.hook_send_email = function (next, hmail) {
  hmail.todo.notes.outbound_ip = '127.0.0.2'
  next()
}
`

/** A server that greets, then closes the connection at the client's first command. */
async function greetThenClose() {
  const server = net.createServer((s) => {
    server.accepted++
    s.on('error', () => {})
    s.write('220 closing.test ready\r\n')
    s.once('data', () => s.destroy())
  })
  server.accepted = 0
  await new Promise((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
  return server
}

describe('raced socket hand-over and per-message explanations', function () {
  this.timeout(60000)

  const suite = dnsSuite()

  function zone(domain, { aaaa, a }) {
    suite.dns.setZone(domain, { mx: [{ preference: 10, exchange: `mx.${domain}` }] })
    suite.dns.setZone(`mx.${domain}`, { ...(aaaa ? { aaaa } : {}), ...(a ? { a } : {}) })
  }

  async function haraka(version, { ini = '', outbound = {}, plugins = [], pluginFiles = {} } = {}) {
    const h = await startHaraka({
      version,
      dnsPort: suite.dns.port,
      plugins: [...plugins, 'happy-eyeballs'],
      pluginFiles,
      outbound: { ...loopbackOutbound(version, 10), ...outbound },
      files: { 'happy_eyeballs.ini': `${PLUGIN_INI}${ini}` },
    })
    suite.cleanup(() => h.stop())
    return h
  }

  async function send(h, to) {
    const from = h.logLength()
    const info = await sendMail({ port: h.port, to })
    const outcome = await waitForOutcome(h, 45000, { from, uuid: queuedUuid(info) })
    return { outcome, log: () => h.log().slice(from) }
  }

  for (const version of ['3.3.4', '3.0.3']) {
    describe(`Haraka ${version}`, function () {
      it('(e) notes.outbound_ip: the race binds it too, Haraka delivers on the raced socket, one connection', async function () {
        const s = await startSink({ host: '127.0.0.1', port: await freePort() })
        suite.cleanup(() => s.close())
        zone('bind.test', { aaaa: ['::1'], a: ['127.0.0.1'] })
        const h = await haraka(version, {
          ini: `[main]\nport=${s.port}\n`,
          plugins: ['outbound_ip'],
          pluginFiles: { outbound_ip: OUTBOUND_IP_PLUGIN },
        })
        const { outcome, log } = await send(h, 'rcpt@bind.test')
        assert.equal(outcome.kind, 'delivered', outcome.line)
        assert.equal(outcome.ip, '127.0.0.1')
        const [msg] = await s.waitForMessages(1, 5000)
        assert.equal(s.connections, 1, 'Haraka made a second connection instead of taking the raced one')
        assert.equal(msg.remoteAddress, '127.0.0.2', 'not sent from notes.outbound_ip')
        assert.doesNotMatch(h.log(), /closed unclaimed connection/)
        // An IPv4 local address towards the IPv6 address fails at once, as it does in stock.
        assert.match(log(), /race \+\d+ms \[::1\]:\d+ failed \(bind EINVAL\)[^\n]*127\.0\.0\.1:\d+ connected/)
      })

      it('(g) [cache] ttl_s=0, no race, every address refused: the deferral names each address and its error', async function () {
        const port = await freePort('127.0.0.1') // bound and released: nothing listens
        zone('refused.test', { aaaa: ['::1'], a: ['127.0.0.1'] })
        const h = await haraka(version, {
          ini: `[main]\nport=${port}\n[cache]\nttl_s=0\n[race]\nenabled=false\n`,
        })
        const { outcome, log } = await send(h, 'rcpt@refused.test')
        assert.equal(outcome.kind, 'deferred', outcome.line)
        assert.equal(
          outcome.err,
          'every MX address of refused.test failed: ::1: connect ECONNREFUSED; 127.0.0.1: connect ECONNREFUSED',
        )
        assert.doesNotMatch(log(), /race /)
      })

      const copies = version === '3.0.3' ? [false, true] : [false]
      for (const ipv6Enabled of copies) {
        const label = ipv6Enabled ? ', outbound.ini ipv6_enabled=true' : ''
        it(`(g) [cache] ttl_s=0, the raced socket's session fails: "connected, then the SMTP session failed", one connection${label}`, async function () {
          const server = await greetThenClose()
          suite.cleanup(() => new Promise((resolve) => server.close(resolve)))
          zone('closing.test', { a: ['127.0.0.1'] })
          const h = await haraka(version, {
            ini: `[main]\nport=${server.address().port}\n[cache]\nttl_s=0\n`,
            outbound: ipv6Enabled ? { ipv6_enabled: true } : {},
          })
          const { outcome, log } = await send(h, 'rcpt@closing.test')
          assert.equal(outcome.kind, 'deferred', outcome.line)
          assert.match(log(), /winner 127\.0\.0\.1/)
          // 3.0.x copies each entry per family with ipv6_enabled: the address is still tried once.
          assert.equal(server.accepted, 1, 'a second connection to the same address for one message')
          assert.equal(
            outcome.err,
            'every MX address of closing.test failed: 127.0.0.1: connected (raced socket), then the SMTP session failed',
          )
        })
      }
    })
  }

  describe('Haraka 3.3.4 skipping the planned loopback addresses (local_mx_ok=false)', function () {
    it('(f) raced sockets never claimed: racing turns off after 10 with one warning, planning goes on', async function () {
      const s = await startSink({ host: '127.0.0.1', port: await freePort() })
      suite.cleanup(() => s.close())
      zone('skipped.test', { a: ['127.0.0.1'] })
      const h = await haraka('3.3.4', { ini: `[main]\nport=${s.port}\n`, outbound: { local_mx_ok: false } })
      // Twelve messages raced and held; Haraka skips the address as local and never asks.
      for (let i = 0; i < 12; i++) {
        const { outcome, log } = await send(h, `rcpt${i}@skipped.test`)
        assert.equal(outcome.kind, 'deferred', outcome.line)
        assert.match(log(), /winner 127\.0\.0\.1/)
        assert.match(outcome.err, /127\.0\.0\.1: connected in the race; Haraka did not use it$/)
      }
      // Each held socket is closed after its hold time: wait for all twelve.
      let from = 0
      for (let i = 0; i < 12; i++) {
        const m = await h.waitForLog(/closed unclaimed connection to 127\.0\.0\.1/, 30000, { from })
        from = m.offset + m[0].length
      }
      const warnings = h.log().match(/not racing connections any more: [^\n]*/g)
      assert.equal(warnings.length, 1, warnings.join('\n'))
      assert.match(warnings[0], /10 raced connections in a row were never claimed by Haraka/)

      const after = await send(h, 'rcpt-after@skipped.test')
      assert.equal(after.outcome.kind, 'deferred', after.outcome.line)
      assert.match(after.log(), /happy-eyeballs: plan for skipped\.test: try mx\.skipped\.test 127\.0\.0\.1/)
      assert.doesNotMatch(after.log(), /race \+\d+ms/)
      assert.equal(s.connections, 12, 'a connection raced after racing was turned off')
    })
  })
})

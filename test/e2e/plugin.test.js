'use strict'

// The plugin inside real Haraka processes (3.3.4 and 3.0.3): the seed case, a black-holed
// IPv6 path, STARTTLS over a raced socket, the health cache, and an MX where nothing answers.

const assert = require('node:assert/strict')

const {
  startSink,
  startBlackHole,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  freePort,
  LINK_LOCAL,
  dnsSuite,
  loopbackOutbound,
  LOOPBACK_FILTER,
} = require('../../support')

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version} with happy-eyeballs`, function () {
    this.timeout(60000)

    const suite = dnsSuite()

    async function haraka({ ini = '', outbound = {} } = {}) {
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        plugins: ['happy-eyeballs'],
        outbound: { ...loopbackOutbound(version), ...outbound },
        files: { 'happy_eyeballs.ini': `${LOOPBACK_FILTER}${ini}` },
      })
      suite.cleanup(() => h.stop())
      return h
    }

    async function send(h, to) {
      const from = h.logLength()
      const started = Date.now()
      const info = await sendMail({ port: h.port, to })
      const outcome = await waitForOutcome(h, 45000, { from, uuid: queuedUuid(info) })
      return { outcome, from, ms: Date.now() - started, log: () => h.log().slice(from) }
    }

    async function sink(opts) {
      const s = await startSink(opts)
      suite.cleanup(() => s.close())
      return s
    }

    it('delivers the seed case (link-local AAAA + A) over A without connecting to fe80::', async function () {
      suite.dns.setZone('seed.test', { mx: [{ preference: 10, exchange: 'mx.seed.test' }] })
      suite.dns.setZone('mx.seed.test', { aaaa: [LINK_LOCAL], a: ['127.0.0.1'] })
      const s = await sink({ host: '127.0.0.1', port: await freePort() })
      const h = await haraka({ ini: `[main]\nport=${s.port}\n` })

      const { outcome, log } = await send(h, 'rcpt@seed.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      assert.match(log(), new RegExp(`filtered ${LINK_LOCAL} of mx\\.seed\\.test: link-local`))
      assert.doesNotMatch(log(), /Failed to get socket|EINVAL/)
      const [msg] = await s.waitForMessages(1, 5000)
      assert.deepEqual(msg.to, ['rcpt@seed.test'])
      assert.equal(s.connections, 1)
    })

    it('delivers over IPv4 within a second when the AAAA is a black hole, and says so', async function () {
      const hole = await startBlackHole({ host: '::1' })
      suite.cleanup(() => hole.close())
      const s = await sink({ host: '127.0.0.1', port: hole.port })
      suite.dns.setZone('hole.test', { mx: [{ preference: 10, exchange: 'mx.hole.test' }] })
      suite.dns.setZone('mx.hole.test', { aaaa: ['::1'], a: ['127.0.0.1'] })
      const h = await haraka({ ini: `[main]\nport=${hole.port}\n` })

      const first = await send(h, 'rcpt@hole.test')
      assert.equal(first.outcome.kind, 'delivered', first.outcome.line)
      assert.equal(first.outcome.ip, '127.0.0.1')
      assert.ok(first.ms < 5000, `took ${first.ms} ms`)
      const race = first
        .log()
        .match(
          /race \+(\d+)ms \[::1\]:\d+ cancelled after \d+ ms; \+(\d+)ms 127\.0\.0\.1:\d+ connected after \d+ ms; winner 127\.0\.0\.1/,
        )
      assert.ok(race, first.log())
      // IPv4 starts one attempt delay (250 ms) after IPv6; the start times themselves move
      // with the machine's load (and a timer may fire a few ms early on the loop's clock).
      const afterV6 = Number(race[2]) - Number(race[1])
      assert.ok(afterV6 >= 200 && afterV6 < 1000, `IPv4 started ${afterV6} ms after IPv6`)
      assert.equal(s.connections, 1, 'the raced socket must be the one delivered on')

      // The health cache puts IPv4 first for the next message: no attempt on ::1 at all.
      const second = await send(h, 'rcpt@hole.test')
      assert.equal(second.outcome.kind, 'delivered', second.outcome.line)
      assert.match(
        second.log(),
        /plan for hole\.test: try mx\.hole\.test 127\.0\.0\.1, mx\.hole\.test \[::1\]/,
      )
      assert.match(second.log(), /race \+\d+ms 127\.0\.0\.1:\d+ connected after \d+ ms; winner 127\.0\.0\.1/)
      await s.waitForMessages(2, 5000)
    })

    it('STARTTLS still works on a raced socket', async function () {
      const s = await sink({ host: '127.0.0.1', port: await freePort(), starttls: true })
      suite.dns.setZone('tls.test', { mx: [{ preference: 10, exchange: 'mx.tls.test' }] })
      suite.dns.setZone('mx.tls.test', { aaaa: [LINK_LOCAL], a: ['127.0.0.1'] })
      const h = await haraka({ ini: `[main]\nport=${s.port}\n`, outbound: { enable_tls: true } })

      const { outcome, log } = await send(h, 'rcpt@tls.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.match(log(), /winner 127\.0\.0\.1/)
      const [msg] = await s.waitForMessages(1, 5000)
      assert.equal(msg.secure, true, 'the message did not travel over TLS')
      assert.equal(s.connections, 1)
    })

    it('defers with every address and its error when nothing answers, not "Tried all MXs"', async function () {
      const port = await freePort('127.0.0.1') // bound and released: nothing listens
      suite.dns.setZone('dead.test', { mx: [{ preference: 10, exchange: 'mx.dead.test' }] })
      suite.dns.setZone('mx.dead.test', { aaaa: ['::1', LINK_LOCAL], a: ['127.0.0.1'] })
      const h = await haraka({ ini: `[main]\nport=${port}\n` })

      const { outcome } = await send(h, 'rcpt@dead.test')
      assert.equal(outcome.kind, 'deferred', outcome.line)
      assert.match(outcome.err, /no MX address of dead\.test answered/)
      assert.match(outcome.err, /::1: connect ECONNREFUSED; 127\.0\.0\.1: connect ECONNREFUSED/)
      assert.doesNotMatch(outcome.err, /Tried all MXs/)
    })
  })
}

'use strict'

// Asynchronous resolution (RFC 8305 §3, §6) inside real Haraka processes (3.3.4 and 3.0.3):
// the race starts before every address lookup answered, a late answer joins it, and the
// lookups left behind are named in the message's delivery record. The DNS server drops,
// delays or fails one query type of a name; the plugin's own resolver keeps the default
// 5 s timeout, so a record that names a lookup as pending shows it was not waited for.

const assert = require('node:assert/strict')

const {
  startSink,
  startBlackHole,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  freePort,
  dnsSuite,
  loopbackOutbound,
} = require('../../support')

const addresses = (record) => record.resolution.hosts.map((h) => [h.exchange, h.addresses, h.errors])

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version} with happy-eyeballs, DNS answers as they come`, function () {
    this.timeout(60000)

    const suite = dnsSuite()

    async function haraka(port) {
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        plugins: ['happy-eyeballs'],
        outbound: loopbackOutbound(version),
        files: {
          'happy_eyeballs.ini': `[main]\nport=${port}\n[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n`,
        },
      })
      suite.cleanup(() => h.stop())
      return h
    }

    async function send(h, to) {
      const from = h.logLength()
      const info = await sendMail({ port: h.port, to })
      return waitForOutcome(h, 45000, { from, uuid: queuedUuid(info) })
    }

    async function sink(opts) {
      const s = await startSink(opts)
      suite.cleanup(() => s.close())
      return s
    }

    it('an AAAA query never answered: delivered over IPv4 without waiting for it, the AAAA named as pending', async function () {
      const s = await sink({ host: '127.0.0.1', port: await freePort() })
      suite.dns.setZone('noaaaa.test', { mx: [{ preference: 10, exchange: 'mx.noaaaa.test' }] })
      suite.dns.setZone('mx.noaaaa.test', { aaaa: ['::1'], a: ['127.0.0.1'], dropTypes: ['AAAA'] })
      const h = await haraka(s.port)

      const outcome = await send(h, 'rcpt@noaaaa.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      const { record } = outcome
      assert.deepEqual(record.pendingLookups, ['mx.noaaaa.test AAAA'])
      assert.deepEqual(addresses(record), [['mx.noaaaa.test', ['127.0.0.1'], []]])
      assert.equal(record.decision.winner.address, '127.0.0.1')
      assert.deepEqual(
        record.race.attempts.map((a) => [a.target.address, a.outcome]),
        [['127.0.0.1', 'connected']],
      )
      assert.match(h.log(), /winner 127\.0\.0\.1; lookups left pending mx\.noaaaa\.test AAAA/)
      await s.waitForMessages(1, 5000)
      assert.equal(s.connections, 1)
    })

    it('MX 10 live, MX 20 never answering: delivered to MX 10, the lookups of MX 20 named as pending', async function () {
      const s = await sink({ host: '127.0.0.1', port: await freePort() })
      suite.dns.setZone('backup.test', {
        mx: [
          { preference: 10, exchange: 'mx1.backup.test' },
          { preference: 20, exchange: 'mx2.backup.test' },
        ],
      })
      suite.dns.setZone('mx1.backup.test', { a: ['127.0.0.1'] })
      suite.dns.setZone('mx2.backup.test', { a: ['127.0.0.2'], drop: true })
      const h = await haraka(s.port)

      const outcome = await send(h, 'rcpt@backup.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      const { record } = outcome
      assert.deepEqual(record.pendingLookups, ['mx2.backup.test AAAA', 'mx2.backup.test A'])
      assert.deepEqual(addresses(record), [
        ['mx1.backup.test', ['127.0.0.1'], []],
        ['mx2.backup.test', [], []],
      ])
      assert.deepEqual(
        record.decision.targets.map((t) => t.address),
        ['127.0.0.1'],
      )
      await s.waitForMessages(1, 5000)
    })

    it('a late AAAA answer joins the running race: IPv6 starts after the silent IPv4 attempt and wins', async function () {
      const hole = await startBlackHole({ host: '127.0.0.1' })
      suite.cleanup(() => hole.close())
      const s = await sink({ host: '::1', port: hole.port })
      suite.dns.setZone('late.test', { mx: [{ preference: 10, exchange: 'mx.late.test' }] })
      suite.dns.setZone('mx.late.test', { aaaa: ['::1'], a: ['127.0.0.1'], delayMs: { AAAA: 1000 } })
      const h = await haraka(hole.port)

      const outcome = await send(h, 'rcpt@late.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '::1')
      const { record } = outcome
      const [first, second] = record.race.attempts
      assert.equal(record.race.attempts.length, 2)
      assert.deepEqual([first.target.address, first.outcome], ['127.0.0.1', 'cancelled'])
      assert.deepEqual([second.target.address, second.outcome], ['::1', 'connected'])
      assert.ok(second.startMs > first.startMs, `IPv6 at +${second.startMs} ms, IPv4 at +${first.startMs} ms`)
      // Every lookup had answered: the record holds the complete resolution.
      assert.equal(record.pendingLookups, undefined)
      assert.deepEqual(addresses(record), [['mx.late.test', ['::1', '127.0.0.1'], []]])
      assert.equal(record.decision.winner.address, '::1')
      await s.waitForMessages(1, 5000)
      assert.equal(s.connections, 1)
    })

    it('a SERVFAIL on the AAAA with a live A still delivers over IPv4, the error in the plan', async function () {
      const s = await sink({ host: '127.0.0.1', port: await freePort() })
      suite.dns.setZone('servfail.test', { mx: [{ preference: 10, exchange: 'mx.servfail.test' }] })
      suite.dns.setZone('mx.servfail.test', { aaaa: ['::1'], a: ['127.0.0.1'], rcode: { AAAA: 'SERVFAIL' } })
      const h = await haraka(s.port)

      const outcome = await send(h, 'rcpt@servfail.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      assert.deepEqual(outcome.record.plan.dnsErrors, ['mx.servfail.test AAAA ESERVFAIL'])
      assert.equal(outcome.record.pendingLookups, undefined)
      await s.waitForMessages(1, 5000)
    })

    it('a SERVFAIL on every address lookup still defers as a DNS problem', async function () {
      suite.dns.setZone('allfail.test', { mx: [{ preference: 10, exchange: 'mx.allfail.test' }] })
      suite.dns.setZone('mx.allfail.test', { rcode: 'SERVFAIL' })
      const h = await haraka(await freePort())

      const outcome = await send(h, 'rcpt@allfail.test')
      assert.equal(outcome.kind, 'deferred', outcome.line)
      assert.match(
        outcome.err,
        /DNS lookup failed: mx\.allfail\.test AAAA ESERVFAIL, mx\.allfail\.test A ESERVFAIL/,
      )
      assert.equal(outcome.record.race, undefined)
    })
  })
}

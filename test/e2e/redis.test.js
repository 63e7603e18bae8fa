'use strict'

// The shared state through a real redis-server, inside real Haraka processes (3.3.4 and
// 3.0.3): with smtp.ini nodes=2, what one worker learns about a dead IPv6 path the other
// uses (its message makes no IPv6 attempt), and without Redis it does not; Redis stopped in
// the middle of a run and started again: every message delivered or deferred as without it,
// one outage line and one recovery line, Haraka still running.

const assert = require('node:assert/strict')

const {
  startSink,
  startHaraka,
  startRedis,
  sendMail,
  waitForOutcome,
  queuedUuid,
  freePort,
  dnsSuite,
  loopbackOutbound,
  LOOPBACK_FILTER,
} = require('../../support')

/** Every address this message's record shows a connect to: the race's, then Haraka's own new ones. */
function attemptedAddresses(outcome) {
  const r = outcome.record || {}
  return [
    ...((r.race && r.race.attempts) || []).map((a) => a.target.address),
    ...((r.connects && r.connects.attempts) || [])
      .filter((a) => a.by === 'haraka' && !a.handedOver)
      .map((a) => a.address),
  ]
}

const ipv6Attempts = (outcome) => attemptedAddresses(outcome).filter((a) => a.includes(':'))

const OUTAGE_RE = /redis:\/\/127\.0\.0\.1:\d+ unavailable \(/g
const RECOVERY_RE = /redis:\/\/127\.0\.0\.1:\d+ is back: sharing state again/g
const count = (text, re) => (text.match(re) || []).length

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version}: shared state in Redis`, function () {
    this.timeout(120000)

    const suite = dnsSuite()

    async function setup() {
      const sink = await startSink({ host: '127.0.0.1', port: await freePort() })
      suite.cleanup(() => sink.close())
      // IPv6 on ::1 at the sink's port is closed: refused, then IPv4 wins.
      suite.dns.setZone('dead6.test', { mx: [{ preference: 10, exchange: 'mx.dead6.test' }] })
      suite.dns.setZone('mx.dead6.test', { aaaa: ['::1'], a: ['127.0.0.1'] })
      return sink
    }

    async function haraka({ nodes = 0, ini }) {
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        nodes,
        plugins: ['happy-eyeballs'],
        outbound: loopbackOutbound(version),
        files: { 'happy_eyeballs.ini': `${LOOPBACK_FILTER}${ini}` },
      })
      suite.cleanup(() => h.stop())
      return h
    }

    async function send(h, to) {
      const at = h.logLength()
      const info = await sendMail({ port: h.port, from: 'sender@sender.test', to })
      return waitForOutcome(h, 45000, { from: at, uuid: queuedUuid(info) })
    }

    /**
     * The first message to dead6.test, then more until one is delivered by the other worker
     * (the master hands connections to its workers in turn): [first, the other's].
     */
    async function firstAndOtherWorker(h) {
      const first = await send(h, 'rcpt0@dead6.test')
      assert.equal(first.kind, 'delivered')
      for (let i = 1; i <= 6; i++) {
        const next = await send(h, `rcpt${i}@dead6.test`)
        assert.equal(next.kind, 'delivered')
        if (next.outcome.pid !== first.outcome.pid) return [first, next]
      }
      throw new Error(`every message was delivered by worker ${first.outcome.pid}`)
    }

    it('nodes=2 with Redis: the second worker starts with IPv4 for the MX whose IPv6 the first saw refused', async function () {
      const sink = await setup()
      const redis = await startRedis()
      suite.cleanup(() => redis.close())
      const h = await haraka({
        nodes: 2,
        ini: `[main]\nport=${sink.port}\n[redis]\nenabled=true\nhost=127.0.0.1\nport=${redis.port}\n`,
      })
      // Each worker connects; the master, which delivers nothing, does not.
      await h.waitForLog(
        /sharing state through redis:\/\/127\.0\.0\.1:\d+[\s\S]*sharing state through redis/,
        20000,
      )
      const [first, other] = await firstAndOtherWorker(h)
      assert.deepEqual(ipv6Attempts(first), ['::1'])
      assert.notEqual(other.outcome.pid, first.outcome.pid)
      assert.deepEqual(ipv6Attempts(other), [], JSON.stringify(attemptedAddresses(other)))
      assert.deepEqual(attemptedAddresses(other), ['127.0.0.1'])
      assert.equal(other.record.shared.store, 'read')
      assert.equal(other.ip, '127.0.0.1')
      // The first worker's IPv4 connect time gives the other its learnt delay for this MX host:
      // the minimum on loopback, where on its own it would know nothing and wait the maximum.
      assert.equal(other.record.race.attempts[0].delayMs, 100)
      // What the first worker learned is in Redis, under the prefix, with a TTL.
      assert.match(await redis.command(['PTTL', 'happy-eyeballs:f:mx.dead6.test|ipv6']), /^:[1-9]\d*\r\n$/)
      assert.match(await redis.command(['PTTL', 'happy-eyeballs:t:mx.dead6.test|ipv4']), /^:[1-9]\d*\r\n$/)
      assert.equal(count(h.log(), /sharing state through redis/g), 2)
      assert.equal(count(h.log(), OUTAGE_RE), 0)
    })

    it('nodes=2 without Redis: each worker learns alone, so the other worker tries IPv6 again', async function () {
      const sink = await setup()
      const h = await haraka({ nodes: 2, ini: `[main]\nport=${sink.port}\n` })
      const [first, other] = await firstAndOtherWorker(h)
      assert.deepEqual(ipv6Attempts(first), ['::1'])
      assert.deepEqual(ipv6Attempts(other), ['::1'])
      assert.equal(other.record.shared, undefined)
      // Nothing measured in this worker yet: the configured (maximum) attempt delay.
      const v4 = other.record.race.attempts.find((a) => a.target.family === 'ipv4')
      assert.equal(v4.delayMs, 250)
    })

    it('Redis stopped mid-run and started again: every message as without it, one outage line, one recovery line', async function () {
      const sink = await setup()
      suite.dns.setZone('ok.test', { a: ['127.0.0.1'] })
      // Both addresses refuse: deferred, with or without Redis.
      suite.dns.setZone('nowhere.test', { mx: [{ preference: 10, exchange: 'mx.nowhere.test' }] })
      suite.dns.setZone('mx.nowhere.test', { aaaa: ['::1'], a: ['127.0.0.2'] })
      const redis = await startRedis()
      suite.cleanup(() => redis.close())
      const h = await haraka({
        ini: `[main]\nport=${sink.port}\n[redis]\nenabled=true\nhost=127.0.0.1\nport=${redis.port}\n`,
      })
      await h.waitForLog(/sharing state through redis/, 20000)
      const kinds = async () => [
        (await send(h, 'a@ok.test')).kind,
        (await send(h, 'b@dead6.test')).kind,
        (await send(h, 'c@nowhere.test')).kind,
      ]
      const expected = ['delivered', 'delivered', 'deferred']
      assert.deepEqual(await kinds(), expected)

      const before = h.logLength()
      await redis.stop()
      await h.waitForLog(OUTAGE_RE, 20000, { from: before })
      assert.deepEqual(await kinds(), expected)
      assert.deepEqual(await kinds(), expected)

      await redis.start()
      await h.waitForLog(RECOVERY_RE, 20000, { from: before })
      assert.deepEqual(await kinds(), expected)
      // Sharing again: what this run learns after the outage is in Redis.
      assert.match(await redis.command(['EXISTS', 'happy-eyeballs:a:127.0.0.1']), /^:1\r\n$/)

      const log = h.log().slice(before)
      assert.equal(count(log, OUTAGE_RE), 1, log)
      assert.equal(count(log, RECOVERY_RE), 1, log)
      assert.equal(h.exitInfo(), null, 'Haraka still runs')
      assert.equal(sink.messages.filter((m) => !m.to.includes('sender@sender.test')).length, 8)
    })
  })
}

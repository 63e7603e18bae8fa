'use strict'

// DNS answers that lead back to this host, in every spelling that reaches it here, must
// never be connected to: real Haraka 3.3.4 and 3.0.3 with the plugin, `allow[]=127.0.0.1/32`
// only, and a canary listener wherever a forbidden spelling would land on port P:
//  - 127.0.0.2..127.0.0.9 — plain 127.x outside the allow list, and the IPv4-mapped
//    `::ffff:127.0.0.x` / `0:0:0:0:0:ffff:7f00:x` forms, which connect as 127.0.0.x;
//  - [::1] — `::1`, and `::`, which Linux connects to as ::1.
// `0.0.0.0` and `::ffff:0.0.0.0` connect to 127.0.0.1, where the legitimate sink listens, so
// the sink must see exactly the connections its expected messages arrive on, nothing more.

const assert = require('node:assert/strict')
const net = require('node:net')

const fixtures = require('haraka-test-fixtures')

const {
  startSink,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  freePort,
  loopbackOutbound,
} = require('../../support')

const CANARY_V4 = [
  '127.0.0.2',
  '127.0.0.3',
  '127.0.0.4',
  '127.0.0.5',
  '127.0.0.6',
  '127.0.0.7',
  '127.0.0.8',
  '127.0.0.9',
]

// The forbidden answers (AAAA written as the DNS zone holds them; the fixture stores bytes, so
// the resolver hands back its own canonical text) and the reason each must be dropped with.
const FORBIDDEN_AAAA = [
  ['::ffff:127.0.0.2', '::ffff:127.0.0.2', 'loopback, IPv4-mapped'],
  ['0:0:0:0:0:ffff:7f00:3', '::ffff:127.0.0.3', 'loopback, IPv4-mapped'],
  ['::', '::', 'unspecified'],
  ['::1', '::1', 'loopback'],
  ['::ffff:0.0.0.0', '::ffff:0.0.0.0', 'unspecified, IPv4-mapped'],
]
const FORBIDDEN_A = [
  ['0.0.0.0', '0.0.0.0', 'unspecified'],
  ['127.0.0.4', '127.0.0.4', 'loopback'],
  ['127.0.0.9', '127.0.0.9', 'loopback'],
]
const CANARY_RECORDS = {
  aaaa: FORBIDDEN_AAAA.map(([zone]) => zone),
  a: FORBIDDEN_A.map(([zone]) => zone),
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/**
 * Connects to host:port and resolves once the listener has shown it accepted this connection
 * (`until` is 'close' for a canary, which drops every connection, 'data' for the SMTP sink's
 * greeting). Connections queue in order, so anything Haraka started earlier is counted by then.
 */
function probe(host, port, until) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`probe of ${host}:${port} got no ${until}`))
    }, 10000)
    socket.on('error', () => {})
    socket.once(until, () => {
      clearTimeout(timer)
      socket.destroy()
      resolve()
    })
  })
}

/** A TCP listener that counts connections and closes each at once. */
async function startCanary(host, port) {
  const canary = { host, port, connections: 0, probes: 0, server: net.createServer() }
  canary.server.on('connection', (socket) => {
    canary.connections++
    socket.on('error', () => {})
    socket.destroy()
  })
  await new Promise((resolve, reject) => {
    canary.server.once('error', reject)
    canary.server.listen({ host, port, exclusive: true }, () => {
      canary.server.removeListener('error', reject)
      resolve()
    })
  })
  /** Connections from anyone but this test's probes, counted up to now. */
  canary.foreign = async () => {
    canary.probes++
    await probe(host, port, 'close')
    return canary.connections - canary.probes
  }
  canary.close = () => new Promise((resolve) => canary.server.close(() => resolve()))
  return canary
}

/** The sink's connections from anyone but this test's probes, counted up to now. */
async function sinkConnectionsSettled(sink, probes) {
  probes.count++
  await probe(sink.host, sink.port, 'data')
  return sink.connections - probes.count
}

/** A port free on 127.0.0.1..9 and [::1], with the sink and every canary listening on it. */
async function listenEverywhere() {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freePort('127.0.0.1')
    const started = []
    try {
      for (const host of [...CANARY_V4, '::1']) started.push(await startCanary(host, port))
      const sink = await startSink({ host: '127.0.0.1', port })
      return { port, sink, canaries: started }
    } catch (err) {
      for (const c of started) await c.close()
      if (!/EADDRINUSE|already in use/.test(String(err.message) + String(err.code))) throw err
    }
  }
  throw new Error('no port free on every canary address')
}

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version}: DNS answers pointing at this host never get a connection`, function () {
    this.timeout(60000)

    let dns
    let haraka
    let sink
    let canaries
    const sinkProbes = { count: 0 }

    before(async function () {
      dns = await fixtures.dns.start({})
      ;({ sink, canaries } = await listenEverywhere())
      haraka = await startHaraka({
        version,
        dnsPort: dns.port,
        plugins: ['happy-eyeballs'],
        outbound: loopbackOutbound(version, 10),
        // The test host's only IPv6 is ::1, which allow[] does not permit: with the connectivity
        // check on, no AAAA would be asked at all. Off, every forbidden AAAA is asked and judged.
        files: {
          'happy_eyeballs.ini': `[main]\nport=${sink.port}\nconnectivity_check_s=0\n[filter]\nallow[]=127.0.0.1/32\n`,
        },
      })
    })

    after(async function () {
      if (haraka) await haraka.stop()
      if (sink) await sink.close()
      for (const c of canaries || []) await c.close()
      if (dns) await dns.close()
    })

    async function send(to) {
      const from = haraka.logLength()
      const info = await sendMail({ port: haraka.port, to })
      const outcome = await waitForOutcome(haraka, 45000, { from, uuid: queuedUuid(info) })
      return { outcome, log: haraka.log().slice(from) }
    }

    // Connections counted before each test, so a failure is pinned on the test that caused it.
    let baseline
    beforeEach(async function () {
      const counts = []
      for (const c of canaries) counts.push(await c.foreign())
      baseline = { canaries: counts, sink: await sinkConnectionsSettled(sink, sinkProbes) }
    })

    /** No canary got a connection during this test, and the sink got exactly `delivered`. */
    async function assertOnlyExpectedConnections(delivered) {
      for (const [i, c] of canaries.entries()) {
        assert.equal(
          await c.foreign(),
          baseline.canaries[i],
          `a connection reached the canary on ${c.host}:${c.port}`,
        )
      }
      assert.equal(
        await sinkConnectionsSettled(sink, sinkProbes),
        baseline.sink + delivered,
        delivered
          ? 'connections at the sink beyond the delivery'
          : 'a connection reached 127.0.0.1 (0.0.0.0?)',
      )
    }

    function assertEveryForbiddenAddressNamed(text, exchange) {
      for (const [, shown, reason] of [...FORBIDDEN_AAAA, ...FORBIDDEN_A]) {
        assert.match(
          text,
          new RegExp(`(^|[ ;:])${escape(shown)} of ${escape(exchange)}: ${escape(reason)}(;|$)`),
          `${shown} (${reason}) in: ${text}`,
        )
      }
    }

    it('an MX host with only local-host addresses defers, naming each address and its reason', async function () {
      dns.setZone('only.canary.test', { mx: [{ preference: 10, exchange: 'mx.only.canary.test' }] })
      dns.setZone('mx.only.canary.test', CANARY_RECORDS)

      const { outcome } = await send('rcpt@only.canary.test')
      await assertOnlyExpectedConnections(0)
      assert.equal(outcome.kind, 'deferred', outcome.line)
      assert.match(outcome.err, /^no usable address for only\.canary\.test: /)
      assertEveryForbiddenAddressNamed(outcome.err, 'mx.only.canary.test')
      assert.doesNotMatch(outcome.err, /Tried all MXs/)
    })

    it('a domain without MX whose own addresses are all local-host spellings defers the same way', async function () {
      dns.setZone('implicit.canary.test', CANARY_RECORDS)

      const { outcome } = await send('rcpt@implicit.canary.test')
      await assertOnlyExpectedConnections(0)
      assert.equal(outcome.kind, 'deferred', outcome.line)
      assertEveryForbiddenAddressNamed(outcome.err, 'implicit.canary.test')
    })

    it('an MX host with local-host addresses plus the allowed A 127.0.0.1 delivers through 127.0.0.1 only', async function () {
      dns.setZone('mixed.canary.test', { mx: [{ preference: 10, exchange: 'mx.mixed.canary.test' }] })
      dns.setZone('mx.mixed.canary.test', {
        aaaa: CANARY_RECORDS.aaaa,
        a: [...CANARY_RECORDS.a, '127.0.0.1'],
      })
      const messagesBefore = sink.messages.length

      const { outcome, log } = await send('rcpt@mixed.canary.test')
      await assertOnlyExpectedConnections(outcome.kind === 'delivered' ? 1 : 0)
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      assert.match(log, /plan for mixed\.canary\.test: try mx\.mixed\.canary\.test 127\.0\.0\.1; filtered /)
      const plan = /plan for mixed\.canary\.test: [^\n]*/.exec(log)[0]
      assertEveryForbiddenAddressNamed(plan.replace(/; race .*$/, ''), 'mx.mixed.canary.test')

      await sink.waitForMessages(messagesBefore + 1, 5000)
      assert.deepEqual(
        sink.messages.slice(messagesBefore).map((m) => m.to),
        [['rcpt@mixed.canary.test']],
      )
    })

    it('a preferred MX of local-host addresses is skipped for a backup MX at 127.0.0.1', async function () {
      dns.setZone('backup.canary.test', {
        mx: [
          { preference: 10, exchange: 'mx1.backup.canary.test' },
          { preference: 20, exchange: 'mx2.backup.canary.test' },
        ],
      })
      dns.setZone('mx1.backup.canary.test', CANARY_RECORDS)
      dns.setZone('mx2.backup.canary.test', { a: ['127.0.0.1'] })
      const messagesBefore = sink.messages.length

      const { outcome, log } = await send('rcpt@backup.canary.test')
      await assertOnlyExpectedConnections(outcome.kind === 'delivered' ? 1 : 0)
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      assert.match(
        log,
        /plan for backup\.canary\.test: try mx2\.backup\.canary\.test 127\.0\.0\.1; filtered /,
      )

      await sink.waitForMessages(messagesBefore + 1, 5000)
      assert.deepEqual(
        sink.messages.slice(messagesBefore).map((m) => m.to),
        [['rcpt@backup.canary.test']],
      )
    })
  })
}

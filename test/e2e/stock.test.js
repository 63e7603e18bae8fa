'use strict'

// Pins what stock Haraka (no happy-eyeballs plugin) does with an MX host that has a
// link-local AAAA and a reachable A record, in 3.3.4 and in 3.0.3.

const assert = require('node:assert/strict')
const net = require('node:net')

const fixtures = require('haraka-test-fixtures')

const {
  startSink,
  startBlackHole,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  oneMx,
  SEED_RECORDS,
} = require('../../support')
const { zonelessLinkLocalConnect, assertZonelessLinkLocalStaysHere } = require('../support/link-local')

const SEED_ZONES = oneMx('seed.test', SEED_RECORDS)

/**
 * Tries one TCP connect and reports 'connected', 'error:<code>' or 'pending' (still not
 * connected after waitMs). The socket is always destroyed.
 */
function tryConnect(host, port, waitMs) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port })
    const done = (result) => {
      clearTimeout(timer)
      sock.destroy()
      resolve(result)
    }
    const timer = setTimeout(() => done('pending'), waitMs)
    sock.once('connect', () => done('connected'))
    sock.once('error', (err) => done(`error:${err.code}`))
  })
}

function isRunning(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('loopback black hole (harness self-check)', function () {
  this.timeout(20000)

  let hole = null
  let sink = null

  afterEach(async () => {
    if (sink) await sink.close()
    if (hole) await hole.close()
    sink = null
    hole = null
  })

  it('a connect() to [::1]:port hangs while 127.0.0.1:port on the same number answers', async () => {
    hole = await startBlackHole({ host: '::1' })
    sink = await startSink({ host: '127.0.0.1', port: hole.port })
    assert.equal(sink.port, hole.port)

    const started = Date.now()
    assert.equal(await tryConnect('::1', hole.port, 1000), 'pending')
    assert.ok(Date.now() - started >= 1000)

    assert.equal(await tryConnect('127.0.0.1', hole.port, 1000), 'connected')
    assert.equal(sink.connections, 1)
  })

  it('close() ends the helper process and frees the port', async () => {
    hole = await startBlackHole({ host: '::1' })
    const { pid, port } = hole
    assert.ok(isRunning(pid))
    await hole.close()
    hole = null
    assert.equal(isRunning(pid), false)
    assert.equal(await tryConnect('::1', port, 1000), 'error:ECONNREFUSED')
  })
})

describe('stock Haraka on an MX with a link-local AAAA and a loopback A', function () {
  this.timeout(60000)

  let dns = null
  let sink = null
  let haraka = null

  before(async () => {
    // Haraka sends to port 25 of DNS MX hosts and stock Haraka has no setting to change it.
    try {
      const probe = await startSink({ host: '127.0.0.1', port: 25 })
      await probe.close()
    } catch (err) {
      throw new Error(`these tests need 127.0.0.1:25 free for the SMTP sink: ${err.message}`, { cause: err })
    }
    dns = await fixtures.dns.start(SEED_ZONES)
  })

  after(async () => {
    if (dns) await dns.close()
    dns = null
  })

  afterEach(async () => {
    if (haraka) await haraka.stop()
    if (sink) await sink.close()
    haraka = null
    sink = null
  })

  async function sendSeed(version, outbound) {
    sink = await startSink({ host: '127.0.0.1', port: 25 })
    haraka = await startHaraka({ version, dnsPort: dns.port, outbound })
    const from = haraka.logLength()
    const info = await sendMail({ port: haraka.port, to: 'rcpt@seed.test' })
    const uuid = queuedUuid(info)
    assert.ok(uuid, `no queue id in ${info.response}`)
    const outcome = await waitForOutcome(haraka, 45000, { from, uuid })
    return { from, outcome }
  }

  // The fe80:: attempt depends on the Node under Haraka (see test/support/link-local.js):
  // EINVAL at once on Node 20 or where no interface has a link-local address; on Node 22+
  // where one has, the SYN goes out of it and the attempt costs connect_timeout, kept short
  // here so that the test stays quick.
  const linkLocal = zonelessLinkLocalConnect()
  const SHORT_CONNECT_TIMEOUT_S = 2
  it(`3.3.4, local_mx_ok=true: tries the fe80:: AAAA first, which ${linkLocal.label}, then delivers over A (${linkLocal.reason})`, async () => {
    assertZonelessLinkLocalStaysHere(linkLocal)
    const started = Date.now()
    const { from, outcome } = await sendSeed('3.3.4', {
      local_mx_ok: true,
      connect_timeout: SHORT_CONNECT_TIMEOUT_S,
    })
    const elapsedMs = Date.now() - started

    assert.equal(outcome.kind, 'delivered', outcome.line)
    assert.equal(outcome.host, 'mx.seed.test')
    assert.equal(outcome.ip, '127.0.0.1')
    assert.equal(outcome.port, 25)

    const failed = await haraka.waitForLog(
      linkLocal.fails
        ? /\[outbound\] Failed to get socket: connect EINVAL fe80::d250:99ff:feda:9100:25\b/
        : /\[outbound\] Failed to get socket: connection timed out to outbound::\{"port":25,"host":"fe80::d250:99ff:feda:9100"/,
      1000,
      { from },
    )
    assert.ok(failed.offset < outcome.offset, 'the fe80:: attempt comes before the delivery')
    if (!linkLocal.fails)
      assert.ok(
        elapsedMs >= SHORT_CONNECT_TIMEOUT_S * 1000,
        `delivered after ${elapsedMs} ms, before connect_timeout`,
      )

    const [msg] = await sink.waitForMessages(1, 5000)
    assert.deepEqual(msg.to, ['rcpt@seed.test'])
    assert.equal(msg.from, 'sender@haraka.test')
    assert.equal(msg.remoteAddress, '127.0.0.1')
    assert.equal(msg.secure, false)
    assert.match(msg.data, /\r\n\r\nhello/)
    assert.equal(sink.connections, 1)
  })

  it('3.0.3, local_mx_ok unset (false): drops the MX, defers with "Tried all MXs", never connects', async () => {
    const { from, outcome } = await sendSeed('3.0.3', { local_mx_ok: undefined })

    assert.equal(outcome.kind, 'deferred', outcome.line)
    assert.equal(outcome.err, 'Tried all MXs')
    assert.equal(sink.connections, 0)
    assert.equal(sink.messages.length, 0)
    assert.doesNotMatch(haraka.log().slice(from), /Failed to get socket/)
  })

  it('3.0.3, local_mx_ok=true: ignores the AAAA (ipv6_enabled=false) and delivers over A', async () => {
    const { from, outcome } = await sendSeed('3.0.3', { local_mx_ok: true })

    assert.equal(outcome.kind, 'delivered', outcome.line)
    assert.equal(outcome.host, 'mx.seed.test')
    assert.equal(outcome.ip, '127.0.0.1')
    assert.equal(outcome.port, 25)
    assert.doesNotMatch(haraka.log().slice(from), /fe80|Failed to get socket/i)

    const [msg] = await sink.waitForMessages(1, 5000)
    assert.deepEqual(msg.to, ['rcpt@seed.test'])
    assert.equal(sink.connections, 1)
  })
})

'use strict'

// Watched destinations in real Haraka processes (3.3.4 and 3.0.3): a watched domain whose IPv6
// sink stops is seen down by the background probes before any message is sent to it, the
// metrics and the status command say so, and the first message afterwards starts with IPv4.
// The probes never send a mail command.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const http = require('node:http')
const path = require('node:path')

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
const { parseExposition } = require('../../dist/lib/cli/prom-text')

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js')

function scrape(address) {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${address}/metrics`, { agent: false, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(body))
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', reject)
  })
}

/** The value of one happy_eyeballs_watch_ series, by name and labels; undefined when absent. */
async function watchValue(address, name, labels) {
  const samples = parseExposition(await scrape(address)).samples
  const s = samples.find(
    (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v),
  )
  return s?.value
}

/** Polls until `check(value)` holds (bounded), then returns the last value. */
async function until(get, check, timeoutMs) {
  const end = Date.now() + timeoutMs
  let value = await get()
  while (!check(value) && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    value = await get()
  }
  return value
}

function runCli(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    )
  })
}

// A probe that sent MAIL would be refused and counted by the sink.
const NO_MAIL = { stage: 'mail', code: 550, text: '5.7.1 a probe must not send MAIL' }

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version}: watched domains`, function () {
    this.timeout(90000)

    const suite = dnsSuite()

    it('a watched domain whose IPv6 goes dead is demoted before any message is sent to it', async function () {
      const port = await freePort()
      const v4 = await startSink({ host: '127.0.0.1', port })
      suite.cleanup(() => v4.close())
      const v6 = await startSink({ host: '::1', port, refuse: NO_MAIL })
      suite.cleanup(() => v6.close())
      suite.dns.setZone('watched.test', { mx: [{ preference: 10, exchange: 'mx.watched.test' }] })
      suite.dns.setZone('mx.watched.test', { aaaa: ['::1'], a: ['127.0.0.1'] })
      const metricsPort = await freePort()
      const address = `127.0.0.1:${metricsPort}`
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        plugins: ['happy-eyeballs'],
        outbound: loopbackOutbound(version),
        files: {
          'happy_eyeballs.ini': [
            '[main]',
            `port=${port}`,
            '[filter]',
            'allow[]=127.0.0.0/8',
            'allow[]=::1/128',
            '[metrics]',
            `listen=${address}`,
            '[watch]',
            'domains[]=watched.test',
            'interval_s=5',
            'timeout_ms=2000',
          ].join('\n'),
        },
      })
      suite.cleanup(() => h.stop())
      await h.waitForLog(/watching watched\.test every 5 s/, 20000)

      const up = (family) => () =>
        watchValue(address, 'happy_eyeballs_watch_up', { domain: 'watched.test', family })
      assert.equal(await until(up('ipv6'), (v) => v === 1, 20000), 1)
      assert.equal(await up('ipv4')(), 1)
      assert.ok(v6.connections >= 1 && v4.connections >= 1)

      await v6.close()
      assert.equal(await until(up('ipv6'), (v) => v === 0, 30000), 0, 'the next round sees IPv6 down')
      assert.equal(await up('ipv4')(), 1)
      const refused = await watchValue(address, 'happy_eyeballs_watch_probes_total', {
        domain: 'watched.test',
        family: 'ipv6',
        outcome: 'refused',
      })
      assert.ok(refused >= 1, `refused probes: ${refused}`)
      await h.waitForLog(/watch watched\.test: ipv6 down \(::1 connect ECONNREFUSED/, 5000)

      const status = await runCli(['status', '--metrics', `http://${address}/metrics`])
      assert.equal(status.code, 0, status.stderr)
      assert.match(
        status.stdout,
        /^watched watched\.test \(latest [^)]+\): ipv6 down \(probes: [^)]*refused \d+/m,
      )

      // The first message to it: planned IPv4 first, so no IPv6 attempt comes before IPv4.
      const at = h.logLength()
      const info = await sendMail({ port: h.port, from: 'sender@sender.test', to: 'rcpt@watched.test' })
      const outcome = await waitForOutcome(h, 45000, { from: at, uuid: queuedUuid(info) })
      assert.equal(outcome.kind, 'delivered')
      assert.equal(outcome.ip, '127.0.0.1')
      const attempts = outcome.record.race.attempts
      assert.equal(attempts[0].target.family, 'ipv4', JSON.stringify(attempts))
      assert.equal(attempts[0].outcome, 'connected')
      assert.equal(v4.messages.length, 1)
      // Every probe ended at the greeting or QUIT: the sinks saw no MAIL from a probe.
      assert.deepEqual(v6.refusals, [])
    })
  })
}

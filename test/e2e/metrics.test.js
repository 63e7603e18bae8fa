'use strict'

// The /metrics endpoint of the plugin inside real Haraka processes (3.3.4 and 3.0.3): exact
// counters after a known mix of messages, a bad or taken listen address logged with no
// listener, a reload that moves the endpoint, and the status command against it.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const net = require('node:net')
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
  LOOPBACK_FILTER,
} = require('../../support')
const { parseExposition } = require('../../dist/lib/cli/prom-text')

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js')

/** GET http://address/metrics: status and body; rejects when nothing answers. */
function scrape(address) {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${address}/metrics`, { agent: false, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', reject)
  })
}

/** Whether anything accepts a TCP connection at host:port. */
function accepts(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/** The happy_eyeballs_ samples as `name{k="v",...}` → value, labels sorted. */
function seriesOf(body) {
  const out = {}
  for (const s of parseExposition(body).samples) {
    if (!s.name.startsWith('happy_eyeballs_')) continue
    const labels = Object.keys(s.labels)
      .sort()
      .map((k) => `${k}="${s.labels[k]}"`)
      .join(',')
    out[labels ? `${s.name}{${labels}}` : s.name] = s.value
  }
  return out
}

const sum = (series, prefix) =>
  Object.entries(series)
    .filter(([k]) => k.startsWith(prefix))
    .reduce((n, [, v]) => n + v, 0)

/** Polls until `check(value)` holds (bounded), then returns the last value. */
async function until(get, check, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs
  let value = await get()
  while (!check(value) && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 50))
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

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version}: metrics`, function () {
    this.timeout(90000)

    const suite = dnsSuite()

    async function haraka(ini) {
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        plugins: ['happy-eyeballs'],
        outbound: loopbackOutbound(version),
        files: { 'happy_eyeballs.ini': `${LOOPBACK_FILTER}${ini}` },
      })
      suite.cleanup(() => h.stop())
      return h
    }

    async function send(h, to, from = 'sender@sender.test') {
      const at = h.logLength()
      const info = await sendMail({ port: h.port, from, to })
      return waitForOutcome(h, 45000, { from: at, uuid: queuedUuid(info) })
    }

    it('a known mix of messages gives exact counters, and status reads them', async function () {
      const sink = await startSink({ host: '127.0.0.1', port: await freePort() })
      suite.cleanup(() => sink.close())
      // IPv6 on ::1 at the sink's port is closed: refused, then IPv4 wins.
      suite.dns.setZone('fallback.test', { mx: [{ preference: 10, exchange: 'mx.fallback.test' }] })
      suite.dns.setZone('mx.fallback.test', { aaaa: ['::1'], a: ['127.0.0.1'] })
      suite.dns.setZone('seed.test', { mx: [{ preference: 10, exchange: 'mx.seed.test' }] })
      suite.dns.setZone('mx.seed.test', { aaaa: ['fe80::1'], a: ['127.0.0.1'] })
      suite.dns.setZone('allfiltered.test', { mx: [{ preference: 10, exchange: 'mx.allfiltered.test' }] })
      suite.dns.setZone('mx.allfiltered.test', { aaaa: ['fe80::2'], a: ['0.0.0.0'] })
      // The bounce's DSN goes to the sender's domain: delivered to the sink, not bounced again.
      suite.dns.setZone('sender.test', { a: ['127.0.0.1'] })
      const metricsPort = await freePort()
      const h = await haraka(`[main]\nport=${sink.port}\n[metrics]\nlisten=127.0.0.1:${metricsPort}\n`)
      await h.waitForLog(new RegExp(`serving metrics at http://127\\.0\\.0\\.1:${metricsPort}/metrics`))
      const address = `127.0.0.1:${metricsPort}`

      const before = seriesOf((await scrape(address)).body)
      assert.equal(sum(before, 'happy_eyeballs_connect_attempts_total'), 0)
      assert.equal(before.happy_eyeballs_race_duration_seconds_count, 0)

      assert.equal((await send(h, 'rcpt@fallback.test')).kind, 'delivered')
      assert.equal((await send(h, 'rcpt@seed.test')).kind, 'delivered')
      assert.equal((await send(h, 'rcpt@allfiltered.test')).kind, 'deferred')
      assert.equal((await send(h, 'rcpt@nxdomain.test')).kind, 'bounced')
      await sink.waitForMessages(3, 30000)

      // Counted in hooks that run just after Haraka logs the outcome: wait for all five.
      const ends = (s) =>
        sum(s, 'happy_eyeballs_deliveries_total') +
        sum(s, 'happy_eyeballs_deferrals_total') +
        sum(s, 'happy_eyeballs_bounces_total')
      const series = await until(
        async () => seriesOf((await scrape(address)).body),
        (s) => ends(s) >= 5,
      )

      const counters = Object.fromEntries(
        Object.entries(series).filter(([k, v]) => k.includes('_total') && v !== 0),
      )
      assert.deepEqual(counters, {
        // fallback.test: ::1 refused then 127.0.0.1; seed.test and the DSN to sender.test: 127.0.0.1.
        'happy_eyeballs_connect_attempts_total{by="race",family="ipv6",outcome="refused"}': 1,
        'happy_eyeballs_connect_attempts_total{by="race",family="ipv4",outcome="connected"}': 3,
        'happy_eyeballs_deliveries_total{family="ipv4"}': 3,
        'happy_eyeballs_family_fallbacks_total{from="ipv6",to="ipv4"}': 1,
        'happy_eyeballs_filtered_addresses_total{family="ipv6",reason="link-local"}': 2,
        'happy_eyeballs_filtered_addresses_total{family="ipv4",reason="unspecified"}': 1,
        'happy_eyeballs_deferrals_total{status="4.4.4"}': 1,
        'happy_eyeballs_bounces_total{status="5.1.2"}': 1,
      })
      assert.equal(series.happy_eyeballs_race_duration_seconds_count, 3)
      assert.equal(series['happy_eyeballs_race_duration_seconds_bucket{le="+Inf"}'], 3)
      // ::1 and 127.0.0.1, and the family of each MX host tried: fallback (both), seed, sender.
      assert.equal(series.happy_eyeballs_health_entries, 6)
      assert.equal(sink.messages.length, 3)
      assert.equal(sink.messages.filter((m) => m.to.includes('sender@sender.test')).length, 1)

      const text = await runCli(['status', '--metrics', `http://${address}/metrics`])
      assert.equal(text.code, 0, text.stderr)
      assert.match(text.stdout, /^attempts connected\s+3\s+0$/m)
      assert.match(text.stdout, /^attempts refused\s+0\s+1$/m)
      assert.match(text.stdout, /^deliveries\s+3\s+0$/m)
      assert.match(text.stdout, /^fell back to the other family\s+0\s+1$/m)
      assert.match(text.stdout, /^filtered link-local\s+0\s+2$/m)
      assert.match(text.stdout, /^filtered unspecified\s+1\s+0$/m)
      assert.match(text.stdout, /^deferrals by status: 4\.4\.4 1$/m)
      assert.match(text.stdout, /^bounces by status: 5\.1\.2 1$/m)
      assert.match(text.stdout, /^races: 3, mean \d+ ms/m)

      const json = await runCli(['status', '--json', '--metrics', `http://${address}`])
      assert.equal(json.code, 0, json.stderr)
      const report = JSON.parse(json.stdout)
      assert.equal(report.families.ipv4.deliveries, 3)
      assert.equal(report.families.ipv6.attempts.refused, 1)
      assert.equal(report.families.ipv6.fellBack, 1)
      assert.deepEqual(report.deferrals, { '4.4.4': 1 })

      // The same command once Haraka is gone: exit 1, saying so.
      await h.stop()
      const gone = await runCli(['status', '--metrics', `http://${address}/metrics`])
      assert.equal(gone.code, 1)
      assert.match(gone.stderr, /no answer from http:\/\/127\.0\.0\.1:\d+\/metrics: connect ECONNREFUSED/)
    })

    it('a bad listen value is logged by name; nothing listens and mail is delivered', async function () {
      const sink = await startSink({ host: '127.0.0.1', port: await freePort() })
      suite.cleanup(() => sink.close())
      suite.dns.setZone('ok.test', { a: ['127.0.0.1'] })
      const h = await haraka(`[main]\nport=${sink.port}\n[metrics]\nlisten=127.0.0.1:70000\n`)
      await h.waitForLog(/happy_eyeballs\.ini: \[metrics\] listen="127\.0\.0\.1:70000" is not IP:port/)
      assert.equal((await send(h, 'rcpt@ok.test')).kind, 'delivered')
      assert.doesNotMatch(h.log(), /serving metrics/)
      // No listener of Haraka's at all but its SMTP port.
      assert.deepEqual(listeningPorts(h.pid), [h.port])
    })

    it('a port in use is logged by name and Haraka runs without metrics', async function () {
      const taken = net.createServer()
      await new Promise((resolve) => taken.listen({ host: '127.0.0.1', port: 0 }, resolve))
      suite.cleanup(() => new Promise((resolve) => taken.close(resolve)))
      const port = taken.address().port
      const sink = await startSink({ host: '127.0.0.1', port: await freePort() })
      suite.cleanup(() => sink.close())
      suite.dns.setZone('ok.test', { a: ['127.0.0.1'] })
      const h = await haraka(`[main]\nport=${sink.port}\n[metrics]\nlisten=127.0.0.1:${port}\n`)
      await h.waitForLog(
        new RegExp(`\\[metrics\\] listen=127\\.0\\.0\\.1:${port}: listen EADDRINUSE; serving no metrics`),
      )
      assert.equal((await send(h, 'rcpt@ok.test')).kind, 'delivered')
      assert.deepEqual(listeningPorts(h.pid), [h.port])
    })

    it('in cluster mode (nodes=2) the master alone listens and serves the sum over its workers', async function () {
      const sink = await startSink({ host: '127.0.0.1', port: await freePort() })
      suite.cleanup(() => sink.close())
      suite.dns.setZone('ok.test', { a: ['127.0.0.1'] })
      const metricsPort = await freePort()
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        nodes: 2,
        plugins: ['happy-eyeballs'],
        outbound: loopbackOutbound(version),
        files: {
          'happy_eyeballs.ini': `[filter]\nallow[]=127.0.0.0/8\n[main]\nport=${sink.port}\n[metrics]\nlisten=127.0.0.1:${metricsPort}\n`,
        },
      })
      suite.cleanup(() => h.stop())
      await h.waitForLog(new RegExp(`serving metrics at http://127\\.0\\.0\\.1:${metricsPort}/metrics`))
      // The master holds the SMTP socket for its workers (round robin) and the metrics one.
      assert.deepEqual(
        listeningPorts(h.pid),
        [h.port, metricsPort].sort((a, b) => a - b),
      )
      for (let i = 0; i < 4; i++) assert.equal((await send(h, `rcpt${i}@ok.test`)).kind, 'delivered')
      const series = await until(
        async () => seriesOf((await scrape(`127.0.0.1:${metricsPort}`)).body),
        (s) => s['happy_eyeballs_deliveries_total{family="ipv4"}'] >= 4,
      )
      assert.equal(series['happy_eyeballs_deliveries_total{family="ipv4"}'], 4)
      assert.equal(
        series['happy_eyeballs_connect_attempts_total{by="race",family="ipv4",outcome="connected"}'],
        4,
      )
      assert.equal(series.happy_eyeballs_race_duration_seconds_count, 4)
      // Only one "serving" line: no worker tried the port.
      assert.equal(h.log().match(/serving metrics at/g).length, 1)
    })

    it('a reload that changes listen closes the old endpoint and opens the new one', async function () {
      const first = await freePort()
      const second = await freePort('::1')
      const h = await haraka(`[metrics]\nlisten=127.0.0.1:${first}\n`)
      await h.waitForLog(new RegExp(`serving metrics at http://127\\.0\\.0\\.1:${first}/metrics`))
      assert.equal((await scrape(`127.0.0.1:${first}`)).status, 200)

      const from = h.logLength()
      const ini = path.join(h.dir, 'config', 'happy_eyeballs.ini')
      const text = fs.readFileSync(ini, 'utf8').replace(`listen=127.0.0.1:${first}`, `listen=[::1]:${second}`)
      fs.writeFileSync(ini, text)
      await h.waitForLog(new RegExp(`serving metrics at http://\\[::1\\]:${second}/metrics`), 20000, { from })
      assert.equal((await scrape(`[::1]:${second}`)).status, 200)
      assert.equal(await accepts('127.0.0.1', first), false)
      assert.match(h.log().slice(from), new RegExp(`stopped serving metrics at 127\\.0\\.0\\.1:${first}`))
    })
  })
}

/** The TCP ports a process listens on, from /proc: its sockets in state LISTEN. */
function listeningPorts(pid) {
  const inodes = new Set()
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1])
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // local_address is f[1] (hex ip:port), st f[3] (0A = LISTEN), inode f[9]
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9])) ports.add(parseInt(f[1].split(':')[1], 16))
    }
  }
  return [...ports].sort((a, b) => a - b)
}

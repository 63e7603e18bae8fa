'use strict'

// A host without IPv6: a network namespace of its own whose loopback has 127.0.0.1 only (::1
// removed). `runWithoutIpv6(args)` runs this file there (as root, with `ip netns`): a DNS
// server that logs every query's type, an SMTP sink on 127.0.0.1, a real Haraka with the
// plugin, and one message to a dual-stack MX (AAAA ::1, A 127.0.0.1); it prints the queries
// and the recorded outcome as JSON, and the namespace is deleted whatever happens.

const { execFile } = require('node:child_process')
const dgram = require('node:dgram')

const dnsPacket = require('dns-packet')

const NS_LIMIT_MS = 90000

/**
 * A DNS front on 127.0.0.1 that logs each query's name and type and forwards it to `port`.
 * @returns {Promise<{port: number, queries: string[], close: () => Promise<void>}>}
 */
function startQueryLog(port) {
  return new Promise((resolve, reject) => {
    const front = dgram.createSocket('udp4')
    const queries = []
    front.on('message', (msg, rinfo) => {
      try {
        const q = dnsPacket.decode(msg).questions?.[0]
        if (q) queries.push(`${q.type} ${q.name}`)
      } catch {
        // not DNS: forwarded all the same
      }
      const back = dgram.createSocket('udp4')
      const done = setTimeout(() => back.close(), 5000)
      back.on('message', (answer) => {
        clearTimeout(done)
        front.send(answer, rinfo.port, rinfo.address)
        back.close()
      })
      back.send(msg, port, '127.0.0.1')
    })
    front.once('error', reject)
    front.bind(0, '127.0.0.1', () =>
      resolve({ port: front.address().port, queries, close: () => new Promise((r) => front.close(r)) }),
    )
  })
}

/** Inside the namespace: one message to a dual-stack MX through Haraka `version`. */
async function inside(version, iniExtra) {
  const support = require('.')
  const dns = await support.startDns({
    'dual.test': { mx: [{ preference: 10, exchange: 'mx.dual.test' }] },
    'mx.dual.test': { aaaa: ['::1'], a: ['127.0.0.1'] },
  })
  const front = await startQueryLog(dns.port)
  const sink = await support.startSink({ host: '127.0.0.1', port: await support.freePort('127.0.0.1') })
  let h
  try {
    h = await support.startHaraka({
      version,
      dnsPort: front.port,
      plugins: ['happy-eyeballs'],
      pluginFrom: 'checkout',
      outbound: version === '3.3.4' ? { local_mx_ok: true } : { local_mx_ok: undefined },
      files: {
        'happy_eyeballs.ini': `[main]\nport=${sink.port}\n${iniExtra}\n[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n`,
      },
    })
    const from = h.logLength()
    const info = await support.sendMail({ port: h.port, to: 'rcpt@dual.test' })
    const outcome = await support.waitForOutcome(h, 30000, { from, uuid: support.queuedUuid(info) })
    return {
      queries: front.queries.slice(),
      outcome: { kind: outcome.kind, ip: outcome.ip, line: outcome.line, record: outcome.record },
      sinkConnections: sink.connections,
      interfaces: require('node:os').networkInterfaces(),
      log: h
        .log()
        .split('\n')
        .filter((l) => /happy-eyeballs: host connectivity/.test(l)),
    }
  } finally {
    await h?.stop()
    await sink.close()
    await front.close()
    await dns.close()
  }
}

/**
 * Runs one message through Haraka `version` on a host without IPv6 (a namespace of its own).
 * @param {{version: string, ini?: string}} opts
 * @returns {Promise<{queries: string[], outcome: object, sinkConnections: number, interfaces: object, log: string[]}>}
 */
function runWithoutIpv6({ version, ini = '' }) {
  const ns = `he-nov6-${process.pid}-${Date.now() % 100000}`
  const script = `ip link set lo up && ip -6 addr del ::1/128 dev lo 2>/dev/null; exec "$0" "$1" inside "$2" "$3"`
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'add', ns], (addErr) => {
      if (addErr) return reject(addErr)
      execFile(
        'ip',
        ['netns', 'exec', ns, 'sh', '-c', script, process.execPath, __filename, version, ini],
        { timeout: NS_LIMIT_MS, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          execFile('ip', ['netns', 'del', ns], () => {
            if (err) return reject(new Error(`${err.message}\n${stderr}`))
            try {
              resolve(JSON.parse(stdout))
            } catch (e) {
              reject(new Error(`${e.message}\n${stdout}\n${stderr}`))
            }
          })
        },
      )
    })
  })
}

module.exports = { runWithoutIpv6, startQueryLog }

if (require.main === module && process.argv[2] === 'inside') {
  inside(process.argv[3], process.argv[4] || '').then(
    (r) => {
      process.stdout.write(JSON.stringify(r))
      process.exit(0)
    },
    (err) => {
      process.stderr.write(String(err && err.stack))
      process.exit(1)
    },
  )
}

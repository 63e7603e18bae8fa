'use strict'

// MX stand-ins that answer: a recording SMTP sink (smtp-server), and a server that accepts
// and never greets. Both listen on loopback only and close everything they opened.

const net = require('node:net')

const { makeWaiters } = require('./clock')
const { explainPort } = require('./ports')
const { selfSignedCert } = require('./tls')

/**
 * Starts a recording SMTP sink (smtp-server) on a loopback address.
 * `greeting` is the banner text; a greeting that starts with a 4xx/5xx code (e.g.
 * '421 try later') is instead sent as the reply to the connection, which is then closed.
 * `starttls` offers STARTTLS with `tls` ({key, cert}, e.g. a makeTestCa leaf) or else a
 * self-signed certificate for sink.test. `sni` lists the server name of every TLS handshake a
 * client started (null when it sent none); `secured` the server name of every completed one.
 * `preGreeting` lines (e.g. ['220-mx.test postscreen']) are sent the moment a client connects,
 * and the sink's own greeting (its final `220 ` line) follows `greetingDelayMs` later, as a
 * postscreen-style server does; `silent` accepts connections and never greets. With any of
 * these the sink sits behind a small TCP front that records in `sessions`, per connection,
 * every byte the client sent before the final greeting line (`early`) and after it (`after`).
 * `refuse` ({stage: 'mail'|'rcpt'|'data', code, text}) answers that command ('data': the final
 * dot) with `code text`, as a sender-policy refusal does; `refusals` lists each stage refused.
 * @param {{host?: string, port?: number, starttls?: boolean, tls?: {key: string, cert: string},
 *   greeting?: string, preGreeting?: string[], greetingDelayMs?: number, silent?: boolean,
 *   refuse?: {stage: 'mail'|'rcpt'|'data', code: number, text: string}}} [opts]
 * `receivedAt` of a message is performance.now() in this process when the sink took it (just
 * before its 250 reply), so callers can time delivery without polling latency.
 * @returns {Promise<{host: string, port: number, messages: Array<{from: string, to: string[], data: string,
 *   secure: boolean, servername: string|null, remoteAddress: string, receivedAt: number}>,
 *   connections: number, sni: Array<string|null>, secured: Array<string|null>,
 *   waitForMessages: (n: number, timeoutMs?: number) => Promise<object[]>, close: () => Promise<void>}>}
 */
async function startSink({
  host = '127.0.0.1',
  port = 0,
  starttls = false,
  tls,
  greeting,
  preGreeting = [],
  greetingDelayMs = 0,
  silent = false,
  refuse,
} = {}) {
  const front = preGreeting.length > 0 || greetingDelayMs > 0 || silent
  const { SMTPServer } = require('smtp-server')
  const waiters = makeWaiters()
  const reject = /^([45]\d\d)[ -](.*)$/.exec(greeting || '')
  /** The error `refuse` answers `stage` with, or null. */
  const refusal = (stage) => {
    if (!refuse || refuse.stage !== stage) return null
    sink.refusals.push(stage)
    return Object.assign(new Error(refuse.text), { responseCode: refuse.code })
  }
  const sink = {
    host,
    port: 0,
    messages: [],
    connections: 0,
    sessions: [],
    refusals: [],
    sni: [],
    secured: [],
    waitForMessages(n, timeoutMs = 10000) {
      return waiters.wait(
        () => sink.messages.length >= n && sink.messages,
        timeoutMs,
        () => `${n} message(s) at the sink ${host}:${sink.port} (got ${sink.messages.length})`,
      )
    },
    close: null,
  }

  const options = {
    name: 'sink.test',
    banner: reject ? undefined : greeting,
    authOptional: true,
    disabledCommands: starttls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 1000,
    socketTimeout: 30000,
    onConnect(session, cb) {
      if (!reject) return cb()
      const err = new Error(reject[2])
      err.responseCode = Number(reject[1])
      cb(err)
    },
    onMailFrom(address, session, cb) {
      cb(refusal('mail'))
    },
    onRcptTo(address, session, cb) {
      cb(refusal('rcpt'))
    },
    onData(stream, session, cb) {
      const chunks = []
      stream.on('data', (c) => chunks.push(c))
      stream.on('error', cb)
      stream.on('end', () => {
        const refused = refusal('data')
        if (refused) return cb(refused)
        sink.messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks).toString('utf8'),
          secure: !!session.secure,
          servername: session.servername || null,
          remoteAddress: session.remoteAddress,
          receivedAt: performance.now(),
        })
        cb(null, 'Message accepted by sink')
        waiters.poke()
      })
    },
  }
  if (starttls) {
    Object.assign(options, tls ? { key: tls.key, cert: tls.cert } : await selfSignedCert())
    // Called only when the client sends a server name; the default context answers.
    options.SNICallback = (servername, cb) => {
      sink.sni.push(servername || null)
      cb(null)
    }
    options.onSecure = (socket, session, cb) => {
      sink.secured.push(session.servername || null)
      cb()
    }
  }

  const server = new SMTPServer(options)
  server.on('error', () => {})
  server.server.on('connection', () => {
    if (!front) sink.connections++
  })

  await new Promise((resolve, reject2) => {
    const onError = (err) => {
      const text = err.code === 'EADDRINUSE' ? 'is already in use' : `cannot be listened on: ${err.message}`
      reject2(explainPort(new Error(`sink: ${host}:${port} ${text}`, { cause: err }), host, port))
    }
    server.server.once('error', onError)
    server.server.listen({ host, port: front ? 0 : port }, () => {
      server.server.removeListener('error', onError)
      resolve()
    })
  })
  sink.port = server.server.address().port
  const stopFront = front
    ? await startGreetingFront(sink, { host, port, preGreeting, greetingDelayMs, silent })
    : null

  let closing = null
  sink.close = () => {
    if (!closing) {
      closing = Promise.all([
        new Promise((resolve) => server.close(() => resolve())),
        stopFront ? stopFront() : null,
      ]).then(() => {})
      waiters.failAll(new Error('sink closed'))
    }
    return closing
  }
  return sink
}

/**
 * The TCP front of a sink with a scripted greeting: listens on host:port (and sets sink.port to
 * it), sends `preGreeting` at once, and after `greetingDelayMs` connects to the sink behind it
 * and passes everything through, the sink's own greeting first. Returns its stop function.
 */
async function startGreetingFront(sink, { host, port, preGreeting, greetingDelayMs, silent }) {
  const backPort = sink.port
  const open = new Set()
  const timers = new Set()
  const frontServer = net.createServer((client) => {
    sink.connections++
    const session = { remoteAddress: client.remoteAddress, early: '', after: '', greeted: false }
    sink.sessions.push(session)
    open.add(client)
    client.on('error', () => {})
    client.once('close', () => open.delete(client))
    const pending = []
    let back = null
    client.on('data', (d) => {
      if (session.greeted) session.after += d
      else session.early += d
      if (back) back.write(d)
      else pending.push(d)
    })
    for (const line of preGreeting) client.write(`${line}\r\n`)
    if (silent) return
    const timer = setTimeout(() => {
      timers.delete(timer)
      if (client.destroyed) return
      back = net.connect({ host, port: backPort })
      open.add(back)
      back.on('error', () => client.destroy())
      back.once('close', () => {
        open.delete(back)
        client.end()
      })
      client.once('close', () => back.destroy())
      back.once('data', () => back.write(Buffer.concat(pending)))
      back.on('data', (d) => {
        client.write(d)
        session.greeted = true
      })
    }, greetingDelayMs)
    timers.add(timer)
  })
  await new Promise((resolve, reject) => {
    frontServer.once('error', reject)
    frontServer.listen({ host, port }, () => {
      frontServer.removeListener('error', reject)
      resolve()
    })
  })
  sink.port = frontServer.address().port
  return () =>
    new Promise((resolve) => {
      for (const t of timers) clearTimeout(t)
      for (const s of open) s.destroy()
      frontServer.close(() => resolve())
    })
}

/** Upper bound for a connection held by a silent server, whatever the client does. */
const SILENT_HOLD_MS = 120000

/**
 * A server that accepts TCP connections and never says anything: an SMTP client waits for a
 * greeting until its own idle timeout (Haraka's connect_timeout) gives up.
 * @param {{host: string, port: number}} opts
 * @returns {Promise<{host: string, port: number, connections: number, close: () => Promise<void>}>}
 */
async function startSilent({ host, port }) {
  const sockets = new Set()
  const server = net.createServer((socket) => {
    handle.connections++
    sockets.add(socket)
    socket.on('error', () => {})
    const timer = setTimeout(() => socket.destroy(), SILENT_HOLD_MS)
    socket.once('close', () => {
      clearTimeout(timer)
      sockets.delete(socket)
    })
  })
  const handle = { host, port: 0, connections: 0, close: null }
  await new Promise((resolve, reject) => {
    server.once('error', (err) =>
      reject(new Error(`silent server: cannot listen on ${host}:${port}: ${err.message}`)),
    )
    server.listen({ host, port }, resolve)
  })
  handle.port = server.address().port
  let closing = null
  handle.close = () => {
    if (!closing) {
      closing = new Promise((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      })
    }
    return closing
  }
  return handle
}

module.exports = { startSink, startSilent }

'use strict'

// Loopback ports: a free one, which ones are taken, and waiting for a taken one (port 25 is
// shared by every run on one network namespace).

const net = require('node:net')

const { sleep } = require('./clock')

const PORT25_HINT =
  'stock Haraka always connects to port 25 of an MX host, so this needs 127.0.0.1:25 and [::1]:25 ' +
  'free and bindable (root, or net.ipv4.ip_unprivileged_port_start<=25)'

/**
 * A free TCP port on a loopback host, found by binding port 0 and closing again.
 * @param {string} [host]
 * @returns {Promise<number>}
 */
function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen({ host, port: 0 }, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * The hosts among `hosts` where `port` cannot be bound right now (someone listens there, or on
 * the wildcard address). Each probe socket is closed again at once; any other listen error
 * (EACCES for port 25 without the right) is thrown.
 * @param {string[]} hosts
 * @param {number} port
 * @returns {Promise<string[]>}
 */
async function busyHosts(hosts, port) {
  const busy = []
  for (const host of hosts) {
    const free = await new Promise((resolve, reject) => {
      const srv = net.createServer()
      srv.once('error', (err) =>
        err.code === 'EADDRINUSE' ? resolve(false) : reject(explainPort(err, host, port)),
      )
      srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)))
    })
    if (!free) busy.push(host)
  }
  return busy
}

/**
 * Waits (bounded, checking every second) until `port` can be bound on every host; onWait(busy)
 * is called once if it has to wait. Throws naming the hosts still busy after timeoutMs.
 * @param {string[]} hosts
 * @param {number} port
 * @param {number} timeoutMs
 * @param {(busy: string[]) => void} [onWait]
 */
async function waitForFreePort(hosts, port, timeoutMs, onWait = () => {}) {
  const end = Date.now() + timeoutMs
  let busy = await busyHosts(hosts, port)
  if (busy.length) onWait(busy)
  while (busy.length && Date.now() < end) {
    await sleep(1000)
    busy = await busyHosts(hosts, port)
  }
  if (busy.length) {
    throw new Error(
      `port ${port} is still in use on ${busy.join(', ')}${port === 25 ? `\n${PORT25_HINT}` : ''}`,
    )
  }
}

/** A listen error on port 25 with the reason stock Haraka needs that port. */
function explainPort(err, host, port) {
  if (port !== 25) return err
  const where = host.includes(':') ? `[${host}]` : host
  return new Error(`cannot listen on ${where}:25: ${err.message}\n${PORT25_HINT}`, { cause: err })
}

module.exports = { PORT25_HINT, freePort, busyHosts, waitForFreePort, explainPort }

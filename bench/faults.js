'use strict'

// Fault stand-ins and process probes for the soak run (bench/soak.js). Everything listens on
// loopback only and closes what it opened; the /proc readers only read.

const fs = require('node:fs')
const fsp = require('node:fs/promises')
const net = require('node:net')
const path = require('node:path')

/** A small seeded PRNG (mulberry32): the same seed gives the same fault layout. */
function prng(seed) {
  let a = seed >>> 0
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
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

/**
 * Source of a local Haraka plugin that reports the happy-eyeballs health cache: its size, its
 * bound (the plugin's parsed [cache] max_entries), the largest size seen right after any record(),
 * and how many distinct keys were offered to it (so a size at the bound can be told apart from a
 * cache that was never pressed). Haraka has no API for one plugin to read another's state; the
 * plugin registry module is reachable through haraka_require. Distinct keys are counted the way
 * lib/health.ts keys its entries (one per address, one per MX host and family).
 */
const PROBE_PLUGIN = `'use strict'
exports.register = function () {
  const plugins = this.haraka_require('plugins')
  const seen = new Set()
  let wrapped = null
  let peak = 0
  let last = ''
  const sample = () => {
    const he = plugins.registered_plugins['happy-eyeballs']
    const state = he && he.happy_eyeballs
    if (!state || !state.health) return
    const health = state.health
    if (wrapped !== health) {
      const record = health.record
      health.record = function (address, family, exchange) {
        seen.add('a ' + address)
        if (exchange) seen.add('f ' + String(exchange).toLowerCase() + ' ' + family)
        const result = record.apply(this, arguments)
        if (health.size > peak) peak = health.size
        return result
      }
      wrapped = health
    }
    const line = 'health size=' + health.size + ' peak=' + peak + ' max_entries=' +
      state.settings.cache.maxEntries + ' distinct=' + seen.size
    if (line !== last) {
      last = line
      this.loginfo(line)
    }
  }
  sample()
  setInterval(sample, 100).unref()
}
`

/** Parses the probe's log lines; the last one carries the final numbers. */
const PROBE_LINE_RE = /\[soak_probe\] health size=(\d+) peak=(\d+) max_entries=(\d+) distinct=(\d+)/

/**
 * Reads Haraka's outbound queue dir: every queue file with the uuid and domain from its todo
 * header (4-byte big-endian length, then JSON). `__tmp__.` files are being written; `error.`
 * files are ones Haraka could not read back.
 * @param {string} dir
 * @returns {Promise<{files: Array<{name: string, uuid?: string, domain?: string, bad?: string}>,
 *   errorFiles: string[], tmpFiles: string[]}>}
 */
async function scanQueue(dir) {
  const out = { files: [], errorFiles: [], tmpFiles: [] }
  let names
  try {
    names = await fsp.readdir(dir)
  } catch (err) {
    if (err.code === 'ENOENT') return out
    throw err
  }
  for (const name of names.sort()) {
    if (name.startsWith('__tmp__.')) out.tmpFiles.push(name)
    else if (name.startsWith('error.')) out.errorFiles.push(name)
    else if (!name.startsWith('.')) {
      const file = { name }
      let handle
      try {
        handle = await fsp.open(path.join(dir, name), 'r')
        const head = Buffer.alloc(4)
        await handle.read(head, 0, 4, 0)
        const len = head.readUInt32BE(0)
        const body = Buffer.alloc(len)
        await handle.read(body, 0, len, 4)
        const todo = JSON.parse(body.toString('utf8'))
        file.uuid = todo.uuid
        file.domain = todo.domain
      } catch (err) {
        file.bad = err.message
      } finally {
        if (handle) await handle.close()
      }
      out.files.push(file)
    }
  }
  return out
}

/** inode → {proto, state} for the sockets in the process's network namespace. */
function socketTable(pid) {
  const table = new Map()
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    let text
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${proto}`, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      table.set(f[9], { proto: proto.replace('6', ''), state: f[3] })
    }
  }
  return table
}

/**
 * The open file descriptors of a process, by kind: TCP listening, other TCP (connected or
 * connecting), UDP, other sockets (unix), pipes, anon inodes (epoll, eventfd …), files.
 * @param {number} pid
 * @returns {{total: number, kinds: Object<string, number>}}
 */
function fdSnapshot(pid) {
  const dir = `/proc/${pid}/fd`
  const kinds = { 'tcp-listen': 0, 'tcp-open': 0, udp: 0, 'other-socket': 0, pipe: 0, anon: 0, file: 0 }
  const sockets = socketTable(pid)
  let total = 0
  for (const fd of fs.readdirSync(dir)) {
    let target
    try {
      target = fs.readlinkSync(path.join(dir, fd))
    } catch {
      continue // closed between readdir and readlink
    }
    total++
    const sock = /^socket:\[(\d+)\]$/.exec(target)
    if (sock) {
      const s = sockets.get(sock[1])
      if (!s) kinds['other-socket']++
      else if (s.proto === 'udp') kinds.udp++
      else if (s.state === '0A') kinds['tcp-listen']++
      else kinds['tcp-open']++
    } else if (target.startsWith('pipe:')) kinds.pipe++
    else if (target.startsWith('anon_inode:')) kinds.anon++
    else kinds.file++
  }
  return { total, kinds }
}

/**
 * Peak and current resident set size of a process, in KiB (VmHWM, VmRSS).
 * @param {number} pid
 * @returns {{peakKib: number, rssKib: number}}
 */
function memory(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key) => Number((new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status) || [])[1])
  return { peakKib: kib('VmHWM'), rssKib: kib('VmRSS') }
}

/**
 * The hosts among `hosts` where `port` cannot be bound right now (someone listens there, or on
 * the wildcard address). Each probe socket is closed again at once.
 * @param {string[]} hosts
 * @param {number} port
 * @returns {Promise<string[]>}
 */
async function busyHosts(hosts, port) {
  const busy = []
  for (const host of hosts) {
    const free = await new Promise((resolve) => {
      const srv = net.createServer()
      srv.once('error', () => resolve(false))
      srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)))
    })
    if (!free) busy.push(host)
  }
  return busy
}

/** True while a process with this PID exists. */
function isAlive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

module.exports = {
  prng,
  startSilent,
  PROBE_PLUGIN,
  PROBE_LINE_RE,
  scanQueue,
  busyHosts,
  fdSnapshot,
  memory,
  isAlive,
}

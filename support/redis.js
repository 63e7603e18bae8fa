'use strict'

// A throwaway redis-server (Debian's package) on a free loopback port: no persistence, a
// bounded life (coreutils `timeout` ends it whatever happens to the caller), stopped by PID.
// `stop()` and `start()` again on the same port stand for an outage and a recovery.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const { freePort } = require('./ports')
const { sleep } = require('./clock')

/** Upper bound for the life of a test redis-server. */
const REDIS_MAX_S = 15 * 60

/** The redis-server binary, or an error saying how to get it. */
function redisServerBinary() {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/bin', '/usr/sbin'])) {
    const file = path.join(dir || '.', 'redis-server')
    if (fs.existsSync(file)) return file
  }
  throw new Error('redis-server not found: install it (Debian: apt-get install redis-server)')
}

/** One RESP command over a fresh connection: the raw reply text (bounded by `timeoutMs`). */
function redisCommand(port, args, { host = '127.0.0.1', timeoutMs = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port })
    let reply = ''
    const timer = setTimeout(
      () => s.destroy(new Error(`redis ${args[0]}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    )
    s.setEncoding('utf8')
    s.on('connect', () => {
      s.write(
        `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`,
      )
    })
    s.on('data', (d) => {
      reply += d
      if (complete(reply)) {
        clearTimeout(timer)
        s.end()
        resolve(reply)
      }
    })
    s.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** Whether a RESP reply (a simple string, an error, an integer or one bulk string) is whole. */
function complete(reply) {
  if (!reply.endsWith('\r\n')) return false
  if (reply[0] !== '$') return true
  const head = reply.indexOf('\r\n')
  const len = Number(reply.slice(1, head))
  return len < 0 || Buffer.byteLength(reply) >= head + 2 + len + 2
}

/** The bulk string of a RESP reply. */
const bulk = (reply) => reply.slice(reply.indexOf('\r\n') + 2, -2)

/**
 * @param {{port?: number, host?: string}} [opts]
 * @returns {Promise<{host: string, port: number, pid: number|undefined, running: boolean,
 *   start(): Promise<void>, stop(): Promise<void>, command(args: string[]): Promise<string>,
 *   usedMemory(): Promise<number>}>}
 */
async function startRedis({ port, host = '127.0.0.1' } = {}) {
  const binary = redisServerBinary()
  const at = port ?? (await freePort(host))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'he-redis-'))
  let child
  let exited

  const server = {
    host,
    port: at,
    get pid() {
      return child?.pid
    },
    get running() {
      return Boolean(child) && !exited
    },
    async start() {
      if (server.running) return
      exited = undefined
      child = spawn(
        'timeout',
        [
          String(REDIS_MAX_S),
          binary,
          '--port',
          String(at),
          '--bind',
          host,
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--daemonize',
          'no',
          '--loglevel',
          'warning',
          '--logfile',
          '',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      )
      let stderr = ''
      child.stderr.on('data', (d) => (stderr += d))
      const done = new Promise((resolve) => child.once('exit', resolve))
      done.then((code) => (exited = { code }))
      const end = Date.now() + 10000
      for (;;) {
        if (exited) throw new Error(`redis-server on ${host}:${at} exited (${exited.code}): ${stderr.trim()}`)
        try {
          if ((await redisCommand(at, ['PING'], { host, timeoutMs: 500 })).startsWith('+PONG')) return
        } catch {
          // not yet listening
        }
        if (Date.now() > end) throw new Error(`redis-server on ${host}:${at}: no PONG in 10 s`)
        await sleep(25)
      }
    },
    async stop() {
      if (!server.running) return
      const gone = new Promise((resolve) => child.once('exit', resolve))
      // `timeout` passes the signal on to redis-server and exits with it.
      process.kill(child.pid, 'SIGTERM')
      const killer = setTimeout(() => {
        try {
          process.kill(child.pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }, 5000)
      await gone
      clearTimeout(killer)
    },
    command(args) {
      return redisCommand(at, args, { host })
    },
    /** INFO memory's used_memory, in bytes. */
    async usedMemory() {
      const info = bulk(await redisCommand(at, ['INFO', 'memory'], { host }))
      return Number(/^used_memory:(\d+)/m.exec(info)[1])
    },
    async close() {
      await server.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  await server.start()
  return server
}

/** Whether this machine has redis-server (the Debian package). */
function haveRedisServer() {
  try {
    execFileSync(redisServerBinary(), ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

module.exports = { startRedis, redisCommand, haveRedisServer }

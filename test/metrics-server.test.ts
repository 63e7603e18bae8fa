// The /metrics endpoint on loopback: served where configured, moved by a reconfiguration,
// closed when emptied; a port in use or a bad address logged and nothing served.

import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'

import { Counter, Registry } from 'prom-client'

import { MetricsServer, metricsRole, sourceFor } from '../lib/metrics-server'

interface Reply {
  status: number
  type: string
  body: string
}

function get(address: string, path = '/metrics', method = 'GET'): Promise<Reply> {
  const url = new URL(`http://${address}${path}`)
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
      )
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', reject)
    req.end()
  })
}

/** Whether something accepts TCP connections at host:port. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen({ host, port: 0 }, () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

describe('metrics endpoint', () => {
  let registry: Registry
  let logs: string[]
  let server: MetricsServer

  beforeEach(() => {
    registry = new Registry()
    const c = new Counter({ name: 'test_things_total', help: 'things', registers: [registry] })
    c.inc(3)
    logs = []
    server = new MetricsServer(sourceFor('single', registry), (level, msg) => logs.push(`${level}: ${msg}`))
  })
  afterEach(async () => {
    await server.close()
  })

  it('serves the Prometheus text format at /metrics on 127.0.0.1, and 404 elsewhere', async () => {
    const port = await freePort('127.0.0.1')
    await server.configure(`127.0.0.1:${port}`)
    assert.equal(server.address, `127.0.0.1:${port}`)
    const reply = await get(`127.0.0.1:${port}`)
    assert.equal(reply.status, 200)
    assert.match(reply.type, /^text\/plain; version=0\.0\.4/)
    assert.match(reply.body, /^test_things_total 3$/m)
    assert.equal((await get(`127.0.0.1:${port}`, '/')).status, 404)
    assert.equal((await get(`127.0.0.1:${port}`, '/metrics', 'POST')).status, 405)
    assert.deepEqual(logs, [`info: serving metrics at http://127.0.0.1:${port}/metrics`])
  })

  it('serves on [::1]', async () => {
    const port = await freePort('::1')
    await server.configure(`[::1]:${port}`)
    assert.match((await get(`[::1]:${port}`)).body, /^test_things_total 3$/m)
  })

  it('a new address closes the old server and opens the new one; the same address keeps it', async () => {
    const first = await freePort('127.0.0.1')
    const second = await freePort('127.0.0.1')
    await server.configure(`127.0.0.1:${first}`)
    await server.configure(`127.0.0.1:${first}`)
    assert.equal(logs.length, 1, logs.join('\n'))
    await server.configure(`127.0.0.1:${second}`)
    assert.equal(await accepts('127.0.0.1', first), false)
    assert.equal((await get(`127.0.0.1:${second}`)).status, 200)
    await server.configure(undefined)
    assert.equal(server.address, undefined)
    assert.equal(await accepts('127.0.0.1', second), false)
    assert.deepEqual(logs.slice(1), [
      `info: stopped serving metrics at 127.0.0.1:${first}`,
      `info: serving metrics at http://127.0.0.1:${second}/metrics`,
      `info: stopped serving metrics at 127.0.0.1:${second}`,
    ])
  })

  it('a port in use is logged by name and nothing is served; a later good address works', async () => {
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen({ host: '127.0.0.1', port: 0 }, resolve))
    try {
      const port = (taken.address() as net.AddressInfo).port
      await server.configure(`127.0.0.1:${port}`)
      assert.equal(server.address, undefined)
      assert.deepEqual(logs, [
        `error: [metrics] listen=127.0.0.1:${port}: listen EADDRINUSE; serving no metrics`,
      ])
      const free = await freePort('127.0.0.1')
      await server.configure(`127.0.0.1:${free}`)
      assert.equal((await get(`127.0.0.1:${free}`)).status, 200)
    } finally {
      await new Promise((resolve) => taken.close(resolve))
    }
  })

  it('an address this host does not have is logged and nothing is served', async () => {
    // 127.0.0.1 is this namespace's only IPv4 address; ::2 is no address of any host here.
    await server.configure('[::2]:9464')
    assert.equal(server.address, undefined)
    assert.equal(logs.length, 1)
    assert.match(
      logs[0],
      /^error: \[metrics\] listen=\[::2\]:9464: listen EADDRNOTAVAIL; serving no metrics$/,
    )
  })

  it('a value that is no IP:port is logged and nothing is served', async () => {
    await server.configure('localhost:9464')
    assert.equal(server.address, undefined)
    assert.deepEqual(logs, ['warn: [metrics] listen=localhost:9464 is not IP:port; serving no metrics'])
  })

  it('a source that fails answers 500 with the reason, and the server keeps serving', async () => {
    const failing = new MetricsServer(
      { text: () => Promise.reject(new Error('workers did not answer')), contentType: 'text/plain' },
      () => {},
    )
    try {
      const port = await freePort('127.0.0.1')
      await failing.configure(`127.0.0.1:${port}`)
      const reply = await get(`127.0.0.1:${port}`)
      assert.equal(reply.status, 500)
      assert.match(reply.body, /workers did not answer/)
      assert.equal((await get(`127.0.0.1:${port}`)).status, 500)
    } finally {
      await failing.close()
    }
  })
})

describe('metrics role', () => {
  it('a worker never listens; a master with nodes serves its workers; nodes=0 serves itself', () => {
    assert.equal(metricsRole(2, { isWorker: true }), 'worker')
    assert.equal(metricsRole(2, { isWorker: false }), 'master')
    assert.equal(metricsRole('cpus', { isWorker: false }), 'master')
    assert.equal(metricsRole('4', { isWorker: false }), 'master')
    assert.equal(metricsRole(0, { isWorker: false }), 'single')
    assert.equal(metricsRole(undefined, { isWorker: false }), 'single')
    assert.equal(metricsRole('', { isWorker: false }), 'single')
  })
})
